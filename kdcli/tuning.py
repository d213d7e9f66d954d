"""The search engine of `distill --tune N` and `kdcli compress`, on Optuna.

A search is an Optuna study in a database (`--study URL`; an SQLite file by
default), so that it survives the process: run the same command again after a
crash, Ctrl-C or SIGTERM and finished trials are not repeated, while a trial
that was cut off is retried in its own checkpoint folder, where it resumes.
Several processes, or machines sharing a database URL, split one study's
trials between them; the study's trial count is shared, so together they run
N trials.

Every trial trains a student from the initial weights of `--seed` under
`--epochs auto` and is scored on its validation split: its best epoch's
validation accuracy, then the lower validation loss. The test split plays no
part. The first trials are queued: for `--tune`, the student trained from
scratch on the hard labels, kdcli's default (`kd`, T = 4, alpha = 0.9), then
draws from `Space.candidates` without repeats (from `--seed`); for `compress`,
the default and scratch at every width. Optuna's TPE sampler proposes the
rest. Since scratch is a trial, a `--tune` winner is never worse than scratch
on the validation split.

`--tune` trials falling behind stop early, by the median stopping rule of
Golovin et al. ("Google Vizier", KDD 2017) as an Optuna pruner (`median_rule`):
from its `GRACE`-th epoch, a trial stops when its best validation accuracy so
far is below the median of the finished trials' best accuracies over as many
epochs. Optuna's own `MedianPruner` differs in one way that matters here: at
epoch E it counts only the finished trials that reached E, so once the trials
it stopped drop out, the median is the survivors' and it stops more (on digits
it stopped the trial that wins under this rule).
"""

import contextlib
import dataclasses
import os
import random
import socket
import threading
import time

import numpy as np

from kdcli.errors import UsageError

# Epochs a trial runs before the median rule may stop it.
GRACE = 10
# Queued trials of `--tune` (scratch, the default and random draws) before TPE proposes the rest.
QUEUED = 8
# Seconds between a running trial's heartbeats, and the silence after which another process retries it.
HEARTBEAT, STALE_AFTER = 20, 120
# Seconds between looks at the trials other processes are running, once this one has none left to start.
WAIT = 2
_OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of the search: a method config (`{"name": "kd", "temperature": 2.0, ...}`;
    `{"name": "hard"}` for scratch), an `--augment` spec and the student's width, as a
    multiple of the student's own (`--tune-widths`, `compress --widths`)."""

    method: dict
    augment: str = "none"
    width: float = 1.0

    @property
    def scratch(self):
        return self.method["name"] == "hard"

    def make_method(self):
        """The trial's `kdcli.methods.Method`."""
        from kdcli.methods import make_method

        return make_method(self.method["name"], **{k: v for k, v in self.method.items() if k != "name"})

    def label(self):
        """`kd T=2 alpha=0.5`, `scratch`, `dkd T=4 beta=8 + mixup`."""
        if self.scratch:
            name = "scratch"
        else:
            short = {"temperature": "T", "hint_weight": "w"}
            params = " ".join(f"{short.get(k, k)}={v:g}" for k, v in self.method.items()
                              if k != "name" and isinstance(v, (int, float)) and not isinstance(v, bool))
            name = f"{self.method['name']} {params}".strip()
        name = name if self.augment == "none" else f"{name} + {self.augment}"
        return name if self.width == 1 else f"{name}, width x{self.width:g}"

    def params(self):
        """The trial as Optuna parameters (each method's own names, so the space is fixed per name)."""
        name = "scratch" if self.scratch else self.method["name"]
        values = {f"{name}_{key}": value for key, value in self.method.items() if key not in ("name", "warmup")}
        return {"width": self.width, "method": name, "augment": self.augment, **values}


