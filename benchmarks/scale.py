"""Data larger than memory: a generated set of 28x28 images through `soft-labels` and one epoch of
offline `distill`, streamed from an HDF5 file on disk against the same data in memory (an .npz).

    python benchmarks/scale.py [--rows 1000000] [--markdown scale.md] [--json scale.json]

Each command is a whole `kdcli` process, timed from its start to its exit, run at a tenth of the rows
and at all of them. Rows per second are given two ways: of the whole command at the full size, and
marginal, the slope between the two sizes (what one more million rows costs, start-up excluded).
Peak memory is the process's peak resident set, TensorFlow included: memory is flat when the peak at
10x the rows stays within 20% of the peak at a tenth. `make bench` runs this inside `speed.py`.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT

# Runs one kdcli command in this process and prints its peak resident memory (KiB, Linux's ru_maxrss).
MEASURED_KDCLI = """
import resource, sys
from kdcli.cli import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
CHUNK_ROWS = 50_000


def write_images(h5_path, npz_path, n, seed=0):
    """`n` random 28x28 uint8 images with 10 labels, as an .h5 (chunked by 1,024 rows) and the same
    arrays as an .npz; 1,000 test images in both."""
    import h5py

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n)
    x_test, y_test = rng.integers(0, 256, size=(1000, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=1000)
    with h5py.File(h5_path, "w") as f:
        ds = f.create_dataset("x_train", shape=x.shape, dtype="uint8", chunks=(1024, 28, 28))
        for start in range(0, n, CHUNK_ROWS):
            ds[start:start + CHUNK_ROWS] = x[start:start + CHUNK_ROWS]
        f["y_train"], f["x_test"], f["y_test"] = y, x_test, y_test
    np.savez(npz_path, x_train=x, y_train=y, x_test=x_test, y_test=y_test)


def measured(*args):
    """Run `kdcli ARGS --quiet` in its own process: (wall seconds, peak resident MiB)."""
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", MEASURED_KDCLI, *map(str, args), "--quiet"], capture_output=True,
                       text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if r.returncode:
        raise SystemExit(f"kdcli {' '.join(map(str, args))} failed: {r.stderr.strip()[-500:]}")
    return seconds, int(r.stdout.strip().splitlines()[-1]) / 1024


def bench_scale(workdir, rows=1_000_000):
    """soft-labels and 1-epoch distill over `rows // 10` and `rows` images, streamed (.h5) and in memory (.npz).

    Returns `{"rows": [small, large], "runs": [{command, form, rows, seconds, peak_mb}, ...]}`.
    """
    workdir = Path(workdir)
    sizes = (rows // 10, rows)
    teacher = workdir / "scale-teacher.keras"
    runs = []
    for n in sizes:
        data = {"streamed": workdir / f"scale-{n}.h5", "in memory": workdir / f"scale-{n}.npz"}
        write_images(data["streamed"], data["in memory"], n)
        if not teacher.exists():  # a small mlp teacher, one epoch on the smaller set: only its speed matters
            subprocess.run([sys.executable, "-m", "kdcli", "train-teacher", "--data", data["in memory"], "--arch",
                            "mlp", "--epochs", "1", "--out", teacher, "--quiet"], check=True, capture_output=True)
        for form, path in data.items():
            soft, student = workdir / f"scale-soft-{n}.h5", workdir / f"scale-student-{n}.keras"
            seconds, peak = measured("soft-labels", "--teacher", teacher, "--data", path, "--out", soft)
            runs.append({"command": "soft-labels", "form": form, "rows": n, "seconds": seconds, "peak_mb": peak})
            seconds, peak = measured("distill", "--soft-labels", soft, "--student", "mlp", "--epochs", "1",
                                     "--out", student)
            runs.append({"command": "distill", "form": form, "rows": n, "seconds": seconds, "peak_mb": peak})
            soft.unlink()
        for path in data.values():
            path.unlink()
    return {"rows": list(sizes), "runs": runs}


def summary(result):
    """Per command and form: whole-command rows/s at the full size, marginal rows/s, peaks and their growth."""
    small, large = result["rows"]
    out = {}
    for r in result["runs"]:
        out.setdefault((r["command"], r["form"]), {})[r["rows"]] = r
    table = {}
    for key, by_rows in out.items():
        a, b = by_rows[small], by_rows[large]
        table[key] = {"seconds": b["seconds"], "whole_rows_s": large / b["seconds"],
                      "marginal_rows_s": (large - small) / max(b["seconds"] - a["seconds"], 1e-9),
                      "peak_small_mb": a["peak_mb"], "peak_mb": b["peak_mb"],
                      "growth": b["peak_mb"] / a["peak_mb"] - 1}
    return table


def markdown(result):
    """The BENCHMARKS.md section of `bench_scale`'s result, as a list of lines."""
    small, large = result["rows"]
    table = summary(result)
    verdict = lambda passed: "met" if passed else "**missed**"  # noqa: E731
    lines = [
        f"## {large:,} rows from disk: soft-labels and one distill epoch, streamed against in memory",
        "",
        f"`benchmarks/scale.py`: {large:,} random 28x28 uint8 images ({large * 784 / 2**20:,.0f} MiB of inputs) "
        "with 10 labels, written once as an .h5 (chunks of 1,024 rows), which kdcli streams from disk, and once as "
        "an .npz, which kdcli loads whole and batches with TensorFlow ops. Commands: `kdcli soft-labels` (an mlp "
        "teacher) and `kdcli distill --student mlp --epochs 1` (batch 64, a checkpoint a minute), each a whole "
        f"process, at {small:,} and {large:,} rows. Whole rows/s: rows over the whole command at {large:,} rows, "
        "start-up included; marginal rows/s: the slope between the two sizes, start-up excluded. Peak: the "
        "process's peak resident memory, TensorFlow included; flat when the peak at 10x the rows is within 20% "
        "of the peak at a tenth.",
        "",
        f"| command | data | wall (s) at {large:,} | whole rows/s | marginal rows/s | peak (MiB) at {small:,} "
        f"| peak (MiB) at {large:,} | peak growth at 10x |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (command, form), t in table.items():
        flat = f"{100 * t['growth']:+.0f}%" + (f" ({verdict(t['growth'] < 0.2)}: flat)" if form == "streamed" else "")
        lines.append(f"| {command} | {form} | {t['seconds']:.1f} | {t['whole_rows_s']:,.0f} | "
                     f"{t['marginal_rows_s']:,.0f} | {t['peak_small_mb']:,.0f} | {t['peak_mb']:,.0f} | {flat} |")
    for command in ("soft-labels", "distill"):
        streamed, memory = table[(command, "streamed")], table[(command, "in memory")]
        lines += ["", f"{command}: streamed at {streamed['marginal_rows_s'] / memory['marginal_rows_s']:.2f}x the "
                      f"in-memory rate (marginal), peak {streamed['peak_mb']:,.0f} MiB against "
                      f"{memory['peak_mb']:,.0f} MiB."]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--markdown", help="write the section to this file")
    parser.add_argument("--json", help="also keep the raw numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_scale(tmp, args.rows)
    text = "\n".join(markdown(result)) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
