"""Ways to make distillation pay: function matching, a teacher ensemble, hints and `--tune`, against scratch.

For each data set (the bundled digits, the synthetic `tabular` of
datasets.py, and the MNIST benchmark split when `../shared/data` is there):
two teachers, A = `kdcli train-teacher --data D --seed 0` and B = the same
with `--seed 1` (trained when a row first needs it), then for each seed S one
`kdcli distill --teacher A --data D --seed S` per row (student shrink:0.25,
budget `--epochs auto`, kdcli's defaults):

- default: `--baseline` (kd); its `baseline_test_accuracy` is the student
  from scratch of seed S, the reference of every row;
- function matching: `--augment mixup` (the live teacher on mixed inputs);
- ensemble of 2: `--teacher B` too (targets: the mean of A's and B's
  probabilities);
- hints: `--method hints` (kd plus matching the last hidden layer);
- tuned: `--tune 8` (the winner of 8 trials on a validation split; its own
  scratch trial is recorded too).

Each command's whole wall time is measured around its subprocess. The cells
(data set × row × seed) are a grid.py `Grid`: each goes to `--json` as soon
as it is measured, and cells already there are skipped, so a run cut short
resumes (keep `--workdir` to reuse the teachers; a data set whose cells are
all there is not touched). A failed command's last error line is recorded in
its cell (which then counts as done) and the run carries on. `--minutes`
bounds the run: when it is up, the command running is stopped (its cell left
out) and no other starts. Prints, and writes to `--markdown`, a Markdown
section for BENCHMARKS.md, the paragraphs under "notes" in `--json` (how the
run went) after the tables; `--render` measures nothing and only writes it
from `--json`.

    python benchmarks/paying.py [--sets digits tabular mnist] [--rows default hints ...]
        [--seeds 0 1 2] [--minutes 100] [--workdir DIR] [--json paying.json] [--markdown paying.md] [--render]
"""

import signal
import time
from pathlib import Path

import grid
import numpy as np
from budgets import NAMES, distill, make_data, notes

import kdcli

from common import kdcli as run, paired_difference, points

HERE = Path(__file__).resolve().parent
SETS = ("digits", "tabular", "mnist")
ROWS = ("default", "function matching", "ensemble of 2", "hints", "tuned")
OPTIONS = {"default": ("--baseline",), "function matching": ("--augment", "mixup"), "ensemble of 2": (),
           "hints": ("--method", "hints"), "tuned": ("--tune", 8)}
TEACHER_SEEDS = {"A": 0, "B": 1}


class OutOfTime(Exception):
    """Raised by SIGALRM when `--minutes` is up; `subprocess.run` then kills the kdcli it waits for."""


def _out_of_time(signum, frame):
    raise OutOfTime


def teacher(name, data, workdir, entry, save):
    """Teacher `name` (A or B) of a data set: trained once into `workdir`, recorded under `entry['teachers']`."""
    path = workdir / f"teacher-{name}.keras"
    record = entry.setdefault("teachers", {}).get(name)
    if not path.exists():
        start = time.perf_counter()
        run("train-teacher", "--data", data, "--seed", TEACHER_SEEDS[name], "--out", path)
        record = {"seconds": time.perf_counter() - start}
    elif record is None:
        record = {}
    metrics = kdcli.read_provenance(path)["metrics"]
    record.update(seed=TEACHER_SEEDS[name], test_accuracy=metrics["test_accuracy"],
                  params=kdcli.load_model(path).count_params())
    entry["teachers"][name] = record
    save()
    return path


def measure(row, teachers, data, seed, workdir):
    """One cell: a row on one seed; its record (test accuracies, epochs, wall seconds), or its error line."""
    out = workdir / f"student-{row.replace(' ', '-')}-{seed}.keras"
    options = OPTIONS[row] + (("--teacher", teachers["B"]) if row == "ensemble of 2" else ())
    start = time.perf_counter()
    try:
        metrics, seconds = distill(teachers["A"], data, seed, out, *options)
    except SystemExit as failure:  # common.kdcli's one line: "kdcli ... failed: <stderr>"
        lines = [line for line in str(failure).splitlines() if line.strip()]
        return {"error": lines[-1].strip() if lines else "failed", "seconds": time.perf_counter() - start}
    record = {"distilled": metrics["test_accuracy"], "seconds": seconds, "train_seconds": metrics["train_seconds"]}
    record.update({key: metrics[key] for key in ("epochs", "best_epoch", "stopped", "baseline_epochs",
                                                  "baseline_best_epoch", "baseline_stopped") if key in metrics})
    if "baseline_test_accuracy" in metrics:
        record["scratch"] = metrics["baseline_test_accuracy"]
    if "ensemble_test_accuracy" in metrics:
        record.update(ensemble=metrics["ensemble_test_accuracy"], teachers=metrics["teacher_test_accuracies"])
    if "tune" in metrics:
        trials = metrics["tune"]["trials"]
        winner = trials[metrics["tune"]["winner"] - 1]
        record.update(winner=winner["label"], winner_trial=metrics["tune"]["winner"], trials=[
            {k: t.get(k) for k in ("label", "epochs", "best_epoch", "stopped", "val_accuracy", "seconds")}
            for t in trials])
    return record


