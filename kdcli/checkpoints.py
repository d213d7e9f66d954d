"""Checkpoints that survive a crash, and resuming from them.

A checkpoint folder holds TensorFlow checkpoints (`tf.train.Checkpoint` of
the model, the optimizer, the epoch counter and the dropout RNG state) and
`state.json`, which names the last complete one, the run's configuration and
the per-epoch history. A checkpoint is taken at the end of an epoch, or
inside one at a step boundary (`ckpt-3-17`: 3 epochs and 17 steps done); the
state of an unfinished epoch (its steps done, the running sums of its loss
and correct answers, its seconds) is then kept in `state.json` as `partial`,
and the training hooks' own state (`kdcli.hooks`) as `hooks`: checkpoints
written before hooks kept theirs have none, and the hooks derive it from the
history.
`state.json` is replaced atomically only after a checkpoint is completely
written, so a process killed at any moment leaves the previous checkpoint as
the last good one.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np

from kdcli.console import plural
from kdcli.errors import KdcliError, UsageError, first_line
from kdcli.faults import fault_point
from kdcli.files import atomic_path

STATE = "state.json"
KEEP = 2


class Checkpoints:
    """The checkpoints of one training run.

    Args:
        directory: the folder (created when the first checkpoint is saved).
        model, optimizer: what training changes; the optimizer must be built.
        config: a JSON-ready description of the run (data fingerprint,
            hyperparameters); `--resume` refuses a folder of another run.
        chief: whether this process owns the folder. In a multi-worker run
            every worker takes part in writing a checkpoint (the variables are
            synchronised), but the others write to a scratch folder they remove.
        worker: this worker's id, naming its scratch folder.
        extra: more variables to save and restore: a method's own (projectors).
    """

    def __init__(self, directory, model, optimizer, config, chief=True, worker=0, extra=()):
        from kdcli._tf import tf

        self._tf = tf
        self.directory = Path(directory)
        self.chief, self.worker = chief, worker
        self.config = json.loads(json.dumps(config))  # as it will read back
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Dropout's RNG state lives in seed generators the model does not checkpoint itself.
        rng = [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]
        more = {"method": list(extra)} if extra else {}
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch, rng=rng, **more)
        self.best = None  # the best epoch's weights (`epochs="auto"`), as restored
        self.partial = None  # an unfinished epoch's state, as restored
        self.hooks = None  # the training hooks' states by name, as restored (None in older checkpoints)
        self._best_file = None
        self._kept = []  # the names of the checkpoints kept, oldest first

    def _state(self):
        path = self.directory / STATE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
            if not (isinstance(state, dict) and isinstance(state.get("checkpoint"), str)
                    and isinstance(state.get("history"), dict) and isinstance(state.get("config"), dict)):
                raise ValueError("missing fields")
            return state
        except (OSError, ValueError) as e:
            raise KdcliError(
                f"{path}: damaged checkpoint state ({e}); pass --restart instead of --resume to discard it and start over"
            ) from e

    def restore(self):
        """Load the last good checkpoint; returns `(epochs_done, history)`, or `(0, None)` when there is none."""
        state = self._state()
        if state is None:
            return 0, None
        if state.get("config") != self.config:
            changed = _differences(self.config, state.get("config", {}))
            if changed == ["monitor"] and "monitor" not in state.get("config", {}):  # judged by accuracy
                raise KdcliError(f"{self.directory}: the checkpoint's run was judged by its validation accuracy: "
                                 "add --monitor accuracy to continue it, or pass --restart instead of --resume")
            raise KdcliError(
                f"{self.directory}: the checkpoint was made by a different run (differs in {', '.join(changed)}); "
                "run the same command to continue it, or pass --restart instead of --resume to discard it"
            )
        prefix = self.directory / state["checkpoint"]
        try:
            self._checkpoint.read(str(prefix)).assert_existing_objects_matched()
        except Exception as e:  # TensorFlow raises OpError, ValueError, IndexError... for a damaged file
            raise KdcliError(
                f"{prefix}: damaged checkpoint ({str(e).strip().splitlines()[0]}); pass --restart instead of --resume "
                "to discard it and start over"
            ) from e
        if state.get("best"):
            try:
                with np.load(self.directory / state["best"], allow_pickle=False) as f:
                    self.best = [f[f"arr_{i}"] for i in range(len(f.files))]
            except (OSError, ValueError, KeyError) as e:
                raise KdcliError(
                    f"{self.directory / state['best']}: damaged checkpoint ({first_line(e)}); pass --restart instead "
                    "of --resume to discard it and start over"
                ) from e
            self._best_file = state["best"]
        self.partial = state.get("partial")
        self.hooks = state.get("hooks")
        self._kept = [state["checkpoint"]]
        return int(self.epoch.numpy()), state["history"]

    def save(self, epochs_done, history, best=None, partial=None, hooks=None):
        """Write the checkpoint after `epochs_done` epochs, then make it the last good one.

        `best`: the weights of a new best epoch (`epochs="auto"`), kept beside the checkpoint
        until a better epoch replaces them; None keeps the last ones saved. `partial`: the
        state of the unfinished epoch that follows, for a checkpoint taken inside it
        (`{"step": steps done, ...}`); None at the end of an epoch. `hooks`: the JSON-ready
        states of the training hooks, by name (`kdcli.hooks.Hook.state_dict`).
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KdcliError(f"{self.directory}: cannot write checkpoints here ({e.strerror or e})") from e
        self.epoch.assign(epochs_done)
        name = f"ckpt-{epochs_done}" + (f"-{partial['step']}" if partial else "")
        if not self.chief:
            scratch = self.directory / f".worker-{self.worker}"
            try:
                self._checkpoint.write(str(scratch / name))
            except self._tf.errors.OpError as e:
                raise KdcliError(f"{scratch}: cannot write checkpoint ({first_line(e)})") from e
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        try:
            self._checkpoint.write(str(self.directory / name))
        except self._tf.errors.OpError as e:
            for written in self.directory.iterdir():  # leave no half-written checkpoint
                if _checkpoint_name(written.name) == name:
                    shutil.rmtree(written) if written.is_dir() else written.unlink()
            if not any(self.directory.iterdir()):
                self.directory.rmdir()
            reason = re.search(r"; ([^;\[]+?)\s*\[Op:", e.message)
            raise KdcliError(
                f"{self.directory}: cannot write checkpoint ({reason.group(1) if reason else e.message.splitlines()[0]})"
            ) from e
        if best is not None:
            self._best_file = f"best-{epochs_done}.npz"
            with atomic_path(self.directory / self._best_file) as tmp, open(tmp, "wb") as f:
                np.savez(f, *best)
        fault_point("checkpoint-written")
        state = {"checkpoint": name, "epochs_done": epochs_done, "config": self.config, "history": history,
                 "best": self._best_file, **({"partial": partial} if partial else {}),
                 **({"hooks": hooks} if hooks is not None else {})}
        with atomic_path(self.directory / STATE) as tmp:
            tmp.write_text(json.dumps(state, indent=2))
        self._kept = [*[kept for kept in self._kept if kept != name], name][-KEEP:]
        for old in self.directory.iterdir():
            stem = _checkpoint_name(old.name)
            if (stem is not None and stem not in self._kept) or (_is_best_file(old.name) and old.name != self._best_file):
                shutil.rmtree(old) if old.is_dir() else old.unlink()



