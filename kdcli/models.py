"""Models: built-in architectures, student specs, and a teacher's logits.

Built-in models start with their preprocessing (a `Normalization` layer
adapted to the training split), so a saved model takes raw inputs and gives
the same answers in `evaluate`, in an export and in a user's own
`model.predict`. They end in logits, with no softmax.
"""

import contextlib
from pathlib import Path

import numpy as np

from kdcli._tf import keras
from kdcli.errors import KdcliError, UsageError, first_line as _first_line
from kdcli.hub import find_task, is_backbone, saveable, shrink_backbone, shrink_task
from kdcli.specs import (
    ARCHS,
    PRECISIONS,
    STUDENT_OUTPUTS,
    check_shrink_factor,
    parse_spec,
    resolve_spec,
    signal_shaped,
    unknown_spec,
)

ADAPT_SAMPLES, ADAPT_BATCH = 50_000, 1024

# (width, depth) by role. mlp: `depth` hidden Dense layers of `width` units.
# cnn: `depth` blocks of two 3x3 convolutions, `width * 2**i` filters in block i.
# sequence and text: an embedding of `width`, then `depth` 1-D convolutions of `2 * width` filters.
DEFAULTS = {
    "teacher": {"mlp": (512, 2), "cnn": (32, 2), "sequence": (64, 2), "text": (64, 2)},
    "student": {"mlp": (64, 1), "cnn": (8, 2), "sequence": (16, 1), "text": (16, 1)},
}
# The text model's vocabulary (most frequent words of the training split) and its sequence length cap.
TEXT_VOCABULARY, TEXT_MAX_LENGTH = 20_000, 256


def build_model(arch, data, width=None, depth=None, role="teacher", seed=None):
    """Build an untrained built-in model sized for a data set.

    Args:
        arch: `mlp`, `cnn`, `sequence` (integer token ids: an embedding and
            1-D convolutions) or `text` (strings: a `TextVectorization`
            adapted to the training texts, then the sequence model).
        data: the `Dataset`; its input shape, classes and training split (to
            adapt the normalisation or the vocabulary) size the model.
        width: units of each hidden layer (mlp), filters of the first block
            (cnn), or the embedding size (sequence, text).
        depth: hidden layers (mlp), convolution blocks (cnn), or 1-D convolutions (sequence, text).
        role: `teacher` or `student`, which picks the default width and depth.
        seed: seed of the weight initialisation.

    Returns:
        An uncompiled `keras.Model` mapping raw inputs to logits.

    Example:
        >>> teacher = build_model("cnn", load_data("digits"))
    """
    if arch not in ARCHS:
        raise unknown_spec(arch)
    default_width, default_depth = DEFAULTS[role][arch]
    width = default_width if width is None else width
    depth = default_depth if depth is None else depth
    if width < 1 or depth < 0 or (arch == "cnn" and depth < 1):
        raise UsageError(f"--width must be at least 1 and --depth at least {1 if arch == 'cnn' else 0}")
    kind = data.input_kind
    if (arch == "text") != (kind == "text") or (arch == "sequence" and kind != "tokens"):
        needs = {"text": "text (strings)", "sequence": "integer token ids, samples of shape (L,)"}
        raise KdcliError(f"the {arch} architecture needs {needs.get(arch, 'numeric inputs')}, the data holds "
                         f"{kind} samples of shape {data.input_shape}; use --arch auto")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    shape = data.input_shape
    inputs = keras.Input(shape=shape, name="inputs", dtype="string" if kind == "text" else None)
    if arch == "text":
        x = keras.layers.Embedding(TEXT_VOCABULARY, width, name="embedding")(_vectorizer(data)(inputs))
        x = _convolutions_1d(x, width, depth)
    elif arch == "sequence":
        x = keras.layers.Embedding(_vocabulary_size(data), width, name="embedding")(inputs)
        x = _convolutions_1d(x, width, depth)
    elif arch == "mlp":
        x = _normalization(data)(inputs)
        x = keras.layers.Flatten()(x) if len(shape) > 1 else x
        for _ in range(depth):
            x = keras.layers.Dense(width, activation="relu")(x)
    else:
        if len(shape) not in (2, 3):
            raise KdcliError(
                f"the cnn architecture needs images (H, W) or (H, W, C), or signals (L, C), the data has samples "
                f"of shape {shape}; use mlp"
            )
        x = _normalization(data)(inputs)
        if signal_shaped(shape):  # (L, C): convolutions along the time axis, C channels
            conv, pool, size = keras.layers.Conv1D, keras.layers.MaxPooling1D, shape[0]
        else:
            conv, pool, size = keras.layers.Conv2D, keras.layers.MaxPooling2D, min(shape[:2])
            if len(shape) == 2:
                x = keras.layers.Reshape((*shape, 1))(x)
        for block in range(depth):
            filters = width * 2**block
            x = conv(filters, 3, padding="same", activation="relu")(x)
            x = conv(filters, 3, padding="same", activation="relu")(x)
            if size >= 4:
                x = pool(2)(x)
                size //= 2
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(4 * width, activation="relu")(x)
        x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(data.num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"{role}_{arch}")


