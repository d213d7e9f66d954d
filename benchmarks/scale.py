"""Data larger than memory: a generated set of 28x28 images through `soft-labels` and one epoch of
offline `distill`, streamed from an HDF5 file on disk against the same data in memory (an .npz).

    python benchmarks/scale.py [--rows 1000000] [--markdown scale.md] [--json scale.json]

Each command is a whole `kdcli` process, timed from its start to its exit, with its data file first
evicted from the operating system's page cache (a cold read, as on a fresh machine), at a tenth of the
rows and at all of them, the fastest of 2 runs (the highest peak). Rows per second: of the whole command at the full size, and for streamed data
also marginal, the slope between the two sizes (what more rows cost, start-up excluded). Peak memory
is the process's own (`VmHWM`), TensorFlow included: flat when the peak at 10x the rows stays within
20% of the peak at a tenth. `make bench` runs this inside `speed.py`.
"""

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, kdcli, timed_process, verdict

# Runs one kdcli command in this process, then prints its own peak resident memory in KiB. VmHWM starts
# afresh at exec; ru_maxrss would carry the peak of the process that started this one.
MEASURED_KDCLI = """
import sys
from kdcli.cli import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""
CHUNK_ROWS = 50_000
REPEATS = 2
# The rows of the in-memory baseline: a process that holds next to no data.
BASELINE_ROWS = 1_000


def write_images(h5_path, npz_path, n, seed=0):
    """`n` random 28x28 uint8 images with 10 labels, as an .h5 (chunked by 1,024 rows) and the same
    arrays as an .npz; 1,000 test images in both."""
    import h5py

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n)
    x_test, y_test = rng.integers(0, 256, size=(1000, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=1000)
    with h5py.File(h5_path, "w") as f:
        ds = f.create_dataset("x_train", shape=x.shape, dtype="uint8", chunks=(min(1024, n), 28, 28))
        for start in range(0, n, CHUNK_ROWS):
            ds[start:start + CHUNK_ROWS] = x[start:start + CHUNK_ROWS]
        f["y_train"], f["x_test"], f["y_test"] = y, x_test, y_test
    np.savez(npz_path, x_train=x, y_train=y, x_test=x_test, y_test=y_test)


def evict(path):
    """Drop `path` from the page cache, so that the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measured(data, *args, tree=ROOT):
    """Run `kdcli ARGS --quiet` of `tree` in its own process, `data` read cold: (wall seconds, its peak
    resident MiB)."""
    evict(data)
    seconds, out = timed_process("-c", MEASURED_KDCLI, *args, "--quiet", cwd=tree)
    return seconds, int(out.strip().splitlines()[-1]) / 1024


