"""Every student kdcli makes exports to TFLite, and agrees with itself.

The built-in students and the `shrink:0.25` students of several teacher kinds
(augmentation layers, recurrent layers over token ids, a cnn, a sigmoid mlp)
are trained briefly on small generated data, exported through the CLI at
`--quantize none` and `int8`, and the export's predictions are compared with
the `.keras` model's on the test split.
"""

import os

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras
from kdcli.evaluation import open_model
from kdcli.model_files import save_model
from kdcli.models import build_model, shrink

from conftest import assert_one_line_error, run_cli

N, LENGTH, VOCABULARY = 600, 12, 500
MIN_AGREEMENT = {"none": 0.99, "int8": 0.97}


def _generated(tmp, name):
    """Small learnable data sets, saved as `.npz`: features, images, token ids and texts."""
    rng = np.random.default_rng(0)
    if name == "features":
        x = rng.normal(size=(N, 12)).astype(np.float32)
        y = np.argmax(x[:, :3] + 0.5 * x[:, 3:6], axis=1)
    elif name == "binary":
        x = rng.normal(size=(N, 12)).astype(np.float32)
        y = (x[:, 0] + x[:, 1] - x[:, 2] > 0).astype(np.int64)
    elif name == "images":
        y = rng.integers(0, 3, N)
        x = rng.uniform(0, 160, size=(N, 12, 12, 3))
        x[np.arange(N), :, :, y] += 90  # the class is the brightest channel
        x = x.astype(np.float32)
    elif name == "tokens":
        y = rng.integers(0, 3, N)
        x = rng.integers(1, VOCABULARY, size=(N, LENGTH))
        marked = rng.uniform(size=(N, LENGTH)) < 0.4  # the class is the range of the marked ids
        x = np.where(marked, 1 + 100 * y[:, None] + rng.integers(0, 100, size=(N, LENGTH)), x).astype(np.int32)
    else:  # texts
        words = np.array(["red", "green", "blue", "small", "large", "quick", "slow"])
        y = rng.integers(0, 3, N)
        x = np.array([" ".join(words[rng.integers(0, 7, 6)]) + " " + words[c] for c in y])
    path = tmp / f"{name}.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Paths of the generated data sets, and their `Dataset`s, by name."""
    tmp = tmp_path_factory.mktemp("data")
    paths = {name: _generated(tmp, name) for name in ("features", "binary", "images", "tokens", "texts")}
    return {name: (path, kdcli.load_data(str(path))) for name, path in paths.items()}


def _augmenting_teacher(shape):
    """A cnn whose augmentation sits in a nested Sequential model (as in Keras' tutorials)."""
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1),
                                keras.layers.RandomZoom(0.1), keras.layers.RandomContrast(0.2)], name="augment")
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255)(augment(inputs))
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GaussianNoise(0.1)(keras.layers.MaxPooling2D()(x))
    x = keras.layers.Dense(32, activation="relu")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dropout(0.2)(x)))


def _recurrent_teacher(recurrent):
    """Embedding over token ids (a float32 input, as kdcli's own models take them), then `recurrent`."""
    return keras.Sequential([keras.Input((LENGTH,)), keras.layers.Embedding(VOCABULARY, 32, mask_zero=True),
                             recurrent, keras.layers.Dense(3)])


def _sigmoid_teacher():
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(1, activation="sigmoid")])


# name -> (data set, how to make the student from the Dataset)
STUDENTS = {
    "mlp": ("features", lambda d: build_model("mlp", d, role="student", seed=0)),
    "cnn": ("images", lambda d: build_model("cnn", d, role="student", seed=0)),
    "sequence": ("tokens", lambda d: build_model("sequence", d, role="student", seed=0)),
    "shrink-augmenting-cnn": ("images", lambda d: shrink(_augmenting_teacher(d.input_shape), 0.25, seed=0)),
    "shrink-bilstm": ("tokens", lambda d: shrink(_recurrent_teacher(keras.layers.Bidirectional(
        keras.layers.LSTM(32))), 0.25, seed=0)),
    "shrink-gru": ("tokens", lambda d: shrink(_recurrent_teacher(keras.layers.GRU(32)), 0.25, seed=0)),
    "shrink-cnn": ("images", lambda d: shrink(build_model("cnn", d, role="teacher", seed=0), 0.25, seed=0)),
    "shrink-sigmoid-mlp": ("binary", lambda d: shrink(_sigmoid_teacher(), 0.25, seed=0)),
}


