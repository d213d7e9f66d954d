"""Students in every form, the one-shot command, plain-Keras teachers and --baseline.

shrink itself is tested in test_shrink.py, students from keras.applications in test_applications.py."""

import json

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras

from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def textbook_teacher(tmp_path_factory):
    """The textbook Keras classifier, trained and saved with plain Keras (no kdcli provenance)."""
    import keras

    data = kdcli.load_data("digits")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8)), keras.layers.Rescaling(1 / 16), keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train.astype("float32"), data.y_train, epochs=15, verbose=0)
    path = tmp_path_factory.mktemp("textbook") / "model.keras"
    model.save(path)
    return path


@pytest.mark.slow
def test_one_shot_on_a_plain_keras_teacher(textbook_teacher):
    r = run_cli("distill", "--teacher", textbook_teacher)
    assert_one_line_error(r, 2, "no --data given and none is recorded in the input files; pass --data")
    r = run_cli("distill", "--teacher", textbook_teacher, "--data", "digits", "--epochs", "15")
    assert r.exit_code == 0, r.stderr
    out = textbook_teacher.with_name("model.student.keras")
    assert r.stdout == f"{out}\n"
    assert f"teacher {textbook_teacher}: test accuracy" in r.stderr
    assert f"student {out}: test accuracy" in r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["student"] == "shrink:0.25"
    assert record["hyperparameters"]["mode"] == "teacher-logits-once"
    teacher = kdcli.load_model(textbook_teacher)
    student = kdcli.load_model(out)
    # Dense(128) -> Dense(32); the output layer keeps its 10 classes and, like its teacher, ends in a softmax
    assert [layer.units for layer in student.layers if hasattr(layer, "units")] == [32, 10]
    assert record["output"] == "softmax" and record["hyperparameters"]["student_output"] == "softmax"
    x = kdcli.load_data("digits").x_test[:50].astype("float32")
    rows = keras.saving.load_model(out).predict(x, verbose=0)  # a drop-in replacement: probabilities
    assert rows.shape == (50, 10) and np.all(rows >= 0)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(rows.argmax(1) == teacher.predict(x, verbose=0).argmax(1)) > 0.7
    assert record["metrics"]["teacher_test_accuracy"] > 0.9
    assert record["metrics"]["test_accuracy"] > 0.75  # 15 epochs of a 2,410-parameter student; chance is 0.1
    assert student.count_params() < teacher.count_params() / 3


def test_one_shot_takes_the_data_from_the_teachers_provenance(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--epochs", "1", "--out", out, "--quiet")
    assert r.exit_code == 0 and r.stdout == f"{out}\n" and r.stderr == ""
    assert kdcli.read_provenance(out)["data"]["spec"] == "digits"


def test_teacher_logits_are_computed_once_not_per_epoch(pipeline, tmp_path, monkeypatch):
    from kdcli import inference

    calls = []
    original = inference.predict_logits
    monkeypatch.setattr(inference, "predict_logits", lambda *a, **k: calls.append(1) or original(*a, **k))
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--student", "mlp", "--epochs", "3",
                "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    # once for the training split's logits, then only the final test evaluations
    assert kdcli.read_provenance(tmp_path / "s.keras")["hyperparameters"]["mode"] == "teacher-logits-once"
    assert len(calls) == 1 + 2  # logits; student and teacher test accuracy


def test_user_architecture_with_the_wrong_outputs_is_refused(tmp_path, pipeline):
    import keras

    keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(7)]).save(tmp_path / "arch.keras")
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", tmp_path / "arch.keras",
                "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "the model has 7 outputs, the data has 10 classes")
    assert not (tmp_path / "s.keras").exists()


def test_user_architecture_is_trained_from_fresh_weights(tmp_path, pipeline):
    import keras

    arch = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    arch.save(tmp_path / "arch.keras")
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", tmp_path / "arch.keras",
                "--epochs", "2", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    assert kdcli.load_model(tmp_path / "s.keras").output_shape == (None, 10)


