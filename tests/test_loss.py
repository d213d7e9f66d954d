"""The distillation loss against a NumPy reference (DESIGN.md section 3)."""

import numpy as np
import pytest

import kdcli


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def reference_loss(labels, s, t, temperature, alpha):
    """DESIGN.md section 3, written out in float64 NumPy."""
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