@pytest.fixture(scope="module")
def students(data, tmp_path_factory):
    """Each student, trained for a few epochs (enough to separate its classes) and saved."""
    tmp = tmp_path_factory.mktemp("students")
    paths = {}
    for name, (data_name, make) in STUDENTS.items():
        dataset = data[data_name][1]
        model = make(dataset)
        sigmoid = model.output_shape[-1] == 1
        loss = "binary_crossentropy" if sigmoid else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        x, y = dataset.train.arrays()
        model.fit(x.astype(np.float32), y, epochs=4, batch_size=32, verbose=0)
        paths[name] = save_model(model, tmp / f"{name}.keras")
    return paths


def _export(model, out, quantize, data_path):
    r = run_cli("export", model, "--format", "tflite", "--quantize", quantize, "--data", data_path, "--out", out)
    assert r.exit_code == 0, r.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["none", "int8"])
@pytest.mark.parametrize("name", list(STUDENTS))
def test_export_agrees_with_keras(name, quantize, data, students, tmp_path):
    data_path, dataset = data[STUDENTS[name][0]]
    path = _export(students[name], tmp_path / f"{name}-{quantize}.tflite", quantize, data_path)
    keras_logits = open_model(students[name]).predict(dataset.test, 64)
    tflite = open_model(path)
    tflite_logits = tflite.predict(dataset.test, 64)
    agreement = np.mean(np.argmax(keras_logits, -1) == np.argmax(tflite_logits, -1))
    assert agreement >= MIN_AGREEMENT[quantize], (name, quantize, agreement)
    if quantize == "none":  # augmentation, dropout and noise are identities here, as in Keras' inference
        # the export gives a sigmoid probability p as [1 - p, p]; Keras, logits [0, z]
        if tflite._single.get_output_details()[0]["shape"][-1] == 1:
            keras_logits = np.exp(keras_logits) / np.exp(keras_logits).sum(-1, keepdims=True)
        np.testing.assert_allclose(tflite_logits, keras_logits, atol=1e-4, rtol=1e-4)
    expected = np.int32 if dataset.input_kind == "tokens" else np.int8 if quantize == "int8" else np.float32
    assert tflite._single.get_input_details()[0]["dtype"] == expected


def test_text_student_is_refused_for_tflite(data, tmp_path):
    data_path, dataset = data["texts"]
    path = save_model(build_model("text", dataset, role="student", seed=0), tmp_path / "text.keras")
    r = run_cli("export", path, "--format", "tflite", "--out", tmp_path / "text.tflite")
    assert_one_line_error(r, 4, "takes strings (a TextVectorization layer or a tokenizer)")
    assert "--format saved_model" in r.stderr
    assert not (tmp_path / "text.tflite").exists()


@pytest.mark.slow
def test_int8_keeps_token_ids_exact(tmp_path):
    """An Embedding whose rows are one-hot answers each id with that id as its class: the int8
    export must give every id back, so its input is int32 and never quantized."""
    ids = np.arange(VOCABULARY)
    np.savez(tmp_path / "ids.npz", x_train=ids[:, None].astype(np.int32), y_train=ids,
             x_test=ids[:, None].astype(np.int32), y_test=ids)
    inputs = keras.Input((1,), name="inputs")  # float32, as kdcli's own token models
    embedding = keras.layers.Embedding(VOCABULARY, VOCABULARY)
    model = keras.Model(inputs, keras.layers.Flatten()(embedding(inputs)))
    embedding.set_weights([np.eye(VOCABULARY, dtype=np.float32)])
    path = save_model(model, tmp_path / "ids.keras")
    for quantize in ("none", "float16", "dynamic", "int8"):
        out = _export(path, tmp_path / f"ids-{quantize}.tflite", quantize, tmp_path / "ids.npz")
        runner = open_model(out)
        details = runner._single.get_input_details()[0]
        assert details["dtype"] == np.int32 and details["quantization"] == (0.0, 0), quantize
        batch = np.arange(VOCABULARY, dtype=np.float32)[:, None]
        np.testing.assert_array_equal(np.argmax(runner.call(batch), -1), np.arange(VOCABULARY))
    r = run_cli("export", path, "--format", "saved_model", "--out", tmp_path / "saved")
    assert r.exit_code == 0, r.stderr
    import tensorflow as tf

    serve = tf.saved_model.load(str(tmp_path / "saved")).signatures["serve"]
    assert serve.structured_input_signature[1]["inputs"].dtype == tf.int32