def measure_all(cells):
    """Measure the missing cells of the Grid `cells`: each data set's teacher A first, B when a row needs it."""
    sets = {}  # data set -> (its --data value, {teacher name: path})

    def start(name):
        data = make_data(name, cells.folder(name))
        if data is None:
            return False
        entry = cells.entry(name)
        sets[name] = data, {"A": teacher("A", data, cells.folder(name), entry, cells.save)}
        print(f"{name}: teacher A {100 * entry['teachers']['A']['test_accuracy']:.2f}%", flush=True)

    def cell(name, row, seed):
        (data, teachers), entry, folder = sets[name], cells.entry(name), cells.folder(name)
        if row == "ensemble of 2" and "B" not in teachers:
            teachers["B"] = teacher("B", data, folder, entry, cells.save)
            print(f"{name}: teacher B {100 * entry['teachers']['B']['test_accuracy']:.2f}%", flush=True)
        record = measure(row, teachers, data, seed, folder)
        print(f"{name} / {row} / seed {seed}: {record}", flush=True)
        if "student_params" not in entry and "error" not in record:
            entry["student_params"] = kdcli.load_model(next(folder.glob("student-*.keras"))).count_params()
        return record

    cells.run(cell, start)


def _epochs(records, prefix=""):
    """`E (best B)`: the means over `records` of epochs run and best epochs kept."""
    epochs = np.mean([r[f"{prefix}epochs"] for r in records])
    best = [r[f"{prefix}best_epoch"] for r in records if f"{prefix}best_epoch" in r]
    return f"{epochs:.0f}" + (f" (best {np.mean(best):.0f})" if best else "")


def row(name, label, cells, default, teacher_accuracy, n_seeds, default_seconds):
    """One table row of `label`'s cells (seed -> record) against `default`'s (for each seed's scratch).

    `teacher_accuracy`: teacher A's test accuracy; `n_seeds`: how many seeds were asked for;
    `default_seconds`: the default row's mean wall seconds per seed, for the time ratio.
    """
    done = {seed: r for seed, r in cells.items() if "error" not in r}
    failed = [seed for seed, r in cells.items() if "error" in r]
    paired = [seed for seed in done if "scratch" in default.get(seed, {})]
    flags = []
    if len(done) < n_seeds:
        flags.append(f"{len(done)} of {n_seeds} seeds")
    if failed:
        flags.append(f"seed {', '.join(failed)} failed")
    label += f" [{'; '.join(flags)}]" if flags else ""
    if not done:
        return f"| {NAMES[name]} | {label} | | | | | | |"
    d = np.array([done[seed]["distilled"] for seed in done]) * 100
    if paired:
        s = np.array([default[seed]["scratch"] for seed in paired]) * 100
        gains = np.array([done[seed]["distilled"] * 100 for seed in paired]) - s
        scratch = f"{s.mean():.2f} ± {s.std():.2f}"
        gain = paired_difference(s, s + gains)
        gap = f"{100 * gains.mean() / (100 * teacher_accuracy - s.mean()):.0f}%"
    else:
        scratch = gain = gap = "n/a"
    records = list(done.values())
    epochs = _epochs(records)
    if all("baseline_epochs" in r for r in records):
        epochs += f"; scratch {_epochs(records, 'baseline_')}"
    seconds = [r["seconds"] for r in records]
    time_cell = f"{sum(seconds):.0f} s"
    if default_seconds:
        time_cell += f" (×{np.mean(seconds) / default_seconds:.2f})"
    return (f"| {NAMES[name]} | {label} | {scratch} | {d.mean():.2f} ± {d.std():.2f} | {gain} | {gap} | "
            f"{epochs} | {time_cell} |")


def seed_cell(label, record, default):
    """A per-seed table cell: the test accuracy and its gain over that seed's scratch, epochs and seconds."""
    if record is None:
        return "missing"
    if "error" in record:
        return f"failed: {record['error']}"
    text = f"{100 * record['distilled']:.2f}"
    if "scratch" in default:
        text += f" ({points(100 * (record['distilled'] - default['scratch']))})"
    if label == "default":
        text += f", scratch {100 * record['scratch']:.2f}"
    text += f"; {record['epochs']} ep (best {record.get('best_epoch', '?')}); {record['seconds']:.0f} s"
    if label == "tuned":
        text += f"; own scratch {100 * record['scratch']:.2f}; winner: {record['winner']}"
    return text


