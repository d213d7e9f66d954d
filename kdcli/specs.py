"""Option values checked before any work: model specs as the command line gives them
(`--student`, `--arch`, `--model`), and the choices of the training options. This module
imports no TensorFlow, so the command line checks them, and lists them in its help, at once."""

from pathlib import Path

from kdcli.errors import UsageError

# The built-in architectures (see `kdcli.models.build_model`), and `auto`, which picks one from the data.
ARCHS = ("mlp", "cnn", "sequence", "text")
AUTO = "auto"
# The smallest height and width that `auto` treats as an image (the bundled digits are 8x8).
AUTO_IMAGE_SIDE = 8
# Learning-rate schedules (`--lr-schedule`, see `kdcli.train`) and precisions (`--mixed-precision`).
LR_SCHEDULES = ("cosine", "constant", "plateau")
# What `--epochs auto` watches on the validation split (`--monitor`, see `kdcli.options.Budget.monitor_for`).
MONITORS = ("auto", "accuracy", "loss", "kl")
PRECISIONS = ("off", "bf16")
# What a classifier outputs (see `kdcli.models.head_kind`), and the `--student-output` choices:
# `auto` gives the student its teacher's kind, so that it is a drop-in replacement.
HEADS = ("logits", "softmax", "sigmoid")
STUDENT_OUTPUTS = ("auto", *HEADS)
# The other choices the command line lists, each checked by the module named beside it.
COLOR_MODES = ("auto", "grayscale", "rgb")  # image folders, kdcli.data.readers
LOGIT_DTYPES = ("float32", "float16")  # soft-label files, kdcli.soft_labels
FORMATS = ("tflite", "saved_model")  # kdcli.export
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")  # kdcli.export
# The share of its calibration samples on which an int8 export must give its model's class, kdcli.export:
# one int8 scale per tensor can lose what a model reads (inputs on very different scales) and leave a
# file that answers at chance. Working int8 exports agree on 97% or more (the export tests).
MIN_INT8_AGREEMENT = 0.9
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")  # kdcli.distribute


def parse_spec(spec, role="student", option=None):
    """Check a model spec before any work is done, and say what kind it is.

    Args:
        spec: a `--student` value (`mlp`, `cnn`, `shrink:F`, `arch.keras`), or
            for a teacher an `--arch` value (`mlp`, `cnn`) or a `--model` path.
        role: `student` or `teacher`; a teacher cannot be `shrink:F`.
        option: the option named in errors (default `--student` for a
            student, `--arch` for a teacher).

    Returns:
        `("shrink", factor)`, `("builtin", name)`, `("app", (name, options))`
        (a `keras.applications` model, `app:NAME[:key=value,...]`) or `("file", path)`.

    Raises:
        UsageError: the spec is none of those (exit code 2).
    """
    option = option or ("--student" if role == "student" else "--arch")
    if role == "student" and spec.startswith("shrink:"):
        try:
            factor = float(spec.split(":", 1)[1])
        except ValueError:
            raise UsageError(f"--student {spec}: the shrink factor must be a number, like shrink:0.25") from None
        check_shrink_factor(factor)
        return "shrink", factor
    if role == "student" and spec.startswith("app:"):
        return "app", _parse_app(spec)
    if spec in ARCHS or spec == AUTO:
        return "builtin", spec
    if spec.lower().endswith((".keras", ".h5", ".hdf5")):
        return "file", spec
    if option == "--model" or Path(spec).suffix or "/" in spec:
        raise UsageError(f"{option} {spec}: give a .keras (or legacy .h5) file saved with model.save()")
    raise unknown_spec(spec, role, option)


def unknown_spec(spec, role="teacher", option=None):
    """The error for a model name that is no built-in architecture (exit code 2)."""
    if role == "student":
        return UsageError(f"{option or '--student'} {spec!r}: unknown student; "
                          "give auto, mlp, cnn, sequence, text, shrink:F, app:NAME or a .keras architecture")
    return UsageError(f"{option or '--arch'} {spec!r}: unknown architecture; "
                      "give auto, mlp, cnn, sequence or text, or your own with --model arch.keras")


def _parse_app(spec):
    """`app:NAME[:key=value,...]` as `(NAME, {key: value})`; values are numbers, true/false or text."""
    _, name, *rest = spec.split(":", 2)
    if not name.isidentifier():
        raise UsageError(f"--student {spec}: give app:NAME, a keras.applications model, like app:MobileNetV3Small")
    options = {}
    for item in filter(None, (rest[0] if rest else "").split(",")):
        key, equals, text = item.partition("=")
        if not (equals and key.isidentifier() and text):
            raise UsageError(f"--student {spec}: give options as key=value, like app:MobileNetV3Small:alpha=0.75")
        options[key] = _option_value(text)
    return name, options


def _option_value(text):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def signal_shaped(shape):
    """Whether samples of `shape` are narrow signals `(L, C)` (sensor traces, audio): at least
    `AUTO_IMAGE_SIDE` steps of fewer channels. The cnn convolves them along the time axis; other
    two-axis samples, such as `(64, 8)`, are grey images to it."""
    shape = tuple(shape)
    return len(shape) == 2 and shape[0] >= AUTO_IMAGE_SIDE and shape[1] < AUTO_IMAGE_SIDE


def auto_arch(input_shape, input_kind="numeric"):
    """The built-in architecture `auto` picks for the data.

    - `text` for text (strings, see `kdcli.Dataset.input_kind`);
    - `sequence` for integer token ids (samples of shape `(L,)`);
    - `cnn` for signals `(L, C)` (see `signal_shaped`: 1-D convolutions) and for image-shaped samples:
      `(H, W)` or `(H, W, C)` with at most 4 channels, both sides at least 8 pixels;
    - `mlp` otherwise (flat features).
    """
    if input_kind == "text":
        return "text"
    if input_kind == "tokens":
        return "sequence"
    shape = tuple(input_shape)
    if signal_shaped(shape):
        return "cnn"
    if len(shape) == 2 or (len(shape) == 3 and shape[2] <= 4):
        if min(shape[:2]) >= AUTO_IMAGE_SIDE:
            return "cnn"
    return "mlp"


def resolve_spec(spec, data):
    """A spec with `auto` replaced by the architecture it picks for `data` (a `kdcli.Dataset`)."""
    return auto_arch(data.input_shape, data.input_kind) if spec == AUTO else spec


def check_shrink_factor(factor):
    """Refuse a shrink factor that is not above 0 (exit code 2)."""
    if not factor > 0:  # NaN too
        raise UsageError(f"--student shrink:{factor:g}: the shrink factor must be above 0, like shrink:0.25")
