"""Teacher budget: `kdcli train-teacher`'s 40 epochs with a cosine schedule against `--epochs auto`.

For each data set (the bundled digits, the synthetic `tabular` and `signal`
of datasets.py, and the MNIST benchmark split when `../shared/data` is
there, all made as in budgets.py) and each seed S, `kdcli train-teacher
--data D --seed S` (`--arch auto`, `--augment auto`) in each variant:

- fixed: `--epochs 40 --lr-schedule cosine` (train-teacher's defaults, given
  explicitly);
- auto: `--epochs auto --lr-schedule constant` (10% of the training split
  held out, patience 20, at most 300 epochs, the best epoch's weights kept);
- auto + plateau: `--epochs auto --lr-schedule plateau` (the same, with the
  step size halved after every 5 epochs without improvement).

Records each teacher's test accuracy, epochs run (and auto's best epoch),
parameters and the command's whole wall time, measured around its
subprocess. The cells (data set × variant × seed, all variants of a seed
before the next seed) are a grid.py `Grid`: each goes to `--json` as soon as
it is measured, and cells already there are skipped, so a run cut short
resumes; cells stored under an earlier name of their variant
(`budgets.RENAMED_VARIANTS`) are read under its name here. Prints, and
writes to `--markdown`, a Markdown section for BENCHMARKS.md, the paragraphs
under "notes" in `--json` after the table (`--render`, or `--report`,
measures nothing and only writes it from `--json`).

    python benchmarks/teachers.py [--sets digits tabular signal mnist] [--variants fixed auto]
        [--seeds 0 1 2] [--workdir DIR] [--json teachers.json] [--markdown teachers.md] [--render]
"""

import time
from pathlib import Path

import grid
import numpy as np
from budgets import NAMES, SETS, make_data, notes, rename

import kdcli

from common import kdcli as run, paired_difference

HERE = Path(__file__).resolve().parent
VARIANTS = ("fixed", "auto", "auto + plateau")
OPTIONS = {"fixed": ("--epochs", 40, "--lr-schedule", "cosine"),
           "auto": ("--epochs", "auto", "--lr-schedule", "constant"),
           "auto + plateau": ("--epochs", "auto", "--lr-schedule", "plateau")}


def measure(variant, data, seed, workdir):
    """One cell: train one teacher; returns its record."""
    out = workdir / f"teacher-{variant.replace(' + ', '-')}-{seed}.keras"
    start = time.perf_counter()
    # --restart: a checkpoint left by a benchmark run cut short is discarded, not refused.
    path = run("train-teacher", "--data", data, "--seed", seed, *OPTIONS[variant], "--restart", "--out", out)
    seconds = time.perf_counter() - start
    metrics = kdcli.read_provenance(path)["metrics"]
    record = {"accuracy": metrics["test_accuracy"], "epochs": metrics["epochs"], "seconds": seconds,
              "train_seconds": metrics["train_seconds"], "params": kdcli.load_model(path).count_params()}
    record.update({key: metrics[key] for key in ("best_epoch", "stopped") if key in metrics})
    return record


def measure_all(cells):
    """Measure the missing cells of the Grid `cells`."""
    data = {}  # data set -> its --data value

    def start(name):
        data[name] = make_data(name, cells.folder(name))
        if data[name] is None:
            return False
        cells.entry(name)["n_train"] = len(kdcli.load_data(str(data[name])).y_train)

    def cell(name, variant, seed):
        record = measure(variant, data[name], seed, cells.folder(name))
        print(f"{name} / {variant} / seed {seed}: {record}", flush=True)
        return record

    cells.run(cell, start)