SCRATCH = Trial({"name": "hard"})
DEFAULT = Trial({"name": "kd", "temperature": 4.0, "alpha": 0.9})
# Each method's parameters and their values. DKD warms up 5 epochs, since trials may stop early.
METHODS = {
    "kd": {"temperature": (1.0, 2.0, 4.0, 8.0), "alpha": (0.5, 0.9, 1.0)},
    "dkd": {"temperature": (1.0, 4.0), "beta": (1.0, 2.0, 8.0)},
    "dist": {"temperature": (1.0, 4.0)},
    "hints": {"hint_weight": (0.1, 1.0)},
}
FIXED = {"dkd": {"warmup": 5}}


@dataclasses.dataclass(frozen=True)
class Space:
    """What a search may try: the methods of `METHODS` (hints with a live teacher), scratch (at
    widths other than 1, or at every width with `scratch_everywhere`), each augmentation of
    `augments` (others than `none` need a live teacher) and each width of `widths`."""

    augments: tuple = ("none",)
    hints: bool = False
    widths: tuple = (1.0,)
    scratch_everywhere: bool = False

    def methods(self):
        """The method names Optuna chooses from, scratch first."""
        return ["scratch", *(name for name in METHODS if name != "hints" or self.hints)]

    def candidates(self):
        """Every trial of the space, but scratch at width 1 unless `scratch_everywhere` (it is `--tune`'s first)."""
        import itertools

        space = []
        for augment in self.augments:
            for name in self.methods()[1:]:
                grid = METHODS[name]
                space += [Trial({"name": name, **dict(zip(grid, values)), **FIXED.get(name, {})}, augment)
                          for values in itertools.product(*grid.values())]
        scratch = [dataclasses.replace(SCRATCH, width=w) for w in self.widths if w != 1 or self.scratch_everywhere]
        return scratch + [dataclasses.replace(trial, width=w) for w in self.widths for trial in space]

    def suggest(self, trial):
        """The `Trial` an Optuna trial proposes (or was queued with)."""
        width = trial.suggest_categorical("width", list(self.widths))
        name = trial.suggest_categorical("method", self.methods())
        augment = trial.suggest_categorical("augment", list(self.augments))
        if name == "scratch":  # trained on the data as it is: augmentations need a teacher
            return Trial(SCRATCH.method, "none", width)
        method = {"name": name, **{key: trial.suggest_categorical(f"{name}_{key}", list(values))
                                   for key, values in METHODS[name].items()}, **FIXED.get(name, {})}
        return Trial(method, augment, width)

    def queued_for_tune(self, n, seed):
        """`--tune`'s first trials: scratch, the default, then distinct draws from `candidates`."""
        rest = [trial for trial in self.candidates() if trial != DEFAULT]
        return [SCRATCH, DEFAULT, *random.Random(seed).sample(rest, min(min(n, QUEUED) - 2, len(rest)))]

    def queued_for_compress(self):
        """`compress`'s first trials: at each width, largest first, the default and scratch."""
        return [trial for w in sorted(self.widths, reverse=True)
                for trial in (dataclasses.replace(DEFAULT, width=w), dataclasses.replace(SCRATCH, width=w))]


def open_study(url, name, identity, directions, seed, prune=False, queued=()):
    """The study `name` at `url`, created or loaded, with its sampler (TPE after the queued trials) and
    pruner (`median_rule` with `prune`).

    Args:
        url: an SQLAlchemy database URL (`sqlite:///search.db`, `postgresql://...`).
        name: the study's name in that database.
        identity: what the study is made for (teacher and data sha256s,
            student, search settings); a study made for another is refused.
        directions: Optuna's, one per objective.
        seed: the sampler's seed.
        prune: stop trials behind the median (single-objective studies).
        queued: the `Trial`s to run first. The process that creates the
            study queues them; one that loads it waits until they are queued.

    Raises:
        UsageError: the database cannot be opened, or the study was made for something else.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    created = True
    try:
        storage = _storage(url)
        kwargs = {"storage": storage, "study_name": name, "directions": directions,
                  "sampler": optuna.samplers.TPESampler(seed=seed, n_startup_trials=0),
                  "pruner": median_rule() if prune
                  else optuna.pruners.NopPruner()}
        try:  # only one process creates a study: the database's unique name decides which
            study = optuna.create_study(**kwargs)
        except optuna.exceptions.DuplicatedStudyError:
            study, created = optuna.create_study(**kwargs, load_if_exists=True), False
    except Exception as e:  # SQLAlchemy's and the drivers' errors have no common base worth naming
        raise _unopened(url, e) from e
    if created:
        study.set_user_attr("kdcli", identity)
        for trial in queued:
            study.enqueue_trial(trial.params())
        study.set_user_attr("queued", True)
    else:
        _wait_until_queued(study)
        _check_identity(study, identity, url, name)
    return study


def _unopened(url, error):
    """The one-line error of a database that cannot be opened."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UsageError(f"--study {url}: cannot open the study ({reason})")


