"""Per-epoch checkpoints that survive a crash, and resuming from them.

A checkpoint folder holds TensorFlow checkpoints (`tf.train.Checkpoint` of
the model, the optimizer, the epoch counter and the dropout RNG state) and
`state.json`, which names the last complete one, the run's configuration and
the per-epoch history. `state.json` is replaced atomically only after a
checkpoint is completely written, so a process killed at any moment leaves
the previous checkpoint as the last good one.
"""

import json
import re
import shutil
from pathlib import Path

from kdcli.artifacts import atomic_path
from kdcli.console import plural
from kdcli.errors import KdcliError, UsageError, first_line
from kdcli.faults import fault_point

STATE = "state.json"
KEEP = 2
# The run folders `distill` keeps inside its checkpoint folder (the student, and the --baseline twin).
RUN_FOLDERS = ("student", "baseline")


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
    """

    def __init__(self, directory, model, optimizer, config, chief=True, worker=0):
        from kdcli._tf import tf

        self._tf = tf
        self.directory = Path(directory)
        self.chief, self.worker = chief, worker
        self.config = json.loads(json.dumps(config))  # as it will read back
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Dropout's RNG state lives in seed generators the model does not checkpoint itself.
        rng = [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch, rng=rng)

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
            changed = sorted(k for k in set(self.config) | set(state.get("config", {}))
                             if self.config.get(k) != state.get("config", {}).get(k))
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
        return int(self.epoch.numpy()), state["history"]

    def save(self, epochs_done, history):
        """Write the checkpoint after `epochs_done` epochs, then make it the last good one."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KdcliError(f"{self.directory}: cannot write checkpoints here ({e.strerror or e})") from e
        self.epoch.assign(epochs_done)
        name = f"ckpt-{epochs_done}"
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
            for partial in self.directory.iterdir():  # leave no half-written checkpoint
                if _checkpoint_epoch(partial.name) == epochs_done:
                    shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
            if not any(self.directory.iterdir()):
                self.directory.rmdir()
            reason = re.search(r"; ([^;\[]+?)\s*\[Op:", e.message)
            raise KdcliError(
                f"{self.directory}: cannot write checkpoint ({reason.group(1) if reason else e.message.splitlines()[0]})"
            ) from e
        fault_point("checkpoint-written")
        state = {"checkpoint": name, "epochs_done": epochs_done, "config": self.config, "history": history}
        with atomic_path(self.directory / STATE) as tmp:
            tmp.write_text(json.dumps(state, indent=2))
        for old in self.directory.iterdir():
            done = _checkpoint_epoch(old.name)
            if done is not None and done <= epochs_done - KEEP:
                shutil.rmtree(old) if old.is_dir() else old.unlink()



def _checkpoint_epoch(name):
    """The epoch of a checkpoint file kdcli wrote (`ckpt-3.index`, `ckpt-3.data-...`,
    TensorFlow's `ckpt-3_temp/`), or None for any other name."""
    found = re.fullmatch(r"ckpt-(\d+)(\.index|\.data-.*|_temp)", name)
    return int(found.group(1)) if found else None


def claim_checkpoints(directory, resume=False, restart=False):
    """Before a run that checkpoints in `directory`: never overwrite an earlier run's checkpoint silently.

    An unfinished run's checkpoint (in `directory` or its run folders) is
    continued with `resume`, discarded with `restart`, and otherwise refused
    with a line that names both options.

    Raises:
        UsageError: a checkpoint is there and neither option was given, or both were.
    """
    if resume and restart:
        raise UsageError("give --resume (continue the checkpoint) or --restart (discard it), not both")
    directory = Path(directory)
    states = [folder / STATE for folder in (directory, *(directory / name for name in RUN_FOLDERS))]
    found = [state for state in states if state.is_file()]
    if not found or resume:
        return
    if restart:
        remove_checkpoints(directory)
        return
    try:
        done = f" ({plural(json.loads(found[0].read_text())['epochs_done'], 'epoch')} done)"
    except (OSError, ValueError, KeyError, TypeError):
        done = ""
    raise UsageError(
        f"{directory} holds the checkpoint of an unfinished run{done}: pass --resume to continue it, "
        "or --restart to discard it and start over"
    )


def remove_checkpoints(directory):
    """Delete the checkpoints of a finished run, once its result is safely written.

    Only the files kdcli writes for a run (`state.json`, `ckpt-N...`) go, in
    `directory` and in its run folders (`student/`, `baseline/`, workers'
    `.worker-N/`); folders left empty are removed; anything else is kept.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return
    runs = [directory / name for name in RUN_FOLDERS] + sorted(directory.glob(".worker-*"))
    for folder in [*runs, directory]:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name == STATE or path.name.startswith(".state.") or _checkpoint_epoch(path.name) is not None:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
