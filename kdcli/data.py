"""Data sets: loading every `--data` form, validation and fingerprints.

A `Dataset` holds a training split and a held-out test split as NumPy arrays,
integer labels `0..C-1`, and a fingerprint of the training split that soft
labels and students record, so a later step can tell whether it is given the
data an earlier step saw.
"""

import hashlib
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from kdcli.errors import KdcliError

BUNDLED = ("digits",)
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
WHOLE_KEYS = ("x", "y")
SPLIT_SEED = 0


@dataclass
class Dataset:
    """A training and a test split with integer class labels.

    Args:
        spec: how the data was named (`digits`, a path), recorded in provenance.
        val_split: the share held out for testing when the source had no split.
        x_train, y_train, x_test, y_test: the arrays; labels are integers `0..C-1`.
        num_classes: C, at least the largest label plus one.
    """

    spec: str
    val_split: float
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    fingerprint: str = field(init=False)

    def __post_init__(self):
        self.fingerprint = fingerprint(self.x_train, self.y_train)

    @property
    def input_shape(self):
        """Shape of one sample, without the batch dimension."""
        return tuple(self.x_train.shape[1:])

    def expect_classes(self, num_classes, source):
        """Adopt the number of classes of a model (a teacher may know classes
        the labels never use), refusing labels beyond it."""
        if self.num_classes > num_classes:
            raise KdcliError(
                f"{self.spec}: labels go up to {self.num_classes - 1}, but {source} has "
                f"{num_classes} classes (0..{num_classes - 1})"
            )
        self.num_classes = num_classes

    def describe(self):
        """A dict for provenance: what the data was and how it looked."""
        return {
            "spec": self.spec,
            "val_split": self.val_split,
            "fingerprint": self.fingerprint,
            "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)),
            "input_shape": list(self.input_shape),
            "num_classes": int(self.num_classes),
        }


def fingerprint(x, y):
    """A sha256 of the training inputs and labels (with their shapes and dtypes).

    It is stable across runs and processes and changes when any sample or
    label changes.
    """
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y, dtype=np.int64)):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_data(spec, val_split=0.2):
    """Load a data set named by a `--data` value.

    Args:
        spec: `digits` (the bundled sample), or a path to an `.npz` or `.h5`
            file holding `x_train, y_train, x_test, y_test`, or `x, y`.
        val_split: share of samples held out for testing when the file has
            only `x, y`; the split is stratified by class and uses a fixed
            seed, so every step of a pipeline sees the same split.

    Returns:
        A `Dataset`.

    Raises:
        KdcliError: the name is unknown, the file is missing or unreadable,
            or its arrays are not a valid classification data set.

    Example:
        >>> data = load_data("digits")
        >>> data.x_train.shape
        (1438, 8, 8)
    """
    spec = str(spec)
    if spec == "digits":
        ref = resources.files("kdcli") / "samples" / "digits.npz"
        with resources.as_file(ref) as path:
            arrays = _read_npz(path)
    else:
        path = Path(spec)
        if path.suffix.lower() not in (".npz", ".h5", ".hdf5"):
            if not path.exists():
                known = ", ".join(BUNDLED)
                raise KdcliError(
                    f"unknown data set {spec!r}: give one of {known}, or a path to an .npz or .h5 file"
                )
            raise KdcliError(f"{spec}: unsupported data file; expected .npz or .h5")
        if not path.is_file():
            raise KdcliError(f"{spec}: no such file")
        arrays = _read_npz(path) if path.suffix.lower() == ".npz" else _read_h5(path)
    return _make_dataset(spec, arrays, val_split)


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            wanted = _pick_keys(path, keys)
            return {k: f[k] for k in wanted}
    except KdcliError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KdcliError(f"{path}: cannot read .npz file ({_short(e)})") from e


def _read_h5(path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
            wanted = _pick_keys(path, keys)
            return {k: f[k][()] for k in wanted}
    except KdcliError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise KdcliError(f"{path}: cannot read .h5 file ({_short(e)})") from e


def _pick_keys(path, keys):
    for wanted in (SPLIT_KEYS, WHOLE_KEYS):
        if all(k in keys for k in wanted):
            return wanted
    found = ", ".join(sorted(keys)) or "none"
    raise KdcliError(
        f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y); found {found}"
    )


def _short(e):
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _make_dataset(spec, arrays, val_split):
    if "x" in arrays:
        x, y = arrays["x"], _labels(spec, "y", arrays["y"])
        _check_pair(spec, "x", x, "y", y)
        if not 0 < val_split < 1:
            raise KdcliError(f"--val-split must be between 0 and 1, got {val_split}")
        train, test = stratified_split(y, val_split, SPLIT_SEED)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    else:
        x_train, x_test = arrays["x_train"], arrays["x_test"]
        y_train = _labels(spec, "y_train", arrays["y_train"])
        y_test = _labels(spec, "y_test", arrays["y_test"])
        _check_pair(spec, "x_train", x_train, "y_train", y_train)
        _check_pair(spec, "x_test", x_test, "y_test", y_test)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise KdcliError(
                f"{spec}: x_train samples have shape {x_train.shape[1:]} but x_test samples {x_test.shape[1:]}"
            )
    for name, a in (("train", y_train), ("test", y_test)):
        if len(a) == 0:
            raise KdcliError(f"{spec}: the {name} split is empty")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if num_classes < 2:
        raise KdcliError(f"{spec}: labels hold a single class; classification needs at least two")
    return Dataset(spec, val_split, x_train, y_train, x_test, y_test, num_classes)


def _labels(spec, name, y):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise KdcliError(
            f"{spec}: {name} must be integer class ids of shape (N,), got shape {y.shape}"
        )
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise KdcliError(f"{spec}: {name} must hold integer class ids, found {y.dtype} values")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise KdcliError(f"{spec}: {name} holds negative labels (smallest {y.min()}); labels must be 0..C-1")
    return y


def _check_pair(spec, xname, x, yname, y):
    if x.ndim < 2:
        raise KdcliError(f"{spec}: {xname} must have a sample axis and features, got shape {x.shape}")
    if len(x) != len(y):
        raise KdcliError(f"{spec}: {xname} has {len(x)} samples but {yname} has {len(y)}")
    if not (np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)):
        raise KdcliError(f"{spec}: {xname} must be numeric, got {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise KdcliError(f"{spec}: {xname} holds {bad} NaN or infinite values")


def stratified_split(y, test_fraction, seed):
    """Indices (train, test) that hold out `test_fraction` of every class.

    The split depends only on the labels and the seed, so every step of a
    pipeline that loads the same file sees the same split.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_test = int(round(len(idx) * test_fraction))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))