def _storage(url, attempts=5):
    """Optuna's storage at `url`; tried again when another process is creating the same database's
    tables at the same moment (SQLAlchemy then fails one of the two)."""
    from optuna.storages import RDBStorage

    for attempt in range(attempts):
        try:
            with _quiet():
                return RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=STALE_AFTER,
                                  heartbeat_stale_trial_callback=_retry())
        except Exception as e:
            import sqlalchemy.exc

            if attempt == attempts - 1 or not isinstance(e, (sqlalchemy.exc.IntegrityError,
                                                             sqlalchemy.exc.OperationalError)):
                raise
            time.sleep(0.5 * (attempt + 1))


def median_rule():
    """The median stopping rule as an Optuna pruner: from epoch `GRACE`, once 2 trials have finished, a
    trial whose best validation accuracy so far (each epoch's report) is below the median of the
    finished trials' best over as many epochs stops. A finished trial shorter than that counts with
    its best over its whole run (where Optuna's `MedianPruner` would leave it out)."""
    import optuna
    from optuna.trial import TrialState

    class MedianRule(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            step = trial.last_step  # epochs are reported from 0: step E - 1 is epoch E
            if step is None or step + 1 < GRACE:
                return False
            bests = [max(v for s, v in t.intermediate_values.items() if s <= step)
                     for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if any(s <= step for s in t.intermediate_values)]
            return len(bests) >= 2 and trial.intermediate_values[step] < float(np.median(bests))

    return MedianRule()


def discard_study(url, name):
    """Delete the study `name` at `url` and its trials (`--restart`); nothing when there is none.

    Raises:
        UsageError: the database cannot be opened.
    """
    import optuna

    try:
        with _quiet():
            optuna.delete_study(study_name=name, storage=url)
    except KeyError:  # no such study
        pass
    except Exception as e:
        raise _unopened(url, e) from e


def _wait_until_queued(study, seconds=60):
    """Wait for the process that created `study` to queue its first trials (a moment)."""
    deadline = time.monotonic() + seconds
    while not study.user_attrs.get("queued") and time.monotonic() < deadline:
        time.sleep(0.2)


# How a study's identity keys read in an error.
_NAMES = {"teacher_sha256": "teacher", "data": "data", "student": "student", "widths": "widths",
          "budget": "budget options", "objective": "--objective", "format": "--format"}


def _check_identity(study, identity, url, name):
    recorded = study.user_attrs.get("kdcli") or {}
    differ = sorted(_NAMES.get(key, key) for key in set(recorded) | set(identity)
                    if recorded.get(key) != identity.get(key))
    if differ:
        raise UsageError(f"--study {url}: the study {name!r} was made for another {', '.join(differ)}; "
                         "give another --study, or --restart to discard it")


@contextlib.contextmanager
def _quiet():
    """Without Optuna's notices that heartbeats are experimental and meant for `Study.optimize` (kdcli
    asks and tells trials itself, and records their heartbeats in `_heartbeat`)."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        yield


def _retry():
    """Optuna's retry of a stale trial: the same parameters and user attributes (its folder), queued again."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with _quiet():
        return RetryHeartbeatStaleTrialCallback(max_retry=None)


def _counts(trial):
    """Whether a trial counts toward the study's N: finished (pruned ones too), running, or failed for a
    reason of its own, a diverged loss say (not one cut off and queued again)."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.RUNNING) or \
        (trial.state == TrialState.FAIL and "stopped" in trial.user_attrs)


def _retry_dead_trials(study):
    """Queue again the trials cut off on this host (their process is gone) or silent past `STALE_AFTER`."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = trial.user_attrs.get("owner", "").rpartition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            # kdcli reaches the storage as Optuna's own stale-trial check does.
            try:
                if study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    _retry()(study, study._storage.get_trial(trial._trial_id))
            except optuna.exceptions.UpdateFinishedTrialError:  # another process got there first
                pass
    with _quiet():
        optuna.storages.fail_stale_trials(study)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _heartbeat(study, trial):
    """Record `trial`'s heartbeat while it runs, so that other processes leave it alone."""
    storage, stop = study._storage, threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT):
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception:  # a busy database (SQLite locked): the next beat tries again
                pass

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def search(study, space, n, run_trial, minutes=None, say=None):
    """Run the study's trials until it has `n` (shared with other processes) or `minutes` have passed,
    then wait for the trials other processes are running, so that every process chooses from the same ones.

    Args:
        study: from `open_study`, its first trials queued.
        space: the `Space` that turns Optuna's proposals into `Trial`s.
        n: the study's trial count (None: no count, with `minutes`).
        run_trial: `(optuna_trial, trial, folder_name, prune) -> (values, attrs)`;
            `prune` is a function of the validation accuracies so far that
            says whether to stop (None in multi-objective studies). It
            returns None for a trial whose loss diverged, and `(None, attrs)`
            for one that failed otherwise (`attrs["stopped"]` says how); such
            trials count towards `n` and cannot win.
        minutes: start no trial after this many minutes.
        say: optional function told one line per finished trial.
    """
    from optuna.trial import TrialState

    start, most = time.monotonic(), n or float("inf")
    while True:
        _retry_dead_trials(study)  # before each trial: a trial another machine dropped is taken up
        trials = study.get_trials(deepcopy=False)
        if sum(map(_counts, trials)) >= most or (minutes is not None and time.monotonic() - start > 60 * minutes):
            if not any(t.state == TrialState.RUNNING for t in trials):
                break
            time.sleep(WAIT)  # the others' trials finish (or go stale, and are queued again) before the choice
            continue
        with _quiet():
            ot = study.ask()
        try:  # from here on the trial is owned: a crash, Ctrl-C or SIGTERM queues it again
            ot.set_user_attr("owner", _OWNER)
            study._storage.record_heartbeat(ot._trial_id)
            earlier = [t for t in study.get_trials(deepcopy=False) if t.number < ot.number]
            if sum(map(_counts, earlier)) >= most:  # another process took the last trial meanwhile
                _give_back(study, ot)
                continue
            outcome = _run(study, space, ot, run_trial)
        except BaseException:
            _give_back(study, ot)
            raise
        values, attrs = (None, {"stopped": "diverged"}) if outcome is None else outcome
        for key, value in attrs.items():
            ot.set_user_attr(key, value)
        study.tell(ot, values) if values is not None else study.tell(ot, state=TrialState.FAIL)
        if say:
            say(describe(study.trials[ot.number], n))


