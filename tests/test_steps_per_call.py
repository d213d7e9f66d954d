"""Several training steps per compiled call (`--steps-per-call`): the same student whatever the count,
one input pipeline for a whole run, and the count chosen from the calls' times."""

import numpy as np
import pytest

import kdcli
import kdcli.training
from kdcli.inference import StepsPerCall
from kdcli.options import Budget

from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def digits():
    return kdcli.load_data("digits")


@pytest.mark.slow
@pytest.mark.parametrize("more", [[], ["--augment", "shift+mixup"], ["--method", "dkd", "--log-dir", "LOGS"]])
def test_a_student_is_the_same_with_one_step_a_call_several_or_the_chosen_count(pipeline, tmp_path, more):
    students = []
    for k in ("1", "5", None):
        out = tmp_path / f"k{k}.keras"
        args = [a if a != "LOGS" else tmp_path / f"logs{k}" for a in more]
        r = run_cli("distill", "--teacher", pipeline["teacher"], "--student", "mlp", "--epochs", "3", "--seed", "4",
                    *args, *(["--steps-per-call", k] if k else []), "--out", out)
        assert r.exit_code == 0, r.stderr
        metrics = kdcli.read_provenance(out)["metrics"]
        students.append((kdcli.load_model(out).get_weights(), metrics["test_accuracy"], metrics["train_accuracy"]))
    for weights, *scores in students[1:]:
        assert tuple(scores) == students[0][1:]
        assert all(np.array_equal(a, b) for a, b in zip(weights, students[0][0]))  # the same ops, in the same order
    if "--log-dir" in more:  # the loss's parts, summed inside the calls, are the same too
        logs = [(tmp_path / f"logs{k}" / "student" / "metrics.csv").read_text() for k in ("1", "5", None)]
        rows = [[line.split(",")[:-1] for line in text.splitlines()] for text in logs]  # the seconds aside
        assert rows[0] == rows[1] == rows[2]


def test_one_input_pipeline_serves_the_whole_run(digits, monkeypatch):
    built = []
    iterator = kdcli.training._Setup.iterator

    def counted(self, first_epoch, skip=0):
        built.append((first_epoch, skip))
        return iterator(self, first_epoch, skip)

    monkeypatch.setattr(kdcli.training._Setup, "iterator", counted)
    model = kdcli.build_model("mlp", digits, depth=0, seed=0)
    history = kdcli.train(model, digits, Budget(epochs=3, seed=1), steps_per_call=4)
    assert built == [(0, 0)] and len(history["loss"]) == 3
    built.clear()
    kdcli.train(model, digits, Budget(epochs="auto", max_epochs=6, patience=1, seed=1))
    assert built == [(0, 0)]  # however many epochs run before it stops


def test_the_count_is_chosen_from_the_time_of_the_calls_and_a_given_one_is_kept():
    now = [0.0]
    calls = StepsPerCall(clock=lambda: now[0])

    def call(seconds_per_step):
        count = calls.size(1000)
        with calls.timed(count):
            now[0] += seconds_per_step * count
        return count

    assert call(5.0) == 1  # the first call traces the function: its time says nothing
    assert call(0.01) == 1 and calls.size(1000) == int(StepsPerCall.TARGET // 0.01)  # about 0.2 s a call
    assert calls.size(3) == 3  # never past the epoch's last step
    for _ in range(20):
        call(1e-5)
    assert calls.size(1000) == StepsPerCall.MOST
    for _ in range(20):
        call(1.0)  # slow steps: one a call, so that a signal or a checkpoint never waits long
    assert calls.size(1000) == 1
    fixed = StepsPerCall(7, clock=lambda: now[0])
    with fixed.timed(7):
        now[0] += 100
    assert fixed.size(1000) == 7 and fixed.size(2) == 2


def test_a_bad_steps_per_call_is_a_usage_error(pipeline, tmp_path):
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--steps-per-call", "0", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, "--steps-per-call must be 1 or more, got 0")
