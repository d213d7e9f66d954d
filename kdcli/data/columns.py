"""Columns: one input source read by rows (a NumPy array, an HDF5 dataset, a folder of image or text files).

A `Column` is the tiny interface the rest of kdcli reads inputs through; it never
loads a source larger than memory whole.

Text is one string per sample (sample shape `()`): NumPy strings (`U`, `S`),
HDF5 strings (fixed or variable length) or `.txt` files. Whatever its source,
`as_texts` gives it as Python `str`, the one form the rest of kdcli sees.
"""

from pathlib import Path

import numpy as np

from kdcli.errors import KdcliError, first_line as _first_line

# Rows per read when hashing or scanning a streamed source.
SCAN_ROWS = 8192
# NumPy dtype kinds of text: str, bytes, and objects (h5py's variable-length strings; an
# .npz cannot hold objects, and `H5Column` refuses objects that are not strings).
TEXT_KINDS = "USO"
# The dtype of text read from files: an object array of Python str.
TEXT_DTYPE = np.dtype(object)
# The alignment (bytes) under which TensorFlow can use an array's memory as it is (see `shares_memory`).
ALIGNMENT = 64
# NumPy dtype kinds of numbers: bool, signed and unsigned integers, floats.
NUMBER_KINDS = "biuf"


def aligned_empty(shape, dtype):
    """An uninitialised C-ordered array whose data start on an `ALIGNMENT`-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def shares_memory(array):
    """Whether TensorFlow can take `array` without a copy (through DLPack): numbers in the machine's
    byte order, C-ordered, writable and aligned."""
    return (array.dtype.kind in NUMBER_KINDS and array.dtype.isnative and array.flags.c_contiguous
            and array.flags.writeable and array.ctypes.data % ALIGNMENT == 0)


def is_text(dtype):
    """Whether inputs of a NumPy dtype are text (strings) rather than numbers."""
    return np.dtype(dtype).kind in TEXT_KINDS


def as_texts(values, label):
    """Strings of any form (`U`, `S`, objects of str or bytes) as an object array of Python str.

    Args:
        values: the strings, an array.
        label: names them in messages ("data.h5: x_train").

    Returns:
        An object array of `str` of the same shape.

    Raises:
        KdcliError: bytes that are not UTF-8.
    """
    values = np.asarray(values)
    if values.dtype.kind == "U":
        return values.astype(object)
    out = np.empty(values.shape, object)
    for i, value in enumerate(values.flat):
        try:
            out.flat[i] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as e:
            raise KdcliError(f"{label} holds strings that are not UTF-8 text ({_first_line(e)})") from None
    return out


def _hash_texts(h, texts):
    # Each text's length first, so that ["ab", "c"] and ["a", "bc"] differ.
    for text in texts:
        data = text.encode("utf-8")
        h.update(f"{len(data)}:".encode())
        h.update(data)


def _hash_files(h, files, rows):
    # The files' names, sizes and bytes: adding, removing or editing a file changes the hash.
    for row in rows:
        path = files[row]
        h.update(f"{path.parent.name}/{path.name}:{path.stat().st_size}:".encode())
        h.update(path.read_bytes())


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
        """Feed the samples at `rows` into a hash, in order (text as UTF-8, whatever its dtype)."""
        for start in range(0, len(rows), SCAN_ROWS):
            values = self.read(rows[start:start + SCAN_ROWS])
            if is_text(self.dtype):
                _hash_texts(h, as_texts(values, self.label))
            else:
                h.update(np.ascontiguousarray(values).tobytes())


class ArrayColumn(Column):
    """Inputs held in a NumPy array."""

    def __init__(self, array, label="x"):
        self.array, self.label = array, label
        self.n, self.sample_shape, self.dtype = len(array), tuple(array.shape[1:]), array.dtype
        self._tensor = (None, None)  # (the array, its tensor)

    def read(self, rows):
        return self.array[rows]

    def tensor(self):
        """The array as a TensorFlow tensor, made once per array: the array's own memory where
        TensorFlow can share it (`shares_memory`: .npz files are read so; a change made to the array in
        place is then seen), else a copy."""
        array, tensor = self._tensor
        if array is not self.array:
            from kdcli._tf import tf

            shared = shares_memory(self.array)
            tensor = tf.experimental.dlpack.from_dlpack(self.array.__dlpack__()) if shared else \
                tf.constant(self.array)
            self._tensor = (self.array, tensor)
        return tensor


class RowsColumn(Column):
    """Some rows of another column, in order: row `i` is row `rows[i]` of `column`."""

    def __init__(self, column, rows):
        self.column, self.rows, self.label = column, np.asarray(rows, dtype=np.int64), column.label
        self.n, self.sample_shape, self.dtype = len(self.rows), column.sample_shape, column.dtype
        self.sequential = column.sequential

    def read(self, rows):
        return self.column.read(self.rows[rows])


def take_rows(column, rows):
    """The rows `rows` (sorted) of a column, as a column: a smaller array in memory, else a `RowsColumn`."""
    if isinstance(column, ArrayColumn):
        return ArrayColumn(column.array[rows], column.label)
    return RowsColumn(column, rows)


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
            if self.dtype.kind == "O" and h5py.check_string_dtype(ds.dtype) is None:
                raise KdcliError(f"{self.label} holds objects that are not strings; inputs must be numbers or strings")
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
        _hash_files(h, self.files, rows)


class TextColumn(Column):
    """Text files, one sample each, read on demand as UTF-8 (bytes that are not UTF-8 replaced by U+FFFD).

    A sample is one string (sample shape `()`), as `keras.utils.text_dataset_from_directory`
    gives; `read` returns an object array of Python str.
    """

    def __init__(self, files, label="texts"):
        self.files, self.label = files, label
        self.n, self.sample_shape, self.dtype = len(files), (), TEXT_DTYPE

    def read(self, rows):
        out = np.empty(len(rows), object)
        for i, row in enumerate(rows):
            try:
                out[i] = self.files[row].read_bytes().decode("utf-8", errors="replace")
            except OSError as e:
                raise KdcliError(f"{self.files[row]}: unreadable text file ({_first_line(e)})") from e
        return out

    def hash_into(self, h, rows):
        _hash_files(h, self.files, rows)
