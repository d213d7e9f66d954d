"""The knowledge-distillation losses: Hinton's KD, DKD, DIST and logit standardisation.

With teacher logits `t`, student logits `s`, true labels `y`, temperature `T`
and weight `alpha` of the distillation term (Hinton, Vinyals and Dean, 2015):

    p_t    = softmax(t / T)
    L_kd   = T^2 * KL(p_t || softmax(s / T))
    L_hard = cross_entropy(y, softmax(s))
    L      = alpha * L_kd + (1 - alpha) * L_hard

Everything is computed from logits with `log_softmax` or log-sum-exp, never
from the log of a probability, so the losses stay finite for logits of any
magnitude. The `T^2` factor keeps the soft term's gradients on the scale of
the hard term's as `T` changes.

Beyond Hinton's loss (the docs' methods page, docs/guides/methods.md, describes each in full):

- Logit standardisation (Sun et al., CVPR 2024), the `standardize` switch of
  `distillation_loss_per_sample` and `dkd_loss_per_sample`:

      Z(z) = (z - mean(z)) / (std(z) + 1e-7)       # over the classes of each sample

  The KD term then uses `Z(t) / T` and `Z(s) / T`; the CE term the raw `s`.
- DKD (Zhao et al., CVPR 2022), per sample, with `p = softmax(z / T)`:

      b    = [p_y, 1 - p_y]                        # target vs the rest
      q    = softmax of z / T over the non-target classes only
      TCKD = KL(b_t || b_s),  NCKD = KL(q_t || q_s)
      L    = CE(s, y) + T^2 * (alpha * TCKD + beta * NCKD)

  (the training loop multiplies the second term by its warm-up weight).
- DIST (Huang et al., NeurIPS 2022), per batch, with `P = softmax(Z / tau)`
  (rows: samples, columns: classes) and `rho` the Pearson correlation:

      inter = 1 - mean_i rho(P_s[i], P_t[i])
      intra = 1 - mean_c rho(P_s[:, c], P_t[:, c])
      L     = mean CE + tau^2 * (beta * inter + gamma * intra)
"""

from kdcli._tf import tf

STANDARDIZE_EPSILON = 1e-7
"""Added to the standard deviation in `standardize_logits` (as Sun et al.)."""

PEARSON_EPSILON = 1e-8
"""Added to the product of the norms in DIST's Pearson correlation (as Huang et al.)."""


def _safe_sqrt(x):
    """`sqrt(x)` for `x >= 0`, with gradient 0 (not NaN) where `x == 0`.

    TensorFlow's own sqrt gradient is 0 there when the incoming gradient is
    0, but XLA's (`jit_compile=True`) is NaN.
    """
    positive = x > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x))


def standardize_logits(logits):
    """Logit standardisation (Sun et al., CVPR 2024) of each sample.

        Z(z) = (z - mean(z)) / (std(z) + 1e-7)

    over the class axis, with `std` the population standard deviation
    (`sqrt(mean((z - mean(z))^2))`): each row comes out with mean 0 and
    standard deviation 1 (0 for a constant row), whatever constant is added
    to it or positive factor it is scaled by. (The authors' code uses torch's
    `std()`, the unbiased one, with `1 / (C - 1)`: its `Z(z) / T` is ours at
    a temperature `sqrt(C / (C - 1))` times `T`.) The gradient is finite for a
    constant row too.

    Args:
        logits: pre-softmax outputs, shape `(batch, C)`.

    Returns:
        A float32 tensor of shape `(batch, C)`.

    Example:
        >>> z = standardize_logits([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
        >>> [round(float(v), 4) for v in z[1]]
        [-1.2247, 0.0, 1.2247]
    """
    z = tf.cast(logits, tf.float32)
    centered = z - tf.reduce_mean(z, axis=-1, keepdims=True)
    std = _safe_sqrt(tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True))
    return centered / (std + STANDARDIZE_EPSILON)


