"""`distill --tune` on Optuna against the hand-written search it replaced, at equal trials.

Two kdcli checkouts side by side, `--old` (the hand-written search: trials
drawn with `random.Random(seed)`, kdcli's own median stopping rule; commit
4591a2a) and `--new` (Optuna: the same first trials queued, pruned by
`kdcli.tuning.median_rule()`, the old rule as an Optuna pruner, TPE after 8
trials; commit 1efee00). Each kdcli runs as `python -m kdcli` with
`PYTHONPATH` set to its checkout and the working directory outside both (the
current directory would otherwise come first on `sys.path`); which copy is
imported is checked before any cell.

A third column, "MedianPruner", is not measured: its cells are those of an
earlier run of this script whose `--new` was d583043 (Optuna's `MedianPruner`
fed the best validation accuracy so far), kept in `--json` under each data
set's "median_pruner" (the commit under "versions"), to show why kdcli does
not use that pruner. It is left out of the tables when absent.

For each data set (the bundled digits and the synthetic `tabular` of
datasets.py): one teacher, `kdcli train-teacher --data D --seed 0` with the
new checkout (teacher training is the same code in both), then for each seed
S, the old checkout then the new one (interleaved, so drifts in the load of
the shared machine hit both alike; cells already in `--json`, such as the
old version's of an earlier run, are not run again):
`kdcli distill --teacher T --data D --tune 8 --seed S --tune-json trials.json`
(student shrink:0.25, budget `--epochs auto`, kdcli's defaults otherwise).
Each cell records the winning trial (label, validation accuracy), its test
accuracy and the scratch trial's (`kdcli info`: `test_accuracy`,
`baseline_test_accuracy`), every trial's epochs and why it stopped
(`--tune-json`), and the command's whole wall time, measured around its
subprocess.

The cells (data set × version × seed) are a grid.py `Grid`: each goes to
`--json` as soon as it is measured, and cells already there are skipped, so a
run cut short resumes (keep `--workdir` to reuse the teachers). A failed
command's last error line is recorded in its cell and the run carries on.
`--minutes` bounds the run: when it is up, the command running is stopped (its
cell left out) and no other starts. Prints, and writes to `--markdown`, a
Markdown section for BENCHMARKS.md, the paragraphs under "notes" in `--json`
after the tables; `--render` measures nothing and only writes it from `--json`.

    python benchmarks/tune_engine.py --old DIR --new DIR [--sets digits tabular] [--seeds 0 1 2]
        [--minutes 80] [--workdir DIR] [--json tune_engine.json] [--markdown tune_engine.md] [--render]
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grid
import numpy as np
from budgets import NAMES, make_data, notes

from common import paired_difference

HERE = Path(__file__).resolve().parent
SETS = ("digits", "tabular")
VERSIONS = ("old", "new")
N_TRIALS = 8
TEACHER_SEED = 0


class OutOfTime(Exception):
    """Raised by SIGALRM when `--minutes` is up; `subprocess.run` then kills the kdcli it waits for."""


def _out_of_time(signum, frame):
    raise OutOfTime


def kdcli_of(checkout, cwd, *args):
    """Run the kdcli of `checkout` in a subprocess from `cwd`, as a user would: (its stdout, its whole wall
    seconds). Raises SystemExit with its last error line when it fails."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "kdcli", *map(str, args), "--quiet"], capture_output=True, text=True,
                       cwd=cwd, env=env)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        lines = [line.strip() for line in r.stderr.splitlines() if line.strip()]
        raise SystemExit(f"kdcli {args[0]} failed: {lines[-1] if lines else r.returncode}")
    return r.stdout, seconds


