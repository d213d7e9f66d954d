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
"""

from kdcli.errors import KdcliError

AUGMENTS = ("none", "shift")


def parse_augment(spec):
    """`none`, `shift` or `shift:N` as `(kind, pixels)`; pixels is None unless given.

    Raises KdcliError for anything else.
    """
    kind, _, pixels = (spec or "none").partition(":")
    if kind not in AUGMENTS or (pixels and kind == "none"):
        raise KdcliError(f"--augment must be none, shift or shift:N, got {spec!r}")
    if not pixels:
        return kind, None
    if not pixels.isdigit() or int(pixels) < 1:
        raise KdcliError(f"--augment shift:N needs a whole number of pixels N >= 1, got {spec!r}")
    return kind, int(pixels)


def make_augment(spec, input_shape):
    """The augmentation of a spec for inputs of `input_shape`, or None for `none`.

    Returns:
        A function `(x, seed) -> x` of a batch `x` and a stateless seed (an
        int64 tensor of shape `(2,)`): the same seed gives the same shifts,
        so runs repeat and resume exactly.

    Raises:
        KdcliError: the inputs are not images, or the shift is not smaller
            than the image.
    """
    kind, pixels = parse_augment(spec)
    if kind == "none":
        return None
    if len(input_shape) not in (2, 3):
        raise KdcliError(
            f"--augment {spec} shifts images, shape (H, W) or (H, W, C); the data has samples of shape "
            f"{tuple(input_shape)}: use --augment none"
        )
    size = min(input_shape[:2])
    pixels = pixels or max(1, round(size / 14))
    if pixels >= size:
        raise KdcliError(f"--augment {spec}: a shift of {pixels} pixels does not fit images of {size} pixels")

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
