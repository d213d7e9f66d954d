"""Soft-label files: round trip, softmax teachers, and refusal of mismatched files."""

import h5py
import numpy as np
import pytest

import kdcli
from kdcli import pipeline
from kdcli.soft_labels import FORMAT_VERSION, read_soft_labels, write_soft_labels

from conftest import assert_one_line_error, run_cli


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(100, 7)).astype(np.float32)
    path = tmp_path / "soft.h5"
    write_soft_labels(path, np.array_split(logits, 3), 100, 7, fingerprint="f" * 64, teacher_sha256="a" * 64,
                      record={"kind": "soft-labels"})
    soft = read_soft_labels(path)
    np.testing.assert_array_equal(soft.logits, logits)
    assert soft.attrs["n"] == 100 and soft.attrs["num_classes"] == 7
    assert soft.attrs["fingerprint"] == "f" * 64 and soft.attrs["teacher_sha256"] == "a" * 64
    assert soft.attrs["format_version"] == 1 <= FORMAT_VERSION  # full logits: readable by every kdcli
    assert soft.attrs["kdcli_version"] == kdcli.__version__
    assert kdcli.read_provenance(path) == {"kind": "soft-labels"}
    with h5py.File(path) as f:
        assert f["logits"].chunks[1] == 7  # chunked by whole rows
        assert f["logits"].dtype == np.float32


def test_float16_round_trip(tmp_path):
    logits = np.linspace(-20, 20, 60, dtype=np.float32).reshape(20, 3)
    path = tmp_path / "soft16.h5"
    write_soft_labels(path, [logits], 20, 3, fingerprint="f" * 64, teacher_sha256="a" * 64, record={}, dtype="float16")
    with h5py.File(path) as f:
        assert f["logits"].dtype == np.float16
    np.testing.assert_allclose(read_soft_labels(path).logits, logits, rtol=1e-3)


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "soft.h5"
    with pytest.raises(kdcli.KdcliError):
        write_soft_labels(path, [np.full((5, 3), np.nan, np.float32)], 5, 3, fingerprint="f", teacher_sha256="a",
                          record={})
    assert list(tmp_path.iterdir()) == []


def test_soft_labels_file_matches_teacher_logits(pipeline):
    data = kdcli.load_data("digits")
    soft = read_soft_labels(pipeline["soft"])
    teacher = kdcli.load_model(pipeline["teacher"])
    np.testing.assert_allclose(soft.logits, kdcli.predict_logits(teacher, data.x_train), rtol=1e-5, atol=1e-5)
    assert soft.logits.shape == (len(data.y_train), 10)
    assert soft.attrs["fingerprint"] == data.fingerprint
    from kdcli.files import sha256_file

    assert soft.attrs["teacher_sha256"] == sha256_file(pipeline["teacher"])


