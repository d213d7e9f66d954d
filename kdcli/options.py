"""The options of a training run as a few frozen dataclasses, each validated once.

`Budget` says how a model trains (passes, batch, step size and its schedule,
seed, augmentation); `Runtime` says where and how safely (the `tf.distribute`
strategy, precision, checkpoints). The command line builds them from its
options, the library takes them by keyword, and the artifacts' provenance is
written from them. Each rule lives in one `__post_init__`, with one message
that names the option. This module imports no TensorFlow, so a bad value is
refused at once.

    >>> Budget(epochs=10, lr_schedule="cosine").record()["epochs"]
    10
"""

import dataclasses
import math
from pathlib import Path

from kdcli.augment import parse_augment
from kdcli.errors import UsageError
from kdcli.specs import LR_SCHEDULES, MONITORS, PRECISIONS, STRATEGIES

# `--epochs auto`: hold out 10% of the training split, stop after PATIENCE epochs without a better
# validation score (see `Budget.monitor_for`), or at MAX_EPOCHS.
AUTO_EPOCHS = "auto"
VALIDATION = 0.1
PATIENCE = 20
MAX_EPOCHS = 300
# `--lr-schedule plateau`: the step size is multiplied by PLATEAU_FACTOR each time a quarter of the
# patience passes without a better validation score (see `kdcli.hooks.PlateauSchedule`).
PLATEAU_FACTOR = 0.5


