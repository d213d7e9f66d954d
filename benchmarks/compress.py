"""Compress to a target: how much smaller distillation lets a student go at the teacher's accuracy.

For each data set (`digits`, bundled; `tabular`, `signal` and `mixture`, made
by datasets.py as defaults.py makes them; the MNIST benchmark split when
`../shared/data` is there), three steps, each a whole process timed around
its subprocess:

1. teacher: `kdcli train-teacher --data D --seed 0 --out T.keras` (kdcli's
   defaults);
2. distill: one default one-shot `kdcli distill --teacher T.keras --data D
   --out S.keras`, the unit of the search's cost;
3. compress: `kdcli compress --teacher T.keras --data D --max-drop 1 --format
   int8 --trials 10 --out student.keras --json result.json`. Its first 10
   trials are the queued ones: at each width of `shrink:F` (F = 0.5, 0.25,
   0.125, 0.0625, 0.03125), largest first, the default distillation and the
   same student from scratch, each measured as its int8 `.tflite` export.
   Exit 3 (no candidate within the target) is a result, not a failure.

From compress's result (schema `kdcli.compress/1`), for distilled and scratch
students separately: the smallest width whose validation accuracy meets the
target (`val_accuracy >= target.min_val_accuracy`, compress's own rule), its
parameters, int8 size and test accuracy; then scratch / distilled in
parameters and in int8 bytes (how much smaller distillation lets a student
go at the same accuracy), and the search's cost as compress's wall time over
the one distill's. A side with no width within the target is reported at its
largest width, and its ratio is a bound.

The steps (set × step) are a grid.py `Grid`, saved after each, so a run cut
short resumes; a set whose stored steps are incomplete and whose teacher is
not in `--workdir` any more (or is another file) is measured again whole.

    python benchmarks/compress.py [--sets digits tabular signal mixture mnist] [--workdir DIR]
        [--json compress.json] [--markdown compress.md] [--render]

A kdcli command that fails stops the run (the steps before it stay in the JSON); paragraphs under "notes"
in the JSON (e.g. saying what failed) are printed after the tables.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grid
from defaults import make_data

import kdcli
from kdcli.files import sha256_file

from common import ROOT

HERE = Path(__file__).resolve().parent
SETS = ("digits", "tabular", "signal", "mixture", "mnist")
KIND = {"digits": "images 8x8", "tabular": "tabular 20", "signal": "1-D 64x8", "mixture": "1-D 40x1",
        "mnist": "images 28x28"}
STEPS = ("teacher", "distill", "compress")
MAX_DROP = 1
TRIALS = 10
COMPRESS_EXIT = {0: "met", 3: "not met"}  # compress's two results


def step_key(name, step, seed):
    """A step's place in the JSON: `results[set]["runs"][step]` (no seeds)."""
    return name, "runs", step


def timed_kdcli(folder, *args, ok=(0,)):
    """Run `kdcli ARGS --quiet` as a user would, its output logged in `folder`: (wall seconds, exit status)."""
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "kdcli", *map(str, args), "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (folder / "stdout.txt").write_text(r.stdout)
    (folder / "stderr.txt").write_text(r.stderr)
    if r.returncode not in ok:
        raise SystemExit(f"kdcli {' '.join(map(str, args))} failed (exit {r.returncode}): {r.stderr.strip()}")
    return seconds, r.returncode


def source():
    """The kdcli source a step ran: the commit, and the sha256 of the uncommitted diff of kdcli/ (None when
    clean), so that results measured against a working tree that changed under them can be told apart."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True).stdout

    diff = git("diff", "HEAD", "--", "kdcli")
    return {"commit": git("rev-parse", "HEAD").strip(),
            "kdcli_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None}


def fresh(folder):
    """An empty folder for a step (what an earlier, cut-short try left is removed: nothing resumes)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def drop_orphans(cells, workdir):
    """Forget the stored steps of each set that still has steps to measure but whose teacher is gone from
    `workdir` (or is another file): the later steps need that teacher, so the set is measured again whole."""
    for name in cells.sets:
        runs = cells.results.get(name, {}).get("runs", {})
        if not runs or all(step in runs for step in STEPS):
            continue
        teacher = Path(workdir) / name / "teacher" / "T.keras" if workdir else None
        stored = runs.get("teacher", {}).get("sha256")
        if teacher is None or not teacher.exists() or sha256_file(teacher) != stored:
            print(f"{name}: its teacher is not in the work folder; measuring the set again", flush=True)
            cells.results[name]["runs"] = {}


