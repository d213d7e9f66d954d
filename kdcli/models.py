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
from kdcli.specs import ARCHS, PRECISIONS, STUDENT_OUTPUTS, check_shrink_factor, parse_spec, resolve_spec, unknown_spec

ADAPT_SAMPLES, ADAPT_BATCH = 50_000, 1024

# (width, depth) by role. mlp: `depth` hidden Dense layers of `width` units.
# cnn: `depth` blocks of two 3x3 convolutions, `width * 2**i` filters in block i.
DEFAULTS = {
    "teacher": {"mlp": (512, 2), "cnn": (32, 2)},
    "student": {"mlp": (64, 1), "cnn": (8, 2)},
}


def build_model(arch, data, width=None, depth=None, role="teacher", seed=None):
    """Build an untrained built-in model sized for a data set.

    Args:
        arch: `mlp` or `cnn`.
        data: the `Dataset`; its input shape, classes and training split (to
            adapt the normalisation) size the model.
        width: units of each hidden layer (mlp) or filters of the first block (cnn).
        depth: hidden layers (mlp) or convolution blocks (cnn).
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
    if seed is not None:
        keras.utils.set_random_seed(seed)
    shape = data.input_shape
    inputs = keras.Input(shape=shape, name="inputs")
    x = _normalization(data)(inputs)
    if arch == "mlp":
        x = keras.layers.Flatten()(x) if len(shape) > 1 else x
        for _ in range(depth):
            x = keras.layers.Dense(width, activation="relu")(x)
    else:
        if len(shape) not in (2, 3):
            raise KdcliError(
                f"the cnn architecture needs image inputs (H, W) or (H, W, C), the data has samples "
                f"of shape {shape}; use mlp"
            )
        if len(shape) == 2:
            x = keras.layers.Reshape((*shape, 1))(x)
        size = min(shape[:2])
        for block in range(depth):
            filters = width * 2**block
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            if size >= 4:
                x = keras.layers.MaxPooling2D(2)(x)
                size //= 2
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(4 * width, activation="relu")(x)
        x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(data.num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"{role}_{arch}")


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
    spec = resolve_spec(spec, data.input_shape)
    kind, value = parse_spec(spec, role)
    if kind == "shrink":
        if teacher is None:
            raise UsageError(f"--student {spec} derives the student from the teacher: give --teacher")
        model = logits_model(shrink(teacher, value, seed, unsafe=unsafe))
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

    return _rebuild(model, edit, copy=lambda layer: True)


def _rebuild(model, edit, copy):
    """Rebuild a Sequential or Functional model from its config.

    `edit(layer_config, is_output)` changes each layer's config in place
    (`is_output`: the layer makes the model's classes, see `_output_layers`);
    the weights of the layers for which `copy(layer)` is true are copied over.
    """
    outputs = _output_layers(model)
    config = model.get_config()
    for layer_config in config["layers"]:
        # Shapes recorded at build time may no longer hold: rebuild from the inputs.
        layer_config.pop("build_config", None)
        edit(layer_config, layer_config["config"]["name"] in outputs)
    twin = model.__class__.from_config(config)
    for layer in model.layers:
        if layer.weights and copy(layer):
            target = twin.get_layer(layer.name)
            target.set_weights(layer.get_weights())
            # Preprocessing layers (Normalization) compute from their weights once, in finalize_state.
            if hasattr(target, "finalize_state"):
                target.finalize_state()
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
    check_shapes(tuple(model.input_shape[1:]), model.output_shape[-1], data, name)


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


# Layers that shrink understands: those scaled, and those that follow their inputs' shapes.
_SCALED = {"units": ("Dense",), "filters": ("Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D",
                                            "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")}
_SHAPE_FOLLOWING = {
    "InputLayer", "DepthwiseConv1D", "DepthwiseConv2D", "BatchNormalization", "LayerNormalization",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "Flatten", "Reshape", "Add", "Subtract", "Multiply",
    "Average", "Maximum", "Minimum", "Concatenate", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Normalization", "Rescaling", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity",
}
# Layers that pass values on unchanged in width: the classes come from the layer before them.
_PASS_THROUGH = {"Activation", "Softmax", "ReLU", "LeakyReLU", "ELU", "Dropout", "GaussianNoise",
                 "GaussianDropout", "Identity", "Reshape", "Flatten"}
# Layers whose state comes from the data, not from training: copied from the teacher.
_COPIED = {"Normalization", "Rescaling"}


def shrink(model, factor, seed=None, unsafe=False):
    """Derive an untrained student from a model by scaling its widths.

    Every `Dense` layer's `units` and every convolution's `filters` is
    multiplied by `factor` (rounded, at least 1), except in the layers that
    produce the model's outputs. Everything else keeps its configuration;
    `Normalization` layers keep the teacher's adapted statistics. Works for
    Sequential and Functional models built from standard Keras layers.

    Args:
        model: the teacher (its weights are not used, but for normalisation).
        factor: the width multiplier, in (0, 1] to shrink.
        seed: seed of the student's weight initialisation.
        unsafe: the teacher was loaded with `--unsafe` (it may hold code).

    Returns:
        A new, untrained `keras.Model` (a softmax output is kept as is;
        `kdcli.logits_model` strips it).

    Raises:
        KdcliError: the model is subclassed, holds a layer shrink does not
            know, or its shapes no longer fit after scaling.

    Example:
        >>> student = shrink(teacher, 0.25)   # about 1/16 of the parameters
    """
    check_shrink_factor(factor)
    if not isinstance(model, (keras.Sequential, keras.Model)) or type(model).__name__ not in ("Sequential", "Functional"):
        raise KdcliError(
            f"shrink works on Sequential and Functional models, not a subclassed {type(model).__name__}; "
            "give an architecture with --student"
        )
    def scale(layer_config, is_output):
        class_name, name = layer_config["class_name"], layer_config["config"]["name"]
        key = next((k for k, classes in _SCALED.items() if class_name in classes), None)
        if key is not None:
            if not is_output:
                layer_config["config"][key] = max(1, round(layer_config["config"][key] * factor))
        elif class_name not in _SHAPE_FOLLOWING:
            raise KdcliError(
                f"shrink does not know layer {name!r} ({class_name}); give a student architecture with "
                "--student mlp, cnn or a .keras file"
            )

    if seed is not None:
        keras.utils.set_random_seed(seed)
    try:
        with code_allowed(unsafe):
            return _rebuild(model, scale, copy=lambda layer: layer.__class__.__name__ in _COPIED)
    except (ValueError, TypeError) as e:
        raise KdcliError(
            f"shrink cannot rebuild the model after scaling ({_first_line(e)}); give a student with --student"
        ) from e


def _producing_layer(tensor):
    return tensor._keras_history.operation


