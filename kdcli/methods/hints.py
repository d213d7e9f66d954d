"""Feature hints (FitNets, Romero et al., ICLR 2015): the student also matches an intermediate layer
of the teacher, through a learned projector, beside Hinton's loss on the logits."""

import dataclasses

from kdcli.errors import UsageError
from kdcli.methods.base import param
from kdcli.methods.kd import KD

AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Hints(KD):
    """KD's loss plus `hint_weight * mean((r(s_f) - t_f)^2)` per sample.

    `s_f` and `t_f` are the outputs of a student layer and a teacher layer (by
    default, each model's last hidden layer: see `feature_layer`), and `r` a
    learned projector from the student's channels to the teacher's: a Dense
    layer on the last axis, which is a 1x1 convolution for feature maps. When
    the other axes differ (feature maps of other sizes, or a map against a
    vector), both features are first averaged over them. The projector is
    trained with the student and checkpointed, but never saved in it. It
    reads the live teacher's layers, so it needs `--teacher`, without
    `--soft-labels`.

    Args:
        temperature, alpha, standardize: as in `KD`.
        hint_weight: weight of the feature term.
        student_layer, teacher_layer: layer names, or `auto`.
    """

    name = "hints"
    summary = "kd plus an intermediate layer, FitNets; needs --teacher"
    needs_live_teacher = True
    outputs = ("logits", "features")
    term_names = (*KD.term_names, "feature_term")  # the loop adds the feature term
    hint_weight: float = param(1.0, "weight of the feature-matching term of hints")
    student_layer: str = param(AUTO, "the student layer whose output matches the teacher's")
    teacher_layer: str = param(AUTO, "the teacher layer the student's matches")

    def check(self):
        super().check()
        self.require_at_least_zero("hint_weight")

    def build(self, student, teacher=None):
        from kdcli._tf import keras

        taps = {}
        for role, model, name in (("student", student, self.student_layer), ("teacher", teacher, self.teacher_layer)):
            layer = feature_layer(model, name, f"--method hints:{role}_layer", f"the {role}")
            taps[role] = keras.Model(model.inputs[0], [model.outputs[0], layer.output], name=f"{role}_hints")
        student_shape, teacher_shape = (taps[r].output_shape[1][1:] for r in ("student", "teacher"))
        pooled = tuple(student_shape[:-1]) != tuple(teacher_shape[:-1])  # then matched as vectors
        projector = keras.layers.Dense(teacher_shape[-1], name="hint_projector", dtype="float32")
        projector.build((None, student_shape[-1]) if pooled else (None, *student_shape))
        self.keep(_student_tap=taps["student"], _teacher_tap=taps["teacher"], _projector=projector, _pooled=pooled)

    @property
    def variables(self):
        projector = getattr(self, "_projector", None)
        return list(projector.trainable_variables) if projector is not None else []

    def student_outputs(self, student, x):
        logits, features = self._student_tap(x, training=True)
        return logits, features

    def teacher_outputs(self, teacher, x):
        logits, features = self._teacher_tap(x, training=False)
        return logits, features

    def feature_loss(self, student_features, teacher_features):
        from kdcli._tf import tf

        s = tf.cast(student_features, tf.float32)
        t = tf.stop_gradient(tf.cast(teacher_features, tf.float32))
        if self._pooled:
            s, t = (_average_to_vector(f) for f in (s, t))
        squared = tf.square(self._projector(s) - t)
        return self.hint_weight * tf.reduce_mean(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=1)


def _average_to_vector(features):
    from kdcli._tf import tf

    rank = len(features.shape)
    return features if rank == 2 else tf.reduce_mean(features, axis=list(range(1, rank - 1)))


def _head_layers(model):
    """The names of the layers of a model's head: from its output back through layers without
    weights (activations, a sigmoid head's `[0, z]`) to the first layers with weights, included."""
    from kdcli._tf import keras
    from kdcli.models import _producing_layer

    names, todo = set(), [_producing_layer(model.outputs[0])]
    while todo:
        layer = todo.pop()
        if layer.name in names or isinstance(layer, keras.layers.InputLayer):
            continue
        names.add(layer.name)
        if not layer.trainable_weights:
            todo += [_producing_layer(t) for t in keras.tree.flatten(layer.input)]
    return names


def feature_layer(model, name, option, role="the model"):
    """The layer of `model` whose output is matched: the one called `name`, or for `auto`
    the last hidden layer, that is the last layer before the head that holds trainable
    weights (the last convolution of a cnn, the last hidden Dense layer of an mlp).

    Raises:
        UsageError: no layer of that name, or no hidden layer with weights.
    """
    if name != AUTO:
        names = [layer.name for layer in model.layers]
        if name not in names:
            raise UsageError(f"{option}={name}: {role} has no layer of that name; it has {', '.join(names)}")
        return model.get_layer(name)
    head = _head_layers(model)
    hidden = [layer for layer in model.layers if layer.trainable_weights and layer.name not in head]
    if not hidden:
        raise UsageError(f"{option}=auto: {role} has no hidden layer with weights before its head; "
                         f"name one with {option}=NAME")
    return hidden[-1]
