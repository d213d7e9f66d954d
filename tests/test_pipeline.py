"""What the pipeline produces, whatever the command line says about it: a student smaller than its teacher and
trained, provenance on every artifact, online and offline distillation as the same training, repeatable seeds,
and .keras files that plain Keras loads. What the command line itself promises is in test_cli_contract.py."""

import json
import zipfile

import numpy as np
import pytest

import kdcli
from kdcli.files import sha256_file

from conftest import run_cli


def test_artifacts_carry_provenance(pipeline):
    data = kdcli.load_data("digits")
    teacher = kdcli.read_provenance(pipeline["teacher"])
    assert teacher["kind"] == "teacher"
    assert teacher["data"]["fingerprint"] == data.fingerprint
    assert teacher["hyperparameters"]["epochs"] == 5
    assert 0 <= teacher["metrics"]["test_accuracy"] <= 1
    student = kdcli.read_provenance(pipeline["student"])
    assert student["kind"] == "student"
    assert student["teacher_sha256"] == sha256_file(pipeline["teacher"])
    assert student["hyperparameters"]["method"] == {"name": "kd", "temperature": 4.0, "alpha": 0.9,
                                                    "standardize": False}
    assert student["hyperparameters"]["mode"] == "soft-labels"
    r = run_cli("info", pipeline["student"])
    assert r.exit_code == 0 and json.loads(r.stdout) == student


def test_student_is_smaller_and_trained(pipeline):
    teacher = kdcli.load_model(pipeline["teacher"])
    student = kdcli.load_model(pipeline["student"])
    assert student.count_params() * 5 <= teacher.count_params()
    data = kdcli.load_data("digits")
    from kdcli.inference import accuracy

    assert accuracy(student, data.test) > 0.5  # 3 epochs: far above chance (0.1)


def test_online_distillation_from_a_live_teacher(pipeline, tmp_path):
    out = tmp_path / "online.keras"
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--online", "--student", "mlp", "--epochs", "2", "--out", out)
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["mode"] == "online"
    assert record["data"]["spec"] == "digits"  # taken from the teacher's provenance


@pytest.mark.slow
def test_offline_and_online_distillation_are_the_same_training(pipeline):
    """Same logits, same seed: the two sources of teacher logits give the same student."""
    data = kdcli.load_data("digits")
    teacher = kdcli.load_model(pipeline["teacher"])
    logits = kdcli.read_soft_labels(pipeline["soft"]).logits
    students = []
    for source in ({"teacher_logits": logits}, {"teacher": teacher}):
        student = kdcli.build_from_spec("mlp", data, width=16, seed=3)
        kdcli.distill(student, data, epochs=2, seed=3, **source)
        students.append(student)
    for a, b in zip(students[0].get_weights(), students[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_seed_makes_a_run_repeatable(tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.keras"
        r = run_cli("train-teacher", "--arch", "mlp", "--width", "16", "--depth", "1", "--epochs", "2",
                    "--seed", "7", "--out", out)
        assert r.exit_code == 0
        outs.append(kdcli.load_model(out).get_weights())
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_keras_file_stays_loadable_by_plain_keras(pipeline):
    import keras

    with zipfile.ZipFile(pipeline["student"]) as z:
        assert "kdcli.json" in z.namelist()
    model = keras.models.load_model(pipeline["student"])
    assert model.output_shape == (None, 10)
