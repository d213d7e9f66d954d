"""distill --tune N: the trials drawn, the pruning rule, the winner on the validation split (scratch
among the trials), the table and JSON, and a search that resumes without rerunning finished trials."""

import json

import pytest

import kdcli
from kdcli.errors import UsageError
from kdcli.tuning import DEFAULT, GRACE, SCRATCH, Trial, candidates, draw_trials, median_rule, search

from conftest import EPOCH_LINE, assert_one_line_error, interrupt_and_resume, run_cli


def test_trials_start_with_scratch_and_the_default_then_distinct_draws_from_the_seed():
    trials = draw_trials(8, seed=3, augments=("none", "mixup"), hints=True)
    assert trials[:2] == [SCRATCH, DEFAULT] and len({t.label() for t in trials}) == 8
    assert trials == draw_trials(8, seed=3, augments=("none", "mixup"), hints=True)
    assert trials != draw_trials(8, seed=4, augments=("none", "mixup"), hints=True)
    assert all(t in candidates(("none", "mixup"), hints=True) for t in trials[2:])
    assert not any(t.method["name"] == "hints" or t.augment != "none" for t in candidates())
    assert len(draw_trials(500, 0)) == 2 + len(candidates()) - 1  # the whole space, the default once
    with pytest.raises(UsageError, match="2 trials or more"):
        draw_trials(1, 0)
    assert SCRATCH.label() == "scratch" and DEFAULT.label() == "kd T=4 alpha=0.9"


def test_widths_multiply_the_space_and_scratch_is_tried_at_each():
    space = candidates(widths=(1.0, 2.0))
    assert len(space) == 1 + 2 * len(candidates())
    assert [t for t in space if t.scratch] == [Trial(SCRATCH.method, width=2.0)]  # width 1's is trial 1
    assert Trial(DEFAULT.method, width=2.0).label() == "kd T=4 alpha=0.9, width x2"


def test_the_median_rule_stops_a_trial_behind_the_finished_ones_after_its_grace():
    finished = [[0.5] * 5 + [0.8] * 20, [0.6] * 30, [0.4] * 3]  # the last stopped early: its best is its last
    prune = median_rule(finished)
    assert not prune([0.1] * (GRACE - 1))  # within the grace
    assert prune([0.55] * GRACE)  # bests over as many epochs: 0.8, 0.6, 0.4: median 0.6
    assert not prune([0.55] * (GRACE - 1) + [0.6])
    assert not median_rule(finished[:1])([0.1] * 50)  # one finished trial is no median


def history(curve, loss=1.0):
    best = max(range(len(curve)), key=lambda i: (curve[i], -i)) + 1
    return {"val_accuracy": curve, "val_loss": [loss] * len(curve), "best_epoch": best, "stopped": "patience",
            "epoch_seconds": [0.5] * len(curve)}


def test_the_winner_has_the_best_validation_score_and_scratch_wins_ties():
    trials = draw_trials(3, 0)
    curves = {0: history([0.5, 0.7]), 1: history([0.6, 0.7], loss=0.5), 2: history([0.9, 0.8])}
    records, winner = search(trials, lambda i, trial, prune: curves[i])
    assert winner == 2 and [r["val_accuracy"] for r in records] == [0.7, 0.7, 0.9]
    assert records[2]["best_epoch"] == 1 and records[2]["seconds"] == 1.0
    curves[2] = history([0.6])
    assert search(trials, lambda i, trial, prune: curves[i])[1] == 1  # equal accuracy: the lower loss
    curves[1] = history([0.7])
    assert search(trials, lambda i, trial, prune: curves[i])[1] == 0  # equal in both: scratch, the first


def test_a_diverged_trial_is_recorded_and_cannot_win():
    trials = draw_trials(3, 0)
    curves = {0: history([0.5]), 2: history([0.6])}
    records, winner = search(trials, lambda i, trial, prune: curves.get(i))
    assert records[1]["stopped"] == "diverged" and records[1]["val_accuracy"] is None
    assert winner == 2