def _run(study, space, ot, run_trial):
    """Run Optuna's trial `ot` in its folder (a retried trial's own), or take a finished twin's result."""
    trial = space.suggest(ot)
    folder = ot.user_attrs.get("folder") or f"trial-{ot.number + 1}"
    ot.set_user_attr("folder", folder)
    ot.set_user_attr("label", trial.label())
    repeat = _finished_twin(study, ot, trial)
    if repeat is not None:  # TPE proposed a finished trial's parameters: its result stands
        return repeat
    with _heartbeat(study, ot):
        return run_trial(ot, trial, folder, None if len(study.directions) > 1 else _pruning_rule(ot))


def _give_back(study, ot):
    """End `ot` unfinished, and queue it again (its parameters and folder) if it was a queued trial or
    had started: the next process to start a trial takes it up."""
    from optuna.trial import TrialState

    study.tell(ot, state=TrialState.FAIL)
    frozen = study.trials[ot.number]
    if frozen.params or frozen.system_attrs.get("fixed_params"):
        _retry()(study, frozen)


def _finished_twin(study, ot, trial):
    """`(values, attrs)` of a finished trial with `trial`'s parameters, or None."""
    from optuna.trial import TrialState

    for past in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if past.user_attrs.get("label") == trial.label() and past.number != ot.number:
            attrs = {k: v for k, v in past.user_attrs.items() if k not in ("folder", "owner", "label")}
            return past.values, {**attrs, "repeat_of": past.number + 1}
    return None


