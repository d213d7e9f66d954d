"""Training budgets of one-shot distillation: a fixed number of epochs against `--epochs auto`, and a refit.

For each data set (the bundled digits, the synthetic `tabular` and `signal`
of datasets.py, and the MNIST benchmark split when `../shared/data` is
there): one teacher (`kdcli train-teacher` with its defaults, seed 0), then
for each seed `kdcli distill --teacher T --data D --seed S --baseline`
(student shrink:0.25, kdcli's default) in each variant:

- fixed: `--epochs N_fixed`, a fixed budget: max(30, ceil(3000 / steps per
  epoch)), steps per epoch = ceil(n_train / 64) on the whole training split
  (30 epochs, or more so that training takes at least 3,000 steps);
- auto: no budget options (kdcli's default, `--epochs auto`);
- auto + cosine: `--lr-schedule cosine` (the cosine spans `--max-epochs`);
- auto + plateau: `--lr-schedule plateau` (the step size halves after every 5 epochs without a
  better validation accuracy);
- refit: what `--refit` does (its result equals `--epochs E`): retrain on the whole training split for
  the epochs auto found, `--epochs E_d` (E_d: auto's `best_epoch`, giving
  the distilled student) and `--epochs E_s --baseline` (E_s: auto's
  `baseline_best_epoch`, giving the student from scratch).

Each command's whole wall time is measured around its subprocess. The cells
(data set × variant × seed) are a grid.py `Grid`: each goes to `--json` as
soon as it is measured, and cells already there are skipped, so a run cut
short resumes (keep `--workdir` to reuse the teachers; a data set whose cells
are all there is not touched; cells stored under an earlier name of their
variant, `RENAMED_VARIANTS`, are read under its name here). Prints, and
writes to `--markdown`, a Markdown section for BENCHMARKS.md, the paragraphs
under "notes" in `--json` (how the run went, findings) after the table;
`--render` measures nothing and only writes it from `--json`.

    python benchmarks/budgets.py [--sets digits tabular signal mnist] [--variants fixed auto ...]
        [--seeds 0 1 2] [--workdir DIR] [--json budgets.json] [--markdown budgets.md] [--render]
"""

import math
import time
from pathlib import Path

import grid
import numpy as np

import kdcli

import datasets
from common import kdcli as run, mnist_split, paired_difference

HERE = Path(__file__).resolve().parent
SETS = ("digits", "tabular", "signal", "mnist")
VARIANTS = ("fixed", "auto", "auto + cosine", "auto + plateau", "refit")
NAMES = {"digits": "digits (bundled, 1,438/359)", "tabular": "tabular (synthetic, 3,000/1,000)",
         "signal": "signal (synthetic, 4,000/1,000)", "mnist": "MNIST (8,000/2,000 split)"}


# Names that a stored `--json` may hold from before, and what this script calls them: variants (the keys
# under a set's "runs"), and a set's own keys.
RENAMED_VARIANTS = {"today": "fixed"}
RENAMED_KEYS = {"epochs_old": "epochs_fixed"}


def rename(results, variants=RENAMED_VARIANTS, keys=RENAMED_KEYS):
    """Move the cells and keys of a Grid's `results` to the names of this script, in place; returns them."""
    for entry in results.values():
        if isinstance(entry, dict):
            for node, names in ((entry.get("runs", {}), variants), (entry, keys)):
                renamed = {old: new for old, new in names.items() if old in node and new not in node}
                if renamed:  # renamed where they stand, so the order of the keys stays
                    items = list(node.items())
                    node.clear()
                    node.update((renamed.get(k, k), v) for k, v in items)
    return results


def notes(results):
    """The paragraphs stored under "notes" in a Grid's `results` (how the run went, findings), as Markdown
    lines to follow the table."""
    return [line for paragraph in results.get("notes", []) for line in ("", paragraph)]


def fixed_epochs(n_train):
    """The fixed budget: 30 epochs, or more so that training takes at least 3,000 steps of 64."""
    return max(30, math.ceil(3000 / math.ceil(n_train / 64)))


def make_data(name, workdir):
    """The `--data` value of a data set (written into `workdir` when synthetic); None, said, when absent."""
    if name == "digits":
        return "digits"
    if name == "mnist":
        path = mnist_split(workdir / "mnist.npz")
        if path is None:
            print("skipping mnist: ../shared/data is not there", flush=True)
        return path
    return datasets.GENERATORS[name](workdir / f"{name}.npz", seed=0)


