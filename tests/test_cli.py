"""The command-line contract, through Typer's CliRunner and real subprocesses."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import kdcli
from kdcli.files import sha256_file

from conftest import assert_one_line_error, run_cli


def test_steps_print_only_the_artifact_path_on_stdout(pipeline, tmp_path):
    out = tmp_path / "nested" / "t.keras"
    r = run_cli("train-teacher", "--data", "digits", "--arch", "mlp", "--width", "16", "--depth", "1",
                "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{out}\n"
    assert "teacher: test accuracy" in r.stderr
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["t.keras"]  # no temporary file left


def test_quiet_prints_nothing_but_the_result(pipeline, tmp_path):
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--out", tmp_path / "s.h5", "--quiet")
    assert r.exit_code == 0
    assert r.stdout == f"{tmp_path / 's.h5'}\n"
    assert r.stderr == ""


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
    from kdcli.training import accuracy

    assert accuracy(student, data.test) > 0.5  # 3 epochs: far above chance (0.1)


def test_evaluate_json_on_stdout(pipeline):
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--json", "-", "--latency-runs", "20")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["schema"] == "kdcli.evaluate/1"
    first, second = report["models"]
    for m in (first, second):
        for key in ("path", "accuracy", "params", "size_bytes", "latency_ms", "latency_p95_ms", "throughput"):
            assert key in m
        assert m["latency_ms"] > 0 and m["latency_p95_ms"] >= m["latency_ms"]
    assert first["path"] == str(pipeline["teacher"])
    assert first["size_bytes"] == pipeline["teacher"].stat().st_size
    assert first["agreement"] == 1.0
    assert second["compression"] == pytest.approx(first["params"] / second["params"])
    assert second["accuracy_change_points"] == pytest.approx(100 * (second["accuracy"] - first["accuracy"]))
    # accuracy is computed on the test split
    data = kdcli.load_data("digits")
    from kdcli.training import accuracy

    assert first["accuracy"] == pytest.approx(accuracy(kdcli.load_model(pipeline["teacher"]), data.test))


def test_evaluate_table_and_json_file(pipeline, tmp_path):
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--json", tmp_path / "r.json",
                "--latency-runs", "20")
    assert r.exit_code == 0, r.stderr
    assert "teacher.keras" in r.stdout and "compression" not in r.stdout and "smaller" in r.stdout
    assert "latency: 20 single-sample calls after 20 warm-up calls" in r.stdout
    assert len(json.loads((tmp_path / "r.json").read_text())["models"]) == 2


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["train-teacher", "--data", "nosuchdata", "--out", "{tmp}/t.keras"], "unknown data set 'nosuchdata'"),
        (["train-teacher", "--data", "{tmp}/missing.npz", "--out", "{tmp}/t.keras"], "no such file"),
        (["train-teacher", "--out", "{tmp}/t.h5"], "give a path ending in .keras"),
        (["soft-labels", "--teacher", "{tmp}/missing.keras", "--data", "digits", "--out", "{tmp}/s.h5"], "no such model file"),
        (["distill", "--soft-labels", "{tmp}/missing.h5", "--out", "{tmp}/s.keras"], "no such soft-label file"),
        (["evaluate", "{tmp}/missing.keras", "--data", "digits"], "no such model file"),
    ],
)
def test_bad_input_is_one_line_and_exit_4(tmp_path, args, message):
    r = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert_one_line_error(r, 4, message)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_corrupt_model_is_refused(tmp_path, pipeline):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(pipeline["teacher"].read_bytes()[:2000])
    r = run_cli("soft-labels", "--teacher", bad, "--data", "digits", "--out", tmp_path / "s.h5")
    assert_one_line_error(r, 4, "bad.keras")
    assert not (tmp_path / "s.h5").exists()


def test_model_that_does_not_fit_the_data_is_refused(tmp_path, pipeline):
    np.savez(tmp_path / "wide.npz", x=np.random.default_rng(0).random((60, 5, 5)), y=np.arange(60) % 3)
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--data", tmp_path / "wide.npz",
                "--out", tmp_path / "s.h5")
    assert_one_line_error(r, 4, "inputs of shape (8, 8), the data has samples of shape (5, 5)")


def test_out_that_is_a_directory_is_refused(tmp_path, pipeline):
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--out", tmp_path)
    assert_one_line_error(r, 4, "is a directory")


def test_user_architecture_with_wrong_outputs_is_refused(tmp_path):
    import keras

    keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(3)]).save(tmp_path / "arch.keras")
    r = run_cli("train-teacher", "--model", tmp_path / "arch.keras", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "the model has 3 outputs, the data has 10 classes")


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli("train-teacher", "--data", "nosuchdata", "--debug", "--out", tmp_path / "t.keras")
    assert r.exit_code == 4
    assert "Traceback" in r.stderr and "error: unknown data set" in r.stderr


@pytest.mark.parametrize("args", [
    ["distill", "--epochs", "zero"],
    ["distill", "--data", "digits"],  # neither --soft-labels nor --teacher
    ["train-teacher", "--restart", "--resume"],
    ["distill", "--soft-labels", "s.h5", "--online"],
    ["distill", "--soft-labels", "s.h5", "--method", "kd:temperature=0"],
    ["train-teacher", "--learning-rate", "-0.1"],
    ["train-teacher", "--seed", "-1"],
    ["train-teacher", "--val-split", "1.5"],
    ["train-teacher", "--image-size", "32x32x3"],
    ["export", "m.keras", "--format", "saved_model", "--quantize", "int8"],
])
def test_usage_errors_exit_2_before_any_work(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run_cli(*args)
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def _run(*args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, **kw)


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from kdcli.cli import app\n"
        "for cmd in ([], ['train-teacher'], ['soft-labels'], ['distill'], ['evaluate'], ['info']):\n"
        "    try:\n"
        "        app(cmd + ['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (cmd, e.code)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "import kdcli\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr


def test_python_dash_m_works_like_kdcli(pipeline):
    r = _run("-m", "kdcli", "--help")
    assert r.returncode == 0 and "train-teacher" in r.stdout
    r = _run("-m", "kdcli", "info", str(pipeline["teacher"]))
    assert r.returncode == 0 and json.loads(r.stdout)["kind"] == "teacher"


def test_subprocess_error_has_clean_stderr(tmp_path):
    r = _run("-m", "kdcli", "distill", "--soft-labels", str(tmp_path / "x.h5"), "--data", "digits")
    assert r.returncode == 4
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'x.h5'}: no such soft-label file"]


def test_keras_file_stays_loadable_by_plain_keras(pipeline):
    import keras

    with zipfile.ZipFile(pipeline["student"]) as z:
        assert "kdcli.json" in z.namelist()
    model = keras.models.load_model(pipeline["student"])
    assert model.output_shape == (None, 10)
