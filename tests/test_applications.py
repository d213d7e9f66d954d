"""keras.applications models in kdcli: as teachers through the one-shot command (shrink:0.25, one training
step, safe reloading, evaluate, and an int8 export), as students (`--student app:NAME:options`), and the
one-line errors of those that cannot be built. Built with weights=None: nothing is downloaded."""

import json

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras

from conftest import assert_one_line_error, run_cli

MATRIX = ["MobileNetV2", "MobileNetV3Small", "ResNet50V2", "EfficientNetB0", "EfficientNetV2B0", "DenseNet121",
          "ConvNeXtTiny", "NASNetMobile"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """16 training and 8 test images of 32x32x3 (the smallest size every family takes), 3 classes."""
    folder = tmp_path_factory.mktemp("applications")
    rng = np.random.default_rng(0)
    np.savez(folder / "images.npz", x_train=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(16) % 3, x_test=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(8) % 3)
    return folder


@pytest.mark.slow  # each trains and converts for seconds
@pytest.mark.parametrize("name", MATRIX)
def test_an_application_teacher_goes_through_one_shot_distill_evaluate_and_int8_export(images, name):
    keras.utils.set_random_seed(0)
    teacher = images / f"{name}.keras"
    getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=3).save(teacher)
    data = ["--data", images / "images.npz"]
    r = run_cli("distill", "--teacher", teacher, *data, "--epochs", "1", "--batch-size", "16", "--quiet")
    assert r.exit_code == 0, r.stderr
    student_path = images / f"{name}.student.keras"
    student = keras.saving.load_model(student_path, safe_mode=True)
    rows = student.predict(np.load(images / "images.npz")["x_test"].astype("float32"), verbose=0)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-4)  # a softmax teacher's drop-in replacement
    teacher_params = keras.saving.load_model(teacher).count_params()
    assert student.count_params() < teacher_params / 8  # about 1/16: widths scaled by 0.25
    r = run_cli("evaluate", teacher, student_path, *data, "--latency-runs", "10", "--json", "-")
    assert r.exit_code == 0, r.stderr
    assert [m["params"] is not None for m in json.loads(r.stdout)["models"]] == [True, True]
    r = run_cli("export", student_path, "--quantize", "int8", *data, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(images / f"{name}.student-int8.tflite")["output"] == "softmax"


@pytest.fixture(scope="module")
def images_with_teacher(tmp_path_factory):
    """32x32 colour images of 4 classes and a small cnn teacher trained on them."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    y = np.arange(240) % 4
    x = rng.integers(0, 255, size=(240, 32, 32, 3)).astype("uint8")
    x[y == 1, :16], x[y == 2, :, :16], x[y == 3, 8:24, 8:24] = 255, 0, 128
    np.savez(d / "images.npz", x=x, y=y)
    r = run_cli("train-teacher", "--data", d / "images.npz", "--width", "8", "--epochs", "2", "--out", d / "t.keras")
    assert r.exit_code == 0, r.stderr
    return d


@pytest.mark.slow
def test_a_student_from_keras_applications_with_options(images_with_teacher, tmp_path):
    out = tmp_path / "s.keras"
    r = run_cli("distill", "--teacher", images_with_teacher / "t.keras", "--student", "app:MobileNetV3Small:alpha=0.75,minimalistic=true",
                "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    student = kdcli.load_model(out)  # safe loading: nothing but standard layers
    core = [layer for layer in student.layers if isinstance(layer, keras.Model)]
    assert len(core) == 1 and core[0].name.startswith("MobileNetV3Small")
    assert student.output_shape == (None, 4)
    assert kdcli.read_provenance(out)["hyperparameters"]["student"] == "app:MobileNetV3Small:alpha=0.75,minimalistic=true"
    r = run_cli("evaluate", images_with_teacher / "t.keras", out, "--latency-runs", "10", "--json", "-")
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("spec, code, message", [
    ("app:NoSuchNet", 2, "keras.applications has no model 'NoSuchNet'"),
    ("app:mobilenet", 2, "keras.applications has no model 'mobilenet'"),
    ("app:MobileNetV3Small:alpha", 2, "give options as key=value"),
    ("app:ResNet50V2:alpha=2", 4, "cannot be built for samples of shape (32, 32, 3)"),
])
def test_a_keras_applications_student_that_cannot_be_built_gets_one_line(images_with_teacher, tmp_path, spec, code, message):
    r = run_cli("distill", "--teacher", images_with_teacher / "t.keras", "--student", spec, "--epochs", "1",
                "--out", tmp_path / "s.keras")
    assert_one_line_error(r, code, message)


def test_a_keras_applications_family_that_cannot_take_the_size_says_so(pipeline, tmp_path):
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--student", "app:MobileNetV3Small", "--epochs", "1",
                "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "cannot be built for samples of shape (8, 8) (Input size must be at least 32x32")
