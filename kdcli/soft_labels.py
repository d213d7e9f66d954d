"""Soft-label files: a teacher's logits for the training split, in HDF5.

Layout (format version 1):

- dataset `logits`, shape `(N, C)`, float32 or float16, chunked by rows so a
  consumer can stream it; row `i` belongs to training sample `i`;
- file attributes: `format` ("kdcli-soft-labels"), `format_version`, `n`,
  `num_classes`, `fingerprint` (of the training split), `teacher_sha256`,
  `kdcli_version`, `dtype`, and `provenance` (a JSON run card).

Logits, not probabilities, are stored: the temperature is chosen at distill
time, so one file serves every temperature.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdcli.artifacts import atomic_path
from kdcli.data import H5Column
from kdcli.errors import KdcliError
from kdcli.faults import fault_point

FORMAT = "kdcli-soft-labels"
FORMAT_VERSION = 1
CHUNK_ROWS = 4096
DTYPES = ("float32", "float16")


@dataclass
class SoftLabels:
    """An open soft-label file: its attributes, and its logits streamed by rows.

    `column` reads rows on demand (what `kdcli.distill` takes as
    `teacher_logits`); `logits` reads them all into memory.
    """

    column: H5Column
    attrs: dict

    @property
    def logits(self):
        """All the logits as one float32 `(N, C)` array."""
        return self.column.read(np.arange(self.column.n)).astype(np.float32)

    @property
    def fingerprint(self):
        return self.attrs["fingerprint"]

    def check_matches(self, data, path):
        """Refuse soft labels made for other data than `data`'s training split."""
        n, c = self.attrs["n"], self.attrs["num_classes"]
        hint = "regenerate them with kdcli soft-labels"
        if n != len(data.train):
            raise KdcliError(
                f"{path}: soft labels were made for {n} samples, the training split has "
                f"{len(data.train)} — {hint}"
            )
        if c != data.num_classes:
            raise KdcliError(
                f"{path}: soft labels have {c} classes, the data has {data.num_classes} — {hint}"
            )
        if self.fingerprint != data.fingerprint:
            raise KdcliError(
                f"{path}: soft labels were made for other training data (fingerprint "
                f"{self.fingerprint[:12]}, this data {data.fingerprint[:12]}) — {hint}"
            )


def write_soft_labels(path, logit_batches, n, num_classes, fingerprint, teacher_sha256, record, dtype="float32"):
    """Write a soft-label file atomically, one batch of rows at a time.

    Args:
        path: the `.h5` file to write.
        logit_batches: an iterable of `(batch, C)` arrays, in training-sample order.
        n: the number of training samples (rows).
        num_classes: C.
        fingerprint: the training split's fingerprint (`Dataset.fingerprint`).
        teacher_sha256: sha256 of the teacher's file.
        record: the provenance dict.
        dtype: `float32` or `float16`.

    Returns:
        The path written.
    """
    import h5py

    from kdcli import __version__

    if dtype not in DTYPES:
        raise KdcliError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            logits = f.create_dataset(
                "logits", shape=(n, num_classes), dtype=dtype,
                chunks=(min(CHUNK_ROWS, max(n, 1)), num_classes),
            )
            row = 0
            for batch in logit_batches:
                batch = np.asarray(batch)
                if batch.shape[1] != num_classes:
                    raise KdcliError(
                        f"the teacher outputs {batch.shape[1]} classes, the data has {num_classes}"
                    )
                if not np.all(np.isfinite(batch)):
                    raise KdcliError("the teacher produced NaN or infinite logits; check the teacher and the data")
                logits[row:row + len(batch)] = batch
                row += len(batch)
                fault_point("soft-labels-batch")
            if row != n:
                raise KdcliError(f"the teacher produced {row} rows of logits for {n} samples")
            f.attrs.update(
                format=FORMAT,
                format_version=FORMAT_VERSION,
                n=n,
                num_classes=num_classes,
                fingerprint=fingerprint,
                teacher_sha256=teacher_sha256,
                kdcli_version=__version__,
                dtype=dtype,
                provenance=json.dumps(record),
            )
    return path


def read_attrs(path):
    """The attributes of a soft-label file, checked to be one."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise KdcliError(f"{path}: no such soft-label file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
    except OSError as e:
        raise KdcliError(f"{path}: cannot read HDF5 file ({str(e).splitlines()[0]})") from e
    if attrs.get("format") != FORMAT:
        raise KdcliError(f"{path}: not a kdcli soft-label file; make one with kdcli soft-labels")
    if attrs.get("format_version", 0) > FORMAT_VERSION:
        raise KdcliError(
            f"{path}: soft-label format version {attrs['format_version']} is newer than this kdcli "
            f"reads ({FORMAT_VERSION}); upgrade kdcli"
        )
    return attrs


def read_soft_labels(path):
    """Open a soft-label file, checking its format; the logits are read on demand.

    Returns:
        A `SoftLabels`: `attrs`, `column` (streams rows) and `logits` (reads all).
    """
    attrs = read_attrs(path)
    try:
        column = H5Column(path, "logits")
    except (OSError, KeyError) as e:
        raise KdcliError(f"{path}: damaged soft-label file ({str(e).splitlines()[0]})") from e
    shape = (column.n, *column.sample_shape)
    if shape != (attrs["n"], attrs["num_classes"]):
        raise KdcliError(f"{path}: damaged soft-label file (logits shape {shape} disagrees with its attributes)")
    return SoftLabels(column, attrs)


def _plain(value):
    """HDF5 attribute values as plain Python values."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
