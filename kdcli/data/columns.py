"""Columns: one input source read by rows (a NumPy array, an HDF5 dataset, a folder of image files).

A `Column` is the tiny interface the rest of kdcli reads inputs through; it never
loads a source larger than memory whole.
"""

from pathlib import Path

import numpy as np

from kdcli.errors import KdcliError, first_line as _first_line

# Rows per read when hashing or scanning a streamed source.
SCAN_ROWS = 8192


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
