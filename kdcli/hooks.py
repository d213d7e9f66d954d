"""What a training run does around its steps and epochs, as hooks: one class each, with its own state.

The loop in `kdcli.training` runs steps and epochs and keeps a `TrainState`;
everything else is a `Hook`, told `on_train_begin`, `on_epoch_begin`,
`on_step_end`, `on_epoch_end` and `on_train_end` (the names of Keras
callbacks), in this order within each event:

- `EarlyStopping` (`--epochs auto`): measures a `Monitor` after each epoch
  (`ValidationScores`), keeps the best epoch's weights, and stops the run;
- `Pruning`: a tuner's rule stops a trial that falls behind;
- `TrainingLogs` (`--log-dir`): the epoch's scalars, as TensorBoard events and CSV;
- `PlateauSchedule` (`--lr-schedule plateau`): halves the step size when the
  monitored score stalls;
- `Checkpointing`: timed checkpoints, and the end of the run's;
- `Progress`: the progress bar, or a line per epoch;
- `StopOnSignal`: SIGINT and SIGTERM checkpoint at the next step boundary
  and stop the run (exit codes 130 and 143); a second Ctrl-C stops at once.

A later hook sees what an earlier one decided: the log the epoch's validation
loss, the schedule the early-stopping verdict, a checkpoint all of it.

A stateful hook has a `name`, gives its JSON-ready state with `state_dict()`
and takes it back with `load_state_dict(d)`: `Checkpointing` saves the states
in each checkpoint and restores them on `--resume`. A checkpoint written
before hooks kept their own state has none; `state_from_history(history)`
then derives it from the run's history, which holds everything they decided.
"""

import dataclasses
import signal
import threading
import time

import numpy as np

from kdcli.console import Display, plural
from kdcli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, KdcliError
from kdcli.inference import Inference
from kdcli.logs import TrainingLog
from kdcli.options import PLATEAU_FACTOR, plateau_patience


@dataclasses.dataclass
class TrainState:
    """Where a training run is: what the loop keeps and hooks read (and what a checkpoint holds).

    Attributes:
        epochs: the most epochs the run trains (`max_epochs` under `--epochs auto`).
        steps: training steps per epoch.
        samples: training samples per epoch, the denominator of its means.
        checkpointed: whether the run keeps checkpoints.
        epoch: the epoch running (0-based); after its end, the one just finished.
        step: steps done in this epoch (a resumed epoch's steps before the resume included).
        in_epoch: whether an epoch is running (False once its steps are done).
        history: the run's record (see `kdcli.training.train`): hooks add their decisions.
        first_epoch: the epoch this process starts with (after a resumed checkpoint's).
        partial: the unfinished epoch of the checkpoint resumed (`kdcli.checkpoints`), else None.
        resumed_from: the checkpoint folder the run was resumed from, else None.
        carried: the running epoch's summed loss, correct answers and loss parts from before a
            resume: the device's sums restart at zero, and these are added to them.
        epoch_started: `time.perf_counter()` when the epoch began, less its seconds before a resume.
        epoch_sums: the finished epoch's `(summed loss, correct answers, {loss part: sum})`.
        finished: whether the run ended normally (`on_train_end` is told on an error too).
    """

    epochs: int
    steps: int
    samples: int
    checkpointed: bool = False
    epoch: int = 0
    step: int = 0
    in_epoch: bool = False
    history: dict = dataclasses.field(default_factory=lambda: {"loss": [], "accuracy": []})
    first_epoch: int = 0
    partial: dict = None
    resumed_from: object = None
    carried: tuple = (0.0, 0, {})
    epoch_started: float = 0.0
    epoch_sums: tuple = (0.0, 0, {})
    finished: bool = False

    @property
    def stopped(self):
        """Why the run stops after this epoch (`patience`, `max-epochs`, `pruned`), or None."""
        return self.history.get("stopped")

    def stop(self, reason):
        """End the run after this epoch, recording why in the history."""
        self.history["stopped"] = reason

    @property
    def last_epoch(self):
        """Whether the epoch just finished is the run's last."""
        return bool(self.stopped) or self.epoch + 1 == self.epochs

    def resume(self, epochs_done, history, partial, folder):
        """Continue a checkpoint's run: `epochs_done` epochs and, with `partial`, some steps of the next."""
        self.epoch = self.first_epoch = epochs_done
        self.history, self.partial, self.resumed_from = history, partial, folder

    def epochs_left(self):
        return range(self.first_epoch, self.epochs if not self.stopped else self.first_epoch)

    def begin_epoch(self, epoch):
        """Start epoch `epoch`; the epoch a checkpoint was taken inside continues after its steps done."""
        resumed = self.partial if epoch == self.first_epoch and self.partial else None
        self.epoch, self.in_epoch = epoch, True
        self.step = resumed["step"] if resumed else 0
        self.epoch_started = time.perf_counter() - (resumed["seconds"] if resumed else 0.0)
        # Kept apart from the device sums: a SUM variable split over replicas would round them.
        self.carried = (resumed["loss_sum"], resumed["correct"], resumed.get("terms", {})) if resumed else (0.0, 0, {})

    def end_epoch(self, sums):
        """Record the epoch's mean loss and accuracy from its `(summed loss, correct answers, parts)`."""
        loss, correct, _ = self.epoch_sums = sums
        self.history["loss"].append(loss / self.samples)
        self.history["accuracy"].append(correct / self.samples)
        self.history.setdefault("epoch_seconds", []).append(time.perf_counter() - self.epoch_started)
        self.in_epoch = False

    def boundary(self):
        """`(epochs done, steps done in the next)`: where a checkpoint taken now continues."""
        return (self.epoch, self.step) if self.in_epoch else (self.epoch + 1, 0)


