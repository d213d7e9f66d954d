"""--log-dir: per-epoch TensorBoard scalars that TensorFlow's own reader reads, and the same in a CSV,
one folder per run, the loss's parts adding up to it, and rows that survive a resume."""

import csv

import numpy as np
import pytest

import kdcli
from kdcli._tf import tf

from conftest import STEPS_PER_EPOCH, interrupt_and_resume, run_cli


def read_csv(folder):
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_events(folder):
    """{tag: {step: value}} from the run's TensorBoard event files, by TensorFlow's summary reader."""
    scalars = {}
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


@pytest.mark.slow
def test_distill_logs_each_run_to_tensorboard_and_csv(pipeline, tmp_path):
    logs = tmp_path / "logs"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--width", "16", "--epochs", "3",
                "--baseline", "--log-dir", logs, "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in logs.iterdir()) == ["baseline", "student"]
    rows = read_csv(logs / "student")
    assert list(rows[0]) == ["epoch", "loss", "kd_term", "hard_term", "accuracy", "learning_rate", "seconds"]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    for row in rows:  # the parts of KD's loss add up to it
        assert row["kd_term"] + row["hard_term"] == pytest.approx(row["loss"], rel=1e-6)
        assert row["learning_rate"] == pytest.approx(1e-3)
    history = kdcli.read_provenance(tmp_path / "s.keras")["metrics"]
    assert rows[-1]["accuracy"] == pytest.approx(history["train_accuracy"])
    events = read_events(logs / "student")
    assert set(events) == set(rows[0]) - {"epoch"}
    for row in rows:
        for tag, by_step in events.items():
            assert by_step[int(row["epoch"])] == pytest.approx(row[tag], rel=1e-6)  # float32 in the events
    assert list(read_csv(logs / "baseline")[0]) == ["epoch", "loss", "accuracy", "learning_rate", "seconds"]


@pytest.mark.slow
def test_auto_runs_log_validation_and_batch_terms_count_per_sample(pipeline, tmp_path):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--width", "16", "--method", "dist",
                "--max-epochs", "2", "--log-dir", tmp_path / "logs", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    rows = read_csv(tmp_path / "logs" / "student")
    record = kdcli.read_provenance(tmp_path / "s.keras")["metrics"]
    assert [row["val_accuracy"] for row in rows] == pytest.approx(record["validation_accuracy"])
    assert [row["val_loss"] for row in rows] == pytest.approx(record["validation_loss"])
    for row in rows:
        assert row["hard_term"] + row["dist_term"] == pytest.approx(row["loss"], rel=1e-5)


@pytest.mark.slow
def test_teacher_logs_go_in_the_folder_itself_and_a_resume_keeps_one_row_per_epoch(tmp_path):
    args = ["train-teacher", "--arch", "mlp", "--width", "16", "--depth", "1", "--epochs", "3", "--seed", "2",
            "--checkpoint-every", "0"]
    r = run_cli(*args, "--log-dir", tmp_path / "whole", "--out", tmp_path / "a.keras")
    assert r.exit_code == 0, r.stderr
    resumed = ["--log-dir", tmp_path / "resumed", "--out", tmp_path / "b.keras"]

    def one_row():
        assert [row["epoch"] for row in read_csv(tmp_path / "resumed")] == [1]

    interrupt_and_resume(*args, *resumed, at=2 * STEPS_PER_EPOCH - 2, between=one_row)  # in epoch 2
    whole, again = read_csv(tmp_path / "whole"), read_csv(tmp_path / "resumed")
    assert [row["epoch"] for row in again] == [1, 2, 3]
    for a, b in zip(whole, again):
        np.testing.assert_allclose([a["loss"], a["accuracy"]], [b["loss"], b["accuracy"]], rtol=1e-6)


def test_a_refit_logs_in_a_folder_of_its_own(pipeline, tmp_path):
    logs = tmp_path / "logs"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--width", "16", "--max-epochs", "2",
                "--refit", "--log-dir", logs, "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in logs.iterdir()) == ["student", "student-refit"]
    assert "val_accuracy" in read_csv(logs / "student")[0] and "val_accuracy" not in read_csv(logs / "student-refit")[0]