def test_softmax_teacher_gives_the_logits_of_its_twin(tmp_path):
    import keras

    data = kdcli.load_data("digits")
    keras.utils.set_random_seed(1)
    logits_teacher = keras.Sequential([
        keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10),
    ])
    softmax_teacher = keras.Sequential([
        keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    softmax_teacher.set_weights(logits_teacher.get_weights())
    logits_teacher.save(tmp_path / "logits.keras")
    softmax_teacher.save(tmp_path / "softmax.keras")  # a plain Keras file, no kdcli provenance
    for name in ("logits", "softmax"):
        pipeline.make_soft_labels(tmp_path / f"{name}.keras", "digits", tmp_path / f"{name}.h5")
    a = read_soft_labels(tmp_path / "logits.h5").logits
    b = read_soft_labels(tmp_path / "softmax.h5").logits
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    assert np.ptp(a) > 1  # real logits, not probabilities
    assert a.shape == (len(data.y_train), 10)


def test_softmax_layer_and_activation_are_stripped():
    import keras

    inputs = keras.Input((4,))
    z = keras.layers.Dense(3)(inputs)
    for head in (keras.layers.Softmax(), keras.layers.Activation("softmax")):
        model = keras.Model(inputs, head(z))
        stripped = kdcli.logits_model(model)
        x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        np.testing.assert_allclose(stripped(x), keras.Model(inputs, z)(x), rtol=1e-6)


def _copy_with(src, dst, **changes):
    """A copy of a soft-label file with some attributes or rows changed."""
    with h5py.File(src) as f:
        logits = f["logits"][()]
        attrs = dict(f.attrs)
    attrs.update({k: v for k, v in changes.items() if k != "rows"})
    if "rows" in changes:
        logits = logits[: changes["rows"]]
        attrs["n"] = changes["rows"]
    with h5py.File(dst, "w") as f:
        f["logits"] = logits
        f.attrs.update(attrs)
    return dst


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"rows": 1000}, "soft labels were made for 1000 samples, the training split has 1438"),
        ({"fingerprint": "0" * 64}, "made for other training data"),
    ],
)
def test_distill_refuses_mismatched_soft_labels(pipeline, tmp_path, changes, message):
    bad = _copy_with(pipeline["soft"], tmp_path / "bad.h5", **changes)
    r = run_cli("distill", "--soft-labels", bad, "--data", "digits", "--epochs", "1", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, message)
    assert "regenerate them with kdcli soft-labels" in r.stderr
    assert not (tmp_path / "s.keras").exists()


def test_distill_refuses_soft_labels_of_other_classes(pipeline, tmp_path):
    with h5py.File(pipeline["soft"]) as f:
        logits, attrs = f["logits"][()], dict(f.attrs)
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["logits"] = logits[:, :9]
        f.attrs.update(attrs | {"num_classes": 9})
    r = run_cli("distill", "--soft-labels", bad, "--data", "digits", "--epochs", "1", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "9 classes")


def test_distill_refuses_a_file_that_is_not_soft_labels(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    r = run_cli("distill", "--soft-labels", other, "--data", "digits", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "not a kdcli soft-label file")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(other.read_bytes()[:100])
    r = run_cli("distill", "--soft-labels", truncated, "--data", "digits", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "cannot read HDF5 file")


def test_top_k_soft_labels_rebuild_fkd_targets(tmp_path):
    from kdcli.soft_labels import TopKColumn

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(50, 8)).astype(np.float32)
    write_soft_labels(tmp_path / "k.h5", [logits], 50, 8, fingerprint="f", teacher_sha256="a", record={}, top_k=3)
    with h5py.File(tmp_path / "k.h5") as f:
        assert set(f) == {"topk_values", "topk_indices"} and f["topk_values"].shape == (50, 3)
    soft = read_soft_labels(tmp_path / "k.h5")
    assert isinstance(soft.column, TopKColumn)
    rebuilt = soft.logits
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    top = np.argsort(-logits, axis=1)[:, :3]
    q = np.exp(rebuilt)  # log-probabilities: a distribution
    np.testing.assert_allclose(q.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(q, top, 1), np.take_along_axis(p, top, 1), rtol=1e-5)
    rest = (1 - np.take_along_axis(p, top, 1).sum(1)) / 5
    mask = np.ones_like(p, bool)
    np.put_along_axis(mask, top, False, 1)
    np.testing.assert_allclose(q[mask].reshape(50, 5), np.repeat(rest[:, None], 5, 1), rtol=1e-4, atol=1e-6)
    with pytest.raises(kdcli.KdcliError, match="--top-k must be between 1 and 7"):
        write_soft_labels(tmp_path / "bad.h5", [logits], 50, 8, fingerprint="f", teacher_sha256="a", record={},
                          top_k=8)


@pytest.mark.slow
def test_top_k_and_float16_through_the_cli(pipeline, tmp_path):
    out = tmp_path / "top2.h5"
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--top-k", "2", "--dtype", "float16", "--out", out)
    assert r.exit_code == 0, r.stderr
    r = run_cli("distill", "--soft-labels", out, "--epochs", "2", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(out)["hyperparameters"]["top_k"] == 2