def row(name, variant, cells, n_seeds, fixed):
    """One table row of a variant's cells (seed -> record); `fixed`: the fixed variant's cells on the same data."""
    seeds = sorted(cells, key=int)
    acc = np.array([cells[s]["accuracy"] for s in seeds]) * 100
    per_seed = ", ".join(f"{a:.2f}" for a in acc)
    epochs = f"{np.mean([cells[s]['epochs'] for s in seeds]):.0f}"
    if all("best_epoch" in cells[s] for s in seeds):
        epochs += f" (best {np.mean([cells[s]['best_epoch'] for s in seeds]):.0f})"
    seconds = np.array([cells[s]["seconds"] for s in seeds])
    time_cell = f"{seconds.sum():.0f} s"
    difference = ""
    if fixed:
        time_cell += f" (×{seconds.mean() / np.mean([c['seconds'] for c in fixed.values()]):.2f})"
        paired = [s for s in seeds if s in fixed]
        if variant != "fixed" and paired:
            base = np.array([fixed[s]["accuracy"] for s in paired]) * 100
            mine = np.array([cells[s]["accuracy"] for s in paired]) * 100
            difference = paired_difference(base, mine)
    missing = "" if len(seeds) == n_seeds else f" [{len(seeds)} of {n_seeds} seeds]"
    return (f"| {NAMES[name]} | {variant}{missing} | {acc.mean():.2f} ± {acc.std():.2f} | {per_seed} | "
            f"{difference or '–'} | {epochs} | {time_cell} |")


def markdown(results, seeds):
    """The Markdown heading, description and table of `results`, as a list of lines."""
    about = "; ".join(
        f"{NAMES[name]}: {next(iter(next(iter(r['runs'].values())).values()))['params']:,} params"
        for name, r in results.items() if r["runs"])
    lines = [
        "## Teacher budget: 40 epochs cosine against `--epochs auto`",
        "",
        "Written by `benchmarks/teachers.py` (data sets `tabular` and `signal` from `benchmarks/datasets.py`, seed 0; "
        "MNIST: the 8,000/2,000 split of `benchmarks/common.py`). "
        f"For each data set and each seed S in {seeds}: `kdcli train-teacher --data D --seed S` (`--arch auto`: a cnn "
        "for digits, signal and MNIST, an mlp for tabular; `--augment auto`: shifted copies for the cnn) with, per "
        "variant: fixed `--epochs 40 --lr-schedule cosine` (train-teacher's defaults); auto `--epochs auto --lr-schedule "
        "constant` (10% of the training split held out, stratified from the seed, patience 20, at most 300 epochs, "
        "the best epoch's weights restored; trained on the other 90%); auto + plateau `--epochs auto --lr-schedule "
        f"plateau` (the same, the step size halved after every 5 epochs without improvement). Teacher size: {about}. "
        "Test accuracy in %, mean ± standard deviation over the seeds, then each seed's. variant − fixed: the mean of "
        "the per-seed differences (each seed's in brackets), \"within noise\" when its mean is within one standard "
        "deviation (the largest of the fixed variant's, the variant's and the per-seed differences'). Epochs: mean over seeds of the "
        "epochs run (auto variants: then the mean best epoch, whose weights are kept). Wall time: the train-teacher "
        "commands' whole wall time (process start to exit) summed over the seeds, and its ratio to the fixed variant's on the "
        "same data (of the means per seed, for rows with fewer seeds). Machine: 2 CPU cores, no GPU, shared with "
        "other jobs, so times are noisy: compare ratios, not seconds.",
        "",
        "| data | variant | test accuracy (%) | per seed (%) | variant − fixed (points) | epochs | wall time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        runs = r["runs"]
        lines += [row(name, variant, runs[variant], len(seeds), runs.get("fixed"))
                  for variant in VARIANTS if runs.get(variant)]
    return lines


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, VARIANTS, json_default=HERE / "teachers.json",
                         keeps="data and teachers")
    parser.add_argument("--report", dest="render", action="store_true", help="the same as --render")
    args = parser.parse_args()
    cells = grid.Grid(args.json, args.sets, args.variants, args.seeds, seeds_first=True, workdir=args.workdir)
    rename(cells.results)
    if not args.render:
        measure_all(cells)
    results = {name: cells.results[name] for name in SETS if name in cells.results}  # the table in SETS order
    grid.write_section(markdown(results, args.seeds) + notes(cells.results), args.markdown)


if __name__ == "__main__":
    main()
