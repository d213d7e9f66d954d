"""Synthetic data sets of the benchmarks, made deterministically from a seed with NumPy alone.

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
            chosen = rng.choice(channels, size=min(channels, rng.integers(2, 6)), replace=False)
            x[i][start:start + span, chosen] += shape[:, None] * rng.uniform(0.5, 1.5, size=len(chosen))
            start += span
    return _save(out, x.astype(np.float32), y, n_train)


def motifs(out, seed=0):
    """`signal` on one channel: the same 6 classes of shifted motif templates, samples of shape (64, 1),
    2,000 training and 1,000 test samples; writes `out` (.npz) and returns its path."""
    return signal(out, seed=seed, n_train=2000, n_test=1000, length=64, channels=1, noise=0.5)


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


def shapes(out, seed=0, n_train=3000, n_test=1000, size=32):
    """Colour images of 6 shapes, 32x32x3 uint8; writes `out` (.npz) and returns its path.

    Classes: disc, square, triangle, cross, ring, bars. Each sample draws its
    shape at a random centre and radius (a fifth to two fifths of the side), in
    a random colour, on a background of another random colour with Gaussian
    pixel noise (standard deviation 40 grey levels) and a random linear
    brightness gradient. `n_train` training and `n_test` test samples, labels
    drawn uniformly, all from `np.random.default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(6, size=n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x = np.empty((n, size, size, 3), np.float32)
    for i, label in enumerate(y):
        r = rng.uniform(size / 5, 2 * size / 5)
        cy, cx = rng.uniform(r, size - r, size=2)
        dy, dx = (yy - cy) / r, (xx - cx) / r
        mask = [
            dy**2 + dx**2 <= 1,                                        # disc
            np.maximum(abs(dy), abs(dx)) <= 0.8,                       # square
            (dy <= 0.8) & (abs(dx) <= (dy + 1) / 2),                   # triangle
            (np.minimum(abs(dy), abs(dx)) <= 0.25) & (np.maximum(abs(dy), abs(dx)) <= 1),  # cross
            (dy**2 + dx**2 <= 1) & (dy**2 + dx**2 >= 0.45),            # ring
            (np.floor((dy + 1) * 2.5) % 2 == 0) & (abs(dy) <= 1) & (abs(dx) <= 1),  # bars
        ][label]
        background, colour = rng.uniform(0, 255, size=(2, 3))
        gradient = rng.uniform(-2, 2) * (yy - size / 2) + rng.uniform(-2, 2) * (xx - size / 2)
        x[i] = np.where(mask[..., None], colour, background) + gradient[..., None]
    x += rng.normal(0, 40, size=x.shape)
    return _save(out, np.clip(x, 0, 255).astype(np.uint8), y, n_train)


def tones(out, seed=0, n_train=1500, n_test=500, length=128):
    """A 1-D task of frequencies, 8 classes, samples of shape (128, 1); writes `out` and returns its path.

    Class k is a pair of tones whose frequencies (cycles per sample) come
    from a fixed table: classes share tones and differ in the pair. Each
    sample has random phases, amplitudes (0.3-1.0), a frequency jitter of
    ±3%, a random offset and slow drift, and Gaussian noise of standard
    deviation 1.0: the signal sits below the noise in any one step, so a
    model must integrate over time. Labels drawn uniformly, all from
    `np.random.default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    table = [0.05, 0.08, 0.11, 0.15, 0.2]
    pairs = [(0, 1), (0, 2), (1, 3), (2, 4), (0, 4), (1, 2), (3, 4), (2, 3)]
    n = n_train + n_test
    y = rng.integers(len(pairs), size=n)
    t = np.arange(length, dtype=np.float64)
    x = rng.normal(0, 1.0, size=(n, length))
    for i, label in enumerate(y):
        for tone in pairs[label]:
            f = table[tone] * rng.uniform(0.97, 1.03)
            x[i] += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        x[i] += rng.normal(0, 0.5) + rng.normal(0, 0.5) * t / length
    return _save(out, x[..., None].astype(np.float32), y, n_train)


