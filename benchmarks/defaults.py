"""The one-shot default against its scratch twin, on data sets of every kind.

What every one-shot user gets: for each data set, one teacher made by
`kdcli train-teacher --data D` (all defaults: `--arch auto`), then for each
seed `kdcli distill --teacher T --baseline --seed S` plus a variant's options
(the default variant adds none). The scratch twin is the same student trained
on the hard labels alone, from the same initial weights, with the same budget.
Each cell records the test accuracy of both, the epochs each side ran, its best
epoch and why it stopped, and the command's whole wall time.

The data sets (made offline: `datasets.py` generators from a fixed seed, the
bundled samples, and the MNIST split when `../shared/data` is there):

- images: `digits` (8x8 grey), `shapes` (32x32 colour), `mnist` (28x28 grey);
- 1-D signals: `signal` (shifted motif templates, 64x8, 4,000 training
  samples), `motifs` (the same on one channel, 64x1, 2,000), `tones` (pairs of frequencies under noise, 128x1, 1,500),
  `mixture` (noisy mixtures of smooth curves, 40x1, 4,000);
- tabular, raw features on very different scales: `tabular` (20 features,
  3 classes), `clusters` (30 features, counts and heavy tails, 8 classes);
- text: `texts` (the bundled corpus).

The cells (set × variant × seed) are a grid.py `Grid`, saved after each, so a
run cut short resumes. A variant whose options leave the scratch twin
unchanged (`SHARED_SCRATCH`) trains no twin of its own: it reuses the default
variant's, from the same seed.

    python benchmarks/defaults.py [--sets ...] [--variants ...] [--seeds 0 1 2] [--workdir DIR]
        [--json defaults.json] [--markdown defaults.md] [--reuse-scratch JSON] [--render]
"""

import json
import time
from pathlib import Path

import grid
import numpy as np

import kdcli
from kdcli.files import sha256_file

import datasets
from common import kdcli as run, mnist_split, points

HERE = Path(__file__).resolve().parent
SETS = ("digits", "shapes", "mnist", "signal", "motifs", "tones", "mixture", "tabular", "clusters", "texts")
KIND = {"digits": "images 8x8", "shapes": "images 32x32x3", "mnist": "images 28x28", "signal": "1-D 64x8",
        "motifs": "1-D 64x1",
        "tones": "1-D 128x1", "mixture": "1-D 40x1", "tabular": "tabular 20", "clusters": "tabular 30",
        "texts": "text"}
# Variant -> the extra options of `kdcli distill --teacher T --baseline`.
VARIANTS = {"default": (), "accuracy monitor": ("--monitor", "accuracy")}
# Variants whose scratch twin is the default's (their options change the distilled run only).
SHARED_SCRATCH = {"accuracy monitor"}


def make_data(name, folder):
    """The `--data` value of a data set; None, said, when it is not there (the MNIST split without ../shared)."""
    if name in ("digits", "texts"):
        return name
    if name == "mnist":
        path = mnist_split(folder / "mnist.npz")
        if path is None:
            print("skipping mnist: ../shared/data is not there", flush=True)
        return path
    path = folder / f"{name}.npz"
    return path if path.exists() else datasets.GENERATORS[name](path, seed=0)


def measure(teacher, data, seed, variant, folder, scratch):
    """One cell: the distilled student of `variant`, and its scratch twin (`scratch`, the default's, or trained)."""
    out = folder / f"student-{list(VARIANTS).index(variant)}-{seed}.keras"
    started = time.perf_counter()
    run("distill", "--teacher", teacher, "--data", data, "--seed", seed, *VARIANTS[variant],
        *(() if scratch else ("--baseline",)), "--out", out)
    seconds = time.perf_counter() - started
    metrics = kdcli.read_provenance(out)["metrics"]
    record = {"args": list(VARIANTS[variant]), "seconds": seconds, "distilled": metrics["test_accuracy"],
              "epochs": metrics.get("epochs"), "best_epoch": metrics.get("best_epoch"),
              "stopped": metrics.get("stopped"), "monitor": metrics.get("monitor")}
    if scratch:
        record.update(scratch=scratch["scratch"], scratch_epochs=scratch["scratch_epochs"],
                      scratch_best_epoch=scratch["scratch_best_epoch"], shared_scratch=True)
    else:
        record.update(scratch=metrics["baseline_test_accuracy"], scratch_epochs=metrics.get("baseline_epochs"),
                      scratch_best_epoch=metrics.get("baseline_best_epoch"), shared_scratch=False)
    return record