def _pruning_rule(ot):
    """The `kdcli.hooks.Pruning` rule of Optuna trial `ot`: report the best validation accuracy so far, ask the pruner."""
    def prune(accuracies):
        ot.report(max(accuracies), len(accuracies) - 1)
        return ot.should_prune()

    return prune


def position(trial):
    """A trial's number as kdcli shows it, from 1: its folder's (`trial-3`), which a retried trial keeps."""
    return int(trial.user_attrs.get("folder", f"trial-{trial.number + 1}").rpartition("-")[2])


def describe(trial, n):
    """`trial 3/8 kd T=2 alpha=0.5: validation accuracy 96.10% (best epoch 14, stopped: patience)`."""
    attrs = trial.user_attrs
    head = f"trial {position(trial)}{f'/{n}' if n else ''} {attrs.get('label', '')}"
    if attrs.get("stopped") == "diverged":
        return f"{head}: the loss diverged (NaN or infinite)"
    if trial.state.name == "FAIL":
        return f"{head}: {attrs['stopped']}"
    return f"{head}: validation accuracy {100 * attrs['val_accuracy']:.2f}% (best epoch {attrs['best_epoch']}, " \
           f"stopped: {attrs['stopped']})"


def records(study):
    """The study's trials as JSON-ready records, in order: those that ran (finished, or failed: diverged...)."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if t.state == TrialState.FAIL and "stopped" in attrs:  # failed: no measures, it cannot win
            keep = ("label", "method", "augment", "width", "scratch", "stopped", "folder")
            out.append({"trial": position(t), **{key: attrs.get(key) for key in keep if key in attrs}})
        elif t.state == TrialState.COMPLETE:
            keep = ("label", "method", "augment", "width", "epochs", "best_epoch", "stopped", "val_accuracy",
                    "val_loss", "seconds", "test_accuracy", "keras_test_accuracy", "params", "size_bytes", "latency_ms",
                    "scratch", "folder")
            out.append({"trial": position(t), **{key: attrs.get(key) for key in keep if key in attrs}})
    return out


def winner(trials):
    """The index in `trials` (from `records`) of the best: the highest validation accuracy, then the lower
    loss, then the first (so scratch, trial 1 of `--tune`, wins a tie)."""
    finished = [i for i, r in enumerate(trials) if r.get("val_accuracy") is not None]
    return max(finished, key=lambda i: (trials[i]["val_accuracy"], -trials[i]["val_loss"], -i))


def trials_table(trials, best):
    """A Rich table of the trials (`records`), the winner (index `best`) marked."""
    from rich.table import Table

    table = Table(title="tuning: trials scored on the validation split")
    for column, justify in (("#", "right"), ("trial", "left"), ("epochs (best)", "right"), ("stopped", "left"),
                            ("val accuracy", "right"), ("val loss", "right"), ("s", "right")):
        table.add_column(column, justify=justify)
    for i, r in enumerate(trials):
        if r.get("val_accuracy") is None:  # diverged
            table.add_row(str(r["trial"]), r["label"], "", r["stopped"], "", "", "")
            continue
        table.add_row(f"{r['trial']}{' *' if i == best else ''}", r["label"], f"{r['epochs']} ({r['best_epoch']})",
                      r["stopped"], f"{100 * r['val_accuracy']:.2f}%", f"{r['val_loss']:.4f}", f"{r['seconds']:.0f}")
    return table
