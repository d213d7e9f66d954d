"""KerasHub models: tasks run with their preprocessor, and tasks and backbones shrunk by their config.

A KerasHub task (`ResNetImageClassifier`, `BertTextClassifier`...) takes
*preprocessed* inputs when called: its preprocessor (an image converter that
rescales pixels, a tokenizer) runs only in `task.predict`. kdcli runs every
model on raw batches, so `runnable` wraps a task as one model from raw
inputs (images, strings) to the task's output, with the preprocessor inside:
soft labels, the online teacher, `evaluate`, the tuner and ensembles then see
what the task's own `predict` sees.

A task's student is the same task class with a smaller backbone
(`shrink_task`): the backbone's config with its widths scaled (`hidden_dim`,
`intermediate_dim`, `stackwise_num_filters`...; attention heads kept
dividing the width) and, with `depth`, its number of transformer layers set,
as DistilBERT halves BERT's. It keeps the teacher's preprocessor and
tokenizer; `saveable` gives back the task itself, which
`keras.saving.load_model` reloads as a task. A backbone inside a functional
model is shrunk the same way (`shrink_backbone`, called by `kdcli.models.shrink`).

keras-hub is an optional extra (`pip install 'kdcli[hub]'`): this module
imports it only for models that hold KerasHub classes.
"""

from kdcli._tf import keras
from kdcli.errors import KdcliError, UsageError

EXTRA = "pip install 'kdcli[hub]'"

# Backbone config keys scaled by the width factor: one width, or one per stage.
WIDTH_KEYS = ("hidden_dim", "intermediate_dim", "embedding_dim", "projection_dim")
WIDTH_LIST_KEYS = ("stackwise_num_filters", "input_conv_filters", "stackwise_hidden_dims", "hidden_dims")
# The transformer depth that `depth` sets.
DEPTH_KEY = "num_layers"
HEAD_KEYS = ("num_heads", "num_query_heads", "num_attention_heads")
# Entries of per-stage widths that a backbone's constructor requires unchanged (ResNet: the first
# stack takes the stem's 64 channels).
KEEP = {"ResNetBackbone": {"stackwise_num_filters": (0,), "input_conv_filters": (-1,)}}


def keras_hub():
    """The keras_hub module, or a one-line error naming the extra that installs it."""
    try:
        import keras_hub as module
    except ImportError as e:
        raise KdcliError(f"KerasHub models need keras-hub: {EXTRA}") from e
    return module


def _is_hub(obj, base):
    """Whether `obj` is an instance of KerasHub's class named `base` (without importing keras_hub)."""
    return any(c.__name__ == base and c.__module__.startswith("keras_hub") for c in type(obj).__mro__)


def is_task(model):
    """Whether `model` is a KerasHub task (a backbone, a head and perhaps a preprocessor)."""
    return _is_hub(model, "Task")


def is_backbone(layer):
    """Whether `layer` is a KerasHub backbone."""
    return _is_hub(layer, "Backbone")


def runnable(task):
    """A KerasHub task as one Keras model from raw inputs to its output, its preprocessor inside.

    The task's head is split like any head kdcli reads (`kdcli.models.head_kind`):
    a task with `activation="softmax"` becomes its logits twin (same backbone,
    preprocessor and head weights) followed by a softmax layer.

    Raises:
        KdcliError: the task has no preprocessor, or is not a classifier.
    """
    if getattr(task, "preprocessor", None) is None:
        raise KdcliError(f"{task.name}: a KerasHub {type(task).__name__} saved without its preprocessor; kdcli "
                         "runs tasks on raw inputs: save the task with its preprocessor")
    if not hasattr(task, "output_dense"):
        raise KdcliError(f"{task.name}: a KerasHub {type(task).__name__}, not a classifier; kdcli distills "
                         "classifier tasks (ImageClassifier, TextClassifier)")
    activation = _activation(task)
    logits = _with_activation(task, None) if activation != "linear" else task
    inputs = _raw_input(task)
    outputs = logits(task.preprocessor(inputs))
    if activation == "softmax":
        outputs = keras.layers.Activation("softmax", name="probabilities")(outputs)
    elif activation != "linear":
        raise KdcliError(f"{task.name}: a KerasHub task with a {activation} head; kdcli distills a softmax or logits")
    return keras.Model(inputs, outputs, name=task.name)


def _activation(task):
    act = task.output_dense.activation
    return getattr(act, "__name__", str(act))