@pytest.mark.slow
def test_baseline_reports_both_accuracies(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--width", "16",
                "--epochs", "4", "--baseline", "--out", out)
    assert r.exit_code == 0, r.stderr
    metrics = kdcli.read_provenance(out)["metrics"]
    assert 0 < metrics["baseline_test_accuracy"] <= 1
    assert metrics["distillation_gain_points"] == pytest.approx(
        100 * (metrics["test_accuracy"] - metrics["baseline_test_accuracy"]))
    assert "baseline: the same student trained from scratch reaches" in r.stderr
    r = run_cli("evaluate", pipeline["teacher"], out, "--json", "-", "--latency-runs", "10")
    entry = json.loads(r.stdout)["models"][1]
    assert entry["baseline_accuracy"] == pytest.approx(metrics["baseline_test_accuracy"])
    assert entry["distillation_gain_points"] == pytest.approx(metrics["distillation_gain_points"])
    r = run_cli("evaluate", pipeline["teacher"], out, "--latency-runs", "10")
    assert "from scratch (gain)" in r.stdout


def test_baseline_starts_from_the_same_weights(tmp_path):
    """Scratch and distilled students differ only in the loss: same init, same batches."""
    data = kdcli.load_data("digits")
    a = kdcli.build_from_spec("mlp", data, width=8, seed=5)
    b = kdcli.build_from_spec("mlp", data, width=8, seed=5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.slow
def test_plain_functional_teacher_in_every_subcommand(tmp_path):
    import keras

    data = kdcli.load_data("digits")
    inputs = keras.Input((8, 8))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 16)(inputs))
    x = keras.layers.Dense(32, activation="relu")(x)
    outputs = keras.layers.Activation("softmax")(keras.layers.Dense(10)(x))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data.x_train.astype("float32"), data.y_train, epochs=3, verbose=0)
    model.save(tmp_path / "f.keras")
    r = run_cli("soft-labels", "--teacher", tmp_path / "f.keras", "--data", "digits", "--out", tmp_path / "s.h5")
    assert r.exit_code == 0, r.stderr
    r = run_cli("distill", "--teacher", tmp_path / "f.keras", "--data", "digits", "--epochs", "2")
    assert r.exit_code == 0, r.stderr
    r = run_cli("evaluate", tmp_path / "f.keras", tmp_path / "f.student.keras", "--data", "digits",
                "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["models"][0]["accuracy"] > 0.5


def test_mixed_precision_bf16(pipeline, tmp_path):
    out = tmp_path / "bf16.keras"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--epochs", "2",
                "--mixed-precision", "bf16", "--out", out)
    assert r.exit_code == 0, r.stderr
    model = kdcli.load_model(out)
    assert model.layers[-2].dtype_policy.name == "mixed_bfloat16"
    assert model.layers[-1].dtype_policy.name == "float32"  # logits keep float32
    assert model(np.zeros((1, 8, 8), np.float32)).dtype == "float32"
    assert kdcli.read_provenance(out)["metrics"]["test_accuracy"] > 0.5
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--mixed-precision", "fp8", "--out", out)
    assert r.exit_code == 2  # a usage error, refused before any work


@pytest.mark.parametrize("shape, arch", [((8, 8), "cnn"), ((28, 28, 1), "cnn"), ((32, 32, 3), "cnn"),
                                         ((100, 1), "cnn"), ((50, 6), "cnn"), ((64, 8), "cnn"),
                                         ((20,), "mlp"), ((4, 4), "mlp"), ((6, 1), "mlp"), ((16, 16, 12), "mlp")])
def test_auto_picks_a_cnn_for_images_and_signals_and_an_mlp_otherwise(shape, arch):
    from kdcli.specs import auto_arch

    assert auto_arch(shape) == arch


def test_a_signal_teacher_is_a_1d_cnn_without_shifts_and_its_shrunk_student_follows(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 40, 2)).astype(np.float32)
    y = (x[:, :, 0].max(axis=1) > 2.0).astype(np.int64)
    np.savez(tmp_path / "signals.npz", x=x, y=y)
    teacher = tmp_path / "t.keras"
    r = run_cli("train-teacher", "--data", tmp_path / "signals.npz", "--epochs", "1", "--out", teacher)
    assert r.exit_code == 0, r.stderr
    hyper = kdcli.read_provenance(teacher)["hyperparameters"]
    assert (hyper["arch"], hyper["augment"]) == ("cnn", "none")  # a shift would move the channels too
    kinds = {type(layer).__name__ for layer in kdcli.load_model(teacher).layers}
    assert "Conv1D" in kinds and "Conv2D" not in kinds
    student = tmp_path / "s.keras"
    r = run_cli("distill", "--teacher", teacher, "--epochs", "1", "--out", student)
    assert r.exit_code == 0, r.stderr
    conv = [layer for layer in kdcli.load_model(student).layers if type(layer).__name__ == "Conv1D"]
    assert [layer.filters for layer in conv] == [8, 8, 16, 16]  # the teacher's 32, 32, 64, 64 times 0.25


