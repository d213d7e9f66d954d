"""Accuracy of the teacher, the student trained from scratch and the distilled student, per loss.

For each data set (the bundled digits, and the MNIST benchmark split when
`../shared/data` is there): one teacher (kdcli's cnn, trained with
train-teacher's defaults, spelled out: `--augment shift --lr-schedule cosine --epochs 40`),
then for each seed and each way of distilling (WAYS: the extra options of
`kdcli distill --teacher ...`), a distilled student and the same student
architecture trained from scratch (`--baseline`: from the same initial
weights, with the same budget and the same inputs).

The ways without `--augment` compute the teacher's logits once and differ
only in the loss, so their scratch students are one and the same model for a
given seed (same seed, initial weights, data and budget): the first of them
trains it with `--baseline` and the others reuse its accuracy. A way with
`--augment` keeps its own `--baseline`, which trains on shifted copies too.

The cells (data set × way × seed) are a grid.py `Grid`: each goes to `--json`
as soon as it is measured, and cells already there are skipped, so a run cut
short resumes (keep `--workdir` to reuse the teachers; a data set whose cells
are all there is not touched). A seed's shared scratch student is taken from
any logits-once way's cell of that seed already there. The cells of a `--json`
were all measured with one `--student` and `--epochs`: the script refuses
others. Prints, and writes to `--markdown`, a Markdown table of means and
standard deviations over the seeds, each row's options spelled as in `WAYS`;
`--render` measures nothing and only writes it from `--json`.

    python benchmarks/accuracy.py [--sets digits mnist] [--ways kd dkd ...] [--seeds 0 1 2]
        [--student shrink:0.25] [--epochs N] [--workdir DIR] [--json accuracy.json] [--markdown accuracy.md]
        [--render]
"""

from pathlib import Path

import grid
import numpy as np

import kdcli

from common import kdcli as run, mnist_split, points

HERE = Path(__file__).resolve().parent
SETS = ("digits", "mnist")
NAMES = {"digits": "digits", "mnist": "mnist (8k/2k split)"}
TEACHER_RECIPE = ("--augment", "shift", "--lr-schedule", "cosine", "--epochs", "40")
# Way of distilling -> the extra options of `kdcli distill`.
WAYS = {
    "kd": ("--method", "kd"),
    "kd + standardised": ("--method", "kd:standardize=true,temperature=2"),
    "dkd": ("--method", "dkd"),
    "dkd + standardised": ("--method", "dkd:standardize=true"),
    "dist": ("--method", "dist"),
    "kd + `--augment shift`": ("--method", "kd", "--augment", "shift"),
}


def own_baseline(args):
    """Whether a way's scratch student differs from the logits-once ways' (it trains on shifted copies)."""
    return "--augment" in args


def make_data(name, folder):
    """The `--data` value of a data set (the MNIST split written into `folder`); None, said, when absent."""
    if name == "digits":
        return "digits"
    path = mnist_split(folder / "mnist.npz")
    if path is None:
        print(f"skipping {NAMES[name]}: ../shared/data is not there", flush=True)
    return path


def shared_scratch(entry, seed):
    """The accuracy of seed `seed`'s scratch student shared by the logits-once ways, when one of their cells
    of that seed is in `entry` already; else None."""
    for way, args in WAYS.items():
        record = entry["runs"].get(way, {}).get(str(seed))
        if record is not None and not own_baseline(args):
            return record["scratch"]
    return None


def measure(way, teacher, seed, folder, student, epochs, scratch):
    """One cell: a distilled student of `way` on one seed, with its scratch student's accuracy: `scratch`
    (the shared one of the logits-once ways, when known) or its own, trained by `--baseline`."""
    args = WAYS[way]
    budget = ("--epochs", epochs) if epochs else ()  # else kdcli's default: --epochs auto
    baseline = own_baseline(args) or scratch is None
    out = run("distill", "--teacher", teacher, "--student", student, *budget, "--seed", seed, *args,
              *(["--baseline"] if baseline else []), "--out", folder / f"student-{list(WAYS).index(way)}-{seed}.keras")
    provenance = kdcli.read_provenance(out)
    metrics = provenance["metrics"]
    record = {"args": list(args), "shared_scratch": not own_baseline(args), "trained_scratch": baseline,
              "scratch": metrics["baseline_test_accuracy"] if baseline else scratch,
              "distilled": metrics["test_accuracy"], "budget": provenance["hyperparameters"]["epochs"]}
    record.update({key: metrics[key] for key in ("epochs", "best_epoch") if key in metrics})
    return record, kdcli.load_model(out).count_params()