def bench_scale(workdir, rows=1_000_000, trees=None):
    """soft-labels and 1-epoch distill over `rows // 10` and `rows` images, streamed (.h5) and in memory (.npz),
    each the fastest of `REPEATS` runs, with the highest peak; and in memory over `BASELINE_ROWS`, the
    baseline that in-memory peaks are measured from. `trees`: label -> a kdcli source tree (default: this one).

    Returns `{"rows": [small, large], "baseline_rows": n, "trees": {label: [{command, form, rows, seconds,
    peak_mb}, ...]}}`.
    """
    workdir, trees = Path(workdir), trees or {"after": ROOT}
    sizes = (rows // 10, rows)
    teacher = workdir / "scale-teacher.keras"
    runs = {label: [] for label in trees}
    for n in (BASELINE_ROWS, *sizes):
        data = {"streamed": workdir / f"scale-{n}.h5", "in memory": workdir / f"scale-{n}.npz"}
        write_images(data["streamed"], data["in memory"], n)
        if not teacher.exists():  # a small mlp teacher, one epoch on the baseline set: only its speed matters
            kdcli("train-teacher", "--data", data["in memory"], "--arch", "mlp", "--epochs", "1", "--out", teacher)
        forms = {"in memory": data["in memory"]} if n == BASELINE_ROWS else data
        best = {}
        for _ in range(REPEATS):  # interleaved, so that drifts in machine load hit every tree and form alike
            for label, tree in trees.items():
                for form, path in forms.items():
                    soft, student = workdir / f"scale-soft-{n}.h5", workdir / f"scale-student-{n}.keras"
                    for command, args in (("soft-labels", ("--teacher", teacher, "--data", path, "--out", soft)),
                                          ("distill", ("--soft-labels", soft, "--student", "mlp", "--epochs", "1",
                                                       "--out", student))):
                        seconds, peak = measured(path, command, *args, tree=tree)
                        kept = best.setdefault((label, command, form), {"command": command, "form": form, "rows": n,
                                                                        "seconds": seconds, "peak_mb": peak})
                        kept.update(seconds=min(kept["seconds"], seconds), peak_mb=max(kept["peak_mb"], peak))
                    soft.unlink()
        for (label, *_), kept in best.items():
            runs[label].append(kept)
        for path in data.values():
            path.unlink()
    return {"rows": list(sizes), "baseline_rows": BASELINE_ROWS, "trees": runs}


def summary(result, label="after"):
    """Per (command, form) of tree `label`: the full size's seconds and whole rows/s, the marginal rows/s,
    both peaks, and in memory the peak above the baseline's as a multiple of the inputs' bytes."""
    small, large = result["rows"]
    found = {}
    for r in result["trees"][label]:
        found.setdefault((r["command"], r["form"]), {})[r["rows"]] = r
    baseline = {command: by[result["baseline_rows"]]["peak_mb"] for (command, form), by in found.items()
                if form == "in memory"}
    inputs_mb = large * 28 * 28 / 2**20
    return {key: {"seconds": by[large]["seconds"], "whole_rows_s": large / by[large]["seconds"],
                  "marginal_rows_s": (large - small) / max(by[large]["seconds"] - by[small]["seconds"], 1e-9),
                  "peak_small_mb": by[small]["peak_mb"], "peak_mb": by[large]["peak_mb"],
                  "growth": by[large]["peak_mb"] / by[small]["peak_mb"] - 1,
                  "above_baseline": (by[large]["peak_mb"] - baseline[key[0]]) / inputs_mb}
            for key, by in found.items()}


def markdown(result):
    """The BENCHMARKS.md section of `bench_scale`'s result (its "after" tree, and "before" beside it when
    measured), as a list of lines."""
    small, large = result["rows"]
    table = summary(result)
    lines = [
        f"## {large:,} rows: soft-labels and one distill epoch, streamed from disk against in memory",
        "",
        f"`benchmarks/scale.py`: {large:,} random 28x28 uint8 images ({large * 784 / 2**20:,.0f} MiB of inputs) "
        "with 10 labels, written once as an .h5 (chunks of 1,024 rows), which kdcli streams, and once as an .npz, "
        "which kdcli loads whole and batches with TensorFlow ops over the arrays themselves. Commands: "
        "`kdcli soft-labels` (an mlp teacher) and `kdcli distill --student mlp --epochs 1` (batch 64, a "
        "checkpoint a minute), each a whole process, its data file evicted from the page cache first (read cold "
        f"from the disk), at {small:,} and {large:,} rows, the fastest of {REPEATS} runs each (interleaved) and the "
        f"highest peak. Whole rows/s: the rows over the whole command at {large:,}, start-up and loading included; "
        "marginal rows/s (streamed): the slope between the two sizes. Peak: the process's own peak resident "
        "memory (`VmHWM`), TensorFlow included; streamed, flat when the peak at 10x the rows is within 20% of "
        f"the peak at a tenth; in memory, the peak above that of the same command on {result['baseline_rows']:,} "
        "rows, as a multiple of the inputs' size (at most 1.3x: one copy of the data).",
        "",
        f"| command | data | wall (s) at {large:,} | whole rows/s | marginal rows/s | peak (MiB) at {small:,} "
        f"| peak (MiB) at {large:,} | peak |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (command, form), t in table.items():
        streamed = form == "streamed"
        peak = f"{100 * t['growth']:+.0f}% at 10x ({verdict(t['growth'] < 0.2)}: flat)" if streamed else \
            f"{t['above_baseline']:.2f}x the inputs above the baseline ({verdict(t['above_baseline'] <= 1.3)})"
        marginal = f"{t['marginal_rows_s']:,.0f}" if streamed else "—"
        lines.append(f"| {command} | {form} | {t['seconds']:.1f} | {t['whole_rows_s']:,.0f} | {marginal} | "
                     f"{t['peak_small_mb']:,.0f} | {t['peak_mb']:,.0f} | {peak} |")
    lines.append("")
    for command in ("soft-labels", "distill"):
        streamed, memory = table[(command, "streamed")], table[(command, "in memory")]
        lines.append(f"- {command}: streamed at {streamed['whole_rows_s'] / memory['whole_rows_s']:.2f}x the "
                     f"in-memory rate (whole commands), peak {streamed['peak_mb']:,.0f} MiB against "
                     f"{memory['peak_mb']:,.0f} MiB.")
    if "before" in result["trees"]:
        before = summary(result, "before")
        lines += ["", f"Before and after, the same runs interleaved ({result['commits']['before']}: TensorFlow "
                  "copies of in-memory arrays, which above 256 MiB were read by NumPy a window at a time, one "
                  f"batch a call; {result['commits']['after']}: the arrays shared, several batches a call):", "",
                  "| command | data | whole rows/s before | after | after ÷ before | peak (MiB) before | after | "
                  "in memory, above the baseline: before | after |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for key, t in table.items():
            b = before[key]
            above = f"{b['above_baseline']:.2f}x | {t['above_baseline']:.2f}x" if key[1] == "in memory" else "— | —"
            lines.append(f"| {key[0]} | {key[1]} | {b['whole_rows_s']:,.0f} | {t['whole_rows_s']:,.0f} | "
                         f"{t['whole_rows_s'] / b['whole_rows_s']:.2f}x | {b['peak_mb']:,.0f} | {t['peak_mb']:,.0f} "
                         f"| {above} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--before", metavar="COMMIT", help="also measure kdcli at COMMIT (a git worktree), "
                        "interleaved with this tree's runs")
    parser.add_argument("--markdown", help="write the section to this file")
    parser.add_argument("--json", help="also keep the raw numbers here")
    parser.add_argument("--render", metavar="JSON", help="measure nothing: write --markdown from kept numbers")
    args = parser.parse_args()
    if args.render:
        result = json.loads(Path(args.render).read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trees = {"after": ROOT}
            if args.before:
                trees = {"before": Path(tmp) / "before", **trees}
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees["before"]),
                                args.before], check=True, capture_output=True)
            try:
                result = bench_scale(tmp, args.rows, trees)
                result["commits"] = {label: _commit(tree) for label, tree in trees.items()}
            finally:
                if args.before:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["before"])],
                                   capture_output=True)
    text = "\n".join(markdown(result)) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json and not args.render:
        Path(args.json).write_text(json.dumps(result, indent=2))


def _commit(tree):
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


if __name__ == "__main__":
    main()
