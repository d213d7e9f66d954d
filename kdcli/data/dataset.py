"""The `Dataset`: a training and a test split, the number of classes, and a fingerprint."""

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from kdcli.data.batching import Split
from kdcli.data.columns import is_text
from kdcli.data.validation import check_classes, check_labels, check_lengths
from kdcli.errors import KdcliError
from kdcli.files import rebase_recorded, relative_to_artifact

KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
# Samples shipped with kdcli (kdcli/samples/NAME.npz): 8x8 digits, and synthetic texts of four topics.
SAMPLES = ("digits", "texts")
KNOWN_NAMES = ("digits", *KERAS_DATASETS, *SAMPLES[1:])  # the default first, as messages list them
INPUT_KINDS = ("numeric", "tokens", "text")
SPLIT_SEED = 0


@dataclass
class Dataset:
    """A training and a test split with integer class labels.

    Args:
        spec: how the data was named (`digits`, a path), recorded in provenance.
        options: how it was loaded (`val_split`, `image_size`, `color_mode`,
            `num_classes`), so a later step can load it again the same way.
        train, test: the `Split`s.
        num_classes: C, at least the largest label plus one; every class id
            below it has training samples, unless C was declared
            (`options["num_classes"]`) or taken from a model (`expect_classes`).
        class_names: names of the classes, when the source has them (image and text folders).
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
    def input_kind(self):
        """What a sample is, for the models that take it (one of `INPUT_KINDS`).

        `text`: one string per sample (sample shape `()`, batches of tf.string);
        `tokens`: integer sequences of shape `(L,)`, token ids for an Embedding
        (batches of float32 holding the ids), stored as integers of 16 bits
        or more (what tokenizers and `pad_sequences` give; bytes, such as
        flattened uint8 pixels, stay numeric); `numeric`: anything else.
        """
        x = self.train.x
        if is_text(x.dtype):
            return "text"
        if len(x.sample_shape) == 1 and np.issubdtype(x.dtype, np.integer) and x.dtype.itemsize >= 2:
            return "tokens"
        return "numeric"

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
        sample or label changes (for an image or text folder: a file added,
        removed or edited). Text is hashed as UTF-8, so the same strings give
        the same fingerprint in an `.npz` or an `.h5`. Computed once, streaming
        through the inputs.
        """
        split = self.train
        rows = np.arange(len(split)) if split.rows is None else split.rows
        h = hashlib.sha256()
        dtype = "text" if split.is_text else split.x.dtype.str
        h.update(f"{dtype}{(len(split), *split.x.sample_shape)}".encode())
        split.x.hash_into(h, rows)
        h.update(f"{np.dtype(np.int64).str}{split.y.shape}".encode())
        h.update(np.ascontiguousarray(split.y).tobytes())
        return h.hexdigest()

    def expect_classes(self, num_classes, source):
        """Adopt the number of classes of a model (a teacher may know classes
        the labels never use), refusing labels beyond it, and a number of
        classes declared (`--num-classes`) that is not the model's."""
        declared = self.options.get("num_classes")
        if declared is not None and declared != num_classes:
            raise KdcliError(
                f"{self.spec}: --num-classes {declared} (given, or recorded with the data), but {source} has "
                f"{num_classes} classes; give --num-classes {num_classes}"
            )
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
                find it from any folder (see `kdcli.files.locate_recorded`).
        """
        described = {
            "spec": relative_to_artifact(self.spec, artifact) if artifact and not is_named(self.spec) else self.spec,
            "options": dict(self.options),
            "fingerprint": self.fingerprint,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "input_shape": list(self.input_shape),
            "input_kind": self.input_kind,
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


def make_dataset(spec, options, columns, labels, class_names=None):
    """Build the two splits from `x, y` (split here) or `x_train, ... y_test`."""
    if "x" in columns:
        x, y = columns["x"], check_labels(spec, "y", labels["y"])
        check_lengths(spec, "x", x, "y", y)
        train_rows, test_rows = stratified_split(y, options["val_split"], SPLIT_SEED)
        train, test = Split(x, train_rows, y[train_rows]), Split(x, test_rows, y[test_rows])
    else:
        for part in ("train", "test"):
            check_lengths(spec, f"x_{part}", columns[f"x_{part}"], f"y_{part}", labels[f"y_{part}"])
        train = Split(columns["x_train"], None, check_labels(spec, "y_train", labels["y_train"]))
        test = Split(columns["x_test"], None, check_labels(spec, "y_test", labels["y_test"]))
        if train.x.sample_shape != test.x.sample_shape:
            raise KdcliError(
                f"{spec}: x_train samples have shape {train.x.sample_shape} but x_test samples {test.x.sample_shape}"
            )
    for name, split in (("train", train), ("test", test)):
        if len(split) == 0:
            raise KdcliError(f"{spec}: the {name} split is empty")
    num_classes = check_classes(spec, "y" if "x" in columns else "y_train", train.y, test.y,
                                options.get("num_classes"), class_names)
    return Dataset(spec, options, train, test, num_classes, class_names)


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