def measure_all(cells):
    """Measure the missing steps of the Grid `cells`, set by set."""
    data = {}

    def start(name):
        data[name] = make_data(name, cells.folder(name))
        return data[name] is not None

    def step(name, which, _seed):
        root = cells.folder(name)
        teacher = root / "teacher" / "T.keras"
        tree = source()
        if which == "teacher":
            seconds, _ = timed_kdcli(fresh(teacher.parent), "train-teacher", "--data", data[name], "--seed", 0,
                                     "--out", teacher)
            p = kdcli.read_provenance(teacher)
            record = {"seconds": seconds, "test_accuracy": p["metrics"]["test_accuracy"],
                      "arch": p["hyperparameters"].get("arch"), "epochs": p["metrics"].get("epochs"),
                      "sha256": sha256_file(teacher)}
        elif which == "distill":
            out = fresh(root / "distill") / "S.keras"
            seconds, _ = timed_kdcli(out.parent, "distill", "--teacher", teacher, "--data", data[name], "--out", out)
            p = kdcli.read_provenance(out)
            record = {"seconds": seconds, "test_accuracy": p["metrics"]["test_accuracy"],
                      "epochs": p["metrics"].get("epochs"), "student": p["hyperparameters"].get("student")}
        else:
            folder = fresh(root / "compress")
            seconds, code = timed_kdcli(folder, "compress", "--teacher", teacher, "--data", data[name],
                                        "--max-drop", MAX_DROP, "--format", "int8", "--trials", TRIALS,
                                        "--out", folder / "student.keras", "--json", folder / "result.json",
                                        ok=tuple(COMPRESS_EXIT))
            result = json.loads((folder / "result.json").read_text())
            record = {"seconds": seconds, "exit": code, "schema": result["schema"], "met": result["met"],
                      **{k: result[k] for k in ("teacher", "target", "chosen", "frontier")},
                      "trials": len(result["trials"])}
        print(f"{name} / {which}: {seconds:.0f} s", flush=True)
        return {**record, "source": tree}

    cells.run(step, start)


def smallest(frontier, side, bar):
    """The `side` ("distilled" or "scratch") trial of the smallest width whose validation accuracy meets
    `bar`, and True; else the largest width's trial, and False (None, False when the side has none)."""
    rows = [r[side] for r in frontier if r.get(side)]  # widest first
    meeting = [t for t in rows if t["val_accuracy"] is not None and t["val_accuracy"] >= bar]
    if meeting:
        return min(meeting, key=lambda t: t["width"]), True
    return (rows[0] if rows else None), False


def summary(record):
    """A set's numbers: per side its trial and whether it meets the target; the ratios; met by compress."""
    bar = record["target"]["min_val_accuracy"]
    sides = {side: smallest(record["frontier"], side, bar) for side in ("distilled", "scratch")}
    (d, d_met), (s, s_met) = sides["distilled"], sides["scratch"]
    ratios = {}
    for key in ("params", "size_bytes"):
        if d is None or s is None:
            ratios[key] = None
            continue
        value = s[key] / d[key]
        # A side short of the target needs more than its largest width: the ratio is then a bound.
        bound = "" if d_met and s_met else ("≥ " if d_met else "≤ " if s_met else "")
        ratios[key] = (bound, value, d_met or s_met)
    return sides, ratios


def bytes_text(n):
    return f"{n / 1024:.1f} KiB"


def side_text(trial, met):
    if trial is None:
        return "— | — | — | —"
    width = f"{trial['width']:g}" if met else f"none within {MAX_DROP} point (largest width, {trial['width']:g})"
    return (f"{width} | {trial['params']:,} | {bytes_text(trial['size_bytes'])} | "
            f"{100 * trial['test_accuracy']:.1f}%")


def ratio_text(ratio):
    if ratio is None:
        return "—"
    bound, value, meaningful = ratio
    return f"{bound}{value:.2f}×" if meaningful else f"({value:.2f}×, neither within {MAX_DROP} point)"


