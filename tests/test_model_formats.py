"""Every model format a Keras user has: legacy .h5, SavedModel folders, custom layers (--import),
files of the wrong kind, and honest parameter counts, through the command line."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import kdcli
from kdcli._tf import keras

from conftest import assert_one_line_error, kdcli_process, run_cli, talk


def _evaluate(*args):
    r = run_cli("evaluate", *args, "--data", "digits", "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)["models"]


def _logits(path):
    with h5py.File(path) as f:
        return f["logits"][:]


def _same_up_to_row_constant(a, b, atol=1e-4):
    """Logits equal up to a per-sample constant (which a softmax cancels)."""
    np.testing.assert_allclose(a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True), atol=atol)


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """A teacher trained by Keras' own fit, saved as .keras, as a legacy .h5 file, as kdcli's own
    SavedModel export, and as a softmax model exported by Keras (a SavedModel kdcli knows nothing
    about); with its soft labels."""
    d = tmp_path_factory.mktemp("formats")
    data = kdcli.load_data("digits")
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input(data.input_shape), keras.layers.Rescaling(1 / 16), keras.layers.Flatten(),
                                keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(data.x_train, data.y_train, epochs=5, verbose=0)
    teacher.save(d / "teacher.keras")
    teacher.save(d / "teacher.h5")
    r = run_cli("export", d / "teacher.keras", "--format", "saved_model", "--out", d / "kdcli_saved")
    assert r.exit_code == 0, r.stderr
    probabilities = keras.Model(teacher.inputs, keras.layers.Softmax()(teacher.outputs[0]))
    probabilities.export(str(d / "foreign_saved"), verbose=False)
    r = run_cli("soft-labels", "--teacher", d / "teacher.keras", "--data", "digits", "--out", d / "soft.h5")
    assert r.exit_code == 0, r.stderr
    return {"dir": d, "keras": d / "teacher.keras", "h5": d / "teacher.h5", "saved": d / "kdcli_saved",
            "foreign": d / "foreign_saved", "soft": d / "soft.h5"}


def test_legacy_h5_and_saved_models_evaluate_like_the_keras_file(formats):
    entries = _evaluate(formats["keras"], formats["h5"], formats["saved"], formats["foreign"])
    assert [e["format"] for e in entries] == ["keras", "h5", "saved_model", "saved_model"]
    for entry in entries[1:]:
        assert entry["accuracy"] == entries[0]["accuracy"]
        assert entry["agreement"] == 1.0
        assert entry["params"] == entries[0]["params"]
    assert entries[2]["size_bytes"] > 0  # a folder's files, summed


@pytest.mark.parametrize("kind", ["h5", "saved", "foreign"])
def test_soft_labels_of_every_format_match_the_keras_files(formats, kind, tmp_path):
    out = tmp_path / "soft.h5"
    r = run_cli("soft-labels", "--teacher", formats[kind], "--data", "digits", "--out", out)
    assert r.exit_code == 0, r.stderr
    # The foreign export outputs probabilities: kdcli takes their log, the logits up to a per-row constant.
    _same_up_to_row_constant(_logits(out), _logits(formats["soft"]))
    record = kdcli.read_provenance(out)
    assert record["teacher_format"] == {"h5": "h5", "saved": "saved_model", "foreign": "saved_model"}[kind]


def test_one_shot_distill_from_a_legacy_h5_teacher_shrinks_it(formats, tmp_path):
    out = tmp_path / "student.keras"
    r = run_cli("distill", "--teacher", formats["h5"], "--data", "digits", "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["student"] == "shrink:0.25"
    assert record["teacher_format"] == "h5"
    assert kdcli.read_provenance(formats["h5"]) is None  # a legacy file has no room for provenance


@pytest.mark.slow
def test_one_shot_distill_from_a_saved_model_picks_a_student_and_says_so(formats, tmp_path):
    out = tmp_path / "student.keras"
    r = run_cli("distill", "--teacher", formats["foreign"], "--data", "digits", "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert any("SavedModel" in line and "auto" in line for line in talk(r.stderr)), r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["student"] != "shrink:0.25"
    assert record["teacher_format"] == "saved_model"
    assert record["output"] == "softmax"  # a drop-in replacement for a teacher that outputs probabilities
    assert record["metrics"]["teacher_test_accuracy"] > 0.5


def test_a_saved_model_teaches_online(formats, tmp_path):
    out = tmp_path / "student.keras"
    r = run_cli("distill", "--teacher", formats["foreign"], "--data", "digits", "--online", "--student", "mlp",
                "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["mode"] == "online"
    assert record["metrics"]["teacher_test_accuracy"] == _evaluate(formats["keras"])[0]["accuracy"]


def test_a_saved_model_cannot_be_shrunk(formats, tmp_path):
    r = run_cli("distill", "--teacher", formats["saved"], "--data", "digits", "--student", "shrink:0.5",
                "--epochs", "1", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, "has no architecture to shrink")
    assert not (tmp_path / "s.keras").exists()


@pytest.mark.parametrize("make, message", [
    (lambda p, d: p["soft"], "soft labels, not a model; distill takes them with --soft-labels"),
    (lambda p, d: d / "student.tflite", "a TFLite export, which kdcli runs only in evaluate"),
    (lambda p, d: d, "a folder without saved_model.pb"),
    (lambda p, d: d / "data.h5", "an HDF5 file without a Keras model in it"),
])
def test_a_file_of_the_wrong_kind_as_teacher_says_what_takes_it(pipeline, make, message, tmp_path):
    (tmp_path / "student.tflite").write_bytes(b"TFL3")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.zeros((3, 2))
    r = run_cli("distill", "--teacher", make(pipeline, tmp_path), "--data", "digits", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, message)


CUSTOM_LAYER = '''
import keras


@keras.saving.register_keras_serializable(package="tests")
class ChannelScale(keras.layers.Layer):
    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale
'''


@pytest.mark.slow
def test_a_custom_layer_loads_with_import(tmp_path):
    """In subprocesses: the class must not be registered already, as it would be in this process."""
    module = tmp_path / "channel_layers.py"
    module.write_text(CUSTOM_LAYER)
    make = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import keras, channel_layers; "
            "m = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), channel_layers.ChannelScale(), "
            f"keras.layers.Dense(10)]); m.save({str(tmp_path / 'custom.keras')!r})")
    subprocess.run([sys.executable, "-c", make], check=True, capture_output=True)
    model = tmp_path / "custom.keras"
    r = kdcli_process("evaluate", model, "--data", "digits", "--json", "-", "--latency-runs", "10")
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "unknown class ChannelScale (module channel_layers)" in r.stderr and "--import" in r.stderr
    assert "Traceback" not in r.stderr
    # beside a Lambda layer, loaded with --unsafe: the missing class is still the cause named
    make_both = make.replace("channel_layers.ChannelScale(), ", "channel_layers.ChannelScale(), "
                             "keras.layers.Lambda(lambda t: t * 2), ").replace("custom.keras", "both.keras")
    subprocess.run([sys.executable, "-c", make_both], check=True, capture_output=True)
    r = kdcli_process("evaluate", tmp_path / "both.keras", "--data", "digits", "--unsafe")
    assert r.returncode == 4 and "unknown class ChannelScale" in r.stderr, r.stderr
    for given in (module, "channel_layers"):  # a .py path, or a module on the Python path
        r = subprocess.run([sys.executable, "-m", "kdcli", "evaluate", str(model), "--data", "digits", "--json",
                            "-", "--latency-runs", "10", "--import", str(given)], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["models"][0]["params"] == 64 + 64 * 10 + 10


def test_import_of_a_missing_module_is_a_usage_error(pipeline):
    r = run_cli("evaluate", pipeline["teacher"], "--data", "digits", "--import", "no_such_module_here")
    assert_one_line_error(r, 2, "--import no_such_module_here: no module named 'no_such_module_here'")


def test_distill_and_evaluate_count_the_same_parameters_for_a_binary_student(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    np.savez(tmp_path / "binary.npz", x=x, y=y)
    teacher = keras.Sequential([keras.Input((6,)), keras.layers.Dense(32, activation="relu"),
                                keras.layers.Dense(1, activation="sigmoid")])
    teacher.save(tmp_path / "teacher.h5")
    out = tmp_path / "student.keras"
    r = run_cli("distill", "--teacher", tmp_path / "teacher.h5", "--data", tmp_path / "binary.npz", "--epochs", "1",
                "--out", out)
    assert r.exit_code == 0, r.stderr
    said = next(line for line in talk(r.stderr) if line.startswith("student "))
    r = run_cli("evaluate", out, "--data", tmp_path / "binary.npz", "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    params = json.loads(r.stdout)["models"][0]["params"]
    assert params == kdcli.load_model(out).count_params()
    assert f"{params:,} parameters" in said, said


@pytest.mark.slow
def test_a_student_not_smaller_than_its_teacher_is_warned_about(formats, tmp_path):
    r = run_cli("distill", "--teacher", formats["keras"], "--data", "digits", "--student", "mlp", "--width", "64",
                "--epochs", "1", "--out", tmp_path / "big.keras")
    assert r.exit_code == 0, r.stderr
    assert any(line.startswith("warning: the student has") and "not smaller" in line for line in talk(r.stderr))
    r = run_cli("distill", "--teacher", formats["keras"], "--data", "digits", "--epochs", "1",
                "--out", tmp_path / "small.keras")
    assert r.exit_code == 0, r.stderr
    assert not any(line.startswith("warning:") for line in talk(r.stderr))