def _convolutions_1d(x, width, depth):
    """The body of the sequence and text models: 1-D convolutions over embedded tokens, max-pooled."""
    for _ in range(depth):
        x = keras.layers.Conv1D(2 * width, 5, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(2 * width, activation="relu")(x)
    return keras.layers.Dropout(0.3)(x)


def _vocabulary_size(data):
    """Token ids run from 0 to the largest id in either split: the embedding has a row for each."""
    from kdcli.data import iterate

    largest = 0
    for split in (data.train, data.test):
        for x, *_ in iterate(split.batches(ADAPT_BATCH * 8)):
            largest = max(largest, int(x.numpy().max()))
    return largest + 1


def _vectorizer(data):
    """A `TextVectorization` layer adapted to the training texts: lower-cased words, punctuation
    stripped, the `TEXT_VOCABULARY` most frequent kept, sequences cut or padded to the length
    that covers 95% of the training texts (at most `TEXT_MAX_LENGTH` words)."""
    from kdcli.data import data_errors

    texts = data.train.batches(ADAPT_BATCH, shuffle_seed=0).take(-(-ADAPT_SAMPLES // ADAPT_BATCH))
    texts = texts.map(lambda x, *_: x)
    with data_errors():
        lengths = np.concatenate([np.char.count(np.char.strip(t.numpy().astype(str)), " ") + 1 for t in texts])
    length = int(min(TEXT_MAX_LENGTH, max(8, np.percentile(lengths, 95))))
    vectorizer = keras.layers.TextVectorization(TEXT_VOCABULARY, output_sequence_length=length, name="vectorize")
    with data_errors():
        vectorizer.adapt(texts)
    return vectorizer


def build_application(name, options, data, seed=None, spec=None):
    """A `keras.applications` classifier, untrained, for a data set (`--student app:NAME[:key=value,...]`).

    It is built with `weights=None` (nothing is downloaded) for the data's
    input shape and classes, ending in logits, after a `Normalization` layer
    adapted to the training split like the built-in models' (the family's
    own preprocessing is turned off where it can be).

    Args:
        name: the class name in `keras.applications`, e.g. `MobileNetV3Small`.
        options: more keyword arguments for it, e.g. `{"alpha": 0.75}`.
        data: the `Dataset`.
        seed: seed of the weight initialisation.
        spec: the `--student` value, for errors.

    Raises:
        UsageError: no such model in `keras.applications`.
        KdcliError: the family cannot be built with these options for the data's shape.
    """
    import inspect

    spec = spec or f"app:{name}"
    builder = getattr(keras.applications, name, None)
    if not callable(builder) or name[:1].islower():
        raise UsageError(f"--student {spec}: keras.applications has no model {name!r}; give one such as "
                         "app:MobileNetV3Small, app:MobileNetV2, app:ResNet50V2 or app:EfficientNetB0")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    kwargs = {"weights": None, "input_shape": tuple(data.input_shape), "classes": data.num_classes,
              "classifier_activation": None, **options}
    if "include_preprocessing" in inspect.signature(builder).parameters:
        kwargs.setdefault("include_preprocessing", False)  # kdcli's Normalization comes first
    try:
        core = builder(**kwargs)
    except (ValueError, TypeError) as e:
        raise KdcliError(f"--student {spec}: cannot be built for samples of shape {tuple(data.input_shape)} "
                         f"({_first_line(e)})") from e
    inputs = keras.Input(shape=data.input_shape, name="inputs")
    return keras.Model(inputs, core(_normalization(data)(inputs)), name=f"student_{name.lower()}")


def _normalization(data):
    """A Normalization layer adapted to the training inputs.

    Per channel for images (H, W, C) and per feature for flat vectors; one
    mean and variance for every other shape.
    """
    from kdcli.data import data_errors

    axis = -1 if len(data.input_shape) in (1, 3) else None
    norm = keras.layers.Normalization(axis=axis, name="normalization")
    # A shuffled sample of at most ADAPT_SAMPLES training inputs: enough for a
    # mean and a variance, and bounded for data sets larger than memory.
    batches = data.train.batches(ADAPT_BATCH, shuffle_seed=0).take(-(-ADAPT_SAMPLES // ADAPT_BATCH))
    with data_errors():
        norm.adapt(batches.map(lambda x, *_: x))
    return norm


def build_from_spec(spec, data, role="student", *, width=None, depth=None, seed=None, unsafe=False, teacher=None,
                    mixed_precision=None):
    """Build an untrained model from a `--student` (or `--arch`/`--model`) spec.

    Args:
        spec: a built-in family (`mlp`, `cnn`, or `auto`: see
            `kdcli.specs.auto_arch`); a path to a `.keras` file
            holding the user's own architecture (its weights are
            re-initialised); or `shrink:F`, the teacher with every width
            scaled by F (see `shrink`).
        data: the `Dataset` the model will learn.
        role: `teacher` or `student`, which picks the built-in default sizes.
        width, depth: knobs of the built-in families.
        seed: seed of the weight initialisation.
        unsafe: allow a user architecture that holds code (a `Lambda` layer).
        teacher: the teacher model, for `shrink:F`.
        mixed_precision: `bf16` to compute in bfloat16 (see `with_dtype_policy`).

    Returns:
        An uncompiled `keras.Model` with `data.num_classes` outputs, ending in logits.
    """
    model = _build_from_spec(spec, data, role, width, depth, seed, unsafe, teacher)
    if mixed_precision in (None, "off"):
        return model
    if mixed_precision not in PRECISIONS:
        raise UsageError(f"--mixed-precision must be one of {', '.join(PRECISIONS)}, got {mixed_precision!r}")
    with code_allowed(unsafe):
        return with_dtype_policy(model, "mixed_bfloat16")


def _build_from_spec(spec, data, role, width, depth, seed, unsafe, teacher):
    spec = resolve_spec(spec, data)
    kind, value = parse_spec(spec, role)
    if kind == "shrink":
        if teacher is None:
            raise UsageError(f"--student {spec} derives the student from the teacher: give --teacher")
        if any(isinstance(layer, keras.layers.TFSMLayer) for layer in teacher.layers):
            raise UsageError(f"--student {spec}: the teacher is a SavedModel, which has no architecture to shrink; "
                             "give --student auto, mlp, cnn or a .keras architecture")
        task = find_task(teacher)
        if task is not None:  # a KerasHub task: the same task class with a smaller backbone
            return logits_model(shrink_task(task, value, depth=depth, seed=seed))
        model = logits_model(shrink(teacher, value, seed, unsafe=unsafe, depth=depth))
        check_compatible(model, data, spec)
        return model
    if kind == "builtin":
        return build_model(spec, data, width, depth, role=role, seed=seed)
    if kind == "app":
        return build_application(*value, data, seed=seed, spec=spec)
    from kdcli.model_files import load_model

    if seed is not None:
        keras.utils.set_random_seed(seed)
    loaded = load_model(spec, unsafe=unsafe)
    check_one_input_one_output(loaded, Path(spec).name)
    with code_allowed(unsafe):  # cloning deserialises the model again
        model = keras.models.clone_model(loaded)
    check_compatible(model, data, Path(spec).name)
    return logits_model(model, Path(spec).name)


@contextlib.contextmanager
def code_allowed(unsafe):
    """Let Keras deserialise code (`Lambda` layers) inside the block when `unsafe`.

    Cloning or rebuilding a model deserialises it again, in safe mode unless
    told otherwise: a model loaded with `--unsafe` must be rebuilt the same way.
    """
    if not unsafe:
        yield
        return
    # Keras exports no scope for this, only a global switch; this is the one it uses itself.
    from keras.src.saving.serialization_lib import SafeModeScope

    with SafeModeScope(False):
        yield


def with_dtype_policy(model, policy):
    """The same model (same weights) computing under a Keras dtype policy.

    Every layer but those producing the outputs takes `policy` (for example
    `mixed_bfloat16`: bfloat16 computation, float32 weights); the output
    layers stay float32, so logits keep their precision.
    """

    def edit(layer_config, is_output):
        if layer_config["class_name"] != "InputLayer":
            layer_config["config"]["dtype"] = "float32" if is_output else policy

    return _rebuild(model, edit)


def _rebuild(model, edit):
    """Rebuild a Sequential or Functional model from its config, with its weights.

    `edit(layer_config, is_output)` changes each layer's config in place
    (`is_output`: the layer makes the model's classes, see `_output_layers`).
    """
    outputs = _output_layers(model)
    config = model.get_config()
    for layer_config in config["layers"]:
        # Shapes recorded at build time may no longer hold: rebuild from the inputs.
        layer_config.pop("build_config", None)
        edit(layer_config, layer_config["config"]["name"] in outputs)
    twin = model.__class__.from_config(config)
    for layer in model.layers:
        _copy_state(layer, twin.get_layer(layer.name))
    return twin


def _output_layers(model):
    """Names of the layers that make the model's outputs: the producing layers and,
    through layers that only pass values on (activations, dropout, reshapes), the
    layer whose width is the number of classes."""
    names = set()
    for tensor in model.outputs:
        layer = _producing_layer(tensor)
        names.add(layer.name)
        while layer.__class__.__name__ in _PASS_THROUGH:
            layer = _producing_layer(layer.input)
            names.add(layer.name)
    return names


def check_compatible(model, data, name):
    """Refuse a model whose input shape or number of outputs does not fit the data.

    The model must take samples of the data's shape and have an output for
    each class the data's labels name (`data.num_classes`).
    """
    in_shape = tuple(model.input_shape[1:])
    if data.input_kind == "text" and in_shape == (1,):
        in_shape = ()  # a (batch, 1) string input takes (batch,) strings: Keras adds the axis
    check_shapes(in_shape, model.output_shape[-1], data, name)


def check_shapes(in_shape, outputs, data, name):
    """Refuse a model (Keras or TFLite) that takes samples of shape `in_shape` (None: any size
    along that axis) and has `outputs` outputs, when they do not fit the data."""
    if len(in_shape) != len(data.input_shape) or any(
        m is not None and m != d for m, d in zip(in_shape, data.input_shape)
    ):
        raise KdcliError(
            f"{name}: the model takes inputs of shape {in_shape}, the data has samples of shape {data.input_shape}"
        )
    if outputs != data.num_classes:
        raise KdcliError(f"{name}: the model has {outputs} outputs, the data has {data.num_classes} classes")


def head_kind(model, name=None):
    """What a classifier's output is: `logits`, `softmax` probabilities, or one `sigmoid` probability.

    Args:
        model: a Keras classifier with one input and one output.
        name: what to call it in errors (its file name); by default its own name.

    Raises:
        KdcliError: several inputs or outputs, several sigmoid units (a
            multi-label head), or one output without a sigmoid (a regression head).
    """
    name = name or model.name
    check_one_input_one_output(model, name)
    last = model.layers[-1]
    activation = "softmax" if isinstance(last, keras.layers.Softmax) else \
        getattr(getattr(last, "activation", None), "__name__", None)
    width = model.output_shape[-1]
    if activation == "sigmoid" and width != 1:
        raise KdcliError(f"{name}: {width} sigmoid outputs, a multi-label head; kdcli distills single-label "
                         "classifiers (a softmax, logits, or one sigmoid unit for two classes)")
    if activation == "sigmoid":
        return "sigmoid"
    if width == 1:
        raise KdcliError(f"{name}: one output without a sigmoid, a regression head; kdcli distills classifiers "
                         "(a softmax, logits, or one sigmoid unit for two classes)")
    return "softmax" if activation == "softmax" else "logits"


def logits_model(model, name=None):
    """The model's pre-softmax logits, one per class, whatever its head (see `head_kind`).

    - A softmax head (`Dense(..., activation="softmax")`, a `Softmax` layer or
      an `Activation("softmax")`) is rebuilt to output what went into the
      softmax, sharing the original weights. Distillation needs logits:
      softening probabilities with a temperature would give a different
      (wrong) target distribution.
    - One sigmoid unit (a binary classifier) with pre-sigmoid output `z` is the
      two-class head with logits `[0, z]`, since `softmax([0, z])` is
      `[1 - sigmoid(z), sigmoid(z)]`: every loss then applies unchanged.
    - Any other head with two outputs or more is taken as logits.

    Args:
        model: a Keras classifier with one input and one output.
        name: what to call it in errors (its file name); by default its own name.

    Raises:
        KdcliError: as `head_kind`.
    """
    kind = head_kind(model, name)
    last = model.layers[-1]
    # `inputs`, not `input`: a loaded Sequential model only answers the former.
    inputs = model.inputs[0]
    if kind == "sigmoid":
        z = _pre_activation(last)
        zero = keras.layers.Rescaling(0.0, name=f"{last.name}_zero")(z)  # standard layers: safe to save
        return keras.Model(inputs, keras.layers.Concatenate(name=f"{last.name}_logits2")([zero, z]), name=model.name)
    if kind == "softmax":
        return keras.Model(inputs, _pre_activation(last), name=model.name)
    return model


def with_head(model, kind):
    """A logits model with the head a user serves: the inverse of `logits_model`.

    Args:
        model: a model ending in logits, one per class.
        kind: `logits` (the model itself), `softmax` (probabilities that sum
            to 1), or `sigmoid` (two classes only: one column, the
            probability of class 1, `sigmoid(z1 - z0)`, which equals
            `softmax(z)[1]`).

    Returns:
        A model sharing `model`'s layers and weights.
    """
    task = saveable(model, kind)
    if task is not None:  # a KerasHub task, saved as itself with its preprocessor
        return task
    if kind == "logits":
        return model
    logits = model.outputs[0]
    if kind == "softmax":
        outputs = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    elif kind == "sigmoid":
        if model.output_shape[-1] != 2:
            raise UsageError(f"a sigmoid output is for two classes; the model has {model.output_shape[-1]}: "
                             "choose --student-output softmax or logits")
        # A fixed Dense layer is z1 - z0: standard layers only, so the file loads in safe mode.
        head = keras.layers.Dense(1, activation="sigmoid", trainable=False, name="probability", dtype="float32")
        outputs = head(logits)
        head.set_weights([np.array([[-1.0], [1.0]], np.float32), np.zeros(1, np.float32)])
    else:
        raise UsageError(f"--student-output must be one of {', '.join(STUDENT_OUTPUTS)}, got {kind!r}")
    return keras.Model(model.inputs[0], outputs, name=model.name)


def _pre_activation(last):
    """What went into the final activation of a model's last layer, sharing its weights."""
    if isinstance(last, (keras.layers.Softmax, keras.layers.Activation)):
        return last.input
    config = last.get_config()
    config.update(activation="linear", name=f"{last.name}_logits")
    twin = last.__class__.from_config(config)
    outputs = twin(last.input)
    twin.set_weights(last.get_weights())
    return outputs


def check_one_input_one_output(model, name):
    """Refuse, with one line, a model kdcli cannot distill: several inputs, or several outputs."""
    for what, tensors in (("inputs", model.inputs), ("outputs", model.outputs)):
        if len(tensors) != 1:
            raise KdcliError(
                f"{name}: the model has {len(tensors)} {what}; kdcli distills classifiers with one input and one "
                "output (the class scores); give such a model, or choose the student with --student"
            )


def count_params(model):
    """(total, trainable) parameter counts."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    total = sum(int(w.numpy().size) for w in model.weights)
    return total, trainable


# What shrink does with each layer, by class name.
# Scaled: the config key of the width multiplied by the factor.
_WIDTHS = {
    **dict.fromkeys(("Dense", "LSTM", "GRU", "SimpleRNN"), "units"),
    **dict.fromkeys(("Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D", "Conv1DTranspose",
                     "Conv2DTranspose", "Conv3DTranspose"), "filters"),
    "Embedding": "output_dim",
}
# Layers whose configuration names the channels of their input (ConvNeXt's LayerScale): set from the new input.
_INPUT_WIDTHS = {"LayerScale": "projection_dim"}
# Merges whose inputs must have one width: the widths joined by them are scaled as one.
_SAME_WIDTH_MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
# Layers with no weights or weights that follow their input's width (normalisation): rebuilt on the new inputs.
_SHAPE_FOLLOWING = {
    "DepthwiseConv1D", "DepthwiseConv2D", "BatchNormalization", "LayerNormalization", "GroupNormalization",
    "UnitNormalization", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "Flatten",
    "Reshape", "Permute", "RepeatVector", "Masking", "Concatenate", *_SAME_WIDTH_MERGES, "Activation", "ReLU",
    "LeakyReLU", "PReLU", "ELU", "Softmax", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
    "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity", "Bidirectional",
    "MultiHeadAttention", "StochasticDepth", *_INPUT_WIDTHS,
}
# Layers that pass values on unchanged in width: the classes come from the layer before them.
_PASS_THROUGH = {"Activation", "Softmax", "ReLU", "LeakyReLU", "ELU", "Dropout", "GaussianNoise",
                 "GaussianDropout", "Identity", "Reshape", "Flatten"}
# Rounds of shrink: each makes the widths joined by a merge agree, where rounding made them differ.
_SHRINK_ROUNDS = 6


def shrink(model, factor, seed=None, unsafe=False, depth=None):
    """Derive an untrained student from a model by scaling its widths.

    - **Scaled** by `factor` (rounded, at least 1): `Dense` units, every
      convolution's filters (`Conv1D/2D/3D`, separable and transposed ones),
      `Embedding` output sizes, `LSTM`/`GRU`/`SimpleRNN` units (inside
      `Bidirectional` too) and `MultiHeadAttention`'s key and value sizes.
      The layers that produce the model's outputs keep their width.
    - **Scaled as one**: widths joined by a merge (`Add`, `Multiply`...),
      so that rounding cannot make them differ (NASNet's branches).
    - **Rebuilt for their new inputs**: normalisation (`BatchNormalization`,
      `LayerNormalization`, `GroupNormalization`, whose groups then divide
      the channels), `Reshape` (its target takes the new channels, as in a
      squeeze-and-excite block), depthwise and grouped convolutions, and
      every layer without weights (activations, padding, cropping, pooling,
      `Flatten`, `Permute`, merges, dropout).
    - **Copied with their state**: preprocessing and augmentation layers
      (`Normalization` with its statistics, `Rescaling`, `Resizing`,
      `CenterCrop`, every `Random*` layer, `TextVectorization` with its
      vocabulary).
    - **Nested** Sequential and Functional models are shrunk the same way.
    - **KerasHub backbones** are rebuilt from their config with its widths
      scaled (`kdcli.hub.shrink_backbone`); `depth` sets their transformer layers.

    Args:
        model: the teacher (its weights are not used, but for preprocessing).
        factor: the width multiplier, in (0, 1] to shrink.
        seed: seed of the student's weight initialisation.
        unsafe: the teacher was loaded with `--unsafe` (it may hold code).
        depth: the transformer layers of the model's KerasHub backbone (`--depth`); None keeps them.

    Returns:
        A new, untrained `keras.Model` with the teacher's inputs and head (a
        softmax output is kept; `kdcli.logits_model` strips it).

    Raises:
        KdcliError: the model is subclassed, holds a layer shrink does not
            know, or its shapes no longer fit after scaling.

    Example:
        >>> student = shrink(teacher, 0.25)   # about 1/16 of the parameters
    """
    check_shrink_factor(factor)
    _check_graph_model(model)
    forced = {}
    for _ in range(_SHRINK_ROUNDS):
        if seed is not None:
            keras.utils.set_random_seed(seed)
        shrinker = _Shrinker(factor, forced, depth)
        try:
            with code_allowed(unsafe):
                student = shrinker.model(model, model.inputs[0], keep_outputs=True)
        except (ValueError, TypeError) as e:
            raise KdcliError(
                f"shrink cannot rebuild the model after scaling ({_first_line(e)}); give a student with --student"
            ) from e
        if not shrinker.forced:
            if depth is not None and not shrinker.backbones:
                raise UsageError(f"--depth with shrink:{factor:g} sets a KerasHub transformer backbone's layers; "
                                 "the teacher has none (shrink scales widths only)")
            return student
        forced.update(shrinker.forced)
    raise KdcliError("shrink cannot make the widths joined by merge layers agree; give a student with --student")


def _check_graph_model(model):
    if not isinstance(model, keras.Model) or type(model).__name__ not in ("Sequential", "Functional"):
        raise KdcliError(
            f"shrink works on Sequential and Functional models, not a subclassed {type(model).__name__}; "
            "give an architecture with --student"
        )


class _Shrinker:
    """One round of `shrink`: every layer of the teacher rebuilt, scaled, on new tensors.

    It calls new layers on new tensors in the teacher's order, so each layer
    is configured from the real shapes of its new inputs. Where a merge finds
    widths that rounding made differ, it records the width that makes them
    agree (`forced`) and goes on with a stand-in; the next round applies it.

    Args:
        factor: the width multiplier.
        widths: widths already forced, by `id` of the teacher's layer.
    """

    def __init__(self, factor, widths, depth=None):
        self.factor, self.widths, self.depth = factor, widths, depth
        self.backbones = 0    # KerasHub backbones rebuilt from their config
        self.forced = {}      # id(teacher layer) -> the width that makes a merge's inputs agree
        self.sources = {}     # id(new tensor) -> the teacher layer whose width its channels are, or None
        self.tensors = []     # the new tensors, kept alive so that their ids stay unique
        self.built = {}       # id(teacher layer) -> its new layer (a layer called twice stays shared)
        self.outputs = set()  # names of the layers that make the current model's outputs

    def model(self, model, like, keep_outputs):
        """A shrunk copy of a Sequential or Functional `model`, on an input shaped like the tensor `like`."""
        _check_graph_model(model)
        outer, self.outputs = self.outputs, _output_layers(model) if keep_outputs else set()
        inputs = keras.Input(batch_shape=like.shape, dtype=like.dtype, name=model.inputs[0].name)
        if isinstance(model, keras.Sequential):
            x, layers = inputs, []
            for layer in model.layers:
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                x = self(layer, x)
                layers.append(self.built[id(layer)])
            twin = keras.Sequential([inputs, *layers], name=model.name)
        else:
            structure = [inputs] if isinstance(model.input, list) else inputs
            twin = keras.models.clone_model(model, input_tensors=structure, clone_function=lambda layer: layer,
                                            call_function=self)
        self.outputs = outer
        return twin

    def __call__(self, layer, *args, **kwargs):
        """Call the new version of the teacher's `layer` on new tensors (`clone_model`'s `call_function`)."""
        inputs = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        new = self.built.get(id(layer))
        first = new is None
        if first:
            if is_backbone(layer):  # a KerasHub backbone: its config scaled, not its layers
                new = shrink_backbone(layer, self.factor, self.depth)
                self.backbones += 1
            elif isinstance(layer, keras.Model):
                new = self.model(layer, inputs[0], keep_outputs=layer.name in self.outputs)
            else:
                new, args = self._new_layer(layer, inputs, args)
            self.built[id(layer)] = new
        outputs = new(*args, **kwargs)
        if first and _is_preprocessing(layer):  # built by the call: now it can take the teacher's state
            _copy_state(layer, new)
        for out in keras.tree.flatten(outputs):
            self.tensors.append(out)
            self.sources[id(out)] = self._source(layer, new, inputs, out)
        return outputs

    def _width(self, layer, width):
        return self.widths.get(id(layer)) or max(1, round(width * self.factor))

    def _new_layer(self, layer, inputs, args):
        """A new layer for the teacher's `layer`, configured for the new `inputs`; and the call's arguments."""
        name, config = type(layer).__name__, layer.get_config()
        scaled = layer.name not in self.outputs
        if _is_preprocessing(layer):
            pass
        elif not isinstance(layer, keras.layers.Layer):  # an operation on tensors (`x + 3`, `ops.multiply`)
            if name in _SAME_WIDTH_MERGES | {"Divide", "TrueDivide"}:
                args = self._agree(layer, inputs, args)
        elif name in _WIDTHS:
            key = _WIDTHS[name]
            if config.get("groups", 1) > 1:  # a grouped (ConvNeXt: depthwise) convolution
                config.update(_grouped(config, layer, inputs[0].shape[-1]))
            elif scaled:
                config[key] = self._width(layer, config[key])
        elif name not in _SHAPE_FOLLOWING:
            raise KdcliError(
                f"shrink does not know layer {layer.name!r} ({name}); give a student architecture with "
                "--student mlp, cnn, app:NAME or a .keras file"
            )
        elif name == "Bidirectional":
            for key in ("layer", "backward_layer"):
                if config.get(key):
                    config[key].pop("build_config", None)  # built for the old input: rebuilt on the new one
                    inner = config[key]["config"]
                    inner["units"] = self._width(layer, inner["units"])
        elif name == "MultiHeadAttention":
            for key in ("key_dim", "value_dim"):
                if config.get(key):
                    config[key] = self._width(layer, config[key])
        elif name == "Reshape":
            config["target_shape"] = _reshaped(config["target_shape"], layer.input.shape, inputs[0].shape)
        elif name == "GroupNormalization":
            channels = inputs[0].shape[config.get("axis", -1)]
            config["groups"] = max(g for g in range(1, config["groups"] + 1) if channels % g == 0)
        elif name in _INPUT_WIDTHS:
            config[_INPUT_WIDTHS[name]] = inputs[0].shape[-1]
        elif name in _SAME_WIDTH_MERGES:
            args = self._agree(layer, inputs, args)
        return layer.__class__.from_config(config), args

    def _agree(self, layer, inputs, args):
        """The arguments of a merge, with one width; where rounding made the widths differ, record
        the width that makes them agree, and stand in for this round with a projection to it."""
        widths = [t.shape[-1] for t in inputs]
        real = {w for w in widths if w not in (1, None)}  # a width of 1 broadcasts (squeeze-and-excite)
        if len(real) < 2:
            return args
        fixed = {w for t, w in zip(inputs, widths) if w in real and self.sources.get(id(t)) is None}
        if len(fixed) > 1:
            raise KdcliError(f"shrink cannot make the widths joined by {layer.name!r} agree ({sorted(real)}); "
                             "give a student with --student")
        target = fixed.pop() if fixed else max(real)
        agreed = {}
        for t, w in zip(inputs, widths):
            if w in real and w != target:
                self.forced[id(self.sources[id(t)])] = target
                agreed[id(t)] = keras.layers.Dense(target)(t)
        return keras.tree.map_structure(lambda t: agreed.get(id(t), t), args)

    def _source(self, layer, new, inputs, out):
        """The teacher layer whose width the channels of `out` are (that width can be forced), or None."""
        name = type(layer).__name__
        if name in _WIDTHS and layer.name not in self.outputs and new.get_config().get("groups", 1) == 1:
            return layer
        sources = [self.sources.get(id(t)) for t in inputs]
        if name in _SAME_WIDTH_MERGES:
            return None if any(s is None for s in sources) else sources[0]
        if inputs and out.shape[-1] == inputs[0].shape[-1] and name not in ("Bidirectional", "Concatenate"):
            return sources[0]
        return None


def _is_preprocessing(layer):
    return type(layer).__module__.startswith("keras.src.layers.preprocessing")


def _copy_state(teacher_layer, layer):
    """Give a built copy of a layer the original's state: its weights (a `Normalization`'s
    statistics too), and a vocabulary (`TextVectorization`, `StringLookup`...)."""
    if teacher_layer.weights:
        layer.set_weights(teacher_layer.get_weights())
        if hasattr(layer, "finalize_state"):  # Normalization computes from its weights once, here
            layer.finalize_state()
    if hasattr(teacher_layer, "get_vocabulary"):
        layer.set_vocabulary(teacher_layer.get_vocabulary())


def _grouped(config, layer, channels):
    """A grouped convolution's `groups` and `filters` for `channels` new input channels.

    A depthwise one (groups = filters = input channels, ConvNeXt's) stays depthwise; otherwise the
    groups become the largest divisor of the new channels not above the old groups, and the filters
    are scaled to a multiple of them.
    """
    old_channels = layer.input.shape[-1]
    if config["groups"] == config["filters"] == old_channels:
        return {"groups": channels, "filters": channels}
    groups = max(g for g in range(1, config["groups"] + 1) if channels % g == 0)
    return {"groups": groups, "filters": groups * max(1, round(config["filters"] * channels / old_channels / groups))}


def _reshaped(target, old_input, new_input):
    """A `Reshape` target for a new input: the channels follow the input's (squeeze-and-excite's
    `(1, 1, C)`); otherwise the last axis absorbs the change of size."""
    target = list(target)
    if -1 in target or None in old_input[1:] or None in new_input[1:]:
        return tuple(target)
    if target[-1] == old_input[-1]:
        target[-1] = new_input[-1]
        return tuple(target)
    new_size = int(np.prod(new_input[1:]))
    rest = int(np.prod(target[:-1]))
    if new_size % rest:
        raise KdcliError(f"shrink cannot reshape {tuple(new_input[1:])} to {tuple(target)} after scaling; "
                         "give a student with --student")
    target[-1] = new_size // rest
    return tuple(target)


def _producing_layer(tensor):
    return tensor._keras_history.operation


