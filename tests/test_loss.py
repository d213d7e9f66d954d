"""The distillation losses (KD, logit standardisation, DKD, DIST) against NumPy references written from the
formulas of the docs' methods page (docs/guides/methods.md)."""

import numpy as np
import pytest

import kdcli
from kdcli._tf import tf
from kdcli.losses import (
    dist_loss,
    dist_terms,
    distillation_loss_per_sample,
    dkd_loss_per_sample,
    dkd_terms_per_sample,
    standardize_logits,
)


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def reference_loss(labels, s, t, temperature, alpha):
    """KD as the methods page (docs/guides/methods.md) writes it, in float64 NumPy."""
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    log_p_t = np_log_softmax(t / temperature)
    log_p_s = np_log_softmax(s / temperature)
    kd = temperature**2 * np.mean(np.sum(np.exp(log_p_t) * (log_p_t - log_p_s), axis=-1))
    hard = np.mean(-np_log_softmax(s)[np.arange(len(labels)), labels])
    return alpha * kd + (1 - alpha) * hard


@pytest.fixture
def batch():
    rng = np.random.default_rng(42)
    s = rng.normal(0, 3, size=(32, 10)).astype(np.float32)
    t = rng.normal(0, 3, size=(32, 10)).astype(np.float32)
    y = rng.integers(0, 10, size=32)
    return y, s, t


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 10.0])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_matches_numpy_reference(batch, temperature, alpha):
    y, s, t = batch
    got = float(kdcli.distillation_loss(y, s, t, temperature=temperature, alpha=alpha))
    want = reference_loss(y, s, t, temperature, alpha)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_defaults_are_temperature_4_alpha_0_9(batch):
    y, s, t = batch
    assert float(kdcli.distillation_loss(y, s, t)) == pytest.approx(reference_loss(y, s, t, 4.0, 0.9), rel=1e-5)


def test_kd_term_is_scaled_by_temperature_squared(batch):
    y, s, t = batch
    for temperature in (2.0, 5.0):
        log_p_t = np_log_softmax(t.astype(np.float64) / temperature)
        log_p_s = np_log_softmax(s.astype(np.float64) / temperature)
        kl = np.mean(np.sum(np.exp(log_p_t) * (log_p_t - log_p_s), axis=-1))
        got = float(kdcli.distillation_loss(y, s, t, temperature=temperature, alpha=1.0))
        assert got / kl == pytest.approx(temperature**2, rel=1e-5)


