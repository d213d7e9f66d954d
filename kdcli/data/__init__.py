"""Data sets: every `--data` form, validation, fingerprints and streaming batches.

A `Dataset` is a training split and a held-out test split. Labels are
integer class ids `0..C-1`, held in memory (they are small); inputs are read
on demand, batch by batch, from wherever they live: a NumPy array, an HDF5
dataset or a folder of image or text files. So a folder or an `.h5` file
larger than memory streams through `tf.data` and is never loaded whole.

Inputs are numbers (batches of float32) or text, one string per sample
(sample shape `()`, batches of tf.string); `Dataset.input_kind` tells
`text`, `tokens` (integer sequences) and `numeric` apart.

A fingerprint of the training split (a sha256 of its inputs and labels)
identifies the data in every artifact, so a later step can tell whether it
is given the data an earlier step saw.

One module per concern, from the bottom up: `columns` (one input source read
by rows), `batching` (splits and their shuffled batches), `validation` (the
checks of what a user gives), `dataset` (the `Dataset` and its fingerprint),
`readers` (every `--data` form).
"""

from kdcli.data.batching import BLOCK_ROWS, Split, data_errors, iterate, sample_order
from kdcli.data.columns import (
    SCAN_ROWS,
    ArrayColumn,
    Column,
    H5Column,
    ImageColumn,
    RowsColumn,
    TextColumn,
    as_texts,
    is_text,
    take_rows,
)
from kdcli.data.dataset import (
    INPUT_KINDS,
    KERAS_DATASETS,
    KNOWN_NAMES,
    SAMPLES,
    SPLIT_SEED,
    Dataset,
    is_named,
    rebase_data_record,
    stratified_split,
)
from kdcli.data.readers import COLOR_MODES, keras_cache_dir, load_data, write_text_folder

__all__ = [
    "BLOCK_ROWS", "COLOR_MODES", "INPUT_KINDS", "KERAS_DATASETS", "KNOWN_NAMES", "SAMPLES", "SCAN_ROWS", "SPLIT_SEED",
    "ArrayColumn", "Column", "Dataset", "H5Column", "ImageColumn", "RowsColumn", "Split", "TextColumn", "as_texts",
    "data_errors",
    "is_named", "is_text", "iterate", "keras_cache_dir", "load_data", "rebase_data_record", "sample_order",
    "stratified_split", "take_rows", "write_text_folder",
]