def test_train_teacher_on_tabular_data_needs_no_arch(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 12)).astype("float32")
    np.savez(tmp_path / "tabular.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    r = run_cli("train-teacher", "--data", tmp_path / "tabular.npz", "--epochs", "2", "--out", tmp_path / "t.keras")
    assert r.exit_code == 0, r.stderr
    hyper = kdcli.read_provenance(tmp_path / "t.keras")["hyperparameters"]
    assert hyper["arch"] == "mlp" and hyper["augment"] == "none"
    r = run_cli("soft-labels", "--teacher", tmp_path / "t.keras", "--out", tmp_path / "s.h5")
    assert r.exit_code == 0, r.stderr
    r = run_cli("distill", "--soft-labels", tmp_path / "s.h5", "--epochs", "1", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(tmp_path / "s.keras")["hyperparameters"]["student"] == "mlp"


@pytest.mark.slow
def test_auto_on_images_is_the_shifted_cnn(tmp_path):
    r = run_cli("train-teacher", "--epochs", "1", "--width", "4", "--out", tmp_path / "t.keras")
    assert r.exit_code == 0, r.stderr
    hyper = kdcli.read_provenance(tmp_path / "t.keras")["hyperparameters"]
    assert hyper["arch"] == "cnn" and hyper["augment"] == "shift:1"


@pytest.mark.parametrize("kind", ["inputs", "outputs"])
def test_models_with_several_inputs_or_outputs_are_refused_with_one_line(pipeline, tmp_path, kind):
    a = keras.Input((8, 8))
    flat = keras.layers.Flatten()(a)
    if kind == "inputs":
        b = keras.Input((4,))
        model = keras.Model([a, b], keras.layers.Dense(10)(keras.layers.Concatenate()([flat, b])))
    else:
        model = keras.Model(a, [keras.layers.Dense(10)(flat), keras.layers.Dense(1)(flat)])
    path = tmp_path / "two.keras"
    model.save(path)
    message = f"two.keras: the model has 2 {kind}; kdcli distills classifiers with one input and one output"
    assert_one_line_error(run_cli("distill", "--teacher", path, "--data", "digits", "--epochs", "1",
                                  "--out", tmp_path / "s.keras"), 4, message)
    assert_one_line_error(run_cli("evaluate", path, "--data", "digits"), 4, message)
    assert_one_line_error(run_cli("distill", "--soft-labels", pipeline["soft"], "--student", path, "--epochs", "1",
                                  "--out", tmp_path / "s.keras"), 4, message)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """A binary tabular set and a plain Keras classifier ending in one sigmoid unit, trained on it."""
    d = tmp_path_factory.mktemp("binary")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64")
    np.savez(d / "binary.npz", x=x, y=y)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=60, verbose=0)
    model.save(d / "binary.keras")
    return d


@pytest.mark.slow
def test_a_sigmoid_teacher_is_the_two_class_head_0_z(binary):
    model = kdcli.load_model(binary / "binary.keras")
    x = np.random.default_rng(1).normal(size=(20, 6)).astype("float32")
    p = model.predict(x, verbose=0)[:, 0]
    logits = kdcli.logits_model(model).predict(x, verbose=0)
    assert logits.shape == (20, 2)
    np.testing.assert_array_equal(logits[:, 0], 0.0)
    z = logits[:, 1].astype(np.float64)
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), p, rtol=1e-5)  # softmax([0, z])[1] = sigmoid(z)


