"""Soft-label files: a teacher's logits for the training split, in HDF5.

Layout (format version 1):

- dataset `logits`, shape `(N, C)`, float32 or float16, chunked by rows so a
  consumer can stream it; row `i` belongs to training sample `i`; or, with
  `top_k = K`, `topk_values (N, K)` (the K largest log-probabilities of each
  row) and `topk_indices (N, K)` (their classes);
- file attributes: `format` ("kdcli-soft-labels"), `format_version`, `n`,
  `num_classes`, `fingerprint` (of the training split), `teacher_sha256`,
  `kdcli_version`, `dtype`, `top_k` (0: full logits), and `provenance` (a
  JSON run card);
- for an ensemble of teachers (see `kdcli.ensembles`) only, one more
  attribute, `teacher_sha256s`: each teacher's sha256, in the order given;
  `teacher_sha256` is then `kdcli.ensembles.ensemble_sha256` of them, and the
  logits are the log of the teachers' mean probabilities. The layout and the
  format version are those of a single teacher's file: any kdcli reads it,
  and a single teacher's file is exactly what it always was.

Logits, not probabilities, are stored: the temperature is chosen at distill
time, so one file serves every temperature.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdcli.data import ArrayColumn, Column, H5Column
from kdcli.errors import KdcliError, UsageError, first_line
from kdcli.faults import fault_point
from kdcli.files import atomic_path
from kdcli.specs import LOGIT_DTYPES

FORMAT = "kdcli-soft-labels"
FORMAT_VERSION = 2  # the newest this kdcli reads; files with full logits are written as version 1
CHUNK_ROWS = 4096
DTYPES = LOGIT_DTYPES


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
        return self.column.read(np.arange(self.column.n)).astype(np.float32, copy=False)

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


def write_soft_labels(path, logit_batches, n, num_classes, *, fingerprint, teacher_sha256, record, dtype="float32",
                      top_k=None, shard=None, teacher_sha256s=None, batch_size=1):
    """Write a soft-label file atomically, one batch of rows at a time.

    Args:
        path: the `.h5` file to write.
        logit_batches: an iterable of `(batch, C)` arrays, in training-sample order.
        n: the number of training samples (rows).
        num_classes: C.
        fingerprint: the training split's fingerprint (`Dataset.fingerprint`).
        teacher_sha256: sha256 of the teacher's file (of an ensemble: see
            `kdcli.ensembles.ensemble_sha256`).
        record: the provenance dict.
        dtype: `float32` or `float16`.
        top_k: keep only the K largest of each row, as `topk_values` (their
            log-probabilities: the logits less the row's log-sum-exp) and
            `topk_indices` (their classes); see `TopKColumn`.
        shard: `(index, count)`: the batches hold only the rows of that shard
            (`shard_rows`); the file is a part for `merge_soft_labels`.
        batch_size: the batch size of a sharded run (its shards begin on its multiples).
        teacher_sha256s: an ensemble's teachers' sha256s, in order (None
            for one teacher: no such attribute is written).

    Returns:
        The path written.
    """
    import h5py

    from kdcli import __version__

    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if top_k is not None and not 1 <= top_k < num_classes:
        raise UsageError(f"--top-k must be between 1 and {num_classes - 1} (the classes less one), got {top_k}")
    path = Path(path)
    width = top_k or num_classes
    start, stop = shard_rows(n, *shard, batch_size) if shard else (0, n)
    rows = stop - start
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            def rows_dataset(name, dtype):
                return f.create_dataset(name, shape=(rows, width), dtype=dtype,
                                        chunks=(min(CHUNK_ROWS, max(rows, 1)), width))

            if top_k:
                values = rows_dataset("topk_values", dtype)
                indices = rows_dataset("topk_indices", "int32")
            else:
                logits = rows_dataset("logits", dtype)
            row = 0
            for batch in logit_batches:
                batch = np.asarray(batch)
                if batch.shape[1] != num_classes:
                    raise KdcliError(
                        f"the teacher outputs {batch.shape[1]} classes, the data has {num_classes}"
                    )
                if not np.all(np.isfinite(batch)):
                    raise KdcliError("the teacher produced NaN or infinite logits; check the teacher and the data")
                if top_k:
                    top = np.argsort(-batch, axis=1)[:, :top_k]
                    log_probs = batch - _logsumexp(batch)
                    values[row:row + len(batch)] = np.take_along_axis(log_probs, top, axis=1)
                    indices[row:row + len(batch)] = top
                else:
                    logits[row:row + len(batch)] = batch
                row += len(batch)
                fault_point("soft-labels-batch")
            if row != rows:
                raise KdcliError(f"the teacher produced {row} rows of logits for {rows} samples")
            f.attrs.update(
                format=FORMAT,
                format_version=2 if top_k else 1,  # top-k files need a reader that knows them
                n=n,
                num_classes=num_classes,
                fingerprint=fingerprint,
                teacher_sha256=teacher_sha256,
                kdcli_version=__version__,
                dtype=dtype,
                top_k=top_k or 0,
                provenance=json.dumps(record),
            )
            if teacher_sha256s:
                f.attrs["teacher_sha256s"] = list(teacher_sha256s)
            if shard:
                f.attrs.update(shard_index=shard[0], shard_count=shard[1], row_start=start, row_stop=stop)
    return path


def shard_rows(n, index, count, batch_size=1):
    """Rows `[start, stop)` of shard `index` (0-based) of `count` contiguous, near-equal shards of `n` rows.

    Shards begin on a multiple of `batch_size`, so that each shard's batches are
    the batches of an unsharded run: the teacher computes the same logits, bit
    for bit (a matrix product's rounding depends on the batch's size).
    """
    if not (count >= 1 and 0 <= index < count):
        raise UsageError(f"--shard must be I/N with 1 <= I <= N, got {index + 1}/{count}")
    batches = -(-n // batch_size)
    if count > batches:
        raise UsageError(f"--shard {index + 1}/{count}: more shards than the {batches} batches of {batch_size} "
                         f"training samples; give fewer shards or a smaller --batch-size")
    return (min(n, batches * index // count * batch_size),
            min(n, batches * (index + 1) // count * batch_size))


def merge_soft_labels(parts, out, record):
    """Merge the parts of a sharded soft-label run into one file, equal to an unsharded run's.

    The parts must come from the same teacher, data and settings, and cover
    every row exactly once; anything else is refused, naming the part.

    Returns:
        The path written.
    """
    import h5py

    if not parts:
        raise UsageError("give the part files to merge")
    attrs = [(Path(p), read_attrs(p)) for p in parts]  # a list: a part given twice overlaps itself
    first_path, first = attrs[0]
    same = ("n", "num_classes", "fingerprint", "teacher_sha256", "dtype", "top_k")
    for path, a in attrs:
        if "shard_index" not in a:
            raise KdcliError(f"{path}: not a part of a sharded run (made without --shard)")
        differs = [k for k in same if a.get(k) != first.get(k)]
        if differs:
            raise KdcliError(f"{path}: does not belong with {first_path} (differs in {', '.join(differs)})")
    names = ("topk_values", "topk_indices") if first.get("top_k") else ("logits",)
    for path, a in attrs:
        with h5py.File(path, "r") as part:
            for name in names:
                if name not in part or part[name].shape[0] != a["row_stop"] - a["row_start"]:
                    raise KdcliError(f"{path}: damaged part ({name} does not hold rows {a['row_start']}..{a['row_stop'] - 1})")
    spans = sorted((a["row_start"], a["row_stop"], path) for path, a in attrs)
    covered = 0
    for start, stop, path in spans:
        if start < covered:
            raise KdcliError(f"{path}: rows {start}..{stop - 1} overlap another part")
        if start > covered:
            raise KdcliError(f"rows {covered}..{start - 1} are in no part; add the missing shard")
        covered = stop
    if covered != first["n"]:
        raise KdcliError(f"rows {covered}..{first['n'] - 1} are in no part; add the missing shard")
    n = first["n"]
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            for name in names:
                with h5py.File(spans[0][2], "r") as part:
                    width, dtype = part[name].shape[1], part[name].dtype
                merged = f.create_dataset(name, shape=(n, width), dtype=dtype, chunks=(min(CHUNK_ROWS, n), width))
                for start, stop, path in spans:
                    with h5py.File(path, "r") as part:
                        for row in range(0, stop - start, CHUNK_ROWS):
                            merged[start + row:start + min(row + CHUNK_ROWS, stop - start)] = \
                                part[name][row:row + CHUNK_ROWS]
            kept = {k: v for k, v in first.items() if k not in ("shard_index", "shard_count", "row_start", "row_stop")}
            f.attrs.update(kept | {"provenance": json.dumps(record)})
    return Path(out)


def _logsumexp(z):
    top = z.max(axis=1, keepdims=True)
    return top + np.log(np.exp(z - top).sum(axis=1, keepdims=True))


class TopKColumn(Column):
    """Teacher logits rebuilt from top-K soft labels, as in FKD (Shen and Xing, 2021).

    The K stored classes keep their log-probabilities; the other C - K classes
    share the probability left over equally. The rows read are log-probabilities:
    logits up to a per-row constant, which the softmax of the loss cancels.
    """

    sequential = True

    def __init__(self, path, num_classes):
        self.values, self.indices = H5Column(path, "topk_values"), H5Column(path, "topk_indices")
        self.num_classes, self.label = num_classes, f"{path}: topk_values"
        self.n, self.sample_shape, self.dtype = self.values.n, (num_classes,), np.dtype(np.float32)

    def read(self, rows):
        values = self.values.read(rows).astype(np.float64)
        indices = self.indices.read(rows)
        left = np.clip(1.0 - np.exp(values).sum(axis=1), 1e-12, None) / (self.num_classes - values.shape[1])
        out = np.repeat(np.log(left)[:, None], self.num_classes, axis=1)
        np.put_along_axis(out, indices, values, axis=1)
        return out.astype(np.float32)


def read_soft_label_provenance(path):
    """The provenance record of a soft-label file, or None when it has none."""
    try:
        return json.loads(read_attrs(path).get("provenance", "null"))
    except ValueError as e:
        raise KdcliError(f"{path}: damaged provenance ({first_line(e)})") from e


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
    missing = [k for k in ("format_version", "n", "num_classes", "fingerprint", "teacher_sha256") if k not in attrs]
    if missing:
        raise KdcliError(f"{path}: damaged soft-label file (no {', '.join(missing)} attribute)")
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
    if "shard_index" in attrs:
        raise KdcliError(
            f"{path}: one part of a sharded run ({attrs['shard_index'] + 1}/{attrs['shard_count']}); "
            "merge the parts first with kdcli soft-labels merge"
        )
    try:
        column = TopKColumn(path, attrs["num_classes"]) if attrs.get("top_k") else H5Column(path, "logits")
    except (OSError, KeyError) as e:
        raise KdcliError(f"{path}: damaged soft-label file ({str(e).splitlines()[0]})") from e
    shape = (column.n, *column.sample_shape)
    if shape != (attrs["n"], attrs["num_classes"]):
        raise KdcliError(f"{path}: damaged soft-label file (logits shape {shape} disagrees with its attributes)")
    return SoftLabels(column, attrs)


def teacher_logits(path, in_memory_bytes=256 << 20):
    """A soft-label file's logits as a column for `kdcli.distill`: read into
    memory once when they fit in `in_memory_bytes`, streamed from disk otherwise."""
    soft = read_soft_labels(path)
    if soft.attrs["n"] * soft.attrs["num_classes"] * 4 <= in_memory_bytes:
        return ArrayColumn(soft.logits, f"{path}: logits")
    return soft.column


def teacher_shas(attrs):
    """The sha256 of each teacher a soft-label file was made with: several for an ensemble, else one."""
    return list(attrs.get("teacher_sha256s") or [attrs["teacher_sha256"]])


def _plain(value):
    """HDF5 attribute values as plain Python values (an array, such as `teacher_sha256s`, as a list)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