class Hook:
    """Something a training run does at its events; every method is a no-op to override.

    `name` (a class attribute) is the key of the hook's state in a
    checkpoint; a hook without state leaves it None.
    """

    name = None

    def on_train_begin(self, state):
        pass

    def on_epoch_begin(self, state):
        pass

    def on_step_end(self, state):
        pass

    def on_epoch_end(self, state):
        pass

    def on_train_end(self, state):
        """Told however the run ends, an error included (`state.finished` says which)."""

    def state_dict(self):
        """The hook's state, JSON-ready."""
        return {}

    def load_state_dict(self, d):
        """Take back a state given by `state_dict`."""

    def state_from_history(self, history):
        """The state, derived from a run's history: for checkpoints saved before hooks kept theirs."""
        return {}


class HookList:
    """Hooks told each event in order; a step's event only those that handle it (the loop's hot path)."""

    def __init__(self, hooks):
        self.hooks = [hook for hook in hooks if hook is not None]
        self._step_ends = [hook.on_step_end for hook in self.hooks if type(hook).on_step_end is not Hook.on_step_end]

    def on_train_begin(self, state):
        for hook in self.hooks:
            hook.on_train_begin(state)

    def on_epoch_begin(self, state):
        for hook in self.hooks:
            hook.on_epoch_begin(state)

    def on_step_end(self, state):
        for told in self._step_ends:
            told(state)

    def on_epoch_end(self, state):
        for hook in self.hooks:
            hook.on_epoch_end(state)

    def on_train_end(self, state):
        for hook in self.hooks:
            hook.on_train_end(state)


class Validator:
    """Measures a model on a validation split: `validator()` is `(accuracy, mean cross-entropy)`; the
    logits it measured stay in `last_logits` (float64)."""

    last_logits = None

    def __init__(self, model, split):
        self.split, self._infer = split, Inference(model)

    def __call__(self):
        split = self.split
        logits = self._infer(split).astype(np.float64)
        self.last_logits = logits
        log_p = log_softmax(logits)
        return float(np.mean(logits.argmax(1) == split.y)), float(-np.mean(log_p[np.arange(len(split)), split.y]))


def log_softmax(logits):
    """A stable log-softmax of float64 logits, over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Monitor:
    """What `EarlyStopping` watches: a measure taken after each epoch and kept in the history.

    Another measure is a subclass: it records its figures in `measure`, and
    `score` says which epoch is better.
    """

    def measure(self, history):
        """Measure the epoch just trained and append the figures to `history`."""
        raise NotImplementedError

    def score(self, history, epoch):
        """Epoch `epoch`'s (1-based) score from `history`: higher is better (a tuple breaks ties)."""
        raise NotImplementedError

    def status(self, history):
        """The last measure, for the progress bar (`{"val_acc": 0.934}`)."""
        return {}


