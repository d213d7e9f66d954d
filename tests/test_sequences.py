"""Token sequences and text: --arch auto, shrink of Embedding + Bidirectional LSTM teachers,
TextVectorization teachers through every step."""

import json

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras

from conftest import run_cli

pytestmark = pytest.mark.slow  # every test here trains or converts for seconds


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Integer token sequences (N, 20) from a vocabulary of 50; the class is which of 3 marker
    tokens occurs most."""
    folder = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    x = rng.integers(4, 50, size=(600, 20)).astype(np.int32)
    y = rng.integers(0, 3, size=600)
    for row, label in enumerate(y):
        x[row, rng.choice(20, size=4, replace=False)] = 1 + label  # tokens 1, 2, 3 mark the classes
    np.savez(folder / "tokens.npz", x=x, y=y)
    return folder


def test_train_teacher_auto_builds_a_sequence_model_for_token_ids(tokens, tmp_path):
    r = run_cli("train-teacher", "--data", tokens / "tokens.npz", "--epochs", "8", "--out", tmp_path / "t.keras",
                "--quiet")
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(tmp_path / "t.keras")
    assert record["hyperparameters"]["arch"] == "sequence"
    teacher = kdcli.load_model(tmp_path / "t.keras")
    assert any(isinstance(layer, keras.layers.Embedding) for layer in teacher.layers)
    assert record["metrics"]["test_accuracy"] > 0.8
    r = run_cli("soft-labels", "--teacher", tmp_path / "t.keras", "--out", tmp_path / "s.h5", "--quiet")
    assert r.exit_code == 0, r.stderr
    r = run_cli("distill", "--soft-labels", tmp_path / "s.h5", "--epochs", "2", "--out", tmp_path / "s.keras", "--quiet")
    assert r.exit_code == 0, r.stderr  # the default student of soft labels: auto, a small sequence model
    assert kdcli.read_provenance(tmp_path / "s.keras")["hyperparameters"]["student"] == "sequence"


def test_an_embedding_bilstm_teacher_shrinks_and_distills(tokens, tmp_path):
    data = kdcli.load_data(tokens / "tokens.npz")
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([
        keras.Input((20,)), keras.layers.Embedding(50, 32), keras.layers.Bidirectional(keras.layers.LSTM(16)),
        keras.layers.Dense(3, activation="softmax"),
    ])
    teacher.compile("adam", "sparse_categorical_crossentropy")
    teacher.fit(data.x_train, data.y_train, epochs=5, verbose=0)
    teacher.save(tmp_path / "bilstm.keras")
    r = run_cli("distill", "--teacher", tmp_path / "bilstm.keras", "--data", tokens / "tokens.npz", "--epochs", "3",
                "--quiet")
    assert r.exit_code == 0, r.stderr
    student = keras.saving.load_model(tmp_path / "bilstm.student.keras")
    embedding, bilstm = [layer for layer in student.layers if type(layer).__name__ in ("Embedding", "Bidirectional")]
    assert embedding.output_dim == 8 and bilstm.forward_layer.units == 4
    rows = student.predict(data.x_test[:10], verbose=0)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-5)
    r = run_cli("evaluate", tmp_path / "bilstm.keras", tmp_path / "bilstm.student.keras", "--data",
                tokens / "tokens.npz", "--latency-runs", "10", "--json", "-")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["models"]) == 2
