"""distill --tune N: the trials drawn, the pruning rule, the winner on the validation split (scratch
among the trials), the table and JSON, and a search that resumes without rerunning finished trials."""

import json
import subprocess
import sys

import pytest

import kdcli
from kdcli.errors import UsageError
from kdcli.tuning import DEFAULT, GRACE, SCRATCH, Space, Trial, open_study, records, search, winner

from conftest import EPOCH_LINE, assert_one_line_error, interrupt_and_resume, run_cli


def test_queued_trials_start_with_scratch_and_the_default_then_distinct_draws_from_the_seed():
    space = Space(augments=("none", "mixup"), hints=True)
    trials = space.queued_for_tune(8, seed=3)
    assert trials[:2] == [SCRATCH, DEFAULT] and len({t.label() for t in trials}) == 8
    assert trials == space.queued_for_tune(8, seed=3) != space.queued_for_tune(8, seed=4)
    assert all(t in space.candidates() for t in trials[2:])
    assert not any(t.method["name"] == "hints" or t.augment != "none" for t in Space().candidates())
    assert len(space.queued_for_tune(500, 0)) == 8  # Optuna's TPE proposes the rest
    assert SCRATCH.label() == "scratch" and DEFAULT.label() == "kd T=4 alpha=0.9"


def test_widths_multiply_the_space_and_scratch_is_tried_at_each():
    space = Space(widths=(1.0, 2.0)).candidates()
    assert len(space) == 1 + 2 * len(Space().candidates())
    assert [t for t in space if t.scratch] == [Trial(SCRATCH.method, width=2.0)]  # width 1's is trial 1
    assert Trial(DEFAULT.method, width=2.0).label() == "kd T=4 alpha=0.9, width x2"
    compress = Space(widths=(0.5, 0.25), scratch_everywhere=True)
    assert compress.queued_for_compress() == [Trial(DEFAULT.method, width=0.5), Trial(SCRATCH.method, width=0.5),
                                              Trial(DEFAULT.method, width=0.25), Trial(SCRATCH.method, width=0.25)]


def study(tmp_path, identity=None, queued=()):
    return open_study(f"sqlite:///{tmp_path / 'study.db'}", "tune", identity or {"data": "x"}, ["maximize"], 0,
                      prune=True, queued=queued)


def test_every_trial_of_the_space_goes_through_optuna_unchanged(tmp_path):
    space = Space(augments=("none", "mixup"), hints=True, widths=(1.0, 0.5), scratch_everywhere=True)
    trials = space.candidates()
    s = study(tmp_path, queued=trials)
    seen = []
    search(s, space, len(trials), lambda ot, trial, folder, prune: seen.append(trial) or ([0.5], fake(0.5)))
    assert seen == trials


def fake(accuracy, loss=1.0, epochs=3):
    return {"val_accuracy": accuracy, "val_loss": loss, "best_epoch": epochs, "epochs": epochs, "stopped": "patience",
            "seconds": 1.0, "scratch": False, "method": {}, "augment": "none", "width": 1.0}


def test_the_winner_has_the_best_validation_score_and_scratch_wins_ties():
    trials = [fake(0.7), fake(0.7, loss=0.5), fake(0.9)]
    assert winner(trials) == 2
    trials[2] = fake(0.7, loss=0.5)
    assert winner(trials) == 1  # equal accuracy: the lower loss, then the first
    trials[1] = trials[2] = fake(0.7)
    assert winner(trials) == 0  # equal in both: scratch, the first


def test_a_search_runs_n_trials_records_a_diverged_one_and_does_not_repeat_finished_ones(tmp_path):
    space, calls = Space(), []

    def run_trial(ot, trial, folder, prune):
        calls.append((ot.number, folder))
        return None if ot.number == 1 else ([0.5 + ot.number / 100], fake(0.5 + ot.number / 100))

    s = study(tmp_path, queued=space.queued_for_tune(4, 0))
    search(s, space, 4, run_trial)
    assert calls == [(0, "trial-1"), (1, "trial-2"), (2, "trial-3"), (3, "trial-4")]
    done = records(s)
    assert [r["trial"] for r in done] == [1, 2, 3, 4] and done[1]["stopped"] == "diverged"
    assert winner(done) == 3
    search(study(tmp_path), space, 4, run_trial)  # the same command again: nothing to do
    assert len(calls) == 4
    search(study(tmp_path), space, 5, run_trial)  # one more trial, proposed by TPE
    assert len(calls) == 5 and calls[-1] == (4, "trial-5")


