"""Training-time augmentation: random shifts of images and mixup of any numeric inputs (`--augment`).

A teacher trained on shifted copies of its images generalises better. A
student distilled on shifted copies, with the teacher's logits computed for
the very same copies, learns the teacher's function around each training
sample and not only at it ("consistent teaching", Beyer et al. 2022). That
is what makes distillation pay when the teacher has memorised its training
split, whose plain soft labels then say little more than the hard labels.

Mixup (Zhang et al. 2018) replaces each input of a batch by `l x + (1 - l) x'`,
`x'` another input of the same batch and `l` drawn uniformly from [0, 1]
(Beta(1, 1)) per sample; the hard-label loss becomes `l CE(y) + (1 - l)
CE(y')`. With a live teacher labelling the mixed inputs, distillation is
"function matching" (Beyer et al. 2022): the student learns the teacher's
function between the training samples as well. Any numeric input mixes:
vectors, sequences, images; not text or token ids.

Specs: `none`; `shift`, which moves each image by up to about a fourteenth of
its smaller side (2 pixels at 28x28, 1 pixel at 8x8) in each direction, or
`shift:N` for up to N pixels (inputs of shape `(H, W)` or `(H, W, C)` only;
the uncovered border is filled with zeros, before the model's normalisation);
`mixup`; and `shift+mixup` (shift, then mix). `train-teacher` also takes
`auto`, its default: `shift` for the built-in cnn on images, `none` for
anything else (signals `(L, C)` included).
"""

from kdcli.errors import KdcliError, UsageError
from kdcli.specs import signal_shaped

AUGMENTS = ("none", "shift", "mixup", "shift+mixup")
NEEDS_TEACHER = ("--augment needs the teacher's logits for each augmented input: give --teacher, "
                 "without --soft-labels")


def parse_augment(spec, allow_auto=False):
    """A spec as `{part: value}`: `{}` for `none`, `{"auto": None}` for `auto` (if
    allowed), else `shift` (value: its pixels N, None unless given) and/or `mixup`
    (value None), in the `+`-joined order `shift[:N]+mixup`.

    Raises KdcliError for anything else.
    """
    spec = spec or "none"
    if spec in ("none", *(("auto",) if allow_auto else ())):
        return {} if spec == "none" else {"auto": None}
    parts = {}
    for part in spec.split("+"):
        kind, colon, pixels = part.partition(":")
        if kind not in ("shift", "mixup") or kind in parts or (colon and kind != "shift") or \
                list(parts) + [kind] not in (["shift"], ["mixup"], ["shift", "mixup"]):
            kinds = ", ".join(("auto", *AUGMENTS) if allow_auto else AUGMENTS)
            raise UsageError(f"--augment must be {kinds}, with shift:N for N pixels, got {spec!r}")
        if colon and (not (pixels.isascii() and pixels.isdigit()) or int(pixels) < 1):
            raise UsageError(f"--augment shift:N needs a whole number of pixels N >= 1, got {spec!r}")
        parts[kind] = int(pixels) if colon else None
    return parts


def has_mixup(spec):
    """Whether a spec mixes inputs (and so labels)."""
    return "mixup" in parse_augment(spec)


def teacher_augment(spec, arch, input_shape):
    """Resolve `train-teacher --augment auto`: `shift` for the built-in cnn on images it can shift, else `none`
    (signals `(L, C)` included: a shift of an image moves its channels too)."""
    parse_augment(spec, allow_auto=True)
    if spec != "auto":
        return spec
    if arch != "cnn" or signal_shaped(input_shape):
        return "none"
    try:
        return resolve_augment("shift", input_shape)
    except KdcliError:  # not images kdcli can shift: only an explicit --augment shift is an error
        return "none"


def resolve_augment(spec, input_shape, input_kind="numeric"):
    """The canonical form of a spec for inputs of `input_shape`: `none`, `shift:N`
    with N worked out, `mixup` or `shift:N+mixup`.

    Equal augmentations get equal specs, as recorded in provenance and checkpoints.

    Raises:
        KdcliError: a bad spec, a shift of inputs that are not images (or look
            channels-first) or not smaller than the image, or a mixup of
            inputs that are not numbers (`input_kind` `text` or `tokens`).
    """
    parts = parse_augment(spec)
    if not parts:
        return "none"
    if "mixup" in parts and input_kind != "numeric":
        what = "text" if input_kind == "text" else "token ids"
        raise KdcliError(f"--augment {spec} mixes numeric inputs (vectors, sequences, images); the data holds "
                         f"{what}: use --augment none")
    if "shift" not in parts:
        return "mixup"
    shift = _resolve_shift(spec, parts["shift"], input_shape)
    return f"{shift}+mixup" if "mixup" in parts else shift


def _resolve_shift(spec, pixels, input_shape):
    shape = tuple(input_shape)
    channels_first = len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4)
    if len(shape) not in (2, 3) or channels_first:
        raise KdcliError(
            f"--augment {spec} shifts images, shape (H, W) or (H, W, C) with channels last; the data has samples "
            f"of shape {shape}: use --augment none"
        )
    size = min(shape[:2])
    pixels = pixels or max(1, round(size / 14))
    if pixels >= size:
        raise UsageError(f"--augment {spec}: a shift of {pixels} pixels does not fit images of {size} pixels")
    return f"shift:{pixels}"


def make_augment(spec, input_shape):
    """The shift of a spec for inputs of `input_shape`, or None when it shifts nothing.

    Returns:
        A function `(x, seed) -> x` of a batch `x` and a stateless seed (an
        int64 tensor of shape `(2,)`): the same seed gives the same shifts,
        so runs repeat and resume exactly. (Mixup mixes labels too: the
        training loop applies `mix` itself.)

    Raises:
        KdcliError: as `resolve_augment`.
    """
    shift_spec = resolve_augment(spec, input_shape).partition("+")[0]
    if shift_spec in ("none", "mixup"):
        return None
    pixels = int(shift_spec.partition(":")[2])

    def shift(x, seed):
        return random_shift(x, pixels, seed)

    return shift


def random_shift(x, pixels, seed):
    """Move each image of the batch `x` by its own random whole-pixel offset in `[-pixels, pixels]`.

    Zero padding then a per-sample crop, by gathers: exact (no
    interpolation) and any dtype.
    """
    from kdcli._tf import tf

    height, width = x.shape[1], x.shape[2]
    pad = [[0, 0], [pixels, pixels], [pixels, pixels]] + [[0, 0]] * (len(x.shape) - 3)
    padded = tf.pad(x, pad)
    offsets = tf.random.stateless_uniform([tf.shape(x)[0], 2], seed, 0, 2 * pixels + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None]
    cols = offsets[:, 1:] + tf.range(width)[None]
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def mix(x, seed):
    """Mixup of a batch: `(mixed, partner, weight)`, `mixed[i] = weight[i] x[i] + (1 - weight[i]) x[partner[i]]`.

    `partner` is a random permutation of the batch and `weight` uniform in
    [0, 1], both from the stateless `seed` alone. `x` is float (kdcli's
    batches are float32 whatever the data's type).
    """
    from kdcli._tf import tf

    size = tf.shape(x)[0]
    order_seed, weight_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    partner = tf.argsort(tf.random.stateless_uniform([size], order_seed))
    weight = tf.random.stateless_uniform([size], weight_seed)
    w = tf.reshape(weight, [-1] + [1] * (len(x.shape) - 1))
    w = tf.cast(w, x.dtype)
    return w * x + (1 - w) * tf.gather(x, partner), partner, tf.cast(weight, x.dtype)