def test_zero_kd_when_student_equals_teacher(batch):
    y, _, t = batch
    assert float(kdcli.distillation_loss(y, t, t, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)


def test_per_sample_mean_is_the_batch_loss(batch):
    y, s, t = batch
    per = kdcli.distillation_loss_per_sample(y, s, t, 3.0, 0.7).numpy()
    assert per.shape == (32,)
    assert per.mean() == pytest.approx(float(kdcli.distillation_loss(y, s, t, 3.0, 0.7)), rel=1e-6)


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_finite_loss_and_gradients_for_huge_logits(scale):
    import tensorflow as tf

    y = np.array([0, 1, 2, 3])
    s = tf.Variable(np.array([[scale, -scale, 0, 0], [-scale, scale, 0, 0],
                              [0, 0, -scale, scale], [scale, 0, 0, -scale]], np.float32))
    t = np.array([[-scale, scale, 0, 0], [scale, -scale, 0, 0],
                  [0, 0, scale, -scale], [0, scale, -scale, 0]], np.float32)
    with tf.GradientTape() as tape:
        loss = kdcli.distillation_loss(y, s, t, temperature=1.0, alpha=0.5)
    grad = tape.gradient(loss, s)
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert np.all(np.isfinite(grad.numpy()))
    want = reference_loss(y, s.numpy(), t, 1.0, 0.5)
    assert float(loss) == pytest.approx(want, rel=1e-5)


# --- Logit standardisation, DKD and DIST (docs/guides/methods.md) ---


def np_logsumexp(z, axis=-1):
    m = z.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_ce(labels, s):
    s = np.asarray(s, np.float64)
    return -np_log_softmax(s)[np.arange(len(labels)), labels]


def reference_standardize(z):
    """(z - mean(z)) / (std(z) + 1e-7) per row, population std."""
    z = np.asarray(z, np.float64)
    return (z - z.mean(axis=-1, keepdims=True)) / (z.std(axis=-1, keepdims=True) + 1e-7)


def reference_kd_per_sample(labels, s, t, temperature, alpha, standardize):
    """Hinton's loss per sample; with standardize the KD term on Z(t)/T, Z(s)/T, the CE on raw s."""
    zs = reference_standardize(s) if standardize else np.asarray(s, np.float64)
    zt = reference_standardize(t) if standardize else np.asarray(t, np.float64)
    p_t = np_softmax(zt / temperature)
    p_s = np_softmax(zs / temperature)
    kd = temperature**2 * np.sum(p_t * np.log(p_t / p_s), axis=-1)
    return alpha * kd + (1 - alpha) * np_ce(labels, s)


def reference_dkd_terms(labels, s, t, temperature, alpha, beta, standardize=False):
    """DKD in float64, straight from the probabilities: b = [p_y, 1 - p_y], q = p[not y] / (1 - p_y)."""
    zs = reference_standardize(s) if standardize else np.asarray(s, np.float64)
    zt = reference_standardize(t) if standardize else np.asarray(t, np.float64)
    kd = []
    for i, y in enumerate(labels):
        p_s, p_t = np_softmax(zs[i] / temperature), np_softmax(zt[i] / temperature)
        b_s, b_t = np.array([p_s[y], 1 - p_s[y]]), np.array([p_t[y], 1 - p_t[y]])
        q_s, q_t = np.delete(p_s, y) / (1 - p_s[y]), np.delete(p_t, y) / (1 - p_t[y])
        tckd = np.sum(b_t * np.log(b_t / b_s))
        nckd = np.sum(q_t * np.log(q_t / q_s))
        kd.append(temperature**2 * (alpha * tckd + beta * nckd))
    return np_ce(labels, s), np.array(kd)


def reference_dkd_terms_log_space(labels, s, t, temperature, alpha, beta):
    """DKD in float64 with every log from a log-sum-exp: for logits of any size."""
    def logs(z, y):
        a = np.asarray(z, np.float64) / temperature
        rest = np.delete(a, y)
        log_b = np.array([a[y] - np_logsumexp(a), np_logsumexp(rest) - np_logsumexp(a)])
        return log_b, rest - np_logsumexp(rest)

    kd = []
    for i, y in enumerate(labels):
        log_b_s, log_q_s = logs(s[i], y)
        log_b_t, log_q_t = logs(t[i], y)
        tckd = np.sum(np.exp(log_b_t) * (log_b_t - log_b_s))
        nckd = np.sum(np.exp(log_q_t) * (log_q_t - log_q_s))
        kd.append(temperature**2 * (alpha * tckd + beta * nckd))
    return np_ce(labels, s), np.array(kd)


def mdistiller_style_dkd(labels, s, t, temperature, alpha, beta):
    """The batch-mean DKD term as mdistiller computes it (target logit masked by - 1000), in NumPy."""
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    gt = np.zeros_like(s)
    gt[np.arange(len(labels)), labels] = 1
    p_s, p_t = np_softmax(s / temperature), np_softmax(t / temperature)
    b_s = np.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], 1)
    b_t = np.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], 1)
    tckd = np.sum(b_t * (np.log(b_t) - np.log(b_s))) * temperature**2 / len(labels)
    q_t = np_softmax(t / temperature - 1000.0 * gt)
    log_q_s = np_log_softmax(s / temperature - 1000.0 * gt)
    # torch's kl_div counts 0 for a target probability of 0 (here exp(-1000) underflows to 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        nckd = np.sum(np.where(q_t > 0, q_t * (np.log(q_t) - log_q_s), 0.0)) * temperature**2 / len(labels)
    return alpha * tckd + beta * nckd


