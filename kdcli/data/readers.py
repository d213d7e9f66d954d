"""Readers of every `--data` form: the bundled samples, `.npz`, `.h5`, image and text folders, Keras' cache.

`write_text_folder` writes the layout the text-folder reader reads.
"""

import gzip
import os
import pickle
import tarfile
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from kdcli.data.columns import NUMBER_KINDS, ArrayColumn, H5Column, ImageColumn, TextColumn, aligned_empty
from kdcli.data.dataset import KERAS_DATASETS, KNOWN_NAMES, SAMPLES, make_dataset
from kdcli.data.validation import check_image, check_inputs
from kdcli.errors import KdcliError, UsageError, first_line as _first_line
from kdcli.specs import COLOR_MODES

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
WHOLE_KEYS = ("x", "y")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEXT_EXTENSION = ".txt"
# Files kdcli does not read, each with the way to arrays that it reads.
_TABLE_FIX = ("load it and save arrays: np.savez('data.npz', x=features, y=labels), labels as class ids 0..C-1; "
              "then --data data.npz")
CONVERT_HINTS = {
    ".csv": f"a CSV file is not read as data; {_TABLE_FIX}",
    ".tsv": f"a TSV file is not read as data; {_TABLE_FIX}",
    ".txt": f"a single text file is not read as data (a folder of .txt files per class is); {_TABLE_FIX}",
    ".npy": "an .npy file holds one array, and data needs inputs and labels: "
            "np.savez('data.npz', x=inputs, y=labels); then --data data.npz",
}


def load_data(spec, val_split=0.2, image_size=None, color_mode="auto", num_classes=None):
    """Load a data set named by a `--data` value.

    Args:
        spec: `digits` or `texts` (the bundled samples); `mnist`,
            `fashion_mnist`, `cifar10` or `cifar100` from Keras' cache; a path
            to an `.npz` or `.h5` file holding `x_train, y_train, x_test,
            y_test`, or `x, y` (numbers, or strings of shape `(N,)`: text); or a
            folder with one sub-folder per class of images or of `.txt` files
            (and `train/`, `test/` sub-folders when present).
        val_split: share of samples held out for testing when the source has
            no split; stratified by class, with a fixed seed, so every step
            of a pipeline sees the same split.
        image_size: `(height, width)` that images are resized to; by default
            the size of the first image.
        color_mode: `grayscale`, `rgb`, or `auto` (the first image's).
        num_classes: the number of classes C, declared: a class may then
            have no training samples (a teacher's class the data lacks), and
            a label of C or more is refused. By default C is the largest
            label plus one, and every class id below it needs training samples.

    Returns:
        A `Dataset`.

    Raises:
        KdcliError: the name is unknown, the file is missing, unreadable or
            of a kind kdcli does not read (the message says how to convert
            it), or it is not a valid classification data set.

    Example:
        >>> data = load_data("digits")
        >>> data.input_shape, len(data.train), len(data.test)
        ((8, 8), 1438, 359)
    """
    spec = str(spec)
    if not 0 < val_split < 1:
        raise UsageError(f"--val-split must be between 0 and 1, got {val_split}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer))
                                    or num_classes < 2):
        raise UsageError(f"--num-classes must be a whole number of 2 or more, got {num_classes}")
    options = {"val_split": val_split, "image_size": list(image_size) if image_size else None, "color_mode": color_mode,
               "num_classes": None if num_classes is None else int(num_classes)}
    if spec in SAMPLES:
        with resources.as_file(resources.files("kdcli") / "samples" / f"{spec}.npz") as path:
            return _from_arrays(spec, options, _read_npz(path))
    if spec in KERAS_DATASETS:
        return _from_arrays(spec, options, _read_keras_cache(spec))
    path = Path(spec)
    if path.is_dir():
        return _from_folder(spec, path, options)
    if path.suffix.lower() in CONVERT_HINTS:
        raise KdcliError(f"{spec}: {CONVERT_HINTS[path.suffix.lower()] if path.exists() else 'no such file'}")
    if path.suffix.lower() not in (".npz", ".h5", ".hdf5"):
        if not path.exists():
            raise KdcliError(
                f"unknown data set {spec!r}: give one of {', '.join(KNOWN_NAMES)}, "
                "a path to an .npz or .h5 file, or a folder of images or .txt files"
            )
        raise KdcliError(f"{spec}: unsupported data file; expected .npz, .h5 or a folder of images or .txt files")
    if not path.is_file():
        raise KdcliError(f"{spec}: no such file")
    if path.suffix.lower() == ".npz":
        return _from_arrays(spec, options, _read_npz(path))
    return _from_h5(spec, path, options)