def _raw_input(task):
    """The raw input a task's preprocessor takes: strings, or images of the backbone's shape."""
    shape = getattr(task.backbone, "image_shape", None)
    if shape is not None:
        return keras.Input(shape=tuple(shape), name="images")
    return keras.Input(shape=(), dtype="string", name="text")


def _task_kwargs(task):
    """The task constructor's arguments besides backbone and preprocessor (num_classes, activation,
    dropout, pooling...), from its config."""
    config = task.get_config()
    for key in ("backbone", "preprocessor", "name"):
        config.pop(key, None)
    return config


def _with_activation(task, activation, backbone=None):
    """A twin of `task` with another head activation, sharing its backbone (or using `backbone`) and
    preprocessor, with the head's weights copied."""
    twin = type(task)(backbone=backbone or task.backbone, preprocessor=task.preprocessor,
                      **{**_task_kwargs(task), "activation": activation}, name=task.name)
    twin.output_dense.set_weights(task.output_dense.get_weights())
    return twin


def find_task(model):
    """The KerasHub task inside a model `runnable` made, or None."""
    if is_task(model):
        return model
    return next((layer for layer in getattr(model, "layers", ()) if is_task(layer)), None)


def shrink_backbone(backbone, factor, depth=None, seed=None):
    """A new, untrained backbone of the same class with every width scaled by `factor`.

    Args:
        backbone: a KerasHub backbone.
        factor: the width multiplier; widths are rounded, at least 1 (per
            stage too, in nested lists), and attention heads become the most
            that divide the new width.
        depth: the new number of transformer layers (`num_layers`), or None to keep it.
        seed: seed of the new weights.

    Raises:
        UsageError: `depth` for a backbone without `num_layers`.
        KdcliError: the backbone's constructor refuses the scaled config.
    """
    config = backbone.get_config()
    keep = KEEP.get(type(backbone).__name__, {})
    for key in (*WIDTH_KEYS, *WIDTH_LIST_KEYS):
        if key in config:
            kept = {i % len(config[key]) for i in keep.get(key, ())} if isinstance(config[key], list) else set()
            config[key] = _scaled(config[key], factor, kept)
    if depth is not None:
        if depth < 1:
            raise UsageError(f"--depth must be 1 or more, got {depth}")
        if not isinstance(config.get(DEPTH_KEY), int):
            raise UsageError(f"--depth sets a transformer backbone's {DEPTH_KEY}; {type(backbone).__name__} "
                             "has none")
        config[DEPTH_KEY] = depth
    width = config.get("hidden_dim")
    for key in HEAD_KEYS:
        if isinstance(config.get(key), int) and isinstance(width, int):
            config[key] = max(h for h in range(1, config[key] + 1) if width % h == 0)
    config["name"] = backbone.name  # a functional model around it finds it by name
    if seed is not None:
        keras.utils.set_random_seed(seed)
    try:
        return type(backbone).from_config(config)
    except Exception as e:  # a constructor's checks raise many types
        raise KdcliError(f"shrink cannot rebuild {type(backbone).__name__} with its widths scaled by {factor:g} "
                         f"({str(e).splitlines()[0]}); give a larger shrink:F or a student with --student") from e


def _scaled(value, factor, kept=()):
    """A width, or a list of them (nested per stage), times `factor`: rounded, at least 1; the
    entries of a list at the indices in `kept` stay."""
    if isinstance(value, list):
        return [v if i in kept else _scaled(v, factor) for i, v in enumerate(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, round(value * factor))
    return value


def check_task_output(model, kind):
    """Refuse, before training, an output a KerasHub task student cannot have (`saveable`'s rule)."""
    if find_task(model) is not None and kind not in ("logits", "softmax"):
        raise UsageError(f"--student-output {kind}: a KerasHub task outputs logits or a softmax; choose "
                         "--student-output logits or softmax")


def shrink_task(task, factor, depth=None, seed=None):
    """A KerasHub task's student: the same task class with a shrunk backbone (`shrink_backbone`), the
    teacher's preprocessor, and a logits head; `runnable` from raw inputs."""
    backbone = shrink_backbone(task.backbone, factor, depth, seed)
    student = type(task)(backbone=backbone, preprocessor=task.preprocessor,
                         **{**_task_kwargs(task), "activation": None}, name=task.name)
    return runnable(student)


def saveable(model, kind):
    """What to save for a model `runnable` made: its task, whose head outputs `kind` (`logits` or
    `softmax`), sharing its weights; `keras.saving.load_model` reloads it as a task. None for
    any other model."""
    task = find_task(model)
    if task is None:
        return None
    check_task_output(model, kind)
    return task if kind == "logits" else _with_activation(task, "softmax")
