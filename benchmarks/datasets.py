"""Synthetic data sets of the budget benchmark, made deterministically from a seed with NumPy alone.

Each generator writes an `.npz` with `x_train`, `y_train`, `x_test`, `y_test`
(float32 inputs, int64 labels) and returns its path:

    python benchmarks/datasets.py signal signal.npz [--seed 0]
"""

import argparse
from pathlib import Path

import numpy as np

# The four motif templates of `signal`, each a function of t in [0, 1] (one motif's span).
MOTIFS = {
    "sine": lambda t: np.sin(2 * np.pi * 3 * t) * np.hanning(len(t)),
    "square": lambda t: np.sign(np.sin(2 * np.pi * 2 * t)),
    "chirp": lambda t: np.sin(2 * np.pi * (1 * t + 3 * t**2)),
    "ramp": lambda t: 2 * t - 1,
}
# Class -> its motifs, in time order; classes share motifs and differ in their order or combination.
SIGNAL_CLASSES = [
    ("sine", "square"),
    ("square", "sine"),
    ("chirp", "ramp"),
    ("ramp", "chirp"),
    ("sine", "chirp", "square"),
    ("square", "chirp", "sine"),
]


def signal(out, seed=0, n_train=4000, n_test=1000, length=64, channels=8, noise=0.8):
    """A 1-D signal classification task with 6 classes; writes `out` (.npz) and returns its path.

    Samples are float32 arrays of shape (`length`, `channels`) = (64, 8), so
    that kdcli's `--arch auto` builds its cnn. A class is an ordered sequence
    of 2 or 3 motif templates (`SIGNAL_CLASSES`, from sine bursts, square
    pulses, chirps and ramps of `MOTIFS`). In each sample every motif is
    time-stretched by 0.8-1.25 (base span 14 steps), placed in order at random
    time shifts (random gaps), appears in a random subset of 2 to 5 of the 8
    channels, each channel with its own amplitude (0.5-1.5); Gaussian noise of
    standard deviation `noise` is added to every value. Classes are balanced
    in expectation (labels drawn uniformly). `n_train` training and `n_test`
    test samples, all from `np.random.default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(len(SIGNAL_CLASSES), size=n)
    x = rng.normal(0, noise, size=(n, length, channels))
    for i, label in enumerate(y):
        spans = [int(round(14 * rng.uniform(0.8, 1.25))) for _ in SIGNAL_CLASSES[label]]
        # Random gaps before, between and after the motifs, summing to the free length.
        gaps = rng.multinomial(length - sum(spans), np.ones(len(spans) + 1) / (len(spans) + 1))
        start = 0
        for motif, span, gap in zip(SIGNAL_CLASSES[label], spans, gaps):
            start += gap
            shape = MOTIFS[motif](np.linspace(0, 1, span))
            chosen = rng.choice(channels, size=rng.integers(2, 6), replace=False)
            x[i][start:start + span, chosen] += shape[:, None] * rng.uniform(0.5, 1.5, size=len(chosen))
            start += span
    return _save(out, x.astype(np.float32), y, n_train)


def tabular(out, seed=0, n_train=3000, n_test=1000, label_noise=0.05):
    """A tabular task of raw features, 3 classes; writes `out` (.npz) and returns its path.

    20 float32 features on very different scales, not standardised: 8 are
    informative latent standard normals u0..u7 written as `u * scale + offset`
    (scales from 1e-3 to 1e4) or, for u6 and u7, log-normal (`exp(u)` times a
    scale); the other 12 are irrelevant noise on scales from 1e-2 to 1e3.
    The label comes from a nonlinear rule with interactions and thresholds:
    class 0 where `u0 * u1 + 0.5 * sin(2 * u2) > 0.3`, else class 1 where
    `|u3| - 0.7 + (u4 > 0.5) * u5 + 0.3 * u6 * u7 > 0`, else class 2; then
    `label_noise` (5%) of the labels are replaced by a different class drawn
    uniformly. `n_train` training and `n_test` test samples, all from
    `np.random.default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    u = rng.normal(size=(n, 8))
    y = np.where(u[:, 0] * u[:, 1] + 0.5 * np.sin(2 * u[:, 2]) > 0.3, 0,
                 np.where(np.abs(u[:, 3]) - 0.7 + (u[:, 4] > 0.5) * u[:, 5] + 0.3 * u[:, 6] * u[:, 7] > 0, 1, 2))
    flip = rng.random(n) < label_noise
    y[flip] = (y[flip] + rng.integers(1, 3, size=flip.sum())) % 3
    scales = np.array([1e-3, 1e4, 1.0, 50.0, 0.02, 300.0])
    offsets = np.array([0.0, 5e4, -3.0, 1e3, 0.5, 0.0])
    informative = [u[:, :6] * scales + offsets, np.exp(u[:, 6:7]) * 20.0, np.exp(u[:, 7:8]) * 0.01]
    irrelevant = rng.normal(size=(n, 12)) * np.logspace(-2, 3, 12) + rng.uniform(-100, 100, size=12)
    x = np.concatenate([*informative, irrelevant], axis=1)
    return _save(out, x.astype(np.float32), y, n_train)


def _save(out, x, y, n_train):
    np.savez(out, x_train=x[:n_train], y_train=y[:n_train].astype(np.int64),
             x_test=x[n_train:], y_test=y[n_train:].astype(np.int64))
    return Path(out)


GENERATORS = {"signal": signal, "tabular": tabular}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=GENERATORS)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(GENERATORS[args.name](args.out, seed=args.seed))


if __name__ == "__main__":
    main()