class ValidationScores(Monitor):
    """The validation split's accuracy and mean cross-entropy (`val_accuracy`, `val_loss` in the
    history) and, given the teacher's logits for its rows, the KL divergence from the teacher's
    probabilities to the student's, both softened by `temperature` (`val_kl`).

    `watch` picks the score: `accuracy` (ties broken by the lower cross-entropy), `loss`, or `kl`. A
    distilled student's accuracy on a few hundred samples moves in steps of one sample and goes flat
    while it still learns its teacher's distribution; the KL keeps moving until it has.
    """

    watch = "accuracy"
    teacher_log_p = None

    def __init__(self, model, split, watch="accuracy", teacher_logits=None, temperature=1.0, standardize=False):
        self.validate, self.watch, self.temperature = Validator(model, split), watch, temperature
        self.standardize = standardize  # the method compares standardised logits: so does the KL
        if teacher_logits is not None:
            self.teacher_log_p = log_softmax(self._scaled(np.asarray(teacher_logits, np.float64)))

    def _scaled(self, logits):
        if self.standardize:  # as kdcli.losses.standardize_logits
            centred = logits - logits.mean(axis=-1, keepdims=True)
            logits = centred / (np.sqrt(np.mean(centred**2, axis=-1, keepdims=True)) + 1e-7)
        return logits / self.temperature

    def measure(self, history):
        accuracy, loss = self.validate()
        history["monitor"] = self.watch
        history.setdefault("val_accuracy", []).append(accuracy)
        history.setdefault("val_loss", []).append(loss)
        if self.teacher_log_p is not None:
            student = log_softmax(self._scaled(self.validate.last_logits))
            kl = np.sum(np.exp(self.teacher_log_p) * (self.teacher_log_p - student), axis=-1)
            history.setdefault("val_kl", []).append(float(np.mean(kl)))

    def score(self, history, epoch):
        if self.watch == "kl":
            return (-history["val_kl"][epoch - 1],)
        if self.watch == "loss":
            return (-history["val_loss"][epoch - 1],)
        return history["val_accuracy"][epoch - 1], -history["val_loss"][epoch - 1]

    def status(self, history):
        if not history.get("val_accuracy"):
            return {}
        shown = {"kl": "val_kl", "loss": "val_loss"}.get(self.watch)
        return {**({shown: history[shown][-1]} if shown else {}), "val_acc": history["val_accuracy"][-1]}


class EarlyStopping(Hook):
    """`--epochs auto`: after each epoch, `monitor` measures the model; an epoch with a higher score
    than the best so far becomes the best (`history["best_epoch"]`, its weights kept). The run stops
    (`history["stopped"]`) after `patience` epochs without a better one (`patience`), or at
    `max_epochs` (`max-epochs`), and ends with the best epoch's weights.

    Checkpoints keep the best weights beside them (see `Checkpointing`), not in the state dict.
    """

    name = "early_stopping"

    def __init__(self, monitor, patience, max_epochs, model):
        self.monitor, self.patience, self.max_epochs, self.model = monitor, patience, max_epochs, model
        self.best_epoch = None  # 1-based
        self.best_score = None
        self.best_weights = None

    def on_epoch_end(self, state):
        history, epoch = state.history, state.epoch + 1
        self.monitor.measure(history)
        score = tuple(self.monitor.score(history, epoch))
        if self.best_epoch is None or score > self.best_score:
            self.best_epoch, self.best_score = epoch, score
            history["best_epoch"] = epoch
            self.best_weights = self.model.get_weights()
        if epoch - self.best_epoch >= self.patience:
            state.stop("patience")
        elif epoch >= self.max_epochs:
            state.stop("max-epochs")

    def on_train_end(self, state):
        if state.finished and self.best_weights is not None:
            self.model.set_weights(self.best_weights)  # the best epoch's, as the monitor measured

    def status(self, state):
        """For the progress bar: `{"best": 30, "patience": "7/20", "val_acc": 0.934}`, or {} before a measure."""
        if self.best_epoch is None:
            return {}
        since = len(state.history["loss"]) - self.best_epoch
        return {"best": self.best_epoch, "patience": f"{since}/{self.patience}", **self.monitor.status(state.history)}

    def state_dict(self):
        return {"best_epoch": self.best_epoch, "best_score": None if self.best_score is None else list(self.best_score)}

    def load_state_dict(self, d):
        self.best_epoch = d["best_epoch"]
        self.best_score = None if d["best_score"] is None else tuple(d["best_score"])

    def state_from_history(self, history):
        best = history.get("best_epoch")
        return {"best_epoch": best, "best_score": None if best is None else list(self.monitor.score(history, best))}


