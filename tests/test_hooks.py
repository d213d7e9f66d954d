"""The training loop's hooks (kdcli/hooks.py): each stateful hook, snapshot with `state_dict()` and
restored into a fresh instance, decides as the one that went on; a run split in two by a checkpoint
ends as an uninterrupted one; the progress bar of `--epochs auto`."""

import copy
import csv
import io
import json
import os
import signal

import numpy as np
import pytest

import kdcli
from kdcli.errors import EXIT_TERMINATED, KdcliError
from kdcli.hooks import (
    Checkpointing,
    EarlyStopping,
    Hook,
    PlateauSchedule,
    Progress,
    Pruning,
    TrainingLogs,
    TrainState,
    ValidationScores,
)
from kdcli.options import Budget

# Validation figures of a run, given in advance: improvements, ties (broken by the loss), stalls.
ACCURACIES = [0.50, 0.70, 0.70, 0.65, 0.72, 0.72, 0.72, 0.71, 0.70, 0.74, 0.60, 0.60, 0.60, 0.60, 0.60, 0.60]
LOSSES = [0.90, 0.60, 0.55, 0.70, 0.50, 0.50, 0.49, 0.60, 0.60, 0.40, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90]
TIMING = ("seconds", "epoch_seconds")


class Scripted(ValidationScores):
    """Validation figures read from a script instead of measured (another `Monitor` would be as small)."""

    def __init__(self, accuracies=ACCURACIES, losses=LOSSES):
        self.figures = list(zip(accuracies, losses))

    def measure(self, history):
        accuracy, loss = self.figures[len(history.get("val_accuracy", []))]
        history.setdefault("val_accuracy", []).append(accuracy)
        history.setdefault("val_loss", []).append(loss)


class Model:
    """A model whose weights are the number of epochs it trained."""

    def __init__(self):
        self.trained = 0

    def get_weights(self):
        return [np.array(self.trained)]

    def set_weights(self, weights):
        self.trained = int(weights[0])