@pytest.mark.slow
def test_a_sigmoid_teacher_goes_through_every_step(binary, tmp_path):
    data = ["--data", binary / "binary.npz"]
    r = run_cli("soft-labels", "--teacher", binary / "binary.keras", *data, "--out", tmp_path / "s.h5")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_soft_labels(tmp_path / "s.h5").attrs["num_classes"] == 2
    for method in ("kd", "dkd", "dist"):
        r = run_cli("distill", "--soft-labels", tmp_path / "s.h5", *data, "--method", method, "--epochs", "2",
                    "--out", tmp_path / f"{method}.keras")
        assert r.exit_code == 0, (method, r.stderr)
    r = run_cli("distill", "--teacher", binary / "binary.keras", *data, "--epochs", "2", "--baseline",
                "--out", tmp_path / "one-shot.keras")
    assert r.exit_code == 0, r.stderr
    # A drop-in replacement: one column, the probability of class 1, like its teacher's
    x = np.load(binary / "binary.npz")["x"][:50]
    p = keras.saving.load_model(tmp_path / "one-shot.keras").predict(x, verbose=0)
    assert p.shape == (50, 1) and np.all((p >= 0) & (p <= 1))
    assert kdcli.read_provenance(tmp_path / "one-shot.keras")["output"] == "sigmoid"
    # soft labels remember their teacher's head: a student distilled from them is a drop-in replacement too
    assert kdcli.load_model(tmp_path / "kd.keras").output_shape == (None, 1)
    for model in ("binary.keras", "one-shot.keras"):
        source = binary / model if model == "binary.keras" else tmp_path / model
        r = run_cli("export", source, "--out", tmp_path / f"{model}.tflite")
        assert r.exit_code == 0, r.stderr
    r = run_cli("evaluate", binary / "binary.keras", tmp_path / "one-shot.keras", tmp_path / "binary.keras.tflite",
                tmp_path / "one-shot.keras.tflite", *data, "--latency-runs", "10", "--json", "-")
    assert r.exit_code == 0, r.stderr
    teacher, student, teacher_tflite, student_tflite = json.loads(r.stdout)["models"]
    assert teacher["accuracy"] > 0.9 and teacher_tflite["agreement"] == 1.0  # the export keeps the head's answers
    assert student_tflite["accuracy"] == student["accuracy"]
    assert kdcli.read_provenance(tmp_path / "one-shot.keras.tflite")["output"] == "sigmoid"


@pytest.mark.slow
def test_student_output_logits_keeps_raw_logits_and_exports_keep_the_head(textbook_teacher, tmp_path):
    data = ["--data", "digits", "--epochs", "1", "--quiet"]
    r = run_cli("distill", "--teacher", textbook_teacher, *data, "--student-output", "logits",
                "--out", tmp_path / "logits.keras")
    assert r.exit_code == 0, r.stderr
    model = keras.saving.load_model(tmp_path / "logits.keras")
    assert model.layers[-1].get_config()["activation"] == "linear"
    assert kdcli.read_provenance(tmp_path / "logits.keras")["output"] == "logits"
    r = run_cli("distill", "--teacher", textbook_teacher, *data, "--out", tmp_path / "probs.keras")
    assert r.exit_code == 0, r.stderr
    assert run_cli("export", tmp_path / "probs.keras", "--out", tmp_path / "probs.tflite").exit_code == 0
    from kdcli.tflite import TFLiteRunner

    rows = TFLiteRunner(tmp_path / "probs.tflite").call(kdcli.load_data("digits").x_test[:5])
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-5)  # the export outputs probabilities too
    r = run_cli("distill", "--teacher", textbook_teacher, *data, "--student-output", "sigmoid",
                "--out", tmp_path / "bad.keras")
    assert_one_line_error(r, 2, "--student-output sigmoid is for two classes; the data has 10")
    assert not (tmp_path / "bad.keras").exists()


@pytest.mark.slow
@pytest.mark.parametrize("head, message", [
    (lambda: keras.layers.Dense(3, activation="sigmoid"), "3 sigmoid outputs, a multi-label head"),
    (lambda: keras.layers.Dense(1), "one output without a sigmoid, a regression head"),
])
def test_multi_label_and_regression_heads_are_refused_with_one_line(binary, tmp_path, head, message):
    keras.Sequential([keras.Input((6,)), head()]).save(tmp_path / "m.keras")
    r = run_cli("distill", "--teacher", tmp_path / "m.keras", "--data", binary / "binary.npz", "--epochs", "1",
                "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, f"m.keras: {message}")