class Pruning(Hook):
    """A tuner's rule for trials that fall behind (Optuna's pruner, see `kdcli.tuning`): a function of the
    validation accuracies so far that says whether to stop the run now (`stopped` is then `pruned`).
    After `EarlyStopping`, whose verdict comes first."""

    name = "pruning"

    def __init__(self, rule):
        self.rule = rule
        self.pruned_at = None

    def on_epoch_end(self, state):
        if not state.stopped and self.rule(state.history["val_accuracy"]):
            state.stop("pruned")
            self.pruned_at = state.epoch + 1

    def state_dict(self):
        return {"pruned_at": self.pruned_at}

    def load_state_dict(self, d):
        self.pruned_at = d["pruned_at"]

    def state_from_history(self, history):
        return {"pruned_at": len(history["loss"]) if history.get("stopped") == "pruned" else None}


class TrainingLogs(Hook):
    """`--log-dir`: per epoch, the loss and its parts, the training accuracy, the validation accuracy and
    loss, the step size and the seconds (`kdcli.logs.TrainingLog`).

    Before `PlateauSchedule`: `learning_rate()` (a function) gives the step size the epoch trained with.
    A resumed run drops the rows of epochs after its checkpoint's, which run again.
    """

    name = "training_logs"

    def __init__(self, directory, learning_rate):
        self.directory, self.learning_rate = directory, learning_rate
        self.epochs = 0  # the epochs logged
        self.log = None

    def on_train_begin(self, state):
        self.log = TrainingLog(self.directory, epochs_done=self.epochs)

    def on_epoch_end(self, state):
        history, scalars = state.history, epoch_logs(state.history)
        rate = self.learning_rate()
        terms = {name: total / state.samples for name, total in state.epoch_sums[2].items()}
        self.log.write(state.epoch + 1, {"loss": scalars.pop("loss"), **terms,
                                         **{k: v for k, v in scalars.items() if k != "seconds"},
                                         **({"val_loss": history["val_loss"][-1]} if "val_loss" in history else {}),
                                         "learning_rate": rate, "seconds": scalars["seconds"]})
        self.epochs = state.epoch + 1

    def on_train_end(self, state):
        if self.log is not None:
            self.log.close()
            self.log = None

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, d):
        self.epochs = d["epochs"]

    def state_from_history(self, history):
        return {"epochs": len(history["loss"])}


class PlateauSchedule(Hook):
    """`--lr-schedule plateau`: lower the step size of `optimizer` after an epoch, recorded in
    `history["lr_decays"]`, once `plateau_patience(patience)` epochs have passed without a better
    score (the best epoch of `stopping`, an `EarlyStopping`) since the best epoch and since the last
    decay, unless the run stops there. Each decay multiplies `learning_rate` by `PLATEAU_FACTOR` once
    more; the step size is a variable of the optimizer, so checkpoints keep it.

    With the default patience of 20 the step size halves after 5, 10 and 15 epochs without
    improvement, and the run stops after 20: it anneals like a cosine, for as long as the data needs.
    """

    name = "plateau"

    def __init__(self, optimizer, learning_rate, patience, stopping):
        self.optimizer, self.learning_rate, self.patience, self.stopping = optimizer, learning_rate, patience, stopping
        self.decays = []  # the epochs (1-based) after which the step size was lowered

    def on_epoch_end(self, state):
        since = max([self.stopping.best_epoch, *self.decays[-1:]])
        if not state.stopped and state.epoch + 1 - since >= plateau_patience(self.patience):
            self.decays.append(state.epoch + 1)
            self.optimizer.learning_rate = self.learning_rate * PLATEAU_FACTOR ** len(self.decays)
        state.history["lr_decays"] = list(self.decays)

    def state_dict(self):
        return {"decays": list(self.decays)}

    def load_state_dict(self, d):
        self.decays = list(d["decays"])

    def state_from_history(self, history):
        return {"decays": list(history.get("lr_decays", []))}