def measure_all(cells, student, epochs):
    """Measure the missing cells of the Grid `cells`, each data set's teacher first."""
    teachers = {}  # data set -> its teacher's path

    def start(name):
        folder = cells.folder(name)
        data = make_data(name, folder)
        if data is None:
            return False
        entry = cells.entry(name)
        teacher = folder / "teacher.keras"
        if not teacher.exists():
            run("train-teacher", "--data", data, *TEACHER_RECIPE, "--out", teacher)
        entry.update(teacher=kdcli.read_provenance(teacher)["metrics"]["test_accuracy"],
                     teacher_params=kdcli.load_model(teacher).count_params(), student=student, epochs_option=epochs)
        teachers[name] = teacher

    def cell(name, way, seed):
        entry = cells.entry(name)
        scratch = None if own_baseline(WAYS[way]) else shared_scratch(entry, seed)
        record, params = measure(way, teachers[name], seed, cells.folder(name), student, epochs, scratch)
        entry.update(student_params=params, epochs=record["budget"])  # the table's, as the latest student's
        print(f"{NAMES[name]} / {way} / seed {seed}: {record}", flush=True)
        return record

    cells.run(cell, start)


def markdown(results, seeds, student, epochs):
    """The Markdown heading, description and table of `results`, as a list of lines."""
    command = f"kdcli distill --teacher T --student {student}{f' --epochs {epochs}' if epochs else ''}"
    budget = (f"{epochs} epochs" if epochs
              else "kdcli's default (`--epochs auto`: stop when a 10% validation split stops improving)")
    budgets = " and ".join(f"{r['epochs']} epochs on {NAMES[name]}" for name, r in results.items())
    shared = [w for w, a in WAYS.items() if not own_baseline(a)]
    lines = [
        "## Accuracy: teacher, student from scratch, distilled student",
        "",
        f"Written by `make bench-accuracy` (`benchmarks/accuracy.py`). One teacher per data set: "
        f"`kdcli train-teacher {' '.join(TEACHER_RECIPE)}` (kdcli's cnn). For each seed {seeds} and each row: "
        f"`{command} --seed S` plus the row's options: "
        + "; ".join(f"{way}: `{' '.join(a)}`" for way, a in WAYS.items())
        + f". Budget: {budget}, here {budgets}; each method's other options at their defaults. "
        "The student from scratch is the same "
        "student architecture trained on the hard labels alone, from the same initial weights, with the same "
        f"budget and the same inputs. The rows without `--augment` ({', '.join(shared)}) compute the teacher's "
        "logits once and differ only in the loss, so their student from scratch is one and the same model for "
        "a given seed: it is trained once per seed (`--baseline` on the first of these rows) and its accuracy "
        "reused for the others. The `--augment shift` row keeps its own `--baseline`, which trains on shifted "
        "copies too. Test accuracy, mean ± standard deviation over the seeds; the gain is the mean of the "
        "per-seed differences (each seed's in brackets).",
        "",
        "| data | teacher | distilled with | student from scratch | distilled student | gain (points) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        for way in WAYS:
            records = [r["runs"][way][str(seed)] for seed in seeds if str(seed) in r["runs"].get(way, {})]
            if not records:
                continue
            s, d = (np.array([record[k] for record in records]) * 100 for k in ("scratch", "distilled"))
            missing = "" if len(records) == len(seeds) else f" [{len(records)} of {len(seeds)} seeds]"
            lines.append(f"| {NAMES[name]}, {r['epochs']} epochs | {100 * r['teacher']:.2f}% ({r['teacher_params']:,} params) | "
                         f"{way}{missing} (`{' '.join(WAYS[way])}`) | {s.mean():.2f} ± {s.std():.2f}% | "
                         f"{d.mean():.2f} ± {d.std():.2f}% ({r['student_params']:,} params) | "
                         f"{points((d - s).mean())} ({', '.join(points(g) for g in d - s)}) |")
    return lines


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, list(WAYS), json_default=HERE / "accuracy.json",
                         keeps="data, teachers and students", variants_name="ways")
    parser.add_argument("--student", default="shrink:0.25", help="every distill's --student (default: %(default)s)")
    parser.add_argument("--epochs", type=int, help="default: kdcli's (--epochs auto)")
    args = parser.parse_args()
    cells = grid.Grid(args.json, args.sets, args.ways, args.seeds, workdir=args.workdir)
    measured = {(r["student"], r["epochs_option"]) for r in cells.results.values() if "student" in r}
    if measured - {(args.student, args.epochs)}:
        given = "; ".join(f"--student {student}" + (f" --epochs {epochs}" if epochs else "")
                          for student, epochs in sorted(measured, key=str))
        parser.error(f"{args.json} holds cells measured with {given}: give those options, or another --json")
    if not args.render:
        measure_all(cells, args.student, args.epochs)
    results = {name: cells.results[name] for name in SETS if cells.results.get(name, {}).get("runs")}
    if args.render and not results:
        parser.error(f"{args.json} holds no cells: nothing to render (the --markdown file is left as it is)")
    grid.write_section(markdown(results, args.seeds, args.student, args.epochs), args.markdown)


if __name__ == "__main__":
    main()