# Bytes per read of an .npz member.
READ_BYTES = 1 << 20


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            wanted = _pick_keys(path, list(f.keys()))
            return {k: _read_member(path, f, k) for k in wanted}
    except KdcliError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KdcliError(f"{path}: cannot read .npz file ({_first_line(e)})") from e


def _read_member(path, npz, key):
    try:
        return _read_aligned(npz, key)
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise
        # An object array (pandas' `.values` gives them) is a pickle, which kdcli never loads.
        fix = f"{key}.astype(int) or {key}.astype(str)" if key.startswith("y") else \
            f"{key}.astype('float32'), or {key}.astype(str) for text"
        raise KdcliError(f"{path}: {key} is an array of Python objects, which kdcli does not unpickle; "
                         f"save it as numbers or strings: {fix}") from None


def _read_aligned(npz, key):
    """An .npz member read straight into an aligned array (`aligned_empty`), which TensorFlow then uses
    without a copy of its own; arrays of other layouts (Fortran order, strings, objects) as NumPy reads
    them."""
    if f"{key}.npy" not in npz.zip.namelist():
        return npz[key]
    with npz.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_2_0 if version >= (2, 0) else np.lib.format.read_array_header_1_0
        shape, fortran, dtype = header(f)
        if fortran or dtype.kind not in NUMBER_KINDS:
            return npz[key]
        array = aligned_empty(shape, dtype)
        view = memoryview(array.reshape(-1).view(np.uint8))
        filled = 0
        while filled < len(view):
            read = f.readinto(view[filled:filled + READ_BYTES])  # a zip member reads a copy of what is asked
            if not read:
                raise ValueError(f"{key}.npy ends {len(view) - filled} bytes early; is the file cut short?")
            filled += read
        return array


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
    return make_dataset(spec, options, columns, labels)


def _from_arrays(spec, options, arrays):
    columns = {k: ArrayColumn(v, f"{spec}: {k}") for k, v in arrays.items() if k.startswith("x")}
    labels = {k: v for k, v in arrays.items() if k.startswith("y")}
    for name, column in columns.items():
        check_inputs(spec, name, column)
    return make_dataset(spec, options, columns, labels)


def _pick_keys(path, keys):
    for wanted in (SPLIT_KEYS, WHOLE_KEYS):
        if all(k in keys for k in wanted):
            return wanted
    found = ", ".join(sorted(keys)) or "none"
    raise KdcliError(f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y); found {found}")


# --- image and text folders ---------------------------------------------------


def _from_folder(spec, root, options):
    """A folder with one sub-folder per class, or `train/` and `test/` folders of those.

    The class folders hold images, or `.txt` files: a folder is text when the
    training class folders hold `.txt` files and no images.
    """
    parts = ("train", "test") if (root / "train").is_dir() and (root / "test").is_dir() else ("",)
    names = _class_folders(root / parts[0])
    found = {part: _class_files(root / part, names) for part in parts}
    suffixes = {f.suffix.lower() for files in found[parts[0]] for f in files}
    if suffixes & set(IMAGE_EXTENSIONS):
        return _from_image_folder(spec, root, options, names, found)
    if TEXT_EXTENSION in suffixes:
        return _from_text_folder(spec, root, options, names, found)
    raise KdcliError(f"{root / parts[0]}: no images ({', '.join(IMAGE_EXTENSIONS)}) or {TEXT_EXTENSION} files "
                     "in its class folders")


