"""keras.applications teachers through the one-shot command: shrink:0.25, one training step,
safe reloading, evaluate, and an int8 export. Built with weights=None: nothing is downloaded."""

import json

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras

from conftest import run_cli

pytestmark = pytest.mark.slow  # every test here trains or converts for seconds

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