def _soft_logits(logits, temperature, standardize):
    """`Z(z) / T` or `z / T`, float32: the input of the soft (KD) terms."""
    z = standardize_logits(logits) if standardize else tf.cast(logits, tf.float32)
    return z / temperature


def distillation_loss_per_sample(labels, student_logits, teacher_logits, temperature=4.0, alpha=0.9,
                                 standardize=False):
    """The distillation loss of each sample of a batch.

    Args:
        labels: integer class ids, shape `(batch,)`.
        student_logits: the student's pre-softmax outputs, shape `(batch, C)`.
        teacher_logits: the teacher's pre-softmax outputs, shape `(batch, C)`.
        temperature: `T`, which softens both distributions in the KD term.
        alpha: weight of the KD term; `1 - alpha` weighs the hard-label term.
        standardize: use `standardize_logits` of both models' logits in the KD
            term (logit standardisation); the hard-label term keeps the raw
            student logits.

    Returns:
        A float32 tensor of shape `(batch,)`.
    """
    s = tf.cast(student_logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    log_p_t = tf.nn.log_softmax(_soft_logits(teacher_logits, temperature, standardize), axis=-1)
    log_p_s = tf.nn.log_softmax(_soft_logits(s, temperature, standardize), axis=-1)
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


def _dkd_kl_terms(labels, student_logits, teacher_logits, temperature, standardize):
    """`(TCKD, NCKD)` of each sample, without `T^2`: see `dkd_terms_per_sample`."""
    a_s = _soft_logits(student_logits, temperature, standardize)
    a_t = _soft_logits(teacher_logits, temperature, standardize)
    is_target = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(a_s)[-1], on_value=True, off_value=False)
    minus_inf = tf.fill(tf.shape(a_s), tf.constant(-float("inf"), tf.float32))

    def logs(a):
        lse_all = tf.reduce_logsumexp(a, axis=-1)
        # The target column is left out of this log-sum-exp exactly (exp(-inf) = 0),
        # where the reference implementation subtracts 1000 from it.
        lse_rest = tf.reduce_logsumexp(tf.where(is_target, minus_inf, a), axis=-1)
        a_y = tf.reduce_sum(tf.where(is_target, a, tf.zeros_like(a)), axis=-1)
        log_b = tf.stack([a_y - lse_all, lse_rest - lse_all], axis=-1)  # log p_y, log(1 - p_y)
        log_q = a - lse_rest[:, None]  # log q on the non-target columns; not used on the target one
        return log_b, log_q

    log_b_t, log_q_t = logs(a_t)
    log_b_s, log_q_s = logs(a_s)
    tckd = tf.reduce_sum(tf.exp(log_b_t) * (log_b_t - log_b_s), axis=-1)
    q_t = tf.where(is_target, tf.zeros_like(log_q_t), tf.exp(log_q_t))
    nckd = tf.reduce_sum(q_t * (log_q_t - log_q_s), axis=-1)
    return tckd, nckd