def check_checkout(checkout, cwd):
    """The short commit of `checkout`, after checking that `python -m kdcli` from `cwd` imports its kdcli."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    imported = subprocess.run([sys.executable, "-c", "import kdcli; print(kdcli.__file__)"], capture_output=True,
                              text=True, cwd=cwd, env=env, check=True).stdout.strip()
    if not Path(imported).resolve().is_relative_to(Path(checkout).resolve()):
        raise SystemExit(f"PYTHONPATH={checkout} imports {imported}, not that checkout's kdcli")
    return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def provenance(checkout, cwd, path):
    """`kdcli info PATH` of `checkout`, parsed."""
    return json.loads(kdcli_of(checkout, cwd, "info", path)[0])


def teacher(name, data, folder, entry, checkout, save):
    """The data set's teacher: trained once into `folder` by `checkout`'s kdcli, recorded under `entry`."""
    path = folder / "teacher.keras"
    record = entry.get("teacher", {})
    if not path.exists():
        _, seconds = kdcli_of(checkout, folder, "train-teacher", "--data", data, "--seed", TEACHER_SEED, "--out", path)
        record = {"seconds": seconds}
    metrics = provenance(checkout, folder, path)["metrics"]
    entry["teacher"] = {**record, "seed": TEACHER_SEED, "test_accuracy": metrics["test_accuracy"]}
    save()
    return path


def measure(checkout, teacher_path, data, seed, folder, version):
    """One cell: `distill --tune 8` of one version on one seed; its record, or its error line."""
    out, trials_json = folder / f"student-{version}-{seed}.keras", folder / f"trials-{version}-{seed}.json"
    for stale in (out, trials_json):  # a cell cut short starts over, not from its checkpoints or study
        stale.unlink(missing_ok=True)
    shutil.rmtree(out.with_name(f"{out.stem}.ckpt"), ignore_errors=True)
    start = time.perf_counter()
    try:
        _, seconds = kdcli_of(checkout, folder, "distill", "--teacher", teacher_path, "--data", data,
                              "--tune", N_TRIALS, "--seed", seed, "--tune-json", trials_json, "--out", out)
        metrics = provenance(checkout, folder, out)["metrics"]
    except SystemExit as failure:
        return {"error": str(failure), "seconds": time.perf_counter() - start}
    tuned = json.loads(trials_json.read_text())
    trials = [{k: t.get(k) for k in ("label", "epochs", "best_epoch", "stopped", "val_accuracy", "seconds")}
              for t in tuned["trials"]]
    won = next(t for t, raw in zip(trials, tuned["trials"]) if raw["trial"] == tuned["winner"])
    return {"winner": won["label"], "winner_trial": tuned["winner"], "val_accuracy": won["val_accuracy"],
            "test_accuracy": metrics["test_accuracy"], "scratch_test_accuracy": metrics["baseline_test_accuracy"],
            "seconds": seconds, "train_seconds": metrics.get("train_seconds"),
            "pruned": sum(t["stopped"] == "pruned" for t in trials), "trials": trials}


def measure_all(cells, checkouts):
    """Measure the missing cells of the Grid `cells`, each data set's teacher first."""
    sets = {}  # data set -> (its --data value, its teacher's path)

    def start(name):
        folder = cells.folder(name)
        data = make_data(name, folder)
        if data is None:
            return False
        entry = cells.entry(name)
        sets[name] = data, teacher(name, data, folder, entry, checkouts["new"], cells.save)
        print(f"{name}: teacher {100 * entry['teacher']['test_accuracy']:.2f}%", flush=True)

    def cell(name, version, seed):
        data, teacher_path = sets[name]
        record = measure(checkouts[version], teacher_path, data, seed, cells.folder(name), version)
        brief = {k: v for k, v in record.items() if k != "trials"}
        print(f"{name} / {version} / seed {seed}: {brief}", flush=True)
        return record

    cells.run(cell, start)


def _ok(record):
    return record is not None and "error" not in record


def cell_of(entry, version, seed):
    """The record of `version` on `seed` in a data set's entry: a measured one (under "runs"), or for
    "median_pruner" the one kept from the earlier run (under "median_pruner"); None when absent."""
    runs = entry.get("median_pruner", {}) if version == "median_pruner" else entry["runs"].get(version, {})
    return runs.get(str(seed))


