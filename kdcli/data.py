"""Data sets: every `--data` form, validation, fingerprints and streaming batches.

A `Dataset` is a training split and a held-out test split. Labels are
integer class ids `0..C-1`, held in memory (they are small); inputs are read
on demand, batch by batch, from wherever they live: a NumPy array, an HDF5
dataset or a folder of image files. So an image folder or an `.h5` file
larger than memory streams through `tf.data` and is never loaded whole.

A fingerprint of the training split (a sha256 of its inputs and labels)
identifies the data in every artifact, so a later step can tell whether it
is given the data an earlier step saw.
"""

import contextlib
import functools
import gzip
import hashlib
import os
import pickle
import re
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from kdcli.artifacts import rebase_recorded, relative_to_artifact
from kdcli.errors import KdcliError, UsageError, first_line as _first_line

KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
KNOWN_NAMES = ("digits", *KERAS_DATASETS)
COLOR_MODES = ("auto", "grayscale", "rgb")
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
WHOLE_KEYS = ("x", "y")
SPLIT_SEED = 0
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Rows per read when hashing or scanning a streamed source.
SCAN_ROWS = 8192
# Shuffling of data on disk: blocks of contiguous rows, read a window of blocks at a time.
BLOCK_ROWS = 1024
WINDOW_BLOCKS = 8
WINDOW_BYTES = 64 << 20
# In-memory arrays up to this size are batched by TensorFlow ops rather than Python.
NATIVE_BYTES = 1 << 30
# Marks an error raised inside a tf.data function, to be turned back into a KdcliError.
_ERROR_MARK = "kdcli-error: "


class Column:
    """Inputs read by rows: `read(rows)` returns the samples at sorted row numbers."""

    label: str  # names the inputs in messages: "data.h5: x_train"
    sequential = False  # True: reading contiguous rows is much cheaper than scattered ones
    n: int
    sample_shape: tuple
    dtype: np.dtype

    def read(self, rows):
        raise NotImplementedError

    def hash_into(self, h, rows):
        """Feed the samples at `rows` into a hash, in order."""
        for start in range(0, len(rows), SCAN_ROWS):
            h.update(np.ascontiguousarray(self.read(rows[start:start + SCAN_ROWS])).tobytes())


class ArrayColumn(Column):
    """Inputs held in a NumPy array."""

    def __init__(self, array, label="x"):
        self.array, self.label = array, label
        self.n, self.sample_shape, self.dtype = len(array), tuple(array.shape[1:]), array.dtype

    def read(self, rows):
        return self.array[rows]


class H5Column(Column):
    """Inputs in an HDF5 dataset, read a batch of rows at a time.

    Reading is fastest in contiguous runs, so `Split.batches` shuffles such
    columns by windows of whole blocks (`sequential`).
    """

    sequential = True

    def __init__(self, path, key):
        import h5py

        self.path, self.key, self.label = Path(path), key, f"{path}: {key}"
        with h5py.File(self.path, "r") as f:
            ds = f[key]
            self.n, self.sample_shape, self.dtype = ds.shape[0], tuple(ds.shape[1:]), ds.dtype
        self._file = None

    def read(self, rows):
        import h5py

        if self._file is None:
            self._file = h5py.File(self.path, "r")
        ds = self._file[self.key]
        if not len(rows):
            return np.empty((0, *self.sample_shape), self.dtype)
        first, last = int(rows[0]), int(rows[-1]) + 1
        if last - first <= 4 * len(rows):  # dense enough: one slice, then pick
            return ds[first:last][rows - first]
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        return np.concatenate([ds[int(run[0]):int(run[-1]) + 1] for run in np.split(rows, breaks)])