def markdown(results, notes=()):
    """The Markdown section: the summary table, the wall times, each width's validation / test accuracy per
    side, then `notes` (the paragraphs under "notes" in the JSON: what the tables cannot say, e.g. a failure)."""
    lines = [
        f"## Compress to a target: how much smaller distillation lets a student go within {MAX_DROP} point",
        "",
        "Written by `benchmarks/compress.py`. Per data set, three whole processes, each timed around its "
        "subprocess: the teacher, `kdcli train-teacher --data D --seed 0` (kdcli's defaults); one default "
        "one-shot `kdcli distill --teacher T.keras --data D` (the unit of the search's cost); and "
        f"`kdcli compress --teacher T.keras --data D --max-drop {MAX_DROP} --format int8 --trials {TRIALS}`, "
        "whose 10 trials are its queued ones: at each width of `shrink:F` (F = 0.5 to 0.03125, halving), the "
        "default distillation (kd, T=4, alpha 0.9) and the same student from scratch, each measured as its "
        "int8 `.tflite` export. The target is compress's own: validation accuracy at least the teacher's test "
        f"accuracy less {MAX_DROP} point. For distilled and for scratch students separately, the table gives "
        "the smallest width within the target, its parameters, int8 file size and test accuracy; where no "
        f"width is within {MAX_DROP} point it says so and gives the largest width's numbers, and the ratios "
        "are then bounds (≥: scratch needs more than its largest width). Ratios are scratch / distilled: how "
        "much smaller distillation lets the student be at the same accuracy. The search cost is compress's "
        "wall time over the one distill's.",
        "",
        "Machine: 2 CPU cores shared with other jobs, so wall times are noisy; compare the ratios, not the "
        "seconds. One seed.",
        "",
        "| set | teacher test % | distilled: smallest width within 1 pt | params | int8 size | test % | "
        "scratch: smallest width within 1 pt | params | int8 size | test % | params ratio | int8 size ratio | "
        "search cost (× one distill) |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    details = []
    for name, r in results.items():
        runs = r["runs"]
        if "compress" not in runs:
            continue
        c = runs["compress"]
        sides, ratios = summary(c)
        cost = f"{c['seconds'] / runs['distill']['seconds']:.1f}×" if "distill" in runs else "—"
        lines.append(f"| {name} ({KIND[name]}) | {100 * c['teacher']['test_accuracy']:.1f}% | "
                     f"{side_text(*sides['distilled'])} | {side_text(*sides['scratch'])} | "
                     f"{ratio_text(ratios['params'])} | {ratio_text(ratios['size_bytes'])} | {cost} |")
        for row in c["frontier"]:
            cells = []
            for side in ("distilled", "scratch"):
                t = row.get(side)
                cells.append("—" if t is None else f"{100 * t['val_accuracy']:.1f}% / {100 * t['test_accuracy']:.1f}%"
                             f"{' ✓' if t['val_accuracy'] >= c['target']['min_val_accuracy'] else ''}")
            t = row.get("distilled") or row.get("scratch")
            details.append(f"| {name} | {row['width']:g} | {t['params']:,} | {bytes_text(t['size_bytes'])} | "
                           f"{cells[0]} | {cells[1]} |")
    lines += ["", "Wall times (seconds) and the target:", "",
              "| set | teacher (arch, test %) | one distill (its student, test %) | compress (exit) | target: val ≥ |",
              "| --- | --- | --- | --- | ---: |"]
    for name, r in results.items():
        runs = r["runs"]
        t, d, c = (runs.get(step) for step in STEPS)
        lines.append(f"| {name} | {t['seconds']:.0f} ({t['arch']}, {100 * t['test_accuracy']:.1f}%) | " if t
                     else f"| {name} | — | ")
        lines[-1] += (f"{d['seconds']:.0f} ({d.get('student')}, {100 * d['test_accuracy']:.1f}%) | " if d
                      else "— | ") + (
            f"{c['seconds']:.0f} ({c['exit']}: {COMPRESS_EXIT[c['exit']]}) | "
            f"{100 * c['target']['min_val_accuracy']:.2f}% |" if c else "— | — |")
    lines += ["", "Each width's students, validation / test accuracy of the int8 export (✓: within the target):", "",
              "| set | width | params | int8 size | distilled val / test | scratch val / test |",
              "| --- | ---: | ---: | ---: | ---: | ---: |", *details]
    return lines + [line for note in notes for line in ("", note)]


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, json_default=HERE / "compress.json",
                         keeps="data, teachers, students and compress's trials", seeds=())
    args = parser.parse_args()
    cells = grid.Grid(args.json, args.sets, list(STEPS), None, key=step_key, workdir=args.workdir)
    if not args.render:
        drop_orphans(cells, args.workdir)
        measure_all(cells)
    results = {name: cells.results[name] for name in SETS if cells.results.get(name, {}).get("runs")}
    grid.write_section(markdown(results, cells.results.get("notes", [])), args.markdown)


if __name__ == "__main__":
    main()