def mixture(out, seed=0, n_train=4000, n_test=1000, length=40, classes=10):
    """Noisy mixtures of smooth curves, 10 classes, samples of shape (40, 1); writes `out`, returns its path.

    Each class has a prototype: a smooth random curve (the sum of 4 random
    low-frequency cosines, fixed by the seed). A sample is its class's
    prototype with weight 0.6-1.0 plus another class's with weight 0-0.5,
    shifted by up to 3 steps, scaled by 0.5-2 and offset by ±1, with
    Gaussian noise of standard deviation 0.35. Labels drawn uniformly, all
    from `np.random.default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    freqs = rng.uniform(0.5, 3.0, size=(classes, 4))
    phases = rng.uniform(0, 2 * np.pi, size=(classes, 4))
    weights = rng.normal(size=(classes, 4))
    prototypes = (weights[..., None] * np.cos(2 * np.pi * freqs[..., None] * t + phases[..., None])).sum(1)
    prototypes /= prototypes.std(axis=1, keepdims=True)
    n = n_train + n_test
    y = rng.integers(classes, size=n)
    other = (y + rng.integers(1, classes, size=n)) % classes
    x = rng.uniform(0.6, 1.0, size=(n, 1)) * prototypes[y] + rng.uniform(0, 0.5, size=(n, 1)) * prototypes[other]
    x = np.stack([np.roll(row, shift) for row, shift in zip(x, rng.integers(-3, 4, size=n))])
    x = x * rng.uniform(0.5, 2.0, size=(n, 1)) + rng.uniform(-1, 1, size=(n, 1)) + rng.normal(0, 0.35, size=x.shape)
    return _save(out, x[..., None].astype(np.float32), y, n_train)


def clusters(out, seed=0, n_train=5000, n_test=1000, classes=8):
    """A tabular task of 30 raw features, 8 classes, from overlapping clusters; writes `out`, returns its path.

    Each class is 2 Gaussian clusters in a 10-dimensional latent space
    (centres standard normal times 1.2, unit spread). The 30 features are
    random linear mixtures of the latent: 10 written at scales from 1e-4 to
    1e5 with large offsets, 10 as counts (Poisson of an exponential of a
    mixture), 5 heavy-tailed (a mixture plus Student-t noise with 2 degrees
    of freedom), 5 pure noise at scales up to 1e3. Labels drawn uniformly,
    all from `np.random.default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 2, 10)) * 1.2
    n = n_train + n_test
    y = rng.integers(classes, size=n)
    z = centres[y, rng.integers(2, size=n)] + rng.normal(size=(n, 10))
    mix = rng.normal(size=(10, 25)) / np.sqrt(10)
    m = z @ mix
    scaled = m[:, :10] * np.logspace(-4, 5, 10) + rng.uniform(-1e3, 1e3, size=10) * np.logspace(-4, 5, 10)
    counts = rng.poisson(np.exp(np.clip(m[:, 10:20], -3, 3)))
    heavy = m[:, 20:25] + rng.standard_t(2, size=(n, 5))
    noise = rng.normal(size=(n, 5)) * np.logspace(0, 3, 5)
    x = np.concatenate([scaled, counts, heavy, noise], axis=1)
    return _save(out, x.astype(np.float32), y, n_train)


def _save(out, x, y, n_train):
    np.savez(out, x_train=x[:n_train], y_train=y[:n_train].astype(np.int64),
             x_test=x[n_train:], y_test=y[n_train:].astype(np.int64))
    return Path(out)


GENERATORS = {"signal": signal, "motifs": motifs, "tabular": tabular, "shapes": shapes, "tones": tones, "mixture": mixture,
              "clusters": clusters}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=GENERATORS)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(GENERATORS[args.name](args.out, seed=args.seed))


if __name__ == "__main__":
    main()