class Checkpointing(Hook):
    """Checkpoints (`kdcli.checkpoints.Checkpoints`) every `every` seconds, at the first step or epoch
    boundary after; at the end of every epoch with `every` 0 or without `by_time` (a multi-worker run,
    whose workers must all take part); and when the run ends, so that a finished run's checkpoint
    holds its result.

    Args:
        checkpoints: the run's `Checkpoints`.
        step: the `kdcli.training.TrainStep` (its running sums, for a checkpoint inside an epoch).
        every: seconds between two checkpoints.
        by_time: whether checkpoints are timed (and taken inside epochs).
        folder: the checkpoint folder as given, for messages.
        hooks: the hooks whose state each checkpoint keeps.
        best: the `EarlyStopping` whose best weights the checkpoint keeps, or None.
        clock: seconds, monotonic.
    """

    name = "checkpointing"

    def __init__(self, checkpoints, step, every, by_time, folder, hooks=(), best=None, clock=time.monotonic):
        self.checkpoints, self.step, self.every, self.by_time, self.folder = checkpoints, step, every, by_time, folder
        self.hooks, self.best, self.clock = [*hooks, self], best, clock
        self.since_save = 0.0  # the timer: seconds since the last checkpoint
        self.saved_at = None
        self._saved = None  # the boundary of the last checkpoint
        self._saved_best = None  # the best weights it kept

    @property
    def directory(self):
        return self.checkpoints.directory

    def restore(self, state):
        """`--resume`: continue from the last good checkpoint, if any: `state`, the hooks' states, the
        best weights (the model, the optimizer and the dropout RNG are restored by `Checkpoints`)."""
        epochs_done, history = self.checkpoints.restore()
        if history is None:
            return
        partial = self.checkpoints.partial
        started = epochs_done + (1 if partial else 0)  # an epoch begun counts: it must finish
        if started > state.epochs:
            raise KdcliError(
                f"{self.folder}: the checkpoint has {plural(epochs_done, 'epoch')} done"
                f"{' and one begun' if partial else ''}, more than --epochs {state.epochs}; "
                f"give --epochs {started} or more"
            )
        state.resume(epochs_done, history, partial, self.folder)
        saved = self.checkpoints.hooks or {}
        for hook in (hook for hook in self.hooks if hook.name):
            hook.load_state_dict(saved[hook.name] if hook.name in saved else hook.state_from_history(history))
        if self.best is not None:
            self.best.best_weights = self._saved_best = self.checkpoints.best

    def on_train_begin(self, state):
        self.saved_at = self.clock() - self.since_save

    def on_step_end(self, state):
        if state.step < state.steps and self.by_time and self.every > 0 and self._elapsed() >= self.every:
            self.save(state)

    def on_epoch_end(self, state):
        if state.last_epoch or not self.by_time or self.every == 0 or self._elapsed() >= self.every:
            self.save(state)

    def save(self, state):
        """A checkpoint at the boundary the run is at, unless one was just taken there."""
        epochs_done, step = state.boundary()
        if self._saved == (epochs_done, step):
            return
        partial = None
        if step:
            self.step.check_finite(state)
            partial = dict(zip(("step", "loss_sum", "correct", "terms", "seconds"),
                               (step, *self.step.sums(state.carried), time.perf_counter() - state.epoch_started)))
        best = self.best.best_weights if self.best is not None else None
        # The timer's own state in its checkpoint is 0: that checkpoint is the last one.
        states = {hook.name: hook.state_dict() if hook is not self else {"since_save": 0.0} for hook in self.hooks}
        self.checkpoints.save(epochs_done, state.history, best=best if best is not self._saved_best else None,
                              partial=partial, hooks=states)
        self.saved_at, self._saved, self._saved_best = self.clock(), (epochs_done, step), best

    def _elapsed(self):
        return self.clock() - self.saved_at

    def state_dict(self):
        return {"since_save": self.since_save if self.saved_at is None else self._elapsed()}

    def state_from_history(self, history):
        return {"since_save": 0.0}  # the timer starts again when the run resumes

    def load_state_dict(self, d):
        self.since_save = d["since_save"]
        if self.saved_at is not None:
            self.saved_at = self.clock() - self.since_save


class Stopped(KdcliError):
    """A run stopped by SIGINT or SIGTERM after saving a checkpoint at a step boundary."""

    def __init__(self, signum, epochs_done, step, steps, directory):
        name, code = ("interrupted", EXIT_INTERRUPTED) if signum == signal.SIGINT else \
            ("stopped by SIGTERM", EXIT_TERMINATED)
        where = f"in epoch {epochs_done + 1} after step {step} of {steps}" if step else \
            f"after epoch {epochs_done}"
        super().__init__(f"{name} {where}; saved in {directory}: run the same command with --resume to continue",
                         code)