def dkd_terms_per_sample(labels, student_logits, teacher_logits, temperature=4.0, alpha=1.0, beta=8.0,
                         standardize=False):
    """The two parts of the DKD loss (Zhao et al., CVPR 2022) of each sample.

    With `p = softmax(z / T)` and `y` the target class:

        b    = [p_y, 1 - p_y]
        q    = softmax of z / T over the non-target classes only
        TCKD = KL(b_t || b_s),  NCKD = KL(q_t || q_s)
        ce   = CE(s, y)                                  # raw logits, T = 1
        kd   = T^2 * (alpha * TCKD + beta * NCKD)

    `log p_y` and `log(1 - p_y)` come from log-sum-exps (`log(1 - p_y)` is the
    log-sum-exp of the non-target `z / T` minus that of all of them), and `q`
    leaves the target column out of its log-sum-exp exactly, so every term is
    finite for logits of any magnitude. The training loop applies DKD's
    warm-up weight `min(epoch / warmup, 1)` to `kd` only. Hinton's KL is
    `KL(p_t || p_s) = TCKD + (1 - p_t[y]) * NCKD`: DKD decouples the two and
    weighs NCKD by a constant `beta` instead.

    Needs `C >= 2`; with two classes `q` has a single class and `NCKD = 0`.

    Args:
        labels: integer class ids, shape `(batch,)`.
        student_logits: the student's pre-softmax outputs, shape `(batch, C)`.
        teacher_logits: the teacher's pre-softmax outputs, shape `(batch, C)`.
        temperature: `T` (default 4; CIFAR recipe `T 4`, ImageNet `T 1`).
        alpha: weight of TCKD (default 1).
        beta: weight of NCKD (default 8, CIFAR; ImageNet 0.5).
        standardize: use `standardize_logits` of both models' logits in the KD
            part (logit standardisation); `ce` keeps the raw student logits.

    Returns:
        `(ce, kd)`, two float32 tensors of shape `(batch,)`.

    Example:
        >>> ce, kd = dkd_terms_per_sample([0, 1], [[2.0, 0.0, 1.0], [0.0, 2.0, 1.0]],
        ...                               [[3.0, 1.0, 0.0], [1.0, 3.0, 0.0]])
        >>> tuple(ce.shape), bool(tf.reduce_all(kd > 0))
        ((2,), True)
    """
    s = tf.cast(student_logits, tf.float32)
    tckd, nckd = _dkd_kl_terms(labels, s, teacher_logits, temperature, standardize)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=s)
    return ce, temperature**2 * (alpha * tckd + beta * nckd)


def dkd_loss_per_sample(labels, student_logits, teacher_logits, temperature=4.0, alpha=1.0, beta=8.0,
                        standardize=False):
    """The DKD loss of each sample, `CE(s, y) + T^2 * (alpha * TCKD + beta * NCKD)`.

    The sum of the two parts of `dkd_terms_per_sample` (see there), without
    DKD's warm-up weight: a loop that warms up uses `dkd_terms_per_sample`.

    Args:
        labels: integer class ids, shape `(batch,)`.
        student_logits: the student's pre-softmax outputs, shape `(batch, C)`, `C >= 2`.
        teacher_logits: the teacher's pre-softmax outputs, shape `(batch, C)`.
        temperature: `T` (default 4).
        alpha: weight of TCKD (default 1).
        beta: weight of NCKD (default 8).
        standardize: logit standardisation in the KD part (not in the CE).

    Returns:
        A float32 tensor of shape `(batch,)`.

    Example:
        >>> loss = dkd_loss_per_sample([0], [[2.0, 0.0, 1.0]], [[3.0, 1.0, 0.0]])
        >>> float(loss[0]) > 0
        True
    """
    ce, kd = dkd_terms_per_sample(labels, student_logits, teacher_logits, temperature, alpha, beta, standardize)
    return ce + kd


def _mean_pearson(a, b):
    """The mean over rows of the Pearson correlation of `a[i]` and `b[i]` (over columns).

    As Huang et al.: `sum(a' b') / (|a'| |b'| + 1e-8)` with `a'`, `b'` the rows
    minus their means, so a constant row correlates 0 with anything (and
    passes a zero, not NaN, gradient). 0 rows give 0.
    """
    a = a - tf.reduce_mean(a, axis=-1, keepdims=True)
    b = b - tf.reduce_mean(b, axis=-1, keepdims=True)
    norm_a = _safe_sqrt(tf.reduce_sum(tf.square(a), axis=-1))
    norm_b = _safe_sqrt(tf.reduce_sum(tf.square(b), axis=-1))
    rho = tf.reduce_sum(a * b, axis=-1) / (norm_a * norm_b + PEARSON_EPSILON)
    rows = tf.cast(tf.shape(rho)[0], tf.float32)
    return tf.reduce_sum(rho) / tf.maximum(rows, 1.0)


