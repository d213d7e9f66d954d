"""--method hints (FitNets): the feature term against NumPy, the automatic and named layers, a
projector that is trained and checkpointed but never saved, and the live teacher it needs."""

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras
from kdcli.errors import UsageError
from kdcli.methods import make_method
from kdcli.methods.hints import feature_layer

from conftest import STEPS_PER_EPOCH, assert_one_line_error, assert_same_weights, interrupt_and_resume, run_cli


def mlp(width, name):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden), name=name)


def cnn(size, channels, name):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(channels, 3, padding="same", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(8 // size, name="pool")(x)
    logits = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, logits, name=name)


def test_the_feature_term_against_numpy_through_a_projector():
    student, teacher = mlp(4, "s"), mlp(7, "t")
    method = make_method("hints", hint_weight=2.5)
    method.build(student, teacher)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    logits, s_features = method.student_outputs(student, x)
    t_logits, t_features = method.teacher_outputs(teacher, x)
    np.testing.assert_allclose(logits, student(x), atol=1e-6)  # the same forward pass, features beside
    np.testing.assert_allclose(t_logits, teacher(x), atol=1e-6)
    kernel, bias = (v.numpy() for v in method.variables)
    assert kernel.shape == (4, 7)  # the student's 4 channels projected onto the teacher's 7
    expected = 2.5 * ((s_features.numpy() @ kernel + bias - t_features.numpy()) ** 2).mean(axis=1)
    np.testing.assert_allclose(method.feature_loss(s_features, t_features), expected, rtol=1e-5)


def test_feature_maps_of_equal_size_match_by_a_1x1_projection_and_others_as_averages():
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 1)).astype(np.float32)
    for teacher_size, axes in ((4, ()), (2, (1, 2))):  # 4x4 against 4x4 maps, per pixel; against 2x2, as averages
        method = make_method("hints", student_layer="pool", teacher_layer="pool")
        method.build(cnn(4, 2, "s"), cnn(teacher_size, 5, "t"))
        s, t = method.student_outputs(None, x)[1], method.teacher_outputs(None, x)[1]
        kernel, bias = (v.numpy() for v in method.variables)
        assert kernel.shape == (2, 5)
        s_np, t_np = s.numpy(), t.numpy()
        if axes:
            s_np, t_np = s_np.mean(axis=axes), t_np.mean(axis=axes)
        expected = ((s_np @ kernel + bias - t_np) ** 2).reshape(2, -1).mean(axis=1)
        np.testing.assert_allclose(method.feature_loss(s, t), expected, rtol=1e-5)


def test_the_automatic_layer_is_the_last_hidden_layer_with_weights():
    assert feature_layer(mlp(4, "m"), "auto", "--method hints:student_layer").name == "hidden"
    assert feature_layer(cnn(4, 2, "c"), "auto", "--method hints:student_layer").name == "conv"
    with pytest.raises(UsageError, match="--method hints:teacher_layer=nope: the teacher has no layer of that name"):
        feature_layer(mlp(4, "m"), "nope", "--method hints:teacher_layer", "the teacher")
    # a binary sigmoid teacher's logits model ends in kdcli's [0, z] head: not a hidden layer
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
    binary = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="p")(hidden))
    assert feature_layer(kdcli.logits_model(binary), "auto", "--method hints:teacher_layer").name == "hidden"
    linear = keras.Model(inputs := keras.Input((6,)), keras.layers.Dense(3)(inputs))
    with pytest.raises(UsageError, match="no hidden layer"):
        feature_layer(linear, "auto", "--method hints:student_layer")


def hints_args(pipeline, out, *more, method="hints"):
    return ["distill", "--teacher", pipeline["teacher"], "--method", method, "--epochs", "2", "--seed", "4",
            "--checkpoint-every", "0", *more, "--out", out]


@pytest.mark.slow
def test_distill_with_hints_saves_the_student_without_its_projector(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    r = run_cli(*hints_args(pipeline, out, method="hints:hint_weight=3"))
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["method"] == {"name": "hints", "temperature": 4.0, "alpha": 0.9,
                                                   "standardize": False, "hint_weight": 3.0,
                                                   "student_layer": "auto", "teacher_layer": "auto"}
    assert record["hyperparameters"]["mode"] == "online"  # the teacher's layers are read live
    plain = tmp_path / "plain.keras"
    assert run_cli("distill", "--teacher", pipeline["teacher"], "--epochs", "1", "--out", plain).exit_code == 0
    saved, reference = kdcli.load_model(out), kdcli.load_model(plain)
    assert [w.shape for w in saved.weights] == [w.shape for w in reference.weights]
    assert not any("hint" in layer.name for layer in saved.layers)


@pytest.mark.slow
def test_an_interrupted_hints_run_resumes_to_the_same_weights_projector_included(pipeline, tmp_path):
    r = run_cli(*hints_args(pipeline, tmp_path / "a.keras"))
    assert r.exit_code == 0, r.stderr
    args = hints_args(pipeline, tmp_path / "b.keras", "--checkpoint-dir", tmp_path / "ck")
    interrupt_and_resume(*args, at=STEPS_PER_EPOCH + 3)
    # equal only if the projector, trained in epoch 1, came back from the checkpoint
    assert_same_weights(tmp_path / "b.keras", kdcli.load_model(tmp_path / "a.keras").get_weights())


def test_hints_need_the_live_teacher_and_known_layers(pipeline, tmp_path):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--method", "hints", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, "reads the live teacher's layers")
    r = run_cli(*hints_args(pipeline, tmp_path / "s.keras", method="hints:teacher_layer=nope"))
    assert_one_line_error(r, 2, "--method hints:teacher_layer=nope: the teacher has no layer of that name")
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--method", "kd:hint_weight=2", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, "--method kd has no parameter 'hint_weight'")
    assert not (tmp_path / "s.keras").exists()


def test_hints_read_one_teacher_not_an_ensemble(pipeline, tmp_path):
    r = run_cli(*hints_args(pipeline, tmp_path / "s.keras", "--teacher", pipeline["teacher"]))
    assert_one_line_error(r, 2, "--method hints reads one teacher's layers")