def _differences(a, b, prefix=""):
    """The keys whose values differ between two configs, nested ones as `method.temperature`."""
    changed = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            changed += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            changed.append(f"{prefix}{key}")
    return changed


def _checkpoint_name(name):
    """The checkpoint a file kdcli wrote belongs to (`ckpt-3` for `ckpt-3.index`, `ckpt-3.data-...`,
    TensorFlow's `ckpt-3_temp/`; `ckpt-3-17` for one inside an epoch), or None for any other name."""
    found = re.fullmatch(r"(ckpt-\d+(?:-\d+)?)(\.index|\.data-.*|_temp)", name)
    return found.group(1) if found else None


def _is_best_file(name):
    return re.fullmatch(r"best-\d+\.npz", name) is not None


def check_checkpoints(folders, resume=False, restart=False):
    """Before any work: never lose an unfinished run's checkpoint silently.

    Args:
        folders: the checkpoint folders of the command's training runs (one
            per run: a teacher's, or a student's and its `--baseline` twin's).
        resume: the unfinished runs will be continued.
        restart: their checkpoints will be discarded (by `claim_checkpoints`,
            when training starts).

    Returns:
        The folders that hold an unfinished run's checkpoint.

    Raises:
        UsageError: a checkpoint is there and neither option was given, or both were.
    """
    if resume and restart:
        raise UsageError("give --resume (continue the checkpoint) or --restart (discard it), not both")
    found = [Path(folder) for folder in folders if (Path(folder) / STATE).is_file()]
    if found and not (resume or restart):
        try:
            done = f" ({plural(json.loads((found[0] / STATE).read_text())['epochs_done'], 'epoch')} done)"
        except (OSError, ValueError, KeyError, TypeError):
            done = ""
        raise UsageError(
            f"{found[0]} holds the checkpoint of an unfinished run{done}: pass --resume to continue it, "
            "or --restart to discard it and start over"
        )
    return found


def claim_checkpoints(folder, resume=False, restart=False):
    """When a run starts: check `folder` as `check_checkpoints` does, and with `restart` discard its checkpoint."""
    if check_checkpoints([folder], resume, restart) and restart:
        remove_checkpoints([folder])


def remove_checkpoints(folders, parent=None):
    """Delete the checkpoints of runs, once their results are safely written (or with `--restart`).

    Only the files kdcli writes for a run (`state.json`, `ckpt-N...`, workers'
    scratch folders `.worker-N/`) go; a folder left empty is removed, and so
    is `parent` (the folder holding the runs' folders) when left empty.
    Anything else, another command's checkpoints included, is kept.
    """
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for scratch in sorted(folder.glob(".worker-*")):
            shutil.rmtree(scratch, ignore_errors=True)
        for path in folder.iterdir():
            if path.name == STATE or path.name.startswith(".state.") or _checkpoint_name(path.name) is not None \
                    or _is_best_file(path.name):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
    if parent is not None and Path(parent).is_dir() and not any(Path(parent).iterdir()):
        Path(parent).rmdir()