def test_the_median_pruner_stops_a_trial_behind_the_finished_ones_after_its_grace(tmp_path):
    curves = {0: [0.8] * 12, 1: [0.6] * 12, 2: [0.55] * 12, 3: [0.65] * 12}
    stopped = {}

    def run_trial(ot, trial, folder, prune):
        curve = curves[ot.number]
        for epoch in range(1, len(curve) + 1):
            if prune(curve[:epoch]):
                stopped[ot.number] = epoch
                break
        return [max(curve)], fake(max(curve))

    s = study(tmp_path, queued=Space().queued_for_tune(4, 0))
    search(s, Space(), 4, run_trial)
    # the median of 0.8 and 0.6 is 0.7; the first two are never pruned. At epoch 11 trial 3 (pruned at 10)
    # still counts, with its best: the median of 0.8, 0.6 and 0.55 is 0.6 and trial 4 goes on (Optuna's
    # MedianPruner would count only the trials that reached epoch 11, and stop it below 0.7)
    assert stopped == {2: GRACE}


def test_a_trial_whose_process_died_is_retried_in_its_own_folder(tmp_path):
    s = study(tmp_path, queued=Space().queued_for_tune(2, 0))
    with pytest.warns(UserWarning, match="Heartbeat"):
        ot = s.ask()  # a trial taken by a process that then died
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    ot.set_user_attr("owner", f"{socket.gethostname()}:{dead.pid}")
    ot.set_user_attr("folder", "trial-1")
    folders = []
    search(study(tmp_path), Space(), 2, lambda o, trial, folder, prune: folders.append((folder, trial)) or
           ([0.5], fake(0.5)))
    assert folders == [("trial-2", DEFAULT), ("trial-1", SCRATCH)]
    assert [r["trial"] for r in records(s)] == [2, 1]  # trial 1 failed and ran again, in trial-1/


def test_a_study_made_for_other_data_or_a_bad_url_is_refused(tmp_path):
    study(tmp_path, {"data": "x"})
    with pytest.raises(UsageError, match="made for another data; give another --study, or --restart"):
        study(tmp_path, {"data": "y"})
    with pytest.raises(UsageError, match="cannot open the study"):
        open_study(f"sqlite:///{tmp_path}/missing/folder/s.db", "tune", {}, ["maximize"], 0)


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
    args = tune_args(pipeline, tmp_path / "b.keras", "--checkpoint-dir", tmp_path / "ck", "--checkpoint-every", "0")
    first = kdcli.read_provenance(tmp_path / "a.keras")["metrics"]["tune"]["trials"]
    # killed in the third trial's second epoch (each trial trains 90% of the training split: 21 steps)
    done = sum(t["epochs"] for t in first[:2])
    r = interrupt_and_resume(*args, at=done * 21 + 21 + 2)
    lines = [line for line in r.stderr.splitlines() if EPOCH_LINE.fullmatch(line)]
    assert lines and all(line.startswith("trial 3/3") for line in lines)  # trials 1 and 2 did not train again
    again = kdcli.read_provenance(tmp_path / "b.keras")["metrics"]["tune"]["trials"]
    assert [(t["label"], t["val_accuracy"], t["best_epoch"]) for t in again] == \
        [(t["label"], t["val_accuracy"], t["best_epoch"]) for t in first]


@pytest.mark.slow
def test_a_tune_study_given_by_url_keeps_its_trials_and_a_rerun_trains_nothing(pipeline, tmp_path):
    args = tune_args(pipeline, tmp_path / "s.keras", "--study", f"sqlite:///{tmp_path / 'tune.db'}")
    first = run_cli(*args)
    assert first.exit_code == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "s.ckpt").iterdir()) == ["trial-1", "trial-2", "trial-3"]
    tuned = kdcli.read_provenance(tmp_path / "s.keras")["metrics"]["tune"]
    again = run_cli(*args)
    assert again.exit_code == 0, again.stderr
    assert not [line for line in again.stderr.splitlines() if EPOCH_LINE.fullmatch(line)]
    assert kdcli.read_provenance(tmp_path / "s.keras")["metrics"]["tune"] == tuned
    restarted = run_cli(*args, "--restart")  # a new study: every trial trains again
    assert restarted.exit_code == 0, restarted.stderr
    assert len({line.split(" (")[0] for line in restarted.stderr.splitlines() if EPOCH_LINE.fullmatch(line)}) == 3


@pytest.mark.parametrize("more, message", [
    (["--tune", "1"], "--tune N needs 2 trials or more"),
    (["--tune", "3", "--epochs", "5"], "leave --epochs out"),
    (["--tune", "3", "--refit"], "does not combine with --refit"),
    (["--tune", "3", "--method", "dkd"], "leave out --method"),
    (["--tune", "3", "--method", "kd:temperature=2", "--augment", "shift"], "leave out --method, --augment"),
    (["--tune", "3", "--tune-widths", "1,x"], "--tune-widths needs numbers separated by commas"),
    (["--tune", "3", "--tune-widths", "1,0"], "--tune-widths needs positive numbers"),
    (["--tune", "3", "--strategy", "multi-worker"], "--tune runs its trials in one process"),
])
def test_bad_tune_options_are_usage_errors(pipeline, tmp_path, more, message):
    r = run_cli("distill", "--teacher", pipeline["teacher"], *more, "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, message)
