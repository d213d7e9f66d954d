"""The knowledge-distillation loss (Hinton, Vinyals and Dean, 2015).

With teacher logits `t`, student logits `s`, true labels `y`, temperature `T`
and weight `alpha` of the distillation term:

    p_t    = softmax(t / T)
    L_kd   = T^2 * KL(p_t || softmax(s / T))
    L_hard = cross_entropy(y, softmax(s))
    L      = alpha * L_kd + (1 - alpha) * L_hard

Everything is computed from logits with `log_softmax`, so the loss stays
finite for logits of any magnitude. The `T^2` factor keeps the soft term's
gradients on the scale of the hard term's as `T` changes.
"""

from kdcli._tf import tf


def distillation_loss_per_sample(labels, student_logits, teacher_logits, temperature=4.0, alpha=0.9):
    """The distillation loss of each sample of a batch.

    Args:
        labels: integer class ids, shape `(batch,)`.
        student_logits: the student's pre-softmax outputs, shape `(batch, C)`.
        teacher_logits: the teacher's pre-softmax outputs, shape `(batch, C)`.
        temperature: `T`, which softens both distributions in the KD term.
        alpha: weight of the KD term; `1 - alpha` weighs the hard-label term.

    Returns:
        A float32 tensor of shape `(batch,)`.
    """
    s = tf.cast(student_logits, tf.float32)
    t = tf.cast(teacher_logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    log_p_t = tf.nn.log_softmax(t / temperature, axis=-1)
    log_p_s = tf.nn.log_softmax(s / temperature, axis=-1)
    kd = temperature**2 * tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
    hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=s)
    return alpha * kd + (1.0 - alpha) * hard


def distillation_loss(labels, student_logits, teacher_logits, temperature=4.0, alpha=0.9):
    """The distillation loss of a batch: the mean of `distillation_loss_per_sample`.

    Args:
        labels: integer class ids, shape `(batch,)`.
        student_logits: the student's pre-softmax outputs, shape `(batch, C)`.
        teacher_logits: the teacher's pre-softmax outputs, shape `(batch, C)`.
        temperature: `T` (default 4).
        alpha: weight of the KD term (default 0.9).

    Returns:
        A scalar float32 tensor.

    Example:
        >>> loss = distillation_loss([0, 1], [[2.0, 0.0], [0.0, 2.0]], [[3.0, 1.0], [1.0, 3.0]])
        >>> float(loss) > 0
        True
    """
    per_sample = distillation_loss_per_sample(labels, student_logits, teacher_logits, temperature, alpha)
    return tf.reduce_mean(per_sample)


def hard_label_loss_per_sample(labels, logits, teacher_logits=None):
    """Cross-entropy of each sample against its true label (training without a teacher)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)
    )