def np_pearson_rows(a, b, eps=1e-8):
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + eps)


def reference_dist(labels, s, t, tau, beta, gamma):
    """DIST in float64: (mean CE, tau^2 * (beta * inter + gamma * intra))."""
    p_s = np_softmax(np.asarray(s, np.float64) / tau)
    p_t = np_softmax(np.asarray(t, np.float64) / tau)
    inter = 1 - np_pearson_rows(p_s, p_t).mean()
    intra = 1 - np_pearson_rows(p_s.T, p_t.T).mean()
    return np_ce(labels, s).mean(), tau**2 * (beta * inter + gamma * intra)


def huge_batch(scale):
    """Four samples of four classes: huge target / non-target logits in the student and the teacher."""
    y = np.array([0, 1, 2, 3])
    s = np.array([[scale, -scale, 0, 0], [-scale, scale, 0, 0],
                  [0, 0, -scale, scale], [scale, 0, 0, -scale]], np.float32)
    t = np.array([[-scale, scale, 0, 0], [scale, -scale, 0, 0],
                  [0, 0, scale, -scale], [0, scale, -scale, 0]], np.float32)
    return y, s, t


def assert_close(got, want):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5)


# Logit standardisation

def test_standardize_matches_reference_mean_0_std_1(batch):
    _, s, _ = batch
    z = standardize_logits(s).numpy()
    assert z.dtype == np.float32 and z.shape == s.shape
    assert_close(z, reference_standardize(s))
    np.testing.assert_allclose(z.mean(axis=-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=-1), 1.0, rtol=1e-5)  # the population std (not 1 / (C - 1))


def test_standardize_is_invariant_to_shift_and_positive_scale(batch):
    _, s, _ = batch
    rng = np.random.default_rng(0)
    shift = rng.normal(0, 100, size=(len(s), 1))
    scale = np.exp(rng.uniform(np.log(0.01), np.log(100), size=(len(s), 1)))
    z = standardize_logits(s).numpy()
    np.testing.assert_allclose(standardize_logits(s + shift).numpy(), z, atol=1e-4)
    np.testing.assert_allclose(standardize_logits(s * scale).numpy(), z, atol=1e-5)
    # A negative factor flips the standardized logits: the scale invariance is for positive factors.
    np.testing.assert_allclose(standardize_logits(-s).numpy(), -z, atol=1e-5)


def test_standardize_constant_row_and_huge_logits_are_finite():
    z = tf.Variable([[3.0, 3.0, 3.0], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        out = standardize_logits(z)
        total = tf.reduce_sum(out * [[1.0, 2.0, 3.0]])
    grad = tape.gradient(total, z).numpy()
    assert_close(out.numpy()[:1], 0.0)
    assert_close(out.numpy()[1:2], reference_standardize([[1e4, -1e4, 0.0]]))
    assert np.all(np.isfinite(out.numpy())) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 1.0])
def test_standardized_kd_matches_numpy_reference(batch, temperature, alpha):
    y, s, t = batch
    got = distillation_loss_per_sample(y, s, t, temperature, alpha, standardize=True).numpy()
    assert_close(got, reference_kd_per_sample(y, s, t, temperature, alpha, standardize=True))


def test_standardize_leaves_hard_term_on_raw_logits_and_changes_kd(batch):
    y, s, t = batch
    hard = distillation_loss_per_sample(y, s, t, 2.0, 0.0, standardize=True).numpy()
    assert_close(hard, np_ce(y, s))
    assert not np.allclose(hard, np_ce(y, reference_standardize(s)), rtol=1e-3)
    kd_plain = distillation_loss_per_sample(y, s, t, 2.0, 1.0).numpy()
    kd_std = distillation_loss_per_sample(y, s, t, 2.0, 1.0, standardize=True).numpy()
    assert not np.allclose(kd_plain, kd_std, rtol=1e-3)
    # Standardized, the KD term ignores each model's logit scale and offset.
    kd_rescaled = distillation_loss_per_sample(y, 7.0 * s + 3.0, 0.2 * t - 1.0, 2.0, 1.0, standardize=True).numpy()
    np.testing.assert_allclose(kd_rescaled, kd_std, rtol=1e-4, atol=1e-5)