class ImageColumn(Column):
    """Image files, decoded and resized on demand to `size` with `channels` channels."""

    def __init__(self, files, size, channels, label="images"):
        self.files, self.size, self.channels, self.label = files, size, channels, label
        self.n, self.sample_shape, self.dtype = len(files), (*size, channels), np.dtype(np.uint8)

    def read(self, rows):
        from PIL import Image

        mode = "L" if self.channels == 1 else "RGB"
        out = np.empty((len(rows), *self.sample_shape), np.uint8)
        for i, row in enumerate(rows):
            try:
                with Image.open(self.files[row]) as im:
                    im = im.convert(mode)
                    if im.size != (self.size[1], self.size[0]):
                        im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
                    out[i] = np.asarray(im).reshape(self.sample_shape)
            except OSError as e:
                raise KdcliError(f"{self.files[row]}: unreadable image ({_first_line(e)})") from e
        return out

    def hash_into(self, h, rows):
        # The files' names and bytes: adding, removing or editing a file changes it.
        for row in rows:
            path = self.files[row]
            h.update(f"{path.parent.name}/{path.name}:{path.stat().st_size}:".encode())
            h.update(path.read_bytes())


class Split:
    """One split of a data set: labels in memory, inputs read from a `Column`.

    Args:
        x: the `Column` holding the inputs.
        rows: the column's rows that belong to this split (sorted), or None for all.
        y: the labels of the split, integer class ids.
    """

    def __init__(self, x, rows, y):
        self.x, self.rows, self.y = x, rows, np.asarray(y, dtype=np.int64)

    def __len__(self):
        return len(self.y)

    def subset(self, start, stop):
        """The samples `[start, stop)` of this split, as a `Split`."""
        rows = np.arange(start, stop) if self.rows is None else self.rows[start:stop]
        return Split(self.x, rows, self.y[start:stop])

    def read(self, idx):
        """Inputs of the split's samples at sorted indices `idx`; refuses NaN and infinities."""
        x = self.x.read(idx if self.rows is None else self.rows[idx])
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise KdcliError(f"{self.x.label} holds NaN or infinite values")
        return x

    def batches(self, batch_size, shuffle_seed=None, extra=()):
        """A `tf.data.Dataset` of `(x, y, *extra)` batches; inputs as float32.

        In-memory arrays and image files are shuffled sample by sample. Columns
        on disk (`sequential`, an `.h5`) are shuffled by windows: the rows are
        cut into blocks, the blocks are shuffled, and the samples of a window of
        `WINDOW_BLOCKS` blocks (at most `WINDOW_BYTES`) are read together, in a
        few contiguous reads, and shuffled among themselves. Memory stays
        bounded by a window, whatever the size of the data.

        Args:
            batch_size: samples per batch (the last batch may be smaller).
            shuffle_seed: shuffle the samples with this seed (an int or a tuple of
                ints, like `(seed, epoch)`), or keep their order (None).
            extra: more `Column`s whose row `i` belongs to sample `i` (soft labels).
        """
        from kdcli._tf import tf

        columns = (self.x, *extra)
        if all(isinstance(c, ArrayColumn) for c in columns) and sum(c.array.nbytes for c in columns) < NATIVE_BYTES:
            return self._native_batches(batch_size, shuffle_seed, extra)
        if any(c.sequential for c in columns):
            sample_bytes = sum(4 * int(np.prod(c.sample_shape)) for c in columns)
            window = max(batch_size, min(WINDOW_BYTES // max(sample_bytes, 1), WINDOW_BLOCKS * BLOCK_ROWS))
        else:
            window = batch_size  # random access: shuffled sample by sample
        order = sample_order(len(self), shuffle_seed, window if window > batch_size else None)
        signature = [(tf.float32, (None, *self.x.sample_shape)), (tf.int64, (None,))]
        signature += [(tf.float32, (None, *c.sample_shape)) for c in extra]

        def load(chunk):
            idx = order[chunk * window:(chunk + 1) * window]
            sorter = np.argsort(idx)
            back = np.empty_like(sorter)
            back[sorter] = np.arange(len(sorter))
            idx = idx[sorter]  # sorted reads stream; `back` restores the shuffled order
            try:
                extras = [c.read(idx)[back].astype(np.float32) for c in extra]
                if not all(np.all(np.isfinite(e)) for e in extras):
                    raise KdcliError(f"{extra[0].label}: holds NaN or infinite values; regenerate it")
                return (self.read(idx)[back].astype(np.float32), self.y[idx][back], *extras)
            except KdcliError as e:
                raise RuntimeError(_ERROR_MARK + str(e)) from None
            except Exception as e:
                raise RuntimeError(f"{_ERROR_MARK}cannot read the data ({_first_line(e)})") from None

        def tf_load(chunk):
            tensors = tf.numpy_function(load, [chunk], [dtype for dtype, _ in signature], stateful=False)
            for t, (_, shape) in zip(tensors, signature):
                t.set_shape(shape)
            return tuple(tensors)

        ds = tf.data.Dataset.range(-(-len(self) // window))
        ds = ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if window != batch_size:
            ds = ds.unbatch().batch(batch_size)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _native_batches(self, batch_size, shuffle_seed, extra):
        """In-memory arrays: the same batches, gathered by TensorFlow ops (no Python per batch)."""
        from kdcli._tf import tf

        if not hasattr(self, "_tensors"):
            self._tensors = {}
        tensors = []
        for column in (self.x, *extra):
            if id(column) not in self._tensors:
                array = column.array if column is not self.x or self.rows is None else column.array[self.rows]
                if column is not self.x and not np.all(np.isfinite(array)):
                    raise KdcliError(f"{column.label}: holds NaN or infinite values; regenerate it")
                # the column is kept with its tensor, so its id cannot be reused by another column
                self._tensors[id(column)] = (column, tf.constant(array))
            tensors.append(self._tensors[id(column)][1])
        labels = tf.constant(self.y)
        order = sample_order(len(self), shuffle_seed)

        def gather(idx):
            x, *rest = [tf.gather(t, idx) for t in tensors]
            return (tf.cast(x, tf.float32), tf.gather(labels, idx), *[tf.cast(r, tf.float32) for r in rest])

        ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
        return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

    def arrays(self):
        """The whole split in memory, `(x, y)`; for small data and notebooks."""
        return self.read(np.arange(len(self))), self.y


def sample_order(n, seed, window=None):
    """The order in which an epoch visits the samples: `arange(n)` unshuffled
    (seed None); else a seeded permutation: sample by sample without `window`;
    with it, every `window` consecutive entries come from `window // BLOCK_ROWS`
    shuffled blocks of contiguous rows (for data read from disk)."""
    if seed is None:
        return np.arange(n)
    rng = np.random.default_rng(list(seed) if isinstance(seed, tuple) else seed)
    if window is None or window < 2 * BLOCK_ROWS:
        return rng.permutation(n)
    blocks = np.array_split(np.arange(n), -(-n // BLOCK_ROWS))
    shuffled = np.concatenate([blocks[i] for i in rng.permutation(len(blocks))])
    return np.concatenate([rng.permutation(shuffled[i:i + window]) for i in range(0, n, window)])


@contextlib.contextmanager
def data_errors():
    """Turn an error raised while `Split.batches` reads data back into a one-line `KdcliError`."""
    from kdcli._tf import tf

    try:
        yield
    except tf.errors.OpError as e:
        found = re.search(re.escape(_ERROR_MARK) + r"(.*)", e.message)
        if found:
            raise KdcliError(found.group(1).strip()) from None
        raise


def iterate(ds):
    """Iterate a `Split.batches` dataset; a data error becomes a one-line `KdcliError`."""
    with data_errors():
        yield from ds


@dataclass
class Dataset:
    """A training and a test split with integer class labels.

    Args:
        spec: how the data was named (`digits`, a path), recorded in provenance.
        options: how it was loaded (`val_split`, `image_size`, `color_mode`), so
            a later step can load it again the same way.
        train, test: the `Split`s.
        num_classes: C, at least the largest label plus one.
        class_names: names of the classes, when the source has them (image folders).
    """

    spec: str
    options: dict
    train: Split
    test: Split
    num_classes: int
    class_names: list = None

    @property
    def input_shape(self):
        """Shape of one sample, without the batch dimension."""
        return self.train.x.sample_shape

    @property
    def y_train(self):
        return self.train.y

    @property
    def y_test(self):
        return self.test.y

    @property
    def x_train(self):
        """The training inputs as one array (reads them all: for small data)."""
        return self.train.arrays()[0]

    @property
    def x_test(self):
        """The test inputs as one array (reads them all: for small data)."""
        return self.test.arrays()[0]

    @functools.cached_property
    def fingerprint(self):
        """A sha256 of the training inputs and labels, with their shapes and dtypes.

        It is stable across runs and processes and changes when any training
        sample or label changes (for an image folder: a file added, removed or
        edited). Computed once, streaming through the inputs.
        """
        split = self.train
        rows = np.arange(len(split)) if split.rows is None else split.rows
        h = hashlib.sha256()
        h.update(f"{split.x.dtype.str}{(len(split), *split.x.sample_shape)}".encode())
        split.x.hash_into(h, rows)
        h.update(f"{np.dtype(np.int64).str}{split.y.shape}".encode())
        h.update(np.ascontiguousarray(split.y).tobytes())
        return h.hexdigest()

    def expect_classes(self, num_classes, source):
        """Adopt the number of classes of a model (a teacher may know classes
        the labels never use), refusing labels beyond it."""
        if self.num_classes > num_classes:
            raise KdcliError(
                f"{self.spec}: labels go up to {self.num_classes - 1}, but {source} has "
                f"{num_classes} classes (0..{num_classes - 1})"
            )
        self.num_classes = num_classes

    def describe(self, artifact=None):
        """A dict for provenance: what the data was and how it looked.

        Args:
            artifact: the file whose provenance records it: a data path is then
                recorded relative to that file's folder, so that later steps
                find it from any folder (see `kdcli.artifacts.locate_recorded`).
        """
        described = {
            "spec": relative_to_artifact(self.spec, artifact) if artifact and not is_named(self.spec) else self.spec,
            "options": dict(self.options),
            "fingerprint": self.fingerprint,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "input_shape": list(self.input_shape),
            "num_classes": int(self.num_classes),
        }
        if self.class_names:
            described["class_names"] = list(self.class_names)
        return described


def is_named(spec):
    """Whether a `--data` value names a data set (`digits`, `mnist`...) rather than a path."""
    return str(spec) in KNOWN_NAMES


def rebase_data_record(record, source, artifact):
    """A data record (`Dataset.describe`) from the provenance of `source`, for that of `artifact`."""
    if not record or is_named(record["spec"]):
        return record
    return {**record, "spec": rebase_recorded(record["spec"], source, artifact)}


def load_data(spec, val_split=0.2, image_size=None, color_mode="auto"):
    """Load a data set named by a `--data` value.

    Args:
        spec: `digits` (the bundled sample); `mnist`, `fashion_mnist`,
            `cifar10` or `cifar100` from Keras' cache; a path to an `.npz` or
            `.h5` file holding `x_train, y_train, x_test, y_test`, or `x, y`;
            or a folder of images with one sub-folder per class (and `train/`,
            `test/` sub-folders when present).
        val_split: share of samples held out for testing when the source has
            no split; stratified by class, with a fixed seed, so every step
            of a pipeline sees the same split.
        image_size: `(height, width)` that images are resized to; by default
            the size of the first image.
        color_mode: `grayscale`, `rgb`, or `auto` (the first image's).

    Returns:
        A `Dataset`.

    Raises:
        KdcliError: the name is unknown, the file is missing or unreadable,
            or it is not a valid classification data set.

    Example:
        >>> data = load_data("digits")
        >>> data.input_shape, len(data.train), len(data.test)
        ((8, 8), 1438, 359)
    """
    spec = str(spec)
    if not 0 < val_split < 1:
        raise UsageError(f"--val-split must be between 0 and 1, got {val_split}")
    options = {"val_split": val_split, "image_size": list(image_size) if image_size else None, "color_mode": color_mode}
    if spec == "digits":
        with resources.as_file(resources.files("kdcli") / "samples" / "digits.npz") as path:
            return _from_arrays(spec, options, _read_npz(path))
    if spec in KERAS_DATASETS:
        return _from_arrays(spec, options, _read_keras_cache(spec))
    path = Path(spec)
    if path.is_dir():
        return _from_image_folder(spec, path, options)
    if path.suffix.lower() not in (".npz", ".h5", ".hdf5"):
        if not path.exists():
            raise KdcliError(
                f"unknown data set {spec!r}: give one of {', '.join(KNOWN_NAMES)}, "
                "a path to an .npz or .h5 file, or an image folder"
            )
        raise KdcliError(f"{spec}: unsupported data file; expected .npz, .h5 or an image folder")
    if not path.is_file():
        raise KdcliError(f"{spec}: no such file")
    if path.suffix.lower() == ".npz":
        return _from_arrays(spec, options, _read_npz(path))
    return _from_h5(spec, path, options)


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            wanted = _pick_keys(path, list(f.keys()))
            return {k: f[k] for k in wanted}
    except KdcliError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KdcliError(f"{path}: cannot read .npz file ({_first_line(e)})") from e


def _from_h5(spec, path, options):
    """Inputs stay on disk (streamed by rows); labels are read into memory."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
            wanted = _pick_keys(path, keys)
            labels = {k: f[k][()] for k in wanted if k.startswith("y")}
        columns = {k: H5Column(path, k) for k in wanted if k.startswith("x")}
    except KdcliError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise KdcliError(f"{path}: cannot read .h5 file ({_first_line(e)})") from e
    return _make_dataset(spec, options, columns, labels)


def _from_arrays(spec, options, arrays):
    columns = {k: ArrayColumn(v, f"{spec}: {k}") for k, v in arrays.items() if k.startswith("x")}
    labels = {k: v for k, v in arrays.items() if k.startswith("y")}
    for name, column in columns.items():
        _check_inputs(spec, name, column)
    return _make_dataset(spec, options, columns, labels)


def _pick_keys(path, keys):
    for wanted in (SPLIT_KEYS, WHOLE_KEYS):
        if all(k in keys for k in wanted):
            return wanted
    found = ", ".join(sorted(keys)) or "none"
    raise KdcliError(f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y); found {found}")


def _make_dataset(spec, options, columns, labels, class_names=None):
    """Build the two splits from `x, y` (split here) or `x_train, ... y_test`."""
    if "x" in columns:
        x, y = columns["x"], _labels(spec, "y", labels["y"])
        _check_lengths(spec, "x", x, "y", y)
        train_rows, test_rows = stratified_split(y, options["val_split"], SPLIT_SEED)
        train, test = Split(x, train_rows, y[train_rows]), Split(x, test_rows, y[test_rows])
    else:
        for part in ("train", "test"):
            _check_lengths(spec, f"x_{part}", columns[f"x_{part}"], f"y_{part}", labels[f"y_{part}"])
        train = Split(columns["x_train"], None, _labels(spec, "y_train", labels["y_train"]))
        test = Split(columns["x_test"], None, _labels(spec, "y_test", labels["y_test"]))
        if train.x.sample_shape != test.x.sample_shape:
            raise KdcliError(
                f"{spec}: x_train samples have shape {train.x.sample_shape} but x_test samples {test.x.sample_shape}"
            )
    for name, split in (("train", train), ("test", test)):
        if len(split) == 0:
            raise KdcliError(f"{spec}: the {name} split is empty")
    num_classes = int(max(train.y.max(), test.y.max())) + 1
    if len(class_names or ()) > num_classes:
        num_classes = len(class_names)
    if num_classes < 2:
        raise KdcliError(f"{spec}: labels hold a single class; classification needs at least two")
    return Dataset(spec, options, train, test, num_classes, class_names)


def _labels(spec, name, y):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise KdcliError(f"{spec}: {name} must be integer class ids of shape (N,), got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        integral = np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))
        if not integral:
            raise KdcliError(f"{spec}: {name} must hold integer class ids, found {y.dtype} values")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise KdcliError(f"{spec}: {name} holds negative labels (smallest {y.min()}); labels must be 0..C-1")
    return y


def _check_lengths(spec, xname, x, yname, y):
    if len(x.sample_shape) < 1:
        raise KdcliError(f"{spec}: {xname} must have a sample axis and features, got shape ({x.n},)")
    if x.n != len(y):
        raise KdcliError(f"{spec}: {xname} has {x.n} samples but {yname} has {len(y)}")


def _check_inputs(spec, name, column):
    """Refuse non-numeric inputs, and NaN or infinite values up front for in-memory
    arrays (streamed inputs are checked batch by batch as they are read)."""
    x = column.array
    if not (np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)):
        raise KdcliError(f"{spec}: {name} must be numeric, got {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise KdcliError(f"{spec}: {name} holds {bad} NaN or infinite values")


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


# --- image folders -----------------------------------------------------------


def _from_image_folder(spec, root, options):
    """A folder with one sub-folder per class, or `train/` and `test/` folders of those."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        names = _class_folders(root / "train")
        parts = {part: _list_images(root / part, names) for part in ("train", "test")}
    else:
        names = _class_folders(root)
        parts = {"": _list_images(root, names)}
    first = parts[next(iter(parts))][0][0]
    size, channels = _image_geometry(first, options["image_size"], options["color_mode"])
    columns, labels = {}, {}
    for part, (files, y) in parts.items():
        for f in files:
            _check_image(f)
        key = f"_{part}" if part else ""
        columns[f"x{key}"] = ImageColumn(files, size, channels, f"{root / part}")
        labels[f"y{key}"] = np.array(y)
    return _make_dataset(spec, options, columns, labels, names)


def _class_folders(root):
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise KdcliError(
            f"{root}: an image folder needs one sub-folder per class and at least two classes, found {len(names)}"
        )
    return names


def _list_images(root, names):
    files, labels = [], []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            raise KdcliError(f"{folder}: missing class folder (the training folder has it)")
        found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        files += found
        labels += [label] * len(found)
    if not files:
        raise KdcliError(f"{root}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return files, labels


def _image_geometry(first, image_size, color_mode):
    from PIL import Image

    try:
        with Image.open(first) as im:
            native_size, native_mode = (im.size[1], im.size[0]), im.mode
    except OSError as e:
        raise KdcliError(f"{first}: unreadable image ({_first_line(e)})") from e
    modes = {"grayscale": 1, "rgb": 3}  # see COLOR_MODES
    if color_mode == "auto":  # palette ("P") images are colour, though they have one band
        channels = 1 if native_mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    elif color_mode in modes:
        channels = modes[color_mode]
    else:
        raise UsageError(f"--color-mode must be one of {', '.join(COLOR_MODES)}, got {color_mode!r}")
    return tuple(image_size) if image_size else native_size, channels


def _check_image(path):
    """Read an image's header: refuses files that are not images, without decoding them."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header is parsed on open
    except OSError as e:
        raise KdcliError(f"{path}: unreadable image ({_first_line(e)})") from e


# --- keras.datasets from Keras' cache ------------------------------------------


def keras_cache_dir():
    """Where Keras keeps downloaded data sets: `$KERAS_HOME/datasets` or `~/.keras/datasets`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


_KERAS_FILES = {
    "mnist": ("mnist.npz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"),
    "fashion_mnist": ("fashion-mnist", "the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist"),
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extracted)"),
    "cifar100": ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (extracted)"),
}


def _read_keras_cache(name):
    """Read a `keras.datasets` set from Keras' cache, never downloading it."""
    entry, source = _KERAS_FILES[name]
    path = keras_cache_dir() / entry
    if not path.exists():
        raise KdcliError(f"{name} is not in Keras' cache and kdcli does not download: put {source} at {path}")
    try:
        if name == "mnist":
            return _read_npz(path)
        if name == "fashion_mnist":
            def idx(stem, offset):
                with gzip.open(path / f"{stem}-ubyte.gz") as f:
                    return np.frombuffer(f.read(), np.uint8, offset=offset)

            return {
                "x_train": idx("train-images-idx3", 16).reshape(-1, 28, 28),
                "y_train": idx("train-labels-idx1", 8),
                "x_test": idx("t10k-images-idx3", 16).reshape(-1, 28, 28),
                "y_test": idx("t10k-labels-idx1", 8),
            }
        return _read_cifar(name, path)
    except KdcliError:
        raise
    except (OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError, tarfile.TarError) as e:
        raise KdcliError(f"{path}: cannot read the cached {name} ({_first_line(e)})") from e


def _read_cifar(name, path):
    def batch(file):
        with open(path / file, "rb") as f:
            d = pickle.load(f, encoding="bytes")  # the official CIFAR format is a pickle
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.asarray(d[b"labels" if name == "cifar10" else b"fine_labels"])
        return x, y

    if name == "cifar10":
        parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
        x_train, y_train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        x_test, y_test = batch("test_batch")
    else:
        (x_train, y_train), (x_test, y_test) = batch("train"), batch("test")
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