def run_epochs(state, hooks, first, last, model=None, steps=0, clock=None):
    """Epochs `first` to `last - 1` as the loop runs them, `steps` steps each, a second a step on `clock`."""
    for epoch in range(first, last):
        state.begin_epoch(epoch)
        for hook in hooks:
            hook.on_epoch_begin(state)
        while state.step < steps:
            state.step += 1
            if clock is not None:
                clock.now += 1.0
            for hook in hooks:
                hook.on_step_end(state)
        state.end_epoch((0.5 * state.samples, state.samples // 2, {"kd_term": 0.25 * state.samples}))
        state.history["epoch_seconds"][-1] = 0.5  # as if measured, the same in every run
        if model is not None:
            model.trained = epoch + 1
        for hook in hooks:
            hook.on_epoch_end(state)
        if state.stopped:
            break


def snapshot(hook, state, fresh):
    """`fresh`, given `hook`'s state as a checkpoint would, and a copy of `state` to go on with."""
    saved = json.loads(json.dumps(hook.state_dict()))  # as a checkpoint's state.json reads back
    assert fresh.state_from_history(state.history) == saved  # what an older checkpoint derives is the same
    fresh.load_state_dict(saved)
    return fresh, copy.deepcopy(state)


def stopping(model=None, patience=3):
    return EarlyStopping(Scripted(), patience, len(ACCURACIES), model or Model())


@pytest.mark.parametrize("split_after", [1, 3, 6, 8])
def test_early_stopping_restored_decides_as_the_run_that_went_on(split_after):
    model, state = Model(), TrainState(epochs=len(ACCURACIES), steps=1, samples=10)
    going_on = stopping(model)
    run_epochs(state, [going_on], 0, split_after, model)
    restored, restored_state = snapshot(going_on, state, stopping(Model()))
    restored.best_weights = going_on.best_weights  # kept beside the checkpoint, not in its state
    restored_model = restored.model
    restored_model.trained = model.trained
    for hooks, run, trained in ((going_on,), state, model), ((restored,), restored_state, restored_model):
        run_epochs(run, hooks, split_after, len(ACCURACIES), trained)
        run.finished = True
        hooks[0].on_train_end(run)
    assert restored_state.history == state.history
    assert (state.history["best_epoch"], state.history["stopped"]) == (10, "patience")
    assert model.trained == restored_model.trained == 10  # both end with the best epoch's weights


def test_plateau_schedule_restored_decides_as_the_run_that_went_on():
    def hooks(optimizer):
        early = stopping(patience=8)
        return [early, PlateauSchedule(optimizer, 0.1, 8, early)]

    first = hooks(type("Optimizer", (), {"learning_rate": 0.1})())
    state = TrainState(epochs=len(ACCURACIES), steps=1, samples=10)
    run_epochs(state, first, 0, 9)
    assert state.history["lr_decays"] == [9]  # 2 epochs without a better score since the best (7)
    second = hooks(type("Optimizer", (), {"learning_rate": first[1].optimizer.learning_rate})())
    copied = None
    for hook, fresh in zip(first, second):
        fresh, copied = snapshot(hook, state, fresh)
    run_epochs(state, first, 9, len(ACCURACIES))
    run_epochs(copied, second, 9, len(ACCURACIES))
    # then 2 since the new best (10) and since the last decay; none at the run's last epoch (16)
    assert copied.history == state.history and state.history["lr_decays"] == [9, 12, 14]
    assert second[1].optimizer.learning_rate == first[1].optimizer.learning_rate == pytest.approx(0.1 * 0.5 ** 3)


def test_pruning_restored_decides_as_the_run_that_went_on():
    def rule(accuracies):
        return len(accuracies) >= 4 and max(accuracies) < 0.73

    state = TrainState(epochs=len(ACCURACIES), steps=1, samples=10)
    first = [stopping(patience=20), Pruning(rule)]
    run_epochs(state, first, 0, 3)
    second = [stopping(patience=20), Pruning(rule)]
    for hook, fresh in zip(first, second):
        fresh, copied = snapshot(hook, state, fresh)
    run_epochs(state, first, 3, len(ACCURACIES))
    run_epochs(copied, second, 3, len(ACCURACIES))
    assert copied.history == state.history and state.history["stopped"] == "pruned"
    assert first[1].pruned_at == second[1].pruned_at == 4


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Saved:
    """A `Checkpoints` that records where each checkpoint was taken."""

    directory = "ck"

    def __init__(self):
        self.at = []

    def save(self, epochs_done, history, best=None, partial=None, hooks=None):
        self.at.append((epochs_done, partial["step"] if partial else 0))


class Sums:
    """A `TrainStep`'s sums and loss check."""

    def sums(self, carried):
        return carried

    def check_finite(self, state):
        pass


@pytest.mark.parametrize("every", [0, 3, 7.5, 25])
def test_the_checkpoint_timer_restored_decides_as_the_one_that_went_on(every):
    clock = Clock()
    going_on = Checkpointing(Saved(), Sums(), every, True, "ck", clock=clock)
    state = TrainState(epochs=4, steps=10, samples=10)
    going_on.on_train_begin(state)
    run_epochs(state, [going_on], 0, 1, steps=10, clock=clock)
    state.begin_epoch(1)  # and 4 steps into the next epoch
    for _ in range(4):
        state.step += 1
        clock.now += 1.0
        going_on.on_step_end(state)
    restored, copied = Checkpointing(Saved(), Sums(), every, True, "ck", clock=clock), copy.deepcopy(state)
    restored.load_state_dict(json.loads(json.dumps(going_on.state_dict())))
    restored.on_train_begin(copied)
    before = len(going_on.checkpoints.at)
    start = clock.now
    for hook, run in ((going_on, state), (restored, copied)):
        clock.now = start
        for _ in range(6):
            run.step += 1
            clock.now += 1.0
            hook.on_step_end(run)
        run.end_epoch((0.0, 0, {}))
        hook.on_epoch_end(run)
        run_epochs(run, [hook], 2, 4, steps=10, clock=clock)
    assert restored.checkpoints.at == going_on.checkpoints.at[before:]
    assert going_on.checkpoints.at[-1] == (4, 0)  # the end of the run's, whatever the interval
    if every == 3:
        assert going_on.checkpoints.at[:2] == [(0, 3), (0, 6)]  # inside epochs, at the first step after


def test_training_logs_restored_write_what_the_run_that_went_on_wrote(tmp_path):
    def logs(folder):
        return TrainingLogs(folder, lambda: 0.01)

    def state():
        return TrainState(epochs=6, steps=1, samples=10)

    whole, whole_state = logs(tmp_path / "whole"), state()
    whole.on_train_begin(whole_state)
    run_epochs(whole_state, [whole], 0, 6)
    whole.on_train_end(whole_state)
    # A run that logged epoch 3 after its checkpoint of 2 epochs, then was killed, and its resume.
    killed, killed_state = logs(tmp_path / "split"), state()
    killed.on_train_begin(killed_state)
    run_epochs(killed_state, [killed], 0, 2)
    resumed, resumed_state = snapshot(killed, killed_state, logs(tmp_path / "split"))
    run_epochs(killed_state, [killed], 2, 3)
    killed.on_train_end(killed_state)
    resumed.on_train_begin(resumed_state)
    run_epochs(resumed_state, [resumed], 2, 6)
    resumed.on_train_end(resumed_state)
    rows = [list(csv.reader(open(folder / "metrics.csv"))) for folder in (tmp_path / "whole", tmp_path / "split")]
    assert rows[0] == rows[1] and len(rows[0]) == 7 and rows[0][0][:3] == ["epoch", "loss", "kd_term"]


@pytest.fixture(scope="module")
def digits():
    return kdcli.load_data("digits")


class Interrupt(Exception):
    pass


class StopAt(Hook):
    """Stops the run once past step `step` of epoch `epoch` (1-based), at the end of the compiled call
    that ran it: raises, or sends the process `signum`."""

    def __init__(self, epoch, step, signum=None):
        self.epoch, self.step, self.signum, self.done = epoch, step, signum, False

    def on_step_end(self, state):
        if state.epoch + 1 == self.epoch and state.step >= self.step and not self.done:
            self.done = True
            if self.signum is None:
                raise Interrupt
            os.kill(os.getpid(), self.signum)


def weights_and_history(digits, budget, **options):
    model = kdcli.build_model("mlp", digits, depth=0, seed=0)
    history = kdcli.train(model, digits, budget, **options)
    return model.get_weights(), {k: v for k, v in history.items() if k not in TIMING}


# Under auto: the step size was lowered after epoch 3 and the best epoch is 4 when the run stops in
# epoch 5; after the resume epoch 5 becomes the best.
AUTO = Budget(epochs="auto", max_epochs=6, patience=2, lr_schedule="plateau", learning_rate=0.2, seed=5)


@pytest.mark.parametrize("budget, epoch, older_checkpoint", [
    (Budget(epochs=3, seed=3), 2, False), (AUTO, 5, False), (AUTO, 5, True),
], ids=["fixed", "auto-plateau", "auto-plateau-older-checkpoint"])
def test_a_run_split_by_a_checkpoint_ends_as_an_uninterrupted_one(digits, tmp_path, budget, epoch, older_checkpoint):
    reference = weights_and_history(digits, budget, log_dir=tmp_path / "reference")
    ck, logs = tmp_path / "ck", tmp_path / "logs"
    with pytest.raises(Interrupt):  # a checkpoint after every step (one a call), the last one after step 5 of `epoch`
        weights_and_history(digits, budget, checkpoint_dir=ck, checkpoint_every=1e-9, log_dir=logs,
                            progress=StopAt(epoch, 5), steps_per_call=1)
    saved = json.loads((ck / "state.json").read_text())
    assert (saved["epochs_done"], saved["partial"]["step"]) == (epoch - 1, 5)
    if budget.auto:
        assert (saved["history"]["lr_decays"], saved["history"]["best_epoch"], reference[1]["best_epoch"]) == ([3], 4, 5)
        assert saved["hooks"]["early_stopping"]["best_epoch"] == 4 and saved["hooks"]["plateau"] == {"decays": [3]}
    assert set(saved["hooks"]) >= {"checkpointing", "training_logs"}
    if older_checkpoint:  # as written before hooks kept their state: derived from the history
        del saved["hooks"]
        (ck / "state.json").write_text(json.dumps(saved))
    resumed = weights_and_history(digits, budget, checkpoint_dir=ck, checkpoint_every=1e-9, log_dir=logs,
                                  resume=True)  # steps a call chosen as it goes: the same result
    assert resumed[1] == reference[1]
    assert all(np.array_equal(a, b) for a, b in zip(resumed[0], reference[0]))
    rows = [[row[:-1] for row in csv.reader(open(folder / "metrics.csv"))] for folder in (tmp_path / "reference", logs)]
    assert rows[0] == rows[1]  # the same log, but for the seconds


@pytest.mark.parametrize("steps_per_call, boundary", [(1, 7), (5, 10), (None, None)])
def test_sigterm_checkpoints_at_the_call_boundary_and_the_resume_is_exact(digits, tmp_path, steps_per_call, boundary):
    budget = Budget(epochs=3, seed=4)
    reference = weights_and_history(digits, budget, steps_per_call=1)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KdcliError) as stopped:
        weights_and_history(digits, budget, checkpoint_dir=tmp_path, progress=StopAt(2, 7, signal.SIGTERM),
                            steps_per_call=steps_per_call)
    assert stopped.value.exit_code == EXIT_TERMINATED
    # with K steps a call, the step it was in ends its call: the checkpoint is at the call's last step
    where = f"in epoch 2 after step {boundary} of 23;" if boundary else "stopped by SIGTERM"
    assert str(stopped.value).startswith("stopped by SIGTERM ") and where in str(stopped.value)
    assert signal.getsignal(signal.SIGTERM) is handler  # the handlers are given back
    resumed = weights_and_history(digits, budget, checkpoint_dir=tmp_path, resume=True)
    assert resumed[1] == reference[1]
    assert all(np.array_equal(a, b) for a, b in zip(resumed[0], reference[0]))


def test_the_bar_under_epochs_auto_shows_the_best_epoch_and_the_patience_not_a_count(digits, monkeypatch):
    from rich.console import Console

    import kdcli.console

    recording = Console(file=io.StringIO(), record=True, force_terminal=True, width=120)
    monkeypatch.setattr(kdcli.console, "stderr", recording)
    model = kdcli.build_model("mlp", digits, depth=0, seed=0)
    history = kdcli.train(model, digits, Budget(epochs="auto", max_epochs=3, patience=5),
                          progress=kdcli.console.Reporter().progress("distilling"))
    text = recording.export_text()
    best = 2 if (history["val_accuracy"][1], -history["val_loss"][1]) > (history["val_accuracy"][0],
                                                                         -history["val_loss"][0]) else 1
    assert f"distilling epoch 3 · best {best} · patience {2 - best}/5 · val_acc {history['val_accuracy'][1]:.3f}" \
        in text
    assert "/3" not in text and "-:--:--" not in text  # no count towards --max-epochs, no ETA
    recording.export_text(clear=True)
    kdcli.train(model, digits, epochs=2, progress=kdcli.console.Reporter().progress("training"))
    assert "46/46 epoch 2" in recording.export_text()  # a fixed number of epochs keeps its counted bar


def test_progress_tells_a_plain_object_what_it_listens_to():
    told = []
    methods = {"start": lambda self, total: told.append(("start", total)),
               "advance": lambda self, logs: told.append(("advance", logs)),
               "stop": lambda self: told.append(("stop",))}
    for extra in ({}, {"epoch_end": lambda self, epoch, epochs, logs, last: told.append(("epoch_end", epoch, last))}):
        told.clear()
        progress, state = Progress(type("Plain", (), {**methods, **extra})()), TrainState(epochs=2, steps=2, samples=4)
        progress.on_train_begin(state)
        run_epochs(state, [progress], 0, 2, steps=2)
        progress.on_train_end(state)
        ends = [[("epoch_end", 1, False)], [("epoch_end", 2, True)]] if extra else [[], []]
        assert told == [("start", 4), *[("advance", {"epoch": 1})] * 2, *ends[0], *[("advance", {"epoch": 2})] * 2,
                        *ends[1], ("stop",)]