def _winner_cell(record):
    if record is None:
        return "missing"
    if "error" in record:
        return f"failed: {record['error']}"
    return f"{record['winner']} ({100 * record['test_accuracy']:.2f})"


def _wall(record):
    return f"{record['seconds']:.0f} s"


def _epochs(record):
    return sum(t["epochs"] or 0 for t in record["trials"])


def _joined(records, show):
    """`a / b / c` of a value of cells, `?` for a cell that did not run."""
    return " / ".join(show(r) if _ok(r) else "?" for r in records)


def _trial_epochs(record, i):
    t = record["trials"][i] if _ok(record) and i < len(record["trials"]) else None
    if t is None:
        return "?"
    return f"{t['epochs']}{'p' if t['stopped'] == 'pruned' else ''}"


def same_trials(old, new):
    """Whether two cells ran the same trials, in the same order (by label)."""
    return [t["label"] for t in old["trials"]] == [t["label"] for t in new["trials"]]


TRIAL_KEYS = ("label", "epochs", "best_epoch", "stopped", "val_accuracy")
RESULT_KEYS = ("winner", "winner_trial", "val_accuracy", "test_accuracy", "scratch_test_accuracy", "pruned")


def identical(a, b):
    """Whether two cells searched alike: the same winner, validation and test accuracies, pruned trials, and
    each trial the same epochs, best epoch, way of stopping and validation accuracy (times aside)."""
    return (all(a[k] == b[k] for k in RESULT_KEYS) and len(a["trials"]) == len(b["trials"])
            and all(s[k] == t[k] for s, t in zip(a["trials"], b["trials"]) for k in TRIAL_KEYS))


def summary(name, entry, seeds, shown):
    """The line of a data set: winner and scratch test accuracy per version, mean ± std over the seeds, and
    each version − old paired by seed; pruned trials, epochs trained and wall time summed."""
    paired = [s for s in seeds if all(_ok(cell_of(entry, v, s)) for v in shown)]
    if not paired:
        return f"- {NAMES[name]}: no seed ran in every version."
    cells = {v: [cell_of(entry, v, s) for s in paired] for v in shown}
    acc = {v: np.array([100 * r["test_accuracy"] for r in cells[v]]) for v in shown}
    scratch = {v: np.array([100 * r["scratch_test_accuracy"] for r in cells[v]]) for v in shown}
    pruned = {v: sum(r["pruned"] for r in cells[v]) for v in shown}
    wall = {v: sum(r["seconds"] for r in cells[v]) for v in shown}
    epochs = {v: sum(_epochs(r) for r in cells[v]) for v in shown}
    n_trials = sum(len(r["trials"]) for r in cells["old"])
    label = {"old": "old", "new": "median rule", "median_pruner": "MedianPruner"}

    def each(values, show):
        return ", ".join(f"{label[v]} {show(values[v])}" for v in shown)

    def spread(a):
        return f"{a.mean():.2f} ± {a.std():.2f}"

    def epochs_of(e):
        return f"{e} (×{e / epochs['old']:.2f})"

    def wall_of(w):
        return f"{w:.0f} s (×{w / wall['old']:.2f})"

    gaps = "; ".join(f"{label[v]} − old {paired_difference(acc['old'], acc[v])}" for v in shown if v != "old")
    return (f"- {NAMES[name]} ({len(paired)} seeds): winner test accuracy {each(acc, spread)}; {gaps}. "
            f"Scratch trial: {each(scratch, spread)}. Pruned, of {n_trials} trials: {each(pruned, str)}. "
            f"Epochs trained, all trials: {each(epochs, epochs_of)}. Wall time: {each(wall, wall_of)}.")


