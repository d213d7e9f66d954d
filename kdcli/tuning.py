"""`distill --tune N`: a search over methods, their temperature and weights, and the augmentation.

Every trial trains the same student from the same initial weights under
`--epochs auto`, on the same validation split (both come from `--seed`), and
is scored there: its best epoch's validation accuracy, then the lower
validation loss. The test split plays no part. Trial 1 is the student trained
from scratch on the hard labels and trial 2 kdcli's default (`kd`, T = 4,
alpha = 0.9); the others are drawn from `candidates` without repeats, from
`--seed`. Since scratch is a trial, the winner is never worse than scratch on
the validation split.

A trial falling behind stops early (the median stopping rule of Golovin et
al., "Google Vizier", KDD 2017): from its `GRACE`-th epoch, when its best
validation accuracy so far is below the median of the finished trials' best
accuracies over as many epochs.
"""

import dataclasses
import random

import numpy as np

from kdcli.errors import UsageError

# Epochs a trial runs before the median rule may stop it.
GRACE = 10


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of the search: a method config (`{"name": "kd", "temperature": 2.0, ...}`;
    `{"name": "hard"}` for scratch), an `--augment` spec and the student's width, as a
    multiple of the student's own (`--tune-widths`)."""

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


SCRATCH = Trial({"name": "hard"})
DEFAULT = Trial({"name": "kd", "temperature": 4.0, "alpha": 0.9})


def candidates(augments=("none",), hints=False, widths=(1.0,)):
    """The search space beyond scratch: Hinton's KD over T and alpha, DKD over T and beta
    (5 warm-up epochs, since trials may stop early), DIST over T, and with `hints` (a
    live teacher) feature hints; each with every augmentation of `augments` (augmentations
    other than `none` need a live teacher too); and for each width of `widths` other than 1,
    scratch too."""
    space = []
    for augment in augments:
        space += [Trial({"name": "kd", "temperature": t, "alpha": a}, augment)
                  for t in (1.0, 2.0, 4.0, 8.0) for a in (0.5, 0.9, 1.0)]
        space += [Trial({"name": "dkd", "temperature": t, "beta": b, "warmup": 5}, augment)
                  for t in (1.0, 4.0) for b in (1.0, 2.0, 8.0)]
        space += [Trial({"name": "dist", "temperature": t}, augment) for t in (1.0, 4.0)]
        if hints:
            space += [Trial({"name": "hints", "hint_weight": w}, augment) for w in (0.1, 1.0)]
    scratch = [dataclasses.replace(SCRATCH, width=w) for w in widths if w != 1]  # width 1's is trial 1
    return scratch + [dataclasses.replace(trial, width=w) for w in widths for trial in space]


def draw_trials(n, seed, augments=("none",), hints=False, widths=(1.0,)):
    """`n` trials: scratch, kdcli's default, then distinct random draws from `candidates`.

    Raises:
        UsageError: fewer than 2 trials.
    """
    if not isinstance(n, int) or n < 2:
        raise UsageError(f"--tune N needs 2 trials or more (scratch and distillation), got {n}")
    rest = [trial for trial in candidates(augments, hints, widths) if trial != DEFAULT]
    return [SCRATCH, DEFAULT, *random.Random(seed).sample(rest, min(n - 2, len(rest)))]


def median_rule(finished):
    """The pruning rule given the validation curves of the finished trials: a function
    of a running trial's validation accuracies that says whether to stop it."""
    def prune(accuracies):
        epoch = len(accuracies)
        if epoch < GRACE or len(finished) < 2:
            return False
        return max(accuracies) < float(np.median([max(curve[:epoch]) for curve in finished]))

    return prune


def score(history):
    """A trial's score, higher is better: its best epoch's validation accuracy, then minus its loss."""
    best = history["best_epoch"] - 1
    return history["val_accuracy"][best], -history["val_loss"][best]


def search(trials, run_trial, say=None):
    """Run the trials in order and pick the winner.

    Args:
        trials: from `draw_trials`.
        run_trial: `(index, trial, prune) -> history`, training trial `index`
            under `--epochs auto` with the pruning rule `prune`; None for a
            trial whose loss diverged (it cannot win).
        say: optional function told one line per finished trial.

    Returns:
        `(records, winner)`: a JSON-ready record per trial and the index of
        the best one (the first of equals, so scratch wins a tie).
    """
    records, curves = [], []
    for index, trial in enumerate(trials):
        history = run_trial(index, trial, median_rule(list(curves)))
        record = {"trial": index + 1, "label": trial.label(), "method": trial.method, "augment": trial.augment,
                  "width": trial.width}
        if history is None:
            records.append({**record, "epochs": None, "best_epoch": None, "stopped": "diverged", "val_accuracy": None,
                            "val_loss": None, "seconds": None})
            if say:
                say(f"trial {index + 1}/{len(trials)} {trial.label()}: the loss diverged (NaN or infinite)")
            continue
        curves.append(history["val_accuracy"])
        accuracy, minus_loss = score(history)
        records.append({**record, "epochs": len(history["val_accuracy"]), "best_epoch": history["best_epoch"],
                        "stopped": history["stopped"], "val_accuracy": accuracy, "val_loss": -minus_loss,
                        "seconds": sum(history["epoch_seconds"])})
        if say:
            say(f"trial {index + 1}/{len(trials)} {trial.label()}: validation accuracy {100 * accuracy:.2f}% "
                f"(best epoch {history['best_epoch']}, stopped: {history['stopped']})")
    finished = [i for i, r in enumerate(records) if r["val_accuracy"] is not None]
    winner = max(finished, key=lambda i: (records[i]["val_accuracy"], -records[i]["val_loss"], -i))
    return records, winner


def trials_table(records, winner):
    """A Rich table of the trials, the winner marked."""
    from rich.table import Table

    table = Table(title="tuning: trials scored on the validation split")
    for column, justify in (("#", "right"), ("trial", "left"), ("epochs (best)", "right"), ("stopped", "left"),
                            ("val accuracy", "right"), ("val loss", "right"), ("s", "right")):
        table.add_column(column, justify=justify)
    for i, r in enumerate(records):
        if r["val_accuracy"] is None:  # diverged
            table.add_row(str(r["trial"]), r["label"], "", r["stopped"], "", "", "")
            continue
        table.add_row(f"{r['trial']}{' *' if i == winner else ''}", r["label"], f"{r['epochs']} ({r['best_epoch']})",
                      r["stopped"], f"{100 * r['val_accuracy']:.2f}%", f"{r['val_loss']:.4f}", f"{r['seconds']:.0f}")
    return table