def measure_all(cells, reuse=None):
    """Measure the missing cells of the Grid `cells`, each data set's teacher first. `reuse`: the results of
    another run whose default cells' scratch twins stand for this run's where the set's teacher is the same
    file (by sha256): the twin is the same model then, so only the distilled student is trained."""
    teachers = {}

    def start(name):
        folder = cells.folder(name)
        data = make_data(name, folder)
        if data is None:
            return False
        teacher = folder / "teacher.keras"
        if not teacher.exists():
            run("train-teacher", "--data", data, "--out", teacher)
        provenance = kdcli.read_provenance(teacher)
        cells.entry(name).update(teacher=provenance["metrics"]["test_accuracy"],
                                 arch=provenance["hyperparameters"].get("arch"), teacher_sha256=sha256_file(teacher))
        teachers[name] = (teacher, data)

    def cell(name, variant, seed):
        scratch = cells.cell(name, "default", seed) if variant in SHARED_SCRATCH else None
        if variant in SHARED_SCRATCH and scratch is None:
            raise SystemExit(f"{name}: measure the default variant of seed {seed} before {variant!r}")
        other = (reuse or {}).get(name, {})
        if variant == "default" and other.get("teacher_sha256") == cells.entry(name)["teacher_sha256"]:
            scratch = other.get("runs", {}).get("default", {}).get(str(seed))
        record = measure(*teachers[name], seed, variant, cells.folder(name), scratch)
        print(f"{name} / {variant} / seed {seed}: {record}", flush=True)
        return record

    cells.run(cell, start)


def markdown(results, seeds, notes=()):
    """The Markdown section: per set and variant, the mean gain and each seed's, with the epochs each side ran."""
    lines = [
        "## The one-shot default against its scratch twin",
        "",
        "Written by `benchmarks/defaults.py`. One teacher per data set, `kdcli train-teacher --data D` (all "
        "defaults), then per seed `kdcli distill --teacher T --baseline --seed S` plus the variant's options. "
        "Test accuracy; the gain is distilled minus scratch in points, mean over the seeds, each seed's in "
        "brackets; epochs are `ran (best)` per seed, distilled / scratch; seconds are the whole command's, "
        "mean over the seeds.",
        "",
        "| data | teacher | variant | scratch | distilled | gain (points) | epochs distilled / scratch | seconds |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, r in results.items():
        for variant, by_seed in r["runs"].items():
            records = [by_seed[str(s)] for s in seeds if str(s) in by_seed]
            if not records:
                continue
            s, d = (np.array([x[k] for x in records]) * 100 for k in ("scratch", "distilled"))
            epochs = ", ".join(f"{x['epochs']} ({x['best_epoch']}) / {x['scratch_epochs']} ({x['scratch_best_epoch']})"
                               for x in records)
            missing = "" if len(records) == len(seeds) else f" [{len(records)} of {len(seeds)} seeds]"
            teacher = r.get("variant_teachers", {}).get(variant, {"accuracy": r["teacher"], "arch": r.get("arch")})
            lines.append(
                f"| {name} ({KIND[name]}) | {100 * teacher['accuracy']:.1f}% ({teacher['arch']}) | {variant}{missing} | "
                f"{s.mean():.2f} ± {s.std():.2f}% | {d.mean():.2f} ± {d.std():.2f}% | "
                f"{points((d - s).mean())} ({', '.join(points(g) for g in d - s)}) | {epochs} | "
                f"{np.mean([x['seconds'] for x in records]):.0f} |")
    if any(x.get("shared_scratch") for r in results.values() for v in r["runs"].values() for x in v.values()):
        lines += ["", "Where the teacher file is the one of an earlier run of this benchmark (`--reuse-scratch`), its "
                      "scratch twins stand for this run's: the same teacher, seed and initial weights give the same "
                      "model, so only the distilled students were trained again."]
    return lines + [line for note in notes for line in ("", note)]


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, list(VARIANTS), json_default=HERE / "defaults.json",
                         keeps="data, teachers and students")
    parser.add_argument("--reuse-scratch", metavar="JSON",
                        help="another run's results: its scratch twins stand for this run's where the teacher is "
                             "the same file")
    args = parser.parse_args()
    cells = grid.Grid(args.json, args.sets, args.variants, args.seeds, seeds_first=True, workdir=args.workdir)
    if not args.render:
        reuse = json.loads(Path(args.reuse_scratch).read_text()) if args.reuse_scratch else None
        measure_all(cells, reuse)
    results = {name: cells.results[name] for name in SETS if cells.results.get(name, {}).get("runs")}
    grid.write_section(markdown(results, args.seeds, cells.results.get("notes", [])), args.markdown)


if __name__ == "__main__":
    main()