def markdown(results, seeds, rows):
    """The Markdown heading, description and tables of `results`, as a list of lines."""
    about = []
    for name, r in results.items():
        t = r.get("teachers", {})
        each = ", ".join(f"{k} (seed {v['seed']}) {100 * v['test_accuracy']:.2f}%" for k, v in sorted(t.items()))
        ensembles = [c["ensemble"] for c in r["runs"].get("ensemble of 2", {}).values() if "ensemble" in c]
        if ensembles:
            each += f", ensemble of A and B {100 * ensembles[0]:.2f}%"
        params = f"; teacher A {t['A']['params']:,} params, student {r.get('student_params', 0):,}" if "A" in t else ""
        about.append(f"{NAMES[name]}: teachers {each}{params}")
    lines = [
        "## Making distillation pay: function matching, ensembles, hints, tuning",
        "",
        "Written by `benchmarks/paying.py` (data set `tabular` from `benchmarks/datasets.py`, seed 0). "
        "Two teachers per data set, kdcli's defaults otherwise: A = `kdcli train-teacher --data D --seed 0`, "
        "B = the same with `--seed 1`. "
        f"For each seed S in {seeds}, each row is one `kdcli distill --teacher A --data D --seed S` command "
        "(student shrink:0.25 of A, budget `--epochs auto`: 10% held out, patience 20, at most 300 epochs, best "
        "epoch restored) with: default `--baseline` (kd, T = 4, alpha = 0.9; its student trained from scratch is "
        "the scratch reference of every row); function matching `--augment mixup` (the live teacher on mixed "
        "inputs, no `--baseline`); ensemble of 2 `--teacher B` added (targets: the mean of A's and B's "
        "probabilities); hints `--method hints` (kd plus matching the last hidden layers); tuned `--tune 8` (8 "
        "trials on one validation split, scratch and the default among them, the winner kept as trained). "
        f"{'; '.join(about)}. "
        "Test accuracy in %, mean ± standard deviation over the seeds (NumPy's, ddof 0); scratch is the default "
        "row's student from scratch on the same seeds as the row; the gain is the mean of the per-seed differences "
        "row − scratch of the same seed (each seed's in brackets), \"within noise\" when its mean is within one "
        "standard deviation (the largest of the scratch, row and per-seed gain standard deviations); gap closed: "
        "the mean gain over (teacher A − scratch mean). Epochs: run, then (best) kept, means over seeds; the "
        "default row's `--baseline` student's too. Wall time: the distill commands' whole wall time (process "
        "start to exit: teacher logits, the default row's scratch student and the tuned row's 8 trials included) "
        "summed over the seeds, and its ratio to the default row's on the same data (of the means per seed); the "
        "default row trains two students (distilled and scratch), the tuned row 8, the others one. "
        "Machine: 2 CPU cores, no GPU, shared with other jobs, so times are noisy: compare ratios, not seconds.",
        "",
        "| data | row | scratch (%) | distilled (%) | gain (points) | gap closed | epochs | wall time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        runs, accuracy = r["runs"], r.get("teachers", {}).get("A", {}).get("test_accuracy")
        default = runs.get("default", {})
        ok = [c["seconds"] for c in default.values() if "error" not in c]
        lines += [row(name, label, runs[label], default, accuracy, len(seeds), np.mean(ok) if ok else None)
                  for label in rows if runs.get(label)]
    lines += ["", "Per seed: test accuracy % (gain over the default row's scratch of that seed, in points); "
              "epochs run (best kept); the command's wall time.", "",
              f"| data | row | {' | '.join(f'seed {s}' for s in seeds)} |",
              f"| --- | --- |{' --- |' * len(seeds)}"]
    for name, r in results.items():
        default = r["runs"].get("default", {})
        for label in rows:
            cells = r["runs"].get(label, {})
            if cells:
                lines.append(f"| {NAMES[name]} | {label} | " + " | ".join(
                    seed_cell(label, cells.get(str(s)), default.get(str(s), {})) for s in seeds) + " |")
    missing = [f"{name} / {label} / seed {s}" for name in results for label in rows for s in seeds
               if str(s) not in results[name]["runs"].get(label, {})]
    if missing:
        lines += ["", f"Missing cells (not run): {'; '.join(missing)}."]
    return lines


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, ROWS, json_default=HERE / "paying.json",
                         keeps="data, teachers and students", variants_name="rows")
    parser.add_argument("--minutes", type=float, default=100, help="stop after this long, keeping the cells done")
    args = parser.parse_args()
    cells = grid.Grid(args.json, args.sets, args.rows, args.seeds, workdir=args.workdir)
    if not args.render:
        start = time.perf_counter()
        signal.signal(signal.SIGALRM, _out_of_time)
        try:
            if args.minutes > 0:
                signal.alarm(max(1, round(args.minutes * 60)))
                measure_all(cells)
        except OutOfTime:
            print(f"out of time after {args.minutes:g} minutes: the cell running was stopped", flush=True)
        finally:
            signal.alarm(0)
        print(f"ran {(time.perf_counter() - start) / 60:.1f} minutes", flush=True)
    results = {name: cells.results[name] for name in SETS if name in cells.results and name in args.sets}
    grid.write_section(markdown(results, args.seeds, args.rows) + notes(cells.results), args.markdown)


if __name__ == "__main__":
    main()