def _from_image_folder(spec, root, options, names, found):
    parts = {part: _pick_files(root / part, names, files, IMAGE_EXTENSIONS) for part, files in found.items()}
    first = parts[next(iter(parts))][0][0]
    size, channels = _image_geometry(first, options["image_size"], options["color_mode"])
    columns, labels = {}, {}
    for part, (files, y) in parts.items():
        for f in files:
            check_image(f)
        key = f"_{part}" if part else ""
        columns[f"x{key}"] = ImageColumn(files, size, channels, f"{root / part}")
        labels[f"y{key}"] = np.array(y)
    return make_dataset(spec, options, columns, labels, names)


def _from_text_folder(spec, root, options, names, found):
    """Text files are listed here and read as batches ask for them (`TextColumn`)."""
    columns, labels = {}, {}
    for part, class_files in found.items():
        files, y = _pick_files(root / part, names, class_files, (TEXT_EXTENSION,), every_class=True)
        key = f"_{part}" if part else ""
        columns[f"x{key}"] = TextColumn(files, f"{root / part}")
        labels[f"y{key}"] = np.array(y)
    return make_dataset(spec, options, columns, labels, names)


def _class_folders(root):
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise KdcliError(
            f"{root}: a data folder needs one sub-folder per class (of images or {TEXT_EXTENSION} files) "
            f"and at least two classes, found {len(names)}"
        )
    return names


def _class_files(root, names):
    """The files of every class folder (of the training folder's classes), sorted."""
    found = []
    for name in names:
        folder = root / name
        if not folder.is_dir():
            raise KdcliError(f"{folder}: missing class folder (the training folder has it)")
        found.append(sorted(p for p in folder.rglob("*") if p.is_file()))
    return found


def _pick_files(root, names, class_files, extensions, every_class=False):
    """The files with one of `extensions` and their labels; `every_class`: each class must have some."""
    files, labels = [], []
    for label, found in enumerate(class_files):
        picked = [p for p in found if p.suffix.lower() in extensions]
        if every_class and not picked:
            raise KdcliError(f"{root / names[label]}: a class folder with no {', '.join(extensions)} files")
        files += picked
        labels += [label] * len(picked)
    if not files:  # only an image folder gets here: a text folder needs files in every class
        raise KdcliError(f"{root}: no images found ({', '.join(extensions)})")
    return files, labels


def write_text_folder(root, x, y, class_names=None, test=None):
    """Write texts as a text folder that `load_data` reads back.

    Args:
        root: the folder to write (created; files already there are overwritten).
        x, y: the texts (str) and their integer class ids.
        class_names: the class folders' names, in label order; they must sort in
            that order, since the reader numbers classes by sorted folder name.
            By default `class_0`, `class_1`... (zero-padded so that they sort).
        test: `(x_test, y_test)`: write `root/train/CLASS/` and `root/test/CLASS/`
            rather than `root/CLASS/`.

    Returns:
        The folder's `Path`; each text is `CLASS/NNNN.txt`, numbered by its
        position in `x`, in UTF-8.
    """
    root = Path(root)
    parts = {"": (x, y)} if test is None else {"train": (x, y), "test": test}
    num_classes = max(int(np.max(labels, initial=-1)) for _, labels in parts.values()) + 1
    if class_names is None:
        width = len(str(max(num_classes - 1, 0)))
        class_names = [f"class_{i:0{width}d}" for i in range(num_classes)]
    class_names = list(class_names)
    if len(class_names) < num_classes or class_names != sorted(class_names):
        raise ValueError(f"class_names must be {num_classes} or more names in sorted order, got {class_names}")
    for part, (texts, labels) in parts.items():
        width = max(4, len(str(len(texts) - 1)))
        for name in class_names:
            (root / part / name).mkdir(parents=True, exist_ok=True)
        for i, (text, label) in enumerate(zip(texts, labels)):
            # bytes, not write_text: no newline translation, so the text reads back unchanged
            (root / part / class_names[int(label)] / f"{i:0{width}d}.txt").write_bytes(str(text).encode("utf-8"))
    return root


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
