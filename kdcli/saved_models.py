"""SavedModel folders as inference-only teachers: `load_saved_model`.

A SavedModel (`model.export(...)`, `kdcli export --format saved_model`,
`tf.saved_model.save`) has no architecture, only a serving function, so it
can label data (soft labels, the online teacher, `evaluate`) but not be
shrunk or trained.
"""

from pathlib import Path

from kdcli._tf import keras, tf
from kdcli.errors import KdcliError, first_line

# The smallest normal float32: a probability that underflowed to 0 keeps a finite log.
TINY = 1.1754944e-38


class LogOf(keras.layers.Layer):
    """The log of probabilities, or with `odds` the log-odds of one probability (floored at `TINY`)."""

    def __init__(self, odds=False, **kwargs):
        super().__init__(**kwargs)
        self.odds = odds

    def call(self, p):
        tiny = tf.constant(TINY, p.dtype)
        if self.odds:
            return tf.math.log(tf.maximum(p, tiny)) - tf.math.log(tf.maximum(1 - p, tiny))
        return tf.math.log(tf.maximum(p, tiny))

    def get_config(self):
        return {**super().get_config(), "odds": self.odds}


def probe_samples(data, count=64):
    """A few training inputs of `data` that a SavedModel's output is read on."""
    import numpy as np

    return data.train.read(np.arange(min(len(data.train), count)))


def load_saved_model(path, data=None):
    """A SavedModel folder as an inference-only Keras model, through its serving signature.

    Its output is read as what kdcli recorded when it exported the folder;
    otherwise from its output on a few training inputs of `data`: rows of non-negative values that sum to 1 are
    softmax probabilities, one column within [0, 1] a sigmoid probability,
    anything else logits. Probabilities are given a head that kdcli reads like
    any other (`kdcli.models.head_kind`): their log, then the activation. The
    model then outputs exactly what the folder outputs, and its logits are the
    log-probabilities: the original logits up to a per-sample constant, which a
    softmax cancels.

    Args:
        path: the SavedModel folder, with a `serving_default` signature of one
            input and one output.
        data: the `Dataset` it will run on (None: logits are assumed).

    Raises:
        KdcliError: the folder cannot be loaded, or its signature is not one
            input and one output.

    Example:
        >>> teacher = load_saved_model("teacher_saved_model", data)
    """
    path = Path(path)
    try:
        layer = _layer(path)
    except Exception as e:  # TensorFlow raises many types for a damaged folder
        raise KdcliError(f"{path}: cannot load SavedModel ({first_line(e)})") from e
    _, specs = layer.call_endpoint_fn.structured_input_signature
    outputs = layer.call_endpoint_fn.structured_outputs
    if len(specs) != 1 or len(outputs) != 1:
        raise KdcliError(f"{path}: the SavedModel's serving signature has {len(specs)} inputs and {len(outputs)} "
                         "outputs; kdcli runs classifiers with one input and one output")
    (input_name, spec), = specs.items()
    (output_name,) = outputs
    inputs = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name, name=input_name)
    scores = layer(inputs)[output_name]
    head = _head(path, layer, spec, output_name, data)
    if head == "softmax":
        scores = keras.layers.Activation("softmax", name="probabilities")(LogOf(name="log_probabilities")(scores))
    elif head == "sigmoid":
        scores = keras.layers.Activation("sigmoid", name="probability")(LogOf(odds=True, name="log_odds")(scores))
    return keras.Model(inputs, scores, name=path.name)


def _layer(path):
    """The folder's serving signature as a layer. A folder that uses TensorFlow Text's ops (a KerasHub
    tokenizer) needs them registered: tensorflow_text is imported then, when installed."""
    try:
        return keras.layers.TFSMLayer(str(path), call_endpoint="serving_default", trainable=False, name="saved_model")
    except Exception as e:
        if "Op type not registered" not in str(e):
            raise
        try:
            import tensorflow_text  # noqa: F401 - registers its ops
        except ImportError:
            raise KdcliError(f"{path}: the SavedModel uses TensorFlow Text's operations; install them: "
                             "pip install 'kdcli[hub]'") from e
        return keras.layers.TFSMLayer(str(path), call_endpoint="serving_default", trainable=False, name="saved_model")


def _head(path, layer, spec, output_name, data):
    """`softmax`, `sigmoid` or `logits`: kdcli's record of its own export, else what its output on a
    few training inputs of `data` shows."""
    from kdcli.export_records import read_export_provenance

    recorded = (read_export_provenance(path) or {}).get("output")
    if recorded in ("softmax", "sigmoid", "logits"):
        return recorded
    if data is None or not len(data.train):
        return "logits"
    probe = probe_samples(data)
    out = layer.call_endpoint_fn(tf.constant(probe, dtype=spec.dtype))[output_name].numpy()
    if out.shape[-1] == 1:
        return "sigmoid" if ((out >= 0) & (out <= 1)).all() else "logits"
    if (out >= 0).all() and abs(out.sum(axis=-1) - 1).max() < 1e-3:
        return "softmax"
    return "logits"
