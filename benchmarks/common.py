"""Shared helpers of the benchmarks: the MNIST benchmark split, running kdcli, timing processes, and
paired differences of accuracies (the resumable grid of the accuracy benchmarks is grid.py)."""

import gzip
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist-t10k"


def mnist_split(out):
    """Write the project's MNIST benchmark split to `out` (.npz); None when the data is absent.

    The 10,000 MNIST test images, shuffled by `default_rng(0).permutation`,
    first 8,000 for training and last 2,000 for testing.
    """
    images, labels = MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not images.exists():
        return None
    x = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:8000], order[8000:]
    np.savez(out, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
    return Path(out)


def timed_process(*args, cwd=None):
    """Run `python ARGS` as a user would: (its whole wall time from start to exit in seconds, its stdout)."""
    started = time.perf_counter()
    r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - started
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed: {r.stderr.strip().splitlines()[-1:]}")
    return seconds, r.stdout


def verdict(passed):
    """A target's cell: met or missed."""
    return "met" if passed else "**missed**"


def kdcli(*args):
    """Run kdcli in a subprocess, as a user would; returns its stdout."""
    r = subprocess.run([sys.executable, "-m", "kdcli", *map(str, args), "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"kdcli {' '.join(map(str, args))} failed: {r.stderr.strip()}")
    return r.stdout.strip()


def points(x):
    """A difference in points, signed, with no -0.00."""
    return f"{round(x, 2) + 0:+.2f}"


def paired_difference(base, mine):
    """`mine − base` of paired per-seed accuracies (in %): its mean, "(within noise)" when the mean is
    within one standard deviation (the largest of base's, mine's and the differences'), and each
    seed's difference in brackets."""
    gaps = mine - base
    noise = " (within noise)" if abs(gaps.mean()) <= max(base.std(), mine.std(), gaps.std()) else ""
    return f"{points(gaps.mean())}{noise} ({', '.join(points(g) for g in gaps)})"
