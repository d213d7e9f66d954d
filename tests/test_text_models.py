"""Text: the bundled `texts` sample and text folders through every step, with kdcli's text
model and with a user's TextVectorization model."""

import json

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras, tf
from kdcli.data.readers import write_text_folder

from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow  # every test here trains or converts for seconds


@pytest.fixture(scope="module")
def text_teacher(tmp_path_factory):
    """`train-teacher --data texts` with --arch auto: kdcli's text model."""
    out = tmp_path_factory.mktemp("text") / "teacher.keras"
    r = run_cli("train-teacher", "--data", "texts", "--epochs", "10", "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    return out


def test_train_teacher_auto_builds_a_text_model_that_takes_strings(text_teacher):
    record = kdcli.read_provenance(text_teacher)
    assert record["hyperparameters"]["arch"] == "text" and record["data"]["input_kind"] == "text"
    assert record["metrics"]["test_accuracy"] > 0.75  # 85% at 10 epochs; 87% at the default 40
    model = keras.saving.load_model(text_teacher)  # safe mode: the vocabulary travels in the file
    assert isinstance(model.layers[1], keras.layers.TextVectorization)
    assert model(tf.constant(["the match ended with a late goal"])).shape == (1, 4)


def test_a_text_teacher_goes_through_every_step(text_teacher, tmp_path):
    r = run_cli("soft-labels", "--teacher", text_teacher, "--out", tmp_path / "soft.h5", "--quiet")
    assert r.exit_code == 0, r.stderr
    r = run_cli("distill", "--soft-labels", tmp_path / "soft.h5", "--epochs", "2", "--out", tmp_path / "auto.keras",
                "--quiet")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(tmp_path / "auto.keras")["hyperparameters"]["student"] == "text"
    r = run_cli("distill", "--teacher", text_teacher, "--epochs", "3", "--out", tmp_path / "shrunk.keras", "--quiet")
    assert r.exit_code == 0, r.stderr
    student = keras.saving.load_model(tmp_path / "shrunk.keras")
    vectorizers = [layer for layer in student.layers if isinstance(layer, keras.layers.TextVectorization)]
    assert vectorizers and vectorizers[0].get_vocabulary()[:50] == \
        keras.saving.load_model(text_teacher).layers[1].get_vocabulary()[:50]  # copied with its vocabulary
    r = run_cli("evaluate", text_teacher, tmp_path / "shrunk.keras", "--latency-runs", "10", "--json", "-")
    assert r.exit_code == 0, r.stderr
    teacher, shrunk = json.loads(r.stdout)["models"]
    assert teacher["accuracy"] > 0.75 and shrunk["params"] < teacher["params"] / 4
    r = run_cli("export", tmp_path / "shrunk.keras", "--format", "saved_model", "--out", tmp_path / "served")
    assert r.exit_code == 0, r.stderr
    served = tf.saved_model.load(str(tmp_path / "served"))
    assert served.serve(tf.constant(["stocks fell as the market closed"])).shape == (1, 4)
    r = run_cli("export", tmp_path / "shrunk.keras", "--out", tmp_path / "s.tflite")
    assert_one_line_error(r, 4, "takes strings (a TextVectorization layer or a tokenizer), which TFLite's built-in operations "
                                "cannot; export it with --format saved_model")


def test_a_users_textvectorization_model_on_a_text_folder(tmp_path):
    """The Keras tutorial's end-to-end text classifier: strings in, a softmax out, on a text folder."""
    data = kdcli.load_data("texts")
    write_text_folder(tmp_path / "reviews", data.x_train[:400], data.y_train[:400], test=(data.x_test[:100],
                                                                                         data.y_test[:100]))
    vectorize = keras.layers.TextVectorization(max_tokens=2000, output_sequence_length=40)
    vectorize.adapt(data.x_train[:400])
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(1,), dtype="string")
    x = keras.layers.Embedding(2000, 32)(vectorize(inputs))
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(32, 3, activation="relu")(x))
    teacher = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    teacher.compile("adam", "sparse_categorical_crossentropy")
    teacher.fit(tf.constant(data.x_train[:400].astype(str)), data.y_train[:400], epochs=8, verbose=0)
    teacher.save(tmp_path / "user.keras")
    folder = ["--data", tmp_path / "reviews"]
    r = run_cli("distill", "--teacher", tmp_path / "user.keras", *folder, "--epochs", "3", "--quiet")
    assert r.exit_code == 0, r.stderr
    student = keras.saving.load_model(tmp_path / "user.student.keras")
    rows = student.predict(tf.constant(["a quiet concert in the old gallery"]), verbose=0)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-5)
    r = run_cli("evaluate", tmp_path / "user.keras", tmp_path / "user.student.keras", *folder, "--latency-runs", "10",
                "--json", "-")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["models"][0]["accuracy"] > 0.5


def test_a_text_student_in_bfloat16_keeps_its_vocabulary(text_teacher, tmp_path):
    r = run_cli("distill", "--teacher", text_teacher, "--epochs", "1", "--mixed-precision", "bf16",
                "--out", tmp_path / "bf16.keras", "--quiet")
    assert r.exit_code == 0, r.stderr
    student = keras.saving.load_model(tmp_path / "bf16.keras")
    vectorize = next(layer for layer in student.layers if isinstance(layer, keras.layers.TextVectorization))
    assert vectorize.get_vocabulary() == keras.saving.load_model(text_teacher).layers[1].get_vocabulary()