# DKD

@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
@pytest.mark.parametrize("alpha,beta", [(1.0, 8.0), (1.0, 0.5), (0.5, 2.0), (1.0, 0.0), (0.0, 1.0)])
@pytest.mark.parametrize("standardize", [False, True])
def test_dkd_matches_numpy_reference(batch, temperature, alpha, beta, standardize):
    y, s, t = batch
    ce, kd = dkd_terms_per_sample(y, s, t, temperature, alpha, beta, standardize=standardize)
    want_ce, want_kd = reference_dkd_terms(y, s, t, temperature, alpha, beta, standardize)
    assert ce.shape == kd.shape == (32,)
    assert_close(ce, want_ce)
    # 1e-5 on the KL divergences themselves: float32 cannot give 1e-5 on them times T^2 * beta (512).
    atol = 1e-5 * temperature**2 * max(alpha, beta)
    np.testing.assert_allclose(kd.numpy(), want_kd, rtol=1e-5, atol=atol)
    loss = dkd_loss_per_sample(y, s, t, temperature, alpha, beta, standardize=standardize)
    np.testing.assert_allclose(loss.numpy(), want_ce + want_kd, rtol=1e-5, atol=atol)


def test_dkd_defaults_are_temperature_4_alpha_1_beta_8(batch):
    y, s, t = batch
    want_ce, want_kd = reference_dkd_terms(y, s, t, 4.0, 1.0, 8.0)
    assert_close(dkd_loss_per_sample(y, s, t), want_ce + want_kd)


@pytest.mark.parametrize("temperature,alpha,beta", [(4.0, 1.0, 8.0), (1.0, 1.0, 0.5), (2.0, 0.3, 3.0)])
def test_dkd_matches_mdistiller(batch, temperature, alpha, beta):
    # mdistiller masks the target logit with - 1000; kdcli leaves it out exactly: the same for these logits.
    y, s, t = batch
    _, kd = dkd_terms_per_sample(y, s, t, temperature, alpha, beta)
    assert float(tf.reduce_mean(kd)) == pytest.approx(mdistiller_style_dkd(y, s, t, temperature, alpha, beta),
                                                      rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("standardize", [False, True])
def test_dkd_decomposes_hinton_kd(batch, temperature, standardize):
    # Zhao et al., eq. (5): KL(p_t || p_s) = TCKD + (1 - p_t[y]) * NCKD.
    y, s, t = batch
    _, tckd = dkd_terms_per_sample(y, s, t, temperature, 1.0, 0.0, standardize=standardize)
    _, nckd = dkd_terms_per_sample(y, s, t, temperature, 0.0, 1.0, standardize=standardize)
    zt = reference_standardize(t) if standardize else t.astype(np.float64)
    p_t_y = np_softmax(zt / temperature)[np.arange(len(y)), y]
    kd = distillation_loss_per_sample(y, s, t, temperature, 1.0, standardize=standardize).numpy()
    assert_close(tckd.numpy() + (1 - p_t_y) * nckd.numpy(), kd)


def test_dkd_two_classes_has_no_nckd_and_is_hinton_kd():
    rng = np.random.default_rng(3)
    s = rng.normal(0, 3, size=(16, 2)).astype(np.float32)
    t = rng.normal(0, 3, size=(16, 2)).astype(np.float32)
    y = rng.integers(0, 2, size=16)
    _, nckd = dkd_terms_per_sample(y, s, t, 4.0, 0.0, 1.0)
    assert_close(nckd, 0.0)
    for beta in (0.0, 8.0):
        _, kd = dkd_terms_per_sample(y, s, t, 4.0, 1.0, beta)
        assert_close(kd, distillation_loss_per_sample(y, s, t, 4.0, 1.0).numpy())
    want_ce, want_kd = reference_dkd_terms(y, s, t, 4.0, 1.0, 8.0)
    assert_close(dkd_loss_per_sample(y, s, t), want_ce + want_kd)


@pytest.mark.parametrize("scale", [1e3, 1e4])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_finite_and_exact_for_huge_logits(scale, temperature):
    y, s_np, t = huge_batch(scale)
    s = tf.Variable(s_np)
    with tf.GradientTape() as tape:
        ce, kd = dkd_terms_per_sample(y, s, t, temperature, 1.0, 8.0)
        loss = tf.reduce_mean(ce + kd)
    grad = tape.gradient(loss, s).numpy()
    want_ce, want_kd = reference_dkd_terms_log_space(y, s_np, t, temperature, 1.0, 8.0)
    assert np.all(np.isfinite(kd.numpy())) and np.all(np.isfinite(grad))
    assert_close(ce, want_ce)
    assert_close(kd, want_kd)
    assert np.all(want_kd > scale / temperature)  # every sample is far from its teacher


def test_dkd_standardized_gradients_are_finite_for_huge_and_constant_logits():
    y, s_np, t = huge_batch(1e4)
    s_np = np.concatenate([s_np, np.zeros((1, 4), np.float32)])  # a constant row: a zero-initialized head
    t, y = np.concatenate([t, t[:1]]), np.concatenate([y, [0]])
    s = tf.Variable(s_np)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(dkd_loss_per_sample(y, s, t, 2.0, standardize=True))
    grad = tape.gradient(loss, s).numpy()
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))
    want_ce, want_kd = reference_dkd_terms(y, s_np, t, 2.0, 1.0, 8.0, standardize=True)
    assert float(loss) == pytest.approx(np.mean(want_ce + want_kd), rel=1e-5)


