"""Checks of the data a user gives: labels, lengths, inputs and images, each with one message."""

import numpy as np

from kdcli.data.columns import as_texts, is_text
from kdcli.errors import KdcliError, first_line as _first_line


def check_labels(spec, name, y):
    """Labels as int64 class ids of shape `(N,)`.

    Refused, each with the line of NumPy that fixes it where there is one:
    strings, one-hot rows (or class probabilities), other shapes,
    non-integers and negatives.
    """
    y = np.asarray(y)
    if is_text(y.dtype):
        raise KdcliError(f"{spec}: {name} holds strings ({_examples(y)}); labels must be integer class ids "
                         f"0..C-1: {_string_fix(name)}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and _is_one_hot(y):
        what = "one-hot" if np.all((y == 0) | (y == 1)) else "class probabilities"
        raise KdcliError(f"{spec}: {name} is {what} of shape {y.shape}; labels must be integer class ids of "
                         f"shape (N,): save {name}.argmax(1)")
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


def _is_one_hot(y):
    """Rows of non-negative numbers that sum to 1: one-hot labels, or class probabilities."""
    if y.shape[1] < 2 or not (np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_)) or not len(y):
        return False
    y = y.astype(np.float64)
    return bool(np.all(np.isfinite(y)) and y.min() >= 0 and np.allclose(y.sum(axis=1), 1, atol=1e-3))


def _examples(y, count=3):
    """A few of the distinct strings of `y`, quoted: `'cat', 'dog', ...`."""
    found = []
    for value in np.asarray(y).flat:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if text not in found:
            found.append(text)
            if len(found) > count:
                break
    return ", ".join(repr(text) for text in found[:count]) + (", ..." if len(found) > count else "")


def _string_fix(name):
    """The NumPy that maps string labels to ids, the same ids in the training and the test split."""
    if name == "y":
        return "classes, y = np.unique(y, return_inverse=True)"
    return ("classes, y_train = np.unique(y_train, return_inverse=True); "
            "y_test = np.searchsorted(classes, y_test)")


def check_classes(spec, name, y_train, y_test, num_classes=None, class_names=None):
    """The number of classes C, checked against the labels.

    Args:
        spec: the data, as messages name it.
        name: the training labels' name in messages (`y`, `y_train`).
        y_train, y_test: the two splits' labels (from `check_labels`).
        num_classes: C as declared by `--num-classes`; None: the largest
            label plus one (or the number of class folders, if more).
        class_names: the class folders' names, when the data is a folder.

    Returns:
        C. Every class id below it has training samples, unless C was declared.

    Raises:
        KdcliError: a label of `num_classes` or more; a class id with no
            training samples (ids from 1, a gap) when C is not declared; a
            training split of a single class.
    """
    top = int(max(y_train.max(), y_test.max()))
    if num_classes is not None:
        if top >= num_classes or len(class_names or ()) > num_classes:
            found = f"{len(class_names)} class folders" if len(class_names or ()) > num_classes else \
                f"class id {top}"
            raise KdcliError(f"{spec}: the data has {found}, but --num-classes {num_classes} allows ids "
                             f"0..{num_classes - 1}; give --num-classes {max(top + 1, len(class_names or ()))}")
    else:
        num_classes = max(top + 1, len(class_names or ()))
        present = np.unique(y_train)
        if present.size < num_classes:
            raise KdcliError(_missing_classes(spec, name, present, y_test, num_classes, class_names))
    if len(np.unique(y_train)) < 2:
        raise KdcliError(f"{spec}: the training labels hold a single class; classification needs at least two")
    return num_classes


def _missing_classes(spec, name, present, y_test, num_classes, class_names):
    """The line that refuses class ids with no training samples (`present`: the training
    labels' distinct ids): the first few of them, and the two ways out."""
    count = num_classes - present.size
    # The first five missing ids lie below present.size + 5: no arange as long as the largest label.
    missing = np.setdiff1d(np.arange(min(num_classes, present.size + 5)), present)[:5]
    shown = [f"{i} ({class_names[i]})" if class_names else str(i) for i in missing]
    ids = ", ".join(shown) + (f" and {count - len(shown)} more" if count > len(shown) else "")
    lo, hi = int(present[0]), int(present[-1])
    fix = ""
    if class_names:
        fix = " (their class folders hold no training files)"
    elif np.setdiff1d(y_test, present).size:
        fix = " (some are only in the test split)"
    elif count == lo:  # ids from 1 (or more), with no other gap: shifting them is the fix
        fix = f" (subtract {lo} from {'y' if name == 'y' else 'y_train and y_test'})"
    return (f"{spec}: no training samples of class id{'s' if count > 1 else ''} {ids} ({name} holds "
            f"{lo}..{hi}); class ids must run 0..C-1, each with training samples{fix}, or give --num-classes N "
            f"to declare classes absent from training")


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