def plateau_patience(patience):
    """Epochs without improvement before `--lr-schedule plateau` lowers the step size: a quarter of
    the patience, rounded up (5 of 20)."""
    return -(-patience // 4)


@dataclasses.dataclass(frozen=True)
class Budget:
    """How a model trains.

    Args:
        epochs: passes over the training split, or `auto`: train on all but
            a validation share of it (`validation`, stratified by class, drawn
            from `seed`) and stop once its score (`monitor`) has not
            improved for `patience` epochs, or after `max_epochs`, keeping
            the weights of the best epoch (see `kdcli.training`).
        batch_size: samples per step on each replica.
        learning_rate: Adam's step size (the peak of the schedule).
        lr_schedule: `constant`; `cosine` (decays to 0 over the run, or over
            `max_epochs` with `epochs="auto"`); or `plateau` (with
            `epochs="auto"`: halved each time a quarter of `patience` passes
            without a better validation score, see `kdcli.hooks.PlateauSchedule`).
        seed: seeds initialisation, shuffling, dropout and augmentation.
        augment: `none`, `shift`, `shift:N` (see `kdcli.augment`), or `auto`
            (`train-teacher`: shift for the built-in cnn).
        patience: with `epochs="auto"`, epochs without improvement before stopping.
        max_epochs: with `epochs="auto"`, the most epochs (a cosine schedule spans them).
        validation: with `epochs="auto"`, the share of the training split held out.
        monitor: with `epochs="auto"`, what the validation split judges (see
            `monitor_for`): `auto` (the default), `accuracy`, `loss` or `kl`.
        refit: with `epochs="auto"`, then retrain from the same initial weights
            on the whole training split for the best epoch's count.
    """

    epochs: int | str = AUTO_EPOCHS
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    augment: str = "none"
    patience: int = PATIENCE
    max_epochs: int = MAX_EPOCHS
    validation: float = VALIDATION
    refit: bool = False
    monitor: str = "auto"

    def __post_init__(self):
        if self.epochs != AUTO_EPOCHS and not (_whole(self.epochs) and self.epochs >= 1):
            raise UsageError(f"--epochs must be auto or a whole number of at least 1, got {self.epochs!r}")
        if not (_whole(self.patience) and self.patience >= 1):
            raise UsageError(f"--patience must be a whole number of at least 1, got {self.patience!r}")
        if not (_whole(self.max_epochs) and self.max_epochs >= 1):
            raise UsageError(f"--max-epochs must be a whole number of at least 1, got {self.max_epochs!r}")
        if not (is_finite_number(self.validation) and 0 < self.validation < 1):
            raise UsageError(f"the validation share must be between 0 and 1, got {self.validation!r}")
        if self.refit and not self.auto:
            raise UsageError("--refit retrains for the epochs that --epochs auto finds: give --epochs auto")
        if self.lr_schedule == "plateau" and not self.auto:
            raise UsageError("--lr-schedule plateau lowers the step size when the validation score stalls: "
                             "give --epochs auto")
        if self.lr_schedule == "plateau" and self.refit:
            raise UsageError("--refit retrains with a schedule fixed in advance: give --lr-schedule constant or "
                             "cosine with it")
        if not (_whole(self.batch_size) and self.batch_size >= 1):
            raise UsageError(f"--batch-size must be a whole number of at least 1, got {self.batch_size!r}")
        if not (is_finite_number(self.learning_rate) and self.learning_rate > 0):
            raise UsageError(f"--learning-rate must be a positive number, got {self.learning_rate!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not (_whole(self.seed) and 0 <= self.seed < 2**32):
            raise UsageError(f"--seed must be a whole number from 0 to 2**32 - 1, got {self.seed!r}")
        parse_augment(self.augment, allow_auto=True)
        if self.monitor not in MONITORS:
            raise UsageError(f"--monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")

    @property
    def auto(self):
        """Whether the run stops on the validation split (`epochs="auto"`)."""
        return self.epochs == AUTO_EPOCHS

    def monitor_for(self, distilled):
        """What a run's validation split judges: `kl` (the KL divergence from the teacher's softened
        probabilities, lower is better) for a run that learns from a teacher under `auto` or `kl`, where
        a hard-label run (a teacher, a scratch twin) keeps `accuracy` (higher is better, ties broken by
        the lower cross-entropy); `accuracy` or `loss` (the cross-entropy on the labels) as given."""
        if self.monitor in ("auto", "kl"):
            return "kl" if distilled else "accuracy"
        return self.monitor

    def record(self):
        """The budget for provenance (without the stopping rule's settings when it has none)."""
        record = dataclasses.asdict(self)
        if not self.auto:
            for key in ("patience", "max_epochs", "validation", "refit", "monitor"):
                del record[key]
        return record


def refit_folder(checkpoint_dir):
    """Where the `refit` of a run checkpointing in `checkpoint_dir` keeps its own checkpoints."""
    return Path(f"{checkpoint_dir}-refit")


def parse_epochs(value):
    """An `--epochs` value as the command line gives it: `auto`, or a whole number."""
    if value is None or value == AUTO_EPOCHS:
        return AUTO_EPOCHS
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"--epochs must be auto or a whole number of at least 1, got {value!r}") from None


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value):
    """A finite int or float (not a bool): what a numeric option must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# train-teacher's budget: a teacher is only worth distilling from if it knows more than its student
# can learn alone (see the README: 40 epochs, cosine and shifts took the MNIST-split cnn from 98.30%
# to 99.65%; `--epochs auto` made worse teachers, whatever its schedule).
TEACHER_BUDGET = Budget(epochs=40, lr_schedule="cosine", augment="auto")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where and how safely a run goes.

    Args:
        strategy: `default`, `mirrored`, `multi-worker` or `auto` (see
            `kdcli.distribute`); `Budget.batch_size` is then per replica.
        mixed_precision: `off`, or `bf16` (bfloat16 computation, float32
            weights and logits).
        checkpoint_dir: where the checkpoints go; None: beside the output
            (`runs/student.keras` -> `runs/student.ckpt/`).
        resume: continue from the last good checkpoint there.
        restart: discard a checkpoint found there and start over (without
            `resume` or `restart`, a checkpoint found there is refused; both
            at once are refused by `kdcli.checkpoints.check_checkpoints`).
        checkpoint_every: seconds between two checkpoints, taken at the next
            step or epoch boundary (0: at the end of every epoch).
        log_dir: a folder for training logs (TensorBoard and CSV), or None.
        steps_per_call: training steps one compiled call runs; None: chosen
            as the run goes (`kdcli.inference.StepsPerCall`).
        xla: compile the training step with XLA (`jit_compile`); one replica
            and numeric inputs only (`kdcli.training.train`).
    """

    strategy: str = "default"
    mixed_precision: str = "off"
    checkpoint_dir: Path | None = None
    resume: bool = False
    restart: bool = False
    checkpoint_every: float = 60.0
    log_dir: Path | None = None
    steps_per_call: int | None = None
    xla: bool = False

    def __post_init__(self):
        if self.steps_per_call is not None and not (isinstance(self.steps_per_call, int) and self.steps_per_call >= 1):
            raise UsageError(f"--steps-per-call must be 1 or more, got {self.steps_per_call}")
        if not (is_finite_number(self.checkpoint_every) and self.checkpoint_every >= 0):
            raise UsageError(f"--checkpoint-every must be a number of seconds of 0 or more, got {self.checkpoint_every}")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.mixed_precision not in PRECISIONS:
            raise UsageError(f"--mixed-precision must be one of {', '.join(PRECISIONS)}, got {self.mixed_precision!r}")

    def checkpoints_for(self, out):
        """The checkpoint folder of a run writing `out`."""
        if self.checkpoint_dir is not None:
            return Path(self.checkpoint_dir)
        out = Path(out)
        return out.with_name(f"{out.stem}.ckpt")

    def log_for(self, run_folder=None):
        """The log folder of a run: `log_dir` itself, or its subfolder named like the run's
        checkpoint folder (`student`, `baseline`, `trial-3`...); None without `log_dir`."""
        if self.log_dir is None:
            return None
        return Path(self.log_dir) / Path(run_folder).name if run_folder is not None else Path(self.log_dir)

    def record(self):
        """What provenance keeps of the runtime: how the run computed (not where it saved)."""
        return {"strategy": self.strategy, "mixed_precision": self.mixed_precision, **({"xla": True} if self.xla else {})}