def dist_terms(labels, student_logits, teacher_logits, temperature=1.0, beta=1.0, gamma=1.0):
    """The two parts of the DIST loss (Huang et al., NeurIPS 2022) of a batch.

    With `P = softmax(Z / tau)` for the batch (rows: samples, columns:
    classes) and `rho` the Pearson correlation:

        inter = 1 - mean_i rho(P_s[i], P_t[i])           # each sample, over classes
        intra = 1 - mean_c rho(P_s[:, c], P_t[:, c])     # each class, over the batch
        ce    = CE(s, y) of each sample                  # raw logits, tau = 1
        kd    = tau^2 * (beta * inter + gamma * intra)

    `rho(a, b) = sum(a' b') / (|a'| |b'| + 1e-8)`, `a'` and `b'` centred, as
    the reference code: a constant row or column (a uniform softmax, a class
    that saturated to 0 over the whole batch, a batch of one sample)
    correlates 0 and passes no gradient, instead of NaN. So for a batch of one
    sample the intra-class correlation is undefined and `intra` is the
    constant 1: `kd` is `tau^2 * (beta * inter + gamma)`, which shifts the
    value and leaves the gradient that of `inter`. An empty batch gives
    `kd = 0`.

    `kd` is a statistic of the whole batch given. Under `tf.distribute`, in
    replica context, it is that of the replica's own samples (the intra term
    correlates over them, not over the global batch); weigh it by the
    replica's share of the global batch, `local_n / global_n`, so that the
    summed gradients of the replicas give the sample-weighted mean of their
    DIST terms (an empty replica then adds nothing).

    Args:
        labels: integer class ids, shape `(batch,)`.
        student_logits: the student's pre-softmax outputs, shape `(batch, C)`.
        teacher_logits: the teacher's pre-softmax outputs, shape `(batch, C)`.
        temperature: `tau` (default 1).
        beta: weight of the inter-class term (default 1).
        gamma: weight of the intra-class term (default 1).

    Returns:
        `(ce, kd)`: float32 tensors of shape `(batch,)` and `()`.

    Example:
        >>> ce, kd = dist_terms([0, 1], [[2.0, 0.0, 1.0], [0.0, 2.0, 1.0]],
        ...                     [[3.0, 1.0, 0.0], [1.0, 3.0, 0.0]])
        >>> tuple(ce.shape), tuple(kd.shape)
        ((2,), ())
    """
    s = tf.cast(student_logits, tf.float32)
    p_s = tf.nn.softmax(s / temperature, axis=-1)
    p_t = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    inter = 1.0 - _mean_pearson(p_s, p_t)
    intra = 1.0 - _mean_pearson(tf.transpose(p_s), tf.transpose(p_t))
    some = tf.cast(tf.shape(s)[0] > 0, tf.float32)
    kd = some * temperature**2 * (beta * inter + gamma * intra)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=s)
    return ce, kd


def dist_loss(labels, student_logits, teacher_logits, temperature=1.0, beta=1.0, gamma=1.0):
    """The DIST loss of a batch, `mean CE + tau^2 * (beta * inter + gamma * intra)`.

    See `dist_terms` for the terms, a batch of one sample, and `tf.distribute`.

    Args:
        labels: integer class ids, shape `(batch,)`.
        student_logits: the student's pre-softmax outputs, shape `(batch, C)`.
        teacher_logits: the teacher's pre-softmax outputs, shape `(batch, C)`.
        temperature: `tau` (default 1).
        beta: weight of the inter-class term (default 1).
        gamma: weight of the intra-class term (default 1).

    Returns:
        A scalar float32 tensor.

    Example:
        >>> loss = dist_loss([0, 1], [[2.0, 0.0], [0.0, 2.0]], [[3.0, 1.0], [1.0, 3.0]])
        >>> float(loss) > 0
        True
    """
    ce, kd = dist_terms(labels, student_logits, teacher_logits, temperature, beta, gamma)
    return tf.reduce_mean(ce) + kd