class StopOnSignal(Hook):
    """While training: SIGINT or SIGTERM stops the run at the next step boundary, after a checkpoint
    (`checkpointing`'s), with `Stopped` (exit code 130 or 143); a second SIGINT stops at once
    (KeyboardInterrupt). Last of the hooks: the epoch is logged before the run stops.

    Signal handlers can only be set in the main thread; elsewhere signals act as they would.
    """

    def __init__(self, checkpointing):
        self.checkpointing = checkpointing
        self.requested = None  # the signal received
        self._previous = {}

    def on_train_begin(self, state):
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._request) for signum in (signal.SIGINT, signal.SIGTERM)}

    def _request(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signum

    def on_step_end(self, state):
        if self.requested and state.step < state.steps:  # after the last step, the epoch ends first
            self._stop(state)

    def on_epoch_end(self, state):
        if self.requested:
            self._stop(state)

    def _stop(self, state):
        self.checkpointing.save(state)  # unless the checkpointing hook just did
        raise Stopped(self.requested, *state.boundary(), state.steps, self.checkpointing.directory)

    def on_train_end(self, state):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class Progress(Hook):
    """Tells `display` about the run: a `kdcli.console.Display`, or any object with `start(total)`,
    `advance(logs)` (told once per step) and `stop()`, and optionally `say(line)` and
    `epoch_end(epoch, epochs, logs, last)`.

    With a fixed number of epochs the display counts the run's steps (`total`), each step's status
    reading `epoch 3`. Under `--epochs auto` (with `stopping`, the `EarlyStopping`) the length is not
    known: `total` is None, and the status reads `epoch 37 · best 30 · patience 7/20 · val_acc 0.934`
    (the epoch, the best one, the epochs since the best out of the patience, the last measure).
    """

    def __init__(self, display, stopping=None):
        self.display = display if isinstance(display, Display) else _Forwarded(display)
        self.stopping = stopping
        self._logs = {}

    def on_train_begin(self, state):
        if state.resumed_from is not None:
            self.display.say(_resumed(state))
        done = state.partial["step"] if state.partial else 0
        self.display.start(None if self.stopping else max(state.epochs - state.first_epoch, 0) * state.steps - done)

    def on_epoch_begin(self, state):
        self._logs = {"epoch": state.epoch + 1, **(self.stopping.status(state) if self.stopping else {})}
        self._step = state.step  # a resumed epoch's steps before the resume are not shown again

    def on_step_end(self, state):  # once per compiled call, which may have run several steps
        self.display.advance(self._logs, state.step - self._step)
        self._step = state.step

    def on_epoch_end(self, state):
        self.display.epoch_end(state.epoch + 1, state.epochs, epoch_logs(state.history), last=state.last_epoch)

    def on_train_end(self, state):
        self.display.stop()


class _Forwarded(Display):
    """A progress object that is not a `Display`, as one: any object with `start`, `advance` and `stop`,
    and `say` and `epoch_end` where it has them (bound once, here; those it lacks are no-ops)."""

    def __init__(self, target):
        for name in ("start", "stop", "say", "epoch_end"):
            setattr(self, name, getattr(target, name, getattr(self, name)))
        self._advance = target.advance

    def advance(self, logs, steps=1):
        for _ in range(steps):  # told once per step, as the object expects
            self._advance(logs)


def _resumed(state):
    """`resuming from DIR: 37 of 100 epochs done, continuing with epoch 38 after its step 12`."""
    rest = f", continuing with epoch {state.first_epoch + 1}" if state.first_epoch < state.epochs and \
        not state.stopped else ""
    rest += f" after its step {state.partial['step']}" if state.partial else ""
    return f"resuming from {state.resumed_from}: {state.first_epoch} of {state.epochs} epochs done{rest}"


def epoch_logs(history):
    """The last epoch's figures, for a log line."""
    logs = {"loss": history["loss"][-1], "accuracy": history["accuracy"][-1]}
    if history.get("val_accuracy"):
        logs["val_accuracy"] = history["val_accuracy"][-1]
    if history.get("val_kl"):  # what a distilled student's run watches, by default
        logs["val_kl"] = history["val_kl"][-1]
    return {**logs, "seconds": history["epoch_seconds"][-1]}
