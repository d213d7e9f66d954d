"""Training-time augmentation: random shifts of image inputs (`--augment`).

A teacher trained on shifted copies of its images generalises better. A
student distilled on shifted copies, with the teacher's logits computed for
the very same copies, learns the teacher's function around each training
sample and not only at it ("consistent teaching", Beyer et al. 2022). That
is what makes distillation pay when the teacher has memorised its training
split, whose plain soft labels then say little more than the hard labels.

Specs: `none`; `shift`, which moves each image by up to about a fourteenth of
its smaller side (2 pixels at 28x28, 1 pixel at 8x8) in each direction; or
`shift:N` for up to N pixels. Inputs of shape `(H, W)` or `(H, W, C)` only.
The uncovered border is filled with zeros, before the model's normalisation.
`train-teacher` also takes `auto`, its default: `shift` for the built-in
cnn, which treats its inputs as images anyway, `none` for anything else.
"""

from kdcli.errors import KdcliError, UsageError

AUGMENTS = ("none", "shift")
NEEDS_TEACHER = "--augment needs the teacher's logits for each shifted copy: give --teacher, without --soft-labels"


def parse_augment(spec, allow_auto=False):
    """`none`, `shift` or `shift:N` (or `auto`, if allowed) as `(kind, pixels)`; pixels is None unless given.

    Raises KdcliError for anything else.
    """
    kind, colon, pixels = (spec or "none").partition(":")
    kinds = ("auto", *AUGMENTS) if allow_auto else AUGMENTS
    if kind not in kinds or (colon and kind != "shift"):
        raise UsageError(f"--augment must be {', '.join(kinds)} or shift:N, got {spec!r}")
    if not colon:
        return kind, None
    if not (pixels.isascii() and pixels.isdigit()) or int(pixels) < 1:
        raise UsageError(f"--augment shift:N needs a whole number of pixels N >= 1, got {spec!r}")
    return kind, int(pixels)


def teacher_augment(spec, arch, input_shape):
    """Resolve `train-teacher --augment auto`: `shift` for the built-in cnn on images it can shift, else `none`."""
    parse_augment(spec, allow_auto=True)
    if spec != "auto":
        return spec
    if arch != "cnn":
        return "none"
    try:
        return resolve_augment("shift", input_shape)
    except KdcliError:  # not images kdcli can shift: only an explicit --augment shift is an error
        return "none"


def resolve_augment(spec, input_shape):
    """The canonical form of a spec for inputs of `input_shape`: `none`, or `shift:N` with N worked out.

    Equal augmentations get equal specs, as recorded in provenance and checkpoints.

    Raises:
        KdcliError: a bad spec, inputs that are not images (or look
            channels-first), or a shift not smaller than the image.
    """
    kind, pixels = parse_augment(spec)
    if kind == "none":
        return "none"
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
    """The augmentation of a spec for inputs of `input_shape`, or None for `none`.

    Returns:
        A function `(x, seed) -> x` of a batch `x` and a stateless seed (an
        int64 tensor of shape `(2,)`): the same seed gives the same shifts,
        so runs repeat and resume exactly.

    Raises:
        KdcliError: as `resolve_augment`.
    """
    spec = resolve_augment(spec, input_shape)
    if spec == "none":
        return None
    pixels = int(spec.partition(":")[2])

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