def distill(teacher, data, seed, out, *options):
    """Run one `kdcli distill`; returns its provenance metrics and its wall seconds."""
    start = time.perf_counter()
    path = run("distill", "--teacher", teacher, "--data", data, "--seed", seed, *options, "--out", out)
    return kdcli.read_provenance(path)["metrics"], time.perf_counter() - start


def measure(variant, teacher, data, seed, workdir, n_fixed, auto):
    """One cell: a variant on one seed; `auto` is the same seed's auto record (for refit)."""
    out = workdir / f"student-{variant.replace(' + ', '-')}-{seed}.keras"
    if variant == "refit":
        distilled, seconds_d = distill(teacher, data, seed, out, "--epochs", auto["best_epoch"])
        scratch, seconds_s = distill(teacher, data, seed, out, "--epochs", auto["baseline_best_epoch"], "--baseline")
        return {"distilled": distilled["test_accuracy"], "scratch": scratch["baseline_test_accuracy"],
                "epochs": distilled["epochs"], "baseline_epochs": scratch["baseline_epochs"],
                "seconds": seconds_d + seconds_s, "seconds_distilled": seconds_d, "seconds_scratch": seconds_s}
    options = {"fixed": ("--epochs", n_fixed), "auto": (), "auto + cosine": ("--lr-schedule", "cosine"),
               "auto + plateau": ("--lr-schedule", "plateau")}[variant]
    metrics, seconds = distill(teacher, data, seed, out, *options, "--baseline")
    record = {"distilled": metrics["test_accuracy"], "scratch": metrics["baseline_test_accuracy"],
              "seconds": seconds, "train_seconds": metrics["train_seconds"]}
    record.update({key: metrics[key] for key in ("epochs", "best_epoch", "stopped", "baseline_epochs",
                                                  "baseline_best_epoch", "baseline_stopped") if key in metrics})
    return record


def prepare(name, cells):
    """The data and teacher of one data set, in its folder of the Grid `cells`, their facts into its entry;
    None when its data is absent."""
    folder = cells.folder(name)
    data = make_data(name, folder)
    if data is None:
        return None
    entry, start = cells.entry(name), time.perf_counter()
    teacher = folder / "teacher.keras"
    if not teacher.exists():
        run("train-teacher", "--data", data, "--seed", 0, "--out", teacher)
        entry["teacher_seconds"] = time.perf_counter() - start
    n_train = len(kdcli.load_data(str(data)).y_train)
    entry.update(teacher=kdcli.read_provenance(teacher)["metrics"]["test_accuracy"],
                 teacher_params=kdcli.load_model(teacher).count_params(), n_train=n_train,
                 epochs_fixed=fixed_epochs(n_train))
    print(f"{name}: teacher {100 * entry['teacher']:.2f}%, n_train {n_train}, fixed epochs {entry['epochs_fixed']}",
          flush=True)
    return {"data": data, "teacher": teacher, "folder": folder, "start": start, "seconds": entry.get("seconds", 0)}


def measure_all(cells):
    """Measure the missing cells of the Grid `cells`, each data set's teacher first."""
    sets = {}  # data set -> what `prepare` made

    def start(name):
        sets[name] = prepare(name, cells)
        return sets[name] is not None

    def cell(name, variant, seed):
        s, entry = sets[name], cells.entry(name)
        record = measure(variant, s["teacher"], s["data"], seed, s["folder"], entry["epochs_fixed"],
                         cells.cell(name, "auto", seed))
        print(f"{name} / {variant} / seed {seed}: {record}", flush=True)
        if "student_params" not in entry:
            entry["student_params"] = kdcli.load_model(next(s["folder"].glob("student-*.keras"))).count_params()
        entry["seconds"] = s["seconds"] + time.perf_counter() - s["start"]  # this data set's time, all runs
        return record

    cells.run(cell, start)