def markdown(results, seeds, versions):
    """The Markdown heading, description and tables of `results`, as a list of lines."""
    about = [f"{NAMES[name]}: teacher {100 * r['teacher']['test_accuracy']:.2f}%" for name, r in results.items()
             if "teacher" in r]
    shown = [v for v in ("old", "new", "median_pruner")
             if v != "median_pruner" or any(r.get("median_pruner") for r in results.values())]
    commit = {v: versions.get(v, "?") for v in shown}
    heads = {"old": f"old ({commit['old']})", "new": f"median rule ({commit['new']})",
             "median_pruner": f"MedianPruner ({commit.get('median_pruner')})"}
    which = " / ".join(heads[v].split(" (")[0] for v in shown)
    lines = [
        "## --tune on Optuna against the hand-written search",
        "",
        f"Written by `benchmarks/tune_engine.py --old OLD --new NEW`. Compared: old = {commit['old']}, the "
        "hand-written search of `kdcli/tuning.py` (trials drawn with `random.Random(seed)`, its own median "
        f"stopping rule); median rule = {commit['new']}, Optuna (the same first trials queued, TPE only after 8 "
        "trials) pruned by `kdcli.tuning.median_rule()`, the hand-written rule as an Optuna pruner (a trial is "
        "stopped after its grace epochs when its best validation accuracy so far is below the median of the "
        "other trials' best up to that epoch, finished trials that stopped earlier counting with their best)"
        + ("; MedianPruner = "
           f"{commit['median_pruner']}, the same Optuna search pruned by Optuna's `MedianPruner` "
           "(n_startup_trials=2, n_warmup_steps=GRACE − 1 = 9) fed the best validation accuracy so far, which "
           "kdcli does not use (below: why). Its cells are kept from an earlier run of this script and were "
           "not measured again" if "median_pruner" in shown else "")
        + ". One teacher per data set, `kdcli train-teacher --data D --seed 0` "
        f"({'; '.join(about)}), the same for every version; then for each seed S in {seeds}, "
        f"`kdcli distill --teacher T --data D --tune {N_TRIALS} --seed S --tune-json trials.json` (student "
        "shrink:0.25, `--epochs auto`, kdcli's defaults otherwise), so every version searches the same 8 trials "
        "(scratch, the default, then 6 seeded draws) from the same initial weights, and they differ only in "
        "which trials their pruner stops. Winner: "
        "the trial with the best validation accuracy, kept as trained; test accuracy in % from `kdcli info` "
        "(`test_accuracy`, and `baseline_test_accuracy` for the scratch trial); mean ± standard deviation over "
        "the seeds (NumPy's, ddof 0); X − old is the mean of the per-seed differences (each seed's in "
        "brackets), \"within noise\" when within one standard deviation (the largest of the two versions' and "
        "the differences'). Epochs trained: summed over the 8 trials. Wall time: each distill command's whole "
        "wall time, process start to exit (teacher logits, 8 trials, saving). Machine: 2 CPU cores, no GPU, "
        "shared with other jobs and run at a lower priority, so times are noisy: compare the epochs trained "
        "rather than the seconds.",
        "",
        f"| set | seed | {' | '.join(f'{heads[v]} winner (test %)' for v in shown)} | trials pruned {which} | "
        f"epochs trained {which} | wall {which} | median rule = old |",
        f"| --- | ---: |{' --- |' * len(shown)} ---: | ---: | ---: | --- |",
    ]
    verdicts = []
    for name, r in results.items():
        for s in seeds:
            records = [cell_of(r, v, s) for v in shown]
            old, new = records[0], records[1]
            same = "?" if not (_ok(old) and _ok(new)) else "yes" if identical(old, new) else "**no**"
            verdicts.append((f"{name} seed {s}", same))
            lines.append(f"| {name} | {s} | {' | '.join(_winner_cell(c) for c in records)} | "
                         f"{_joined(records, lambda c: str(c['pruned']))} | "
                         f"{_joined(records, lambda c: str(_epochs(c)))} | "
                         f"{_joined(records, _wall)} | {same} |")
    lines += [""] + [summary(name, r, seeds, shown) for name, r in results.items()]
    unequal = [cell for cell, same in verdicts if same == "**no**"]
    unrun = [cell for cell, same in verdicts if same == "?"]
    lines += ["", "median rule = old: the same winner, the same validation and test accuracies, the same trials "
              "pruned, and every trial the same epochs, best epoch, way of stopping and validation accuracy. "
              + ("It holds in every cell: the median rule reproduced the old search exactly."
                 if not unequal and not unrun else f"It does not hold in: {'; '.join(unequal) or 'none'}"
                 + (f" (not compared, a cell missing: {'; '.join(unrun)})" if unrun else "") + ".")]
    lines += ["", f"Per trial: epochs run, {which} (p: pruned; trial 1 is scratch, trial 2 the default).", "",
              f"| set | seed | same trials | {' | '.join(f'trial {i + 1}' for i in range(N_TRIALS))} |",
              f"| --- | ---: | --- |{' ---: |' * N_TRIALS}"]
    differ = []
    for name, r in results.items():
        for s in seeds:
            records = [cell_of(r, v, s) for v in shown]
            ran = [c for c in records if _ok(c)]
            same = "?" if len(ran) < 2 else "yes" if all(same_trials(ran[0], c) for c in ran) else "**no**"
            if same == "**no**":
                differ.append(f"{name} seed {s}")
            labels = (ran[0] if ran else {"trials": []})["trials"]
            lines.append(f"| {name} | {s} | {same} | " + " | ".join(
                " / ".join(_trial_epochs(c, i) for c in records)
                + (f" ({labels[i]['label']})" if i < len(labels) else "") for i in range(N_TRIALS)) + " |")
    lines += ["", "The trial lists (labels, in order) are the same in every version for every seed."
              if not differ else f"The trial lists differ between the versions in: {'; '.join(differ)}."]
    missing = [f"{name} / {v} / seed {s}" for name in results for v in shown for s in seeds
               if cell_of(results[name], v, s) is None]
    if missing:
        lines += ["", f"Missing cells (not run): {'; '.join(missing)}."]
    return lines


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, json_default=HERE / "tune_engine.json",
                         keeps="data, teachers, students and trials")
    parser.add_argument("--old", type=Path, help="the checkout of the hand-written search (commit 4591a2a)")
    parser.add_argument("--new", type=Path, help="the checkout of the search on Optuna (commit 1efee00)")
    parser.add_argument("--minutes", type=float, default=80, help="stop after this long, keeping the cells done")
    args = parser.parse_args()
    cells = grid.Grid(args.json, args.sets, VERSIONS, args.seeds, seeds_first=True, workdir=args.workdir)
    if not args.render:
        if args.old is None or args.new is None:
            parser.error("--old and --new are needed to measure (or --render)")
        checkouts = {"old": args.old.resolve(), "new": args.new.resolve()}
        outside = Path(args.workdir).resolve() if args.workdir else Path("/")
        outside.mkdir(parents=True, exist_ok=True)
        versions = cells.results.setdefault("versions", {})  # median_pruner's stays
        versions.update({v: check_checkout(c, outside) for v, c in checkouts.items()})
        start = time.perf_counter()
        signal.signal(signal.SIGALRM, _out_of_time)
        try:
            if args.minutes > 0:
                signal.alarm(max(1, round(args.minutes * 60)))
                measure_all(cells, checkouts)
        except OutOfTime:
            print(f"out of time after {args.minutes:g} minutes: the cell running was stopped", flush=True)
        finally:
            signal.alarm(0)
        print(f"ran {(time.perf_counter() - start) / 60:.1f} minutes", flush=True)
    results = {name: cells.results[name] for name in SETS if name in cells.results and name in args.sets}
    grid.write_section(markdown(results, args.seeds, cells.results.get("versions", {})) + notes(cells.results),
                       args.markdown)


if __name__ == "__main__":
    main()