def tune_args(pipeline, out, *more):
    return ["distill", "--teacher", pipeline["teacher"], "--student", "mlp", "--width", "16", "--tune", "3",
            "--max-epochs", "4", "--patience", "2", "--seed", "5", *more, "--out", out]


@pytest.mark.slow
def test_tune_keeps_the_winning_trial_and_reports_the_search(pipeline, tmp_path):
    out = tmp_path / "tuned.keras"
    r = run_cli(*tune_args(pipeline, out, "--tune-json", tmp_path / "trials.json", "--tune-widths", "1,2"))
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    tune = record["metrics"]["tune"]
    trials = tune["trials"]
    assert [t["label"] for t in trials[:2]] == ["scratch", "kd T=4 alpha=0.9"] and len(trials) == 3
    assert [t["width"] for t in trials[:2]] == [1.0, 1.0] and trials[2]["width"] in (1.0, 2.0)
    winner = trials[tune["winner"] - 1]
    assert winner["val_accuracy"] == max(t["val_accuracy"] for t in trials) >= trials[0]["val_accuracy"]
    assert record["hyperparameters"]["tune"] == 3
    assert record["hyperparameters"]["method"]["name"] == winner["method"]["name"]
    assert record["hyperparameters"]["augment"] == winner["augment"]
    assert "baseline_test_accuracy" in record["metrics"]  # the scratch trial's
    assert json.loads((tmp_path / "trials.json").read_text()) == {"trials": trials, "winner": tune["winner"]}
    assert "tuning: trials scored on the validation split" in r.stderr
    assert "kept as trained, on the training split less its validation share" in r.stderr
    assert not (tmp_path / "tuned.ckpt").exists()


@pytest.mark.slow
def test_an_interrupted_search_resumes_without_rerunning_finished_trials(pipeline, tmp_path):
    r = run_cli(*tune_args(pipeline, tmp_path / "a.keras"))
    assert r.exit_code == 0, r.stderr
    args = tune_args(pipeline, tmp_path / "b.keras", "--checkpoint-dir", tmp_path / "ck")
    first = kdcli.read_provenance(tmp_path / "a.keras")["metrics"]["tune"]["trials"]
    # killed in the third trial's first epoch (each trial trains 90% of the training split: 21 steps)
    done = sum(t["epochs"] for t in first[:2])
    r = interrupt_and_resume(*args, at=done * 21 + 2)
    lines = [line for line in r.stderr.splitlines() if EPOCH_LINE.fullmatch(line)]
    assert lines and all(line.startswith("trial 3/3") for line in lines)  # trials 1 and 2 did not train again
    again = kdcli.read_provenance(tmp_path / "b.keras")["metrics"]["tune"]["trials"]
    assert [(t["label"], t["val_accuracy"], t["best_epoch"]) for t in again] == \
        [(t["label"], t["val_accuracy"], t["best_epoch"]) for t in first]


@pytest.mark.parametrize("more, message", [
    (["--tune", "1"], "--tune N needs 2 trials or more"),
    (["--tune", "3", "--epochs", "5"], "leave --epochs out"),
    (["--tune", "3", "--refit"], "does not combine with --refit"),
    (["--tune", "3", "--method", "dkd"], "leave out --method"),
    (["--tune", "3", "--method", "kd:temperature=2", "--augment", "shift"], "leave out --method, --augment"),
    (["--tune", "3", "--tune-widths", "1,x"], "--tune-widths needs numbers separated by commas"),
    (["--tune", "3", "--tune-widths", "1,0"], "--tune-widths needs positive numbers"),
])
def test_bad_tune_options_are_usage_errors(pipeline, tmp_path, more, message):
    r = run_cli("distill", "--teacher", pipeline["teacher"], *more, "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, message)
