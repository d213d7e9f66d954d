"""Checks of the data a user gives: labels, lengths, inputs and images, each with one message."""

import numpy as np

from kdcli.data.columns import as_texts, is_text
from kdcli.errors import KdcliError, first_line as _first_line


def check_labels(spec, name, y):
    """Labels as int64 class ids of shape `(N,)`; other shapes, non-integers and negatives are refused."""
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


def check_lengths(spec, xname, x, yname, y):
    """Refuse inputs of the wrong rank, and inputs and labels of different lengths.

    Text is one string per sample, shape `(N,)`; numbers need a feature axis, `(N, ...)`.
    """
    if is_text(x.dtype):
        if x.sample_shape:
            raise KdcliError(f"{spec}: {xname} holds text, one string per sample of shape (N,), "
                             f"got shape {(x.n, *x.sample_shape)}")
    elif len(x.sample_shape) < 1:
        raise KdcliError(f"{spec}: {xname} must have a sample axis and features, got shape ({x.n},)")
    if x.n != len(y):
        raise KdcliError(f"{spec}: {xname} has {x.n} samples but {yname} has {len(y)}")


def check_inputs(spec, name, column):
    """Refuse inputs that are neither numbers nor text, bytes that are not UTF-8, and NaN
    or infinite values, up front for in-memory arrays (streamed inputs are checked batch
    by batch as they are read)."""
    x = column.array
    if is_text(x.dtype):
        as_texts(x, f"{spec}: {name}")
        return
    if not (np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)):
        raise KdcliError(f"{spec}: {name} must be numbers or strings, got {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise KdcliError(f"{spec}: {name} holds {bad} NaN or infinite values")


def check_image(path):
    """Read an image's header: refuses files that are not images, without decoding them."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header is parsed on open
    except OSError as e:
        raise KdcliError(f"{path}: unreadable image ({_first_line(e)})") from e
