"""Teacher ensembles: several teachers distilled as one.

The ensemble's target is the average of its M teachers' probabilities,

    p = (1 / M) * sum_i softmax(z_i)

where `z_i` are teacher `i`'s logits (a softmax or sigmoid teacher gives its
pre-activation logits, see `kdcli.models.logits_model`). kdcli works in
logits, so the ensemble outputs

    z = log(p) = logsumexp_i(log_softmax(z_i)) - log(M)

whose softmax is exactly `p`: a soft-label file, the one-shot in-memory
logits and a live (`--online`, `--augment`) teacher all hold these, and every
`--method` applies unchanged. The temperature acts at distill time on `z`,
so `softmax(z / T)` softens the averaged distribution (the mean of the
teachers' probabilities, then raised to `1 / T` and renormalised), not each
teacher separately. `z` is computed in float32 from `log_softmax` and
log-sum-exp, never from the log of a probability, so it stays finite however
confident a teacher is.

One teacher is not an ensemble: every function here then returns that
teacher's own model, sha256 and head, so single-teacher artifacts are
exactly what they were before ensembles existed.
"""

import hashlib

import numpy as np

from kdcli._tf import keras
from kdcli.errors import KdcliError


def log_mean_softmax(logits):
    """`log(mean_i softmax(logits[i]))`, the logits of the teachers' averaged probabilities.

    Works on symbolic Keras tensors (to build `ensemble_model`) and on
    arrays alike, so the model and `ensemble_accuracies` share one formula.

    Args:
        logits: a list of M `(batch, C)` tensors or arrays, one per teacher.

    Returns:
        A `(batch, C)` float32 tensor whose softmax is the teachers' mean probabilities.

    Example:
        >>> z = log_mean_softmax([np.array([[2.0, 0.0]]), np.array([[0.0, 2.0]])])
        >>> keras.ops.softmax(z)  # [[0.5, 0.5]]
    """
    ops = keras.ops
    log_probs = [ops.log_softmax(ops.cast(z, "float32"), axis=-1) for z in logits]
    return ops.logsumexp(ops.stack(log_probs, axis=0), axis=0) - np.float32(np.log(len(logits)))


def check_members(members, names):
    """Refuse teachers that cannot form an ensemble: they must take inputs of the same
    shape and have the same number of classes (the first teacher is the reference).

    Args:
        members: the teachers' logits models.
        names: what to call each in errors (their file names).

    Raises:
        KdcliError: one line naming the teacher that differs from the first, and how.
    """
    shape, classes = tuple(members[0].input_shape[1:]), members[0].output_shape[-1]
    for member, name in zip(members[1:], names[1:]):
        if tuple(member.input_shape[1:]) != shape:
            raise KdcliError(f"{name}: takes inputs of shape {tuple(member.input_shape[1:])}, {names[0]} of shape "
                             f"{shape}; the teachers of an ensemble must take the same inputs")
        if member.output_shape[-1] != classes:
            raise KdcliError(f"{name}: has {member.output_shape[-1]} classes, {names[0]} has {classes}; "
                             "the teachers of an ensemble must agree on the classes")


def ensemble_model(members):
    """One logits model over several teachers: `log_mean_softmax` of their logits.

    A Keras functional model, usable wherever a single teacher's logits model
    is: for the logits computed once (`kdcli.predict_logits`) and as the live
    teacher of `kdcli.distill` (`--online`, `--augment`). It shares the
    teachers' layers and weights; it is never saved.

    Args:
        members: the teachers' logits models (see `kdcli.logits_model`),
            checked by `check_members`.

    Returns:
        The model; for one teacher, that teacher's model itself.

    Example:
        >>> teacher = ensemble_model([kdcli.logits_model(a), kdcli.logits_model(b)])
        >>> kdcli.distill(student, data, teacher=teacher)
    """
    if len(members) == 1:
        return members[0]
    first = members[0]
    inputs = keras.Input(shape=first.input_shape[1:], dtype=first.inputs[0].dtype, name="inputs")

    def member(model, number):
        # Each teacher inside a model of its own: teachers of the same architecture carry the same name,
        # and a functional model refuses two operations of one name.
        x = keras.Input(shape=model.input_shape[1:], dtype=model.inputs[0].dtype)
        return keras.Model(x, model(x), name=f"teacher_{number}")

    logits = [member(model, i + 1)(inputs) for i, model in enumerate(members)]
    return keras.Model(inputs, log_mean_softmax(logits), name="ensemble")


def ensemble_accuracies(members, split, batch_size=256):
    """Top-1 accuracy of each teacher and of their ensemble on a `Split` (such as `data.test`).

    Each teacher runs once over the split; the ensemble's answer is computed
    from their logits by `log_mean_softmax`.

    Returns:
        `(each, ensemble)`: a list of fractions, one per teacher, and the
        ensemble's fraction (for one teacher, its own).
    """
    from kdcli.inference import predict_logits  # looked up when called: the runs over a split can be counted

    logits = [predict_logits(model, split, batch_size) for model in members]
    combined = np.asarray(log_mean_softmax(logits)) if len(logits) > 1 else logits[0]
    each = [float(np.mean(np.argmax(z, axis=-1) == split.y)) for z in logits]
    return each, float(np.mean(np.argmax(combined, axis=-1) == split.y))


def ensemble_head(heads):
    """The head a student distilled from these teachers serves with `--student-output auto`.

    The teachers' common head (`logits`, `softmax` or `sigmoid`, see
    `kdcli.models.head_kind`) when they agree; otherwise `softmax`: the
    ensemble is an average of probabilities, so probabilities are what it
    serves.
    """
    return heads[0] if len(set(heads)) == 1 else "softmax"


def ensemble_sha256(shas):
    """The sha256 that stands for a set of teachers in `teacher_sha256` fields.

    For one teacher, its own file's sha256. For several, the sha256 of the
    line `kdcli-ensemble` followed by their sha256s, sorted, one per line: the
    same teachers give the same value in any order, and it is never the
    sha256 of a file, so no single teacher can pass for the ensemble.
    """
    if len(shas) == 1:
        return shas[0]
    return hashlib.sha256("\n".join(["kdcli-ensemble", *sorted(shas)]).encode()).hexdigest()