def row(name, variant, cells, n_seeds, fixed_seconds, auto_seconds):
    """One table row of a variant's cells (seed -> record); `n_seeds`: how many seeds were asked for.

    `fixed_seconds`, `auto_seconds`: those variants' mean wall seconds per seed, for the time ratios.
    """
    records = list(cells.values())
    s, d = (np.array([r[k] for r in records]) * 100 for k in ("scratch", "distilled"))
    mean = {k: np.mean([r[k] for r in records]) for k in records[0] if not isinstance(records[0][k], str)}
    epochs = f"{mean['epochs']:.0f} / {mean['baseline_epochs']:.0f}"
    if "best_epoch" in mean:
        epochs += f" (best {mean['best_epoch']:.0f} / {mean['baseline_best_epoch']:.0f})"
    time_cell = f"{mean['seconds'] * len(records):.0f} s"
    if fixed_seconds:
        time_cell += f" (×{mean['seconds'] / fixed_seconds:.2f})"
        if variant == "refit" and auto_seconds:
            time_cell += f"; with auto's search ×{(mean['seconds'] + auto_seconds) / fixed_seconds:.2f}"
    missing = "" if len(records) == n_seeds else f" [{len(records)} of {n_seeds} seeds]"
    return (f"| {NAMES[name]} | {variant}{missing} | {s.mean():.2f} ± {s.std():.2f} | {d.mean():.2f} ± {d.std():.2f} | "
            f"{paired_difference(s, d)} | {epochs} | {time_cell} |")


def markdown(results, seeds):
    """The Markdown heading, description and table of `results`, as a list of lines."""
    about = "; ".join(
        f"{NAMES[name]}: teacher {100 * r['teacher']:.2f}% ({r['teacher_params']:,} params), student "
        f"{r.get('student_params', 0):,} params, N_fixed = {r['epochs_fixed']}" for name, r in results.items())
    lines = [
        "## Training budget: fixed epochs, `--epochs auto`, refit",
        "",
        "Written by `benchmarks/budgets.py` (data sets `tabular` and `signal` from `benchmarks/datasets.py`, seed 0). "
        "One teacher per data set: `kdcli train-teacher --data D --seed 0` (its defaults: 40 epochs, cosine, "
        "`--arch auto`: a cnn for digits, signal and MNIST, an mlp for tabular). "
        f"For each seed S in {seeds}: `kdcli distill --teacher T --data D --seed S --baseline` (student shrink:0.25) "
        "with, per variant: fixed `--epochs N_fixed` (a fixed budget: N_fixed = max(30, ceil(3000 / ceil(n_train / 64))), "
        "30 epochs or more so that training takes at least 3,000 steps of 64 samples); "
        "auto: no budget options (kdcli's default, `--epochs auto`: 10% held out, patience 20, at most 300 epochs, "
        "best epoch restored); "
        "auto + cosine: `--lr-schedule cosine`; auto + plateau: `--lr-schedule plateau`; refit: `--epochs E_d` for the distilled student and a separate "
        "`--epochs E_s --baseline` for the student from scratch, E_d and E_s being auto's best epochs for the same "
        f"seed, on the whole training split. {about}. "
        "Test accuracy in %, mean ± standard deviation over the seeds; the gain is the mean of the per-seed "
        "differences distilled − scratch (each seed's in brackets), \"within noise\" when its mean is within one "
        "standard deviation (the largest of the scratch, distilled and per-seed gain standard deviations). "
        "Epochs: distilled / scratch, means over seeds (auto: epochs run, then the best epochs kept). Wall time: the distill commands' whole wall time (process start to exit, "
        "teacher logits and the `--baseline` training included) summed over the seeds, and its ratio to the fixed variant's on "
        "the same data (of the means per seed, for rows with fewer seeds); refit's is its two retraining commands, and \"with auto's search\" adds auto's time, "
        "what a `--refit` would cost in all. Machine: 2 CPU cores, no GPU, shared with other jobs, so times are "
        "noisy: compare ratios, not seconds.",
        "",
        "| data | variant | scratch (%) | distilled (%) | gain (points) | epochs distilled / scratch | wall time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        runs = r["runs"]
        fixed, auto = (np.mean([c["seconds"] for c in runs[v].values()]) if runs.get(v) else None
                       for v in ("fixed", "auto"))
        lines += [row(name, variant, runs[variant], len(seeds), fixed, auto) for variant in VARIANTS if runs.get(variant)]
    return lines


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, VARIANTS, json_default=HERE / "budgets.json",
                         keeps="data, teachers and students")
    args = parser.parse_args()
    if not args.render and "refit" in args.variants and "auto" not in args.variants:
        parser.error("refit needs auto's best epochs: list auto too (its cells in --json are reused)")
    variants = [v for v in VARIANTS if v in args.variants]  # auto before refit, which reads auto's cells
    cells = grid.Grid(args.json, args.sets, variants, args.seeds, workdir=args.workdir)
    rename(cells.results)
    if not args.render:
        measure_all(cells)
    results = {name: cells.results[name] for name in SETS if name in cells.results}  # the table in SETS order
    grid.write_section(markdown(results, args.seeds) + notes(cells.results), args.markdown)


if __name__ == "__main__":
    main()