def test_augmentation_becomes_identity_in_every_model_form():
    """Sequential, Functional and nested models: the twin has Identity layers, the same outputs and
    weights, and the model itself is unchanged."""
    from kdcli.export import export_twin

    def layers(model):
        out = []
        for layer in model.layers:
            out += layers(layer) if isinstance(layer, keras.Model) else [type(layer).__name__]
        return out

    augment = [keras.layers.RandomFlip(), keras.layers.RandomTranslation(0.1, 0.1), keras.layers.GaussianDropout(0.2)]
    sequential = keras.Sequential([keras.Input((8, 8, 1)), *augment, keras.layers.Flatten(), keras.layers.Dense(2)])
    inputs = keras.Input((8, 8, 1))
    functional = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(
        keras.layers.RandomZoom(0.2)(inputs))))
    nested = keras.Model(inputs, keras.layers.Dense(2)(sequential(inputs)))
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    for model in (sequential, functional, nested):
        before = layers(model)
        twin, tokens, recurrent = export_twin(model, "m")
        assert not tokens and not recurrent
        assert not any(n.startswith("Random") or n == "GaussianDropout" for n in layers(twin))
        assert "Identity" in layers(twin) and layers(model) == before
        np.testing.assert_allclose(twin(x), model(x, training=False), atol=1e-6)


def test_recurrent_layer_over_any_length_gets_one_line(tmp_path):
    inputs = keras.Input((None,))
    x = keras.layers.GRU(4)(keras.layers.Embedding(50, 4)(inputs))
    path = save_model(keras.Model(inputs, keras.layers.Dense(3)(x)), tmp_path / "any.keras")
    r = run_cli("export", path, "--out", tmp_path / "any.tflite")
    assert_one_line_error(r, 4, "reads sequences of any length")
    assert "--format saved_model" in r.stderr


def test_converter_crash_is_one_line(tmp_path, monkeypatch):
    """A converter that dies (the int8 converter can segfault on recurrent graphs) is one error line."""
    from kdcli import export

    monkeypatch.setattr(export, "_CHILD_CODE", "import os; os.kill(os.getpid(), 11)")
    path = save_model(_recurrent_teacher(keras.layers.GRU(4)), tmp_path / "gru.keras")
    r = run_cli("export", path, "--quantize", "dynamic", "--out", tmp_path / "gru.tflite")
    assert_one_line_error(r, 4, "the TFLite converter crashed (SIGSEGV) on gru.keras at --quantize dynamic")
    assert "--format saved_model" in r.stderr
    assert not (tmp_path / "gru.tflite").exists() and os.listdir(tmp_path) == ["gru.keras"]


def test_an_int8_graph_xnnpack_cannot_prepare_runs_on_the_built_in_kernels():
    # A tiny 1-D cnn student (1 and 2 filters) from compress on the mixture set, exported to int8: the
    # XNNPACK delegate fails to prepare it, the interpreter's built-in kernels run it.
    from pathlib import Path

    from kdcli.tflite import TFLiteRunner

    path = Path(__file__).parent / "data" / "xnnpack-unprepared-int8.tflite"
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from kdcli._tf import tf

        Interpreter = tf.lite.Interpreter
    with pytest.raises(RuntimeError, match="XNNPACK"):  # what happens without the fallback
        Interpreter(model_path=str(path)).allocate_tensors()
    runner = TFLiteRunner(path)
    logits = runner.call(np.linspace(-1, 1, 3 * 40, dtype=np.float32).reshape(3, 40, 1))
    assert logits.shape == (3, 10) and np.all(np.isfinite(logits))
    assert runner.call(np.zeros((1, 40, 1), np.float32)).shape == (1, 10)