# DIST

@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("beta,gamma", [(1.0, 1.0), (2.0, 2.0), (1.0, 0.0), (0.0, 1.0), (0.5, 3.0)])
def test_dist_matches_numpy_reference(batch, tau, beta, gamma):
    y, s, t = batch
    want_ce, want_kd = reference_dist(y, s, t, tau, beta, gamma)
    ce, kd = dist_terms(y, s, t, tau, beta, gamma)
    assert ce.shape == (32,) and kd.shape == ()
    assert_close(ce, np_ce(y, s))
    assert float(kd) == pytest.approx(want_kd, rel=1e-5, abs=1e-5)
    assert float(dist_loss(y, s, t, tau, beta, gamma)) == pytest.approx(want_ce + want_kd, rel=1e-5, abs=1e-5)


def test_dist_defaults_and_the_epsilon_pearson_is_pearson(batch):
    y, s, t = batch
    want_ce, want_kd = reference_dist(y, s, t, 1.0, 1.0, 1.0)
    assert float(dist_loss(y, s, t)) == pytest.approx(want_ce + want_kd, rel=1e-5)
    # The epsilon barely moves the correlation: np.corrcoef gives the same terms.
    p_s, p_t = np_softmax(s.astype(np.float64)), np_softmax(t.astype(np.float64))
    inter = 1 - np.mean([np.corrcoef(p_s[i], p_t[i])[0, 1] for i in range(len(y))])
    intra = 1 - np.mean([np.corrcoef(p_s[:, c], p_t[:, c])[0, 1] for c in range(s.shape[1])])
    assert float(dist_terms(y, s, t)[1]) == pytest.approx(inter + intra, rel=1e-5)


def test_dist_of_identical_logits_is_only_the_cross_entropy(batch):
    y, _, t = batch
    for tau in (1.0, 4.0):
        _, kd = dist_terms(y, t, t, tau, 1.0, 1.0)
        assert float(kd) == pytest.approx(0.0, abs=1e-5)
        assert float(dist_loss(y, t, t, tau)) == pytest.approx(np_ce(y, t).mean(), rel=1e-5)


