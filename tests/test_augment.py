"""--augment shift: exact shifts, repeatable runs (mixup's too), and a teacher that labels the copies the
student sees."""

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras, tf
from kdcli.augment import make_augment, parse_augment, random_shift, resolve_augment, teacher_augment
from kdcli.errors import KdcliError
from kdcli.methods.kd import KD
from kdcli.training import distill, train

from conftest import (
    STEPS_PER_EPOCH,
    assert_one_line_error,
    assert_same_weights,
    interrupt,
    interrupt_and_resume,
    run_cli,
    state,
)


def shifted(image, dr, dc):
    """NumPy reference: `image` moved down by dr and right by dc, the uncovered border zero."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = image[max(-dr, 0):h - max(dr, 0),
                                                                      max(-dc, 0):w - max(dc, 0)]
    return out


@pytest.mark.parametrize("shape", [(9, 7), (9, 7, 3)])
def test_each_image_is_moved_by_its_own_whole_pixel_offset(shape):
    x = np.random.default_rng(0).integers(1, 256, size=(64, *shape)).astype(np.uint8)
    out = random_shift(tf.constant(x), 2, tf.constant([1, 2], tf.int64)).numpy()
    assert out.dtype == np.uint8 and out.shape == x.shape
    offsets = []
    for image, moved in zip(x, out):
        matches = [(dr, dc) for dr in range(-2, 3) for dc in range(-2, 3)
                   if np.array_equal(shifted(image, dr, dc), moved)]
        assert len(matches) == 1, "not a whole-pixel shift of at most 2 pixels"
        offsets.append(matches[0])
    assert len(set(offsets)) > 15  # 25 possible offsets, 64 images: drawn per image, not per batch


def test_the_same_seed_gives_the_same_shifts():
    x = tf.constant(np.random.default_rng(0).random((32, 8, 8)), tf.float32)
    a, b, c = (random_shift(x, 1, tf.constant(s, tf.int64)).numpy() for s in ([0, 5], [0, 5], [0, 6]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_specs_and_default_sizes():
    assert parse_augment("none") == {} and parse_augment("shift:3") == {"shift": 3}
    assert parse_augment("shift+mixup") == {"shift": None, "mixup": None}
    for bad in ("flip", "shift:0", "shift:x", "none:2", "shift:-1", "none:", "shift:", "shift:\u00b2", "auto",
                "mixup+shift", "mixup:2", "mixup+mixup", "shift+", "none+mixup"):
        with pytest.raises(KdcliError):
            parse_augment(bad)
    assert make_augment("none", (28, 28)) is None
    x = tf.constant(np.ones((1, 28, 28), np.float32))
    # the default shift is about a fourteenth of the side: up to 2 blank rows or columns at 28x28
    moved = [make_augment("shift", (28, 28))(x, tf.constant([0, s], tf.int64)).numpy()[0] for s in range(40)]
    assert max(max((m == 0).all(axis=axis).sum() for axis in (0, 1)) for m in moved) == 2
    with pytest.raises(KdcliError, match="shape \\(64,\\)"):
        make_augment("shift", (64,))
    with pytest.raises(KdcliError, match="does not fit"):
        make_augment("shift:8", (8, 8))
    with pytest.raises(KdcliError, match="channels last"):
        make_augment("shift", (3, 32, 32))
    assert resolve_augment("shift", (8, 8, 16)) == "shift:1"  # 16 channels, last
    # auto shifts only what a cnn teacher can shift, and is never an error
    assert teacher_augment("auto", "cnn", (28, 28)) == "shift:2"
    assert teacher_augment("auto", "cnn", (3, 32, 32)) == teacher_augment("auto", "cnn", (1, 64)) == "none"
    assert teacher_augment("auto", "mlp", (28, 28)) == "none"
    assert teacher_augment("shift:3", "mlp", (28, 28)) == "shift:3"
    # equal augmentations are recorded alike, so --resume accepts either spelling
    assert resolve_augment("shift", (28, 28, 1)) == resolve_augment("shift:02", (28, 28, 1)) == "shift:2"
    assert resolve_augment(None, (64,)) == "none"


@pytest.mark.slow
def test_the_teacher_labels_the_very_copies_the_student_sees():
    """A student that starts as an exact copy of a deterministic teacher has a KD loss of 0 on any input
    both see, and a positive one when they see different copies."""
    data = kdcli.load_data("digits")
    inputs = keras.Input((8, 8))
    teacher = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    kw = dict(method=KD(temperature=2.0, alpha=1.0), epochs=1, learning_rate=1e-12)
    history = distill(student, data, teacher=teacher, augment="shift", **kw)
    assert history["loss"][0] < 1e-6
    with pytest.raises(KdcliError, match="without --soft-labels"):
        distill(student, data, teacher_logits=np.zeros((len(data.train), 10), np.float32), augment="shift", **kw)
    # the same student against the teacher's logits for the unshifted inputs: the copies differ
    x_train = data.train.read(np.arange(len(data.train))).astype(np.float32)
    logits = teacher.predict(x_train, verbose=0)
    history = distill(student, data, teacher_logits=logits, **kw)
    assert history["loss"][0] < 1e-6  # no shift: identical
    moved = make_augment("shift", (8, 8))(tf.constant(x_train), tf.constant([0, 1], tf.int64)).numpy()
    assert np.abs(teacher.predict(moved, verbose=0) - logits).max() > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("augment", ["shift", "mixup"])
def test_runs_repeat_and_augmenting_changes_the_result(augment):
    data = kdcli.load_data("digits")
    teacher = kdcli.build_model("mlp", data, width=16, depth=1, seed=9)

    def weights(augment, seed, fit=train):
        model = kdcli.build_model("mlp", data, width=16, depth=1, seed=0)
        fit(model, data, epochs=2, seed=seed, augment=augment)
        return np.concatenate([w.ravel() for w in model.get_weights()])

    a = weights(augment, 1)
    np.testing.assert_array_equal(a, weights(augment, 1))
    assert not np.allclose(a, weights(augment, 2))
    assert not np.allclose(a, weights("none", 1))

    def online(model, data, **kw):
        return distill(model, data, teacher=teacher, **kw)

    a = weights(augment, 1, online)
    np.testing.assert_array_equal(a, weights(augment, 1, online))
    assert not np.allclose(a, weights("none", 1, online))


@pytest.mark.slow
def test_distill_with_shifts_records_them_and_trains_the_baseline_the_same_way(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    args = ["distill", "--teacher", pipeline["teacher"], "--student", "mlp", "--epochs", "2", "--augment", "shift",
            "--baseline", "--out", out]
    r = run_cli(*args)
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    # recorded as what it did: 1 pixel at 8x8
    assert record["hyperparameters"]["augment"] == "shift:1" and record["hyperparameters"]["mode"] == "online"
    assert "baseline_test_accuracy" in record["metrics"]
    # stopped after the baseline's first epoch (2 epochs of distillation, then 1 of the baseline), its
    # checkpoint says how it was trained: on shifted copies too
    interrupt(*args, "--checkpoint-dir", tmp_path / "ck", "--checkpoint-every", "0", at=3 * STEPS_PER_EPOCH + 1)
    assert state(tmp_path / "ck" / "baseline")["config"]["augment"] == "shift:1"


@pytest.mark.slow
def test_interrupted_shifted_training_resumes_to_the_same_weights(tmp_path):
    args = ["train-teacher", "--arch", "mlp", "--width", "16", "--depth", "1", "--epochs", "2", "--seed", "1",
            "--checkpoint-every", "0", "--augment", "shift"]
    r = run_cli(*args, "--out", tmp_path / "a.keras")
    assert r.exit_code == 0, r.stderr
    resumed = ["--out", tmp_path / "b.keras", "--checkpoint-dir", tmp_path / "ck"]

    def stopped_in_epoch_2():
        assert state(tmp_path / "ck")["epochs_done"] == 1
        # another augmentation is another run: refused
        r = run_cli(*args[:-1], "shift:2", *resumed, "--resume")
        assert_one_line_error(r, 4, "augment")

    interrupt_and_resume(*args, *resumed, at=STEPS_PER_EPOCH + 1, between=stopped_in_epoch_2)
    assert_same_weights(tmp_path / "b.keras", kdcli.load_model(tmp_path / "a.keras").get_weights())


def test_bad_augment_options_are_usage_or_data_errors(pipeline, tmp_path):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--augment", "shift", "--out", tmp_path / "s.keras")
    assert r.exit_code == 2 and "give --teacher, without --soft-labels" in r.stderr
    r = run_cli("train-teacher", "--augment", "rotate", "--out", tmp_path / "t.keras")
    assert r.exit_code == 2 and "auto, none, shift, mixup, shift+mixup, with shift:N" in r.stderr
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--augment", "auto", "--out", tmp_path / "s.keras")
    assert r.exit_code == 2 and "none, shift, mixup, shift+mixup, with shift:N for N pixels, got 'auto'" in r.stderr
    flat = tmp_path / "flat.npz"
    rng = np.random.default_rng(0)
    np.savez(flat, x=rng.random((50, 6), np.float32), y=rng.integers(0, 2, 50))
    r = run_cli("train-teacher", "--data", flat, "--arch", "mlp", "--augment", "shift", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "shifts images")
    assert not (tmp_path / "t.keras").exists()


@pytest.mark.slow
def test_teacher_defaults_shift_a_cnn_teacher_for_40_cosine_epochs(tmp_path):
    r = run_cli("train-teacher", "--arch", "mlp", "--width", "16", "--depth", "1", "--out", tmp_path / "m.keras")
    assert r.exit_code == 0, r.stderr
    hyper = kdcli.read_provenance(tmp_path / "m.keras")["hyperparameters"]
    assert (hyper["augment"], hyper["epochs"], hyper["lr_schedule"]) == ("none", 40, "cosine")  # auto: not a cnn
    r = run_cli("train-teacher", "--arch", "cnn", "--width", "4", "--depth", "1", "--epochs", "1",
                "--out", tmp_path / "c.keras")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(tmp_path / "c.keras")["hyperparameters"]["augment"] == "shift:1"
