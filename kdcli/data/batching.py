"""Splits and their batches: shuffled, streamed `tf.data` pipelines over columns."""

import contextlib
import re

import numpy as np

from kdcli.data.columns import ArrayColumn, as_texts, is_text, shares_memory
from kdcli.errors import KdcliError, first_line as _first_line

# Shuffling of data on disk: blocks of contiguous rows, read a window of blocks at a time.
BLOCK_ROWS = 1024
WINDOW_BLOCKS = 8
WINDOW_BYTES = 64 << 20
# In-memory arrays are batched by TensorFlow ops rather than Python (faster), in place where TensorFlow
# can share their memory (`ArrayColumn.tensor`), else from a copy: when the copies would come to more
# than NATIVE_BYTES, or the arrays to more than GRAPH_BYTES (tf.distribute serialises a pipeline's graph,
# arrays included, to shard it across workers, and a graph holds at most 2 GiB), they are read a window
# at a time, like files.
NATIVE_BYTES = 256 << 20
GRAPH_BYTES = 1 << 30
# Marks an error raised inside a tf.data function, to be turned back into a KdcliError.
_ERROR_MARK = "kdcli-error: "


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

    @property
    def is_text(self):
        """Whether the inputs are text: one string per sample."""
        return is_text(self.x.dtype)

    def take(self, idx):
        """The split's samples at sorted indices `idx`, as a `Split` (a validation share, say)."""
        idx = np.asarray(idx, dtype=np.int64)
        return Split(self.x, idx if self.rows is None else self.rows[idx], self.y[idx])

    def read(self, idx):
        """Inputs of the split's samples at sorted indices `idx`; refuses NaN and infinities.

        Text comes as an object array of Python str, whatever its source.
        """
        x = self.x.read(idx if self.rows is None else self.rows[idx])
        if self.is_text:
            return as_texts(x, self.x.label)
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise KdcliError(f"{self.x.label} holds NaN or infinite values")
        return x

    def batches(self, batch_size, shuffle_seed=None, extra=(), epochs=None):
        """A `tf.data.Dataset` of `(x, y, *extra)` batches; inputs as float32, text as tf.string.

        Text batches have shape `(batch,)`, UTF-8 strings; labels are int64 and
        extra columns float32, whatever the inputs.

        In-memory arrays and image files are shuffled sample by sample; arrays
        are gathered a window of samples at a time. Columns on disk
        (`sequential`, an `.h5`) are shuffled by windows: the rows are
        cut into blocks, the blocks are shuffled, and the samples of a window of
        `WINDOW_BLOCKS` blocks (at most `WINDOW_BYTES`) are read together, in a
        few contiguous reads, and shuffled among themselves. Memory stays
        bounded by a window, whatever the size of the data.

        Args:
            batch_size: samples per batch (the last batch may be smaller).
            shuffle_seed: shuffle the samples with this seed (an int or a tuple of
                ints, like `(seed, epoch)`), or keep their order (None).
            extra: more `Column`s whose row `i` belongs to sample `i` (soft labels).
            epochs: epoch numbers (a range): then one pipeline holds these epochs' batches one
                epoch after the other, each in its own order from `(shuffle_seed, epoch)`, as
                `shuffle_seed=(shuffle_seed, epoch)` would give it; no batch spans two epochs.
        """
        from kdcli._tf import tf

        columns = (self.x, *extra)
        in_memory = all(isinstance(c, ArrayColumn) for c in columns)
        seeds = [shuffle_seed] if epochs is None else [(shuffle_seed, int(e)) for e in epochs]
        if in_memory and sum(c.array.nbytes for c in columns if not shares_memory(c.array)) < NATIVE_BYTES \
                and sum(c.array.nbytes for c in columns) < GRAPH_BYTES:
            return self._native_batches(batch_size, seeds, extra)
        sequential = any(c.sequential for c in columns)
        if sequential or in_memory:
            # a text counts as one value here: the window's cap of rows bounds it
            sample_bytes = sum(4 * int(np.prod(c.sample_shape)) for c in columns)
            window = max(batch_size, min(WINDOW_BYTES // max(sample_bytes, 1), WINDOW_BLOCKS * BLOCK_ROWS))
        else:
            window = batch_size  # files read at random (images): a batch per call, decoded in parallel
        # on disk, windows of whole blocks; in memory, sample by sample
        orders = _Orders(len(self), seeds, window if sequential and window > batch_size else None)
        text = self.is_text
        # uint8 pixels cross into TensorFlow as they are, a quarter of the bytes, and are cast there
        pixels = self.x.dtype == np.uint8
        wire = tf.string if text else tf.uint8 if pixels else tf.float32
        signature = [(wire, (None, *self.x.sample_shape)), (tf.int64, (None,))]
        signature += [(tf.float32, (None, *c.sample_shape)) for c in extra]

        def load(index, chunk):
            idx = orders(index)[chunk * window:(chunk + 1) * window]
            sorter = np.argsort(idx)
            back = np.empty_like(sorter)
            back[sorter] = np.arange(len(sorter))
            idx = idx[sorter]  # sorted reads stream; `back` restores the shuffled order
            try:
                extras = [c.read(idx)[back].astype(np.float32) for c in extra]
                if not all(np.all(np.isfinite(e)) for e in extras):
                    raise KdcliError(f"{extra[0].label}: holds NaN or infinite values; regenerate it")
                x = self.read(idx)[back]
                # text as UTF-8 bytes: TensorFlow would encode str as ASCII
                x = np.array([t.encode("utf-8") for t in x], object) if text else \
                    x if pixels else x.astype(np.float32, copy=False)
                return (x, self.y[idx][back], *extras)
            except KdcliError as e:
                raise RuntimeError(_ERROR_MARK + str(e)) from None
            except Exception as e:
                raise RuntimeError(f"{_ERROR_MARK}cannot read the data ({_first_line(e)})") from None

        def tf_load(index, chunk):
            tensors = tf.numpy_function(load, [index, chunk], [dtype for dtype, _ in signature], stateful=False)
            for t, (_, shape) in zip(tensors, signature):
                t.set_shape(shape)
            if pixels:
                tensors[0] = tf.cast(tensors[0], tf.float32)
            return tuple(tensors)

        def epoch_batches(index):
            ds = tf.data.Dataset.range(-(-len(self) // window)).map(lambda chunk: (index, chunk))
            ds = ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            # unbatch().batch() with one copy instead of two; tf.distribute then splits a last, short
            # batch evenly over the replicas, as it does for in-memory arrays
            return ds.rebatch(batch_size) if window != batch_size else ds

        return _over_epochs(len(seeds), epoch_batches).prefetch(tf.data.AUTOTUNE)

    def _native_batches(self, batch_size, seeds, extra):
        """In-memory arrays: the same batches, gathered by TensorFlow ops (no Python per batch) from
        the arrays themselves: no copy where TensorFlow can share their memory (`ArrayColumn.tensor`)."""
        from kdcli._tf import tf

        for column in extra:
            if not np.all(np.isfinite(column.array)):
                raise KdcliError(f"{column.label}: holds NaN or infinite values; regenerate it")
        tensors = [column.tensor() for column in (self.x, *extra)]
        labels = tf.constant(self.y)
        # the samples' rows in the input column (its extra columns hold the split's samples only)
        rows = None if self.rows is None else tf.constant(self.rows)
        orders = _Orders(len(self), seeds)
        text = self.is_text  # NumPy strings become tf.string (str as UTF-8), kept as they are

        def gather(idx):
            x = tf.gather(tensors[0], idx if rows is None else tf.gather(rows, idx))
            return (x if text else tf.cast(x, tf.float32), tf.gather(labels, idx),
                    *[tf.cast(tf.gather(t, idx), tf.float32) for t in tensors[1:]])

        def epoch_batches(index):
            order = tf.numpy_function(orders, [index], tf.int64, stateful=False)
            order.set_shape([len(self)])
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        ds = _over_epochs(len(seeds), epoch_batches)
        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
        # tf.data's graph rewrites serialise the pipeline's graph, the arrays it holds with it: a copy
        options = tf.data.Options()
        options.experimental_optimization.apply_default_optimizations = False
        return ds.with_options(options)

    def arrays(self):
        """The whole split in memory, `(x, y)`; for small data and notebooks (text: an object array of str)."""
        return self.read(np.arange(len(self))), self.y


def _over_epochs(count, epoch_batches):
    """The batches of `count` epochs in one dataset: `epoch_batches(i)` for each place i, in turn (one
    pipeline for a whole run, rather than one built per epoch)."""
    from kdcli._tf import tf

    return tf.data.Dataset.range(count).flat_map(epoch_batches)


class _Orders:
    """The sample order of each epoch of a pipeline (`sample_order` of its seed), made when the
    pipeline reaches that epoch; the last two are kept for the reads still in flight."""

    def __init__(self, n, seeds, window=None):
        self.n, self.seeds, self.window, self.made = n, seeds, window, {}

    def __call__(self, index):
        index = int(index)  # the epoch's place in the pipeline
        order = self.made.get(index)
        if order is None:  # tf.data's threads may get here together: each works on its own copy
            order = sample_order(self.n, self.seeds[index], self.window).astype(np.int64)
            self.made = {**{i: o for i, o in self.made.items() if i >= index - 1}, index: order}
        return order


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