def test_dist_is_a_batch_statistic_with_one_sample_and_none():
    s = tf.Variable([[2.0, 0.0, 1.0]])
    t = np.array([[3.0, 1.0, 0.0]], np.float32)
    with tf.GradientTape() as tape:
        ce, kd = dist_terms([0], s, t, 2.0, 1.0, 3.0)
    grad = tape.gradient(kd, s).numpy()
    # One sample: every class column is constant, correlates 0, and the intra term is the constant 1.
    p_s, p_t = np_softmax(s.numpy() / 2.0), np_softmax(t / 2.0)
    inter = 1 - np_pearson_rows(p_s, p_t)[0]
    assert float(kd) == pytest.approx(4.0 * (inter + 3.0), rel=1e-5)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    ce, kd = dist_terms(np.zeros(0, np.int64), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32))
    assert ce.shape == (0,) and float(kd) == 0.0


@pytest.mark.parametrize("scale", [1e3, 1e4])
@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_dist_finite_and_exact_for_huge_and_uniform_logits(scale, tau):
    y, s_np, t = huge_batch(scale)
    s_np = np.concatenate([s_np, np.zeros((1, 4), np.float32)])  # a uniform softmax row
    t, y = np.concatenate([t, t[:1]]), np.concatenate([y, [0]])
    s = tf.Variable(s_np)
    with tf.GradientTape() as tape:
        loss = dist_loss(y, s, t, tau)
    grad = tape.gradient(loss, s).numpy()
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))
    want_ce, want_kd = reference_dist(y, s_np, t, tau, 1.0, 1.0)
    assert float(loss) == pytest.approx(want_ce + want_kd, rel=1e-5)


# In a training step

def test_new_losses_run_in_tf_function_under_a_distribution_strategy(batch):
    y, s, t = batch
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    spec = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None, None], tf.float32)]

    @tf.function(input_signature=spec)
    def step(labels, student, teacher):
        def replica(labels, student, teacher):
            ce, kd = dkd_terms_per_sample(labels, student, teacher, 4.0, 1.0, 8.0, standardize=True)
            return ce + kd, dist_loss(labels, student, teacher, 2.0)
        return strategy.run(replica, args=(labels, student, teacher))

    dkd, dist = step(tf.constant(y), tf.constant(s), tf.constant(t))
    want_ce, want_kd = reference_dkd_terms(y, s, t, 4.0, 1.0, 8.0, standardize=True)
    assert_close(dkd, want_ce + want_kd)
    assert float(dist) == pytest.approx(sum(reference_dist(y, s, t, 2.0, 1.0, 1.0)), rel=1e-5)
    dkd, _ = step(tf.constant(y[:5]), tf.constant(s[:5]), tf.constant(t[:5]))  # another batch size, same graph
    assert dkd.shape == (5,)


def test_gradients_are_finite_under_xla_for_constant_rows_and_columns():
    # XLA's sqrt gradient at 0 is NaN even when the incoming gradient is 0 (TF's own kernel gives 0):
    # the standard deviation of a constant row and the norm of a constant DIST row or column must not
    # take it. Constant: a zero-initialized head, a class no sample of the batch gives any probability.
    y, s_np, t = huge_batch(1e4)
    s_np = np.concatenate([s_np, np.zeros((1, 4), np.float32)])
    t, y = np.concatenate([t, t[:1]]), np.concatenate([y, [0]])
    s = tf.Variable(s_np)

    @tf.function(jit_compile=True)
    def grads(labels, teacher):
        with tf.GradientTape(persistent=True) as tape:
            z = tf.reduce_sum(standardize_logits(s) * tf.range(4, dtype=tf.float32))
            dkd = tf.reduce_mean(dkd_loss_per_sample(labels, s, teacher, 2.0, standardize=True))
            dist = dist_loss(labels, s, teacher, 1.0)
            dist_one = dist_loss(labels[-1:], s[-1:], teacher[-1:], 1.0)
        return [tape.gradient(v, s) for v in (z, dkd, dist, dist_one)]

    for grad in grads(tf.constant(y), tf.constant(t)):
        assert np.all(np.isfinite(grad.numpy()))
