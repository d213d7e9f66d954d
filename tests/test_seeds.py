"""distill --baseline --seeds K: K seeds of both students, their means, spreads and gains."""

import json

import numpy as np
import pytest

import kdcli

from conftest import STEPS_PER_EPOCH, assert_one_line_error, assert_same_weights, interrupt_and_resume, run_cli


def seeds_args(pipeline, out, *more):
    return ["distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--width", "16", "--epochs", "2",
            "--seed", "3", "--baseline", "--checkpoint-every", "0", *more, "--out", out]


@pytest.mark.slow
def test_seeds_train_both_students_per_seed_and_report_mean_and_spread(pipeline, tmp_path):
    r = run_cli(*seeds_args(pipeline, tmp_path / "k.keras", "--seeds", "2"))
    assert r.exit_code == 0, r.stderr
    m = kdcli.read_provenance(tmp_path / "k.keras")["metrics"]
    assert m["seeds"] == [3, 4]
    for key in ("test_accuracy", "baseline_test_accuracy", "distillation_gain_points"):
        assert len(m[f"seed_{key}"]) == 2
        assert m[f"mean_{key}"] == np.mean(m[f"seed_{key}"]) and m[f"std_{key}"] == np.std(m[f"seed_{key}"])
    gains = 100 * (np.array(m["seed_test_accuracy"]) - m["seed_baseline_test_accuracy"])
    np.testing.assert_allclose(m["seed_distillation_gain_points"], gains)
    assert kdcli.read_provenance(tmp_path / "k.keras")["hyperparameters"]["seeds"] == 2
    summary = r.stderr.strip().splitlines()[-1]
    assert summary.startswith("over 2 seeds (3, 4): distilled ") and ("distillation gained" in summary or "distillation lost" in summary)
    # OUT is --seed's student: the one a single-seed run gives
    r = run_cli(*seeds_args(pipeline, tmp_path / "one.keras"))
    assert r.exit_code == 0, r.stderr
    one = kdcli.read_provenance(tmp_path / "one.keras")["metrics"]
    assert (one["test_accuracy"], one["baseline_test_accuracy"]) == (m["seed_test_accuracy"][0],
                                                                     m["seed_baseline_test_accuracy"][0])
    assert_same_weights(tmp_path / "k.keras", kdcli.load_model(tmp_path / "one.keras").get_weights())


@pytest.mark.slow
def test_seeds_resume_after_an_interruption_in_a_later_seed(pipeline, tmp_path):
    r = run_cli(*seeds_args(pipeline, tmp_path / "a.keras", "--seeds", "2"))
    assert r.exit_code == 0, r.stderr
    args = seeds_args(pipeline, tmp_path / "b.keras", "--seeds", "2", "--checkpoint-dir", tmp_path / "ck")

    def checkpoints_of_the_runs_begun():
        assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["baseline", "student", "student-seed4"]

    # killed in the second epoch of seed 4's distilled run, after seed 3's two runs of 2 epochs each
    interrupt_and_resume(*args, at=5 * STEPS_PER_EPOCH + 3, between=checkpoints_of_the_runs_begun)
    a, b = (kdcli.read_provenance(tmp_path / f"{x}.keras")["metrics"] for x in "ab")
    assert json.dumps([a[k] for k in ("seed_test_accuracy", "seed_baseline_test_accuracy")]) == \
        json.dumps([b[k] for k in ("seed_test_accuracy", "seed_baseline_test_accuracy")])
    assert not (tmp_path / "ck").exists()


def test_seeds_need_the_baseline_and_a_count(pipeline, tmp_path):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--seeds", "3", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, "add --baseline")
    r = run_cli(*seeds_args(pipeline, tmp_path / "s.keras", "--seeds", "0"))
    assert_one_line_error(r, 2, "--seeds must be a whole number of 1 or more")
    assert list(tmp_path.iterdir()) == []
