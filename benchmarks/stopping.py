"""Stopping rules for a distilled student, compared on whole training curves.

For each data set of `defaults.py` and each seed, the one-shot default's
distilled student (`kdcli distill --teacher T --seed S`: shrink:0.25, kd T=4
α=0.9, `--epochs auto`) is trained as kdcli trains it, on the same 90% of the
training split, from the same initial weights, but for `--epochs` epochs with
no stopping. After every epoch it records, on the 10% validation split: the
accuracy, the cross-entropy, the KL divergence from the teacher's
probabilities at T = 1 and at the method's T = 4, and the kd loss itself;
and the test accuracy (never used by a rule; it scores them).

A stopping rule is then replayed on each curve: it watches one of those
validation signals, stops after `patience` epochs without improvement (or at
the curve's end), and keeps the weights of its best epoch, whose test
accuracy is the rule's result. `--render` prints, for each rule, the mean
gain against the scratch twins of `defaults.py`'s default cells (same data,
seed and initial weights), the worst seed, and the epochs run.

    python benchmarks/stopping.py [--sets ...] [--seeds 0 1 2] [--epochs 300] --teachers DIR
        [--json stopping.json] [--defaults defaults.json] [--markdown stopping.md] [--render]

`--teachers DIR` is the `--workdir` of a `defaults.py` run: its `SET/teacher.keras` and data are used.
"""

import dataclasses
from pathlib import Path

import grid
import numpy as np
from defaults import SETS, make_data

from common import points

HERE = Path(__file__).resolve().parent
SIGNALS = ("val_accuracy", "val_loss", "val_kl", "val_kl_t", "val_kd")
LOWER_IS_BETTER = {"val_loss", "val_kl", "val_kl_t", "val_kd"}


def curves(teacher, data_value, seed, epochs):
    """The per-epoch record of one distilled student, trained for `epochs` epochs without stopping."""
    from kdcli._tf import tf
    from kdcli.console import Display, Reporter
    from kdcli.data import iterate, stratified_split
    from kdcli.options import Budget
    from kdcli.pipeline import _teacher_logits, distill_student
    from kdcli.training import distill

    reporter = Reporter(quiet=True)
    budget = Budget(seed=seed, patience=10**6, max_epochs=epochs)
    _, plan = distill_student(data_value, "unused.keras", teacher=str(teacher), budget=budget, reporter=reporter,
                              dry_run=True)
    data, model = plan.data, plan.model
    logits = _teacher_logits(plan, reporter)
    _, held_out = stratified_split(data.train.y, budget.validation, seed)
    val = data.train.take(held_out)
    val_teacher = np.asarray(logits)[held_out].astype(np.float64)
    method = plan.request.method
    temperature, alpha = method.temperature, method.alpha
    rows = []
    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def predict(split):
        return np.concatenate([infer(x).numpy() for x, _ in iterate(split.batches(256))]).astype(np.float64)

    class Recorder(Display):
        def epoch_end(self, epoch, epochs_, logs, last):
            s, test = predict(val), predict(data.test)
            kl_1, ce = _kl(val_teacher, s, 1.0), _ce(s, val.y)
            kl_t = _kl(val_teacher, s, temperature)
            rows.append({"epoch": epoch, "loss": logs["loss"], "accuracy": logs["accuracy"],
                         "val_accuracy": float(np.mean(s.argmax(1) == val.y)), "val_loss": ce, "val_kl": kl_1,
                         "val_kl_t": kl_t, "val_kd": alpha * temperature**2 * kl_t + (1 - alpha) * ce,
                         "test_accuracy": float(np.mean(test.argmax(1) == data.test.y))})

    distill(model, data, budget, teacher_logits=logits, method=method, progress=Recorder())
    return rows


def _kl(teacher, student, t):
    """Mean KL(teacher ‖ student) of the probabilities at temperature t."""
    from kdcli.hooks import log_softmax

    lt, ls = log_softmax(teacher / t), log_softmax(student / t)
    return float(np.mean((np.exp(lt) * (lt - ls)).sum(axis=1)))


def _ce(student, y):
    from kdcli.hooks import log_softmax

    return float(-np.mean(log_softmax(student)[np.arange(len(y)), y]))


@dataclasses.dataclass(frozen=True)
class Rule:
    """Watch `signal`; stop after `patience` epochs without improvement (an improvement beats the best by
    more than `min_delta`, relative for the losses), never before `min_epochs`; keep the best epoch."""

    signal: str
    patience: int
    min_delta: float = 0.0
    min_epochs: int = 0
    also: str = None  # a second signal: the patience restarts when either improves; `signal` picks the best

    @property
    def name(self):
        extra = f", min_delta {self.min_delta:g}" if self.min_delta else ""
        extra += f", at least {self.min_epochs} epochs" if self.min_epochs else ""
        extra += f", until {self.also} stalls too" if self.also else ""
        return f"{self.signal}, patience {self.patience}{extra}"

    def _better(self, signal, rows, i, j):
        """Whether epoch i's `signal` beats epoch j's (j None: no epoch yet)."""
        if j is None:
            return True
        if signal in LOWER_IS_BETTER:
            return rows[i][signal] < rows[j][signal] * (1 - self.min_delta)
        return (rows[i][signal], -rows[i]["val_loss"]) > (rows[j][signal], -rows[j]["val_loss"])

    def replay(self, rows):
        """`(stop epoch, best epoch)` on a curve (1-based), or None when the curve ends before the rule stops."""
        best, best_also, last_gain = None, None, 0
        for i in range(len(rows)):
            if self._better(self.signal, rows, i, best):
                best, last_gain = i, i
            if self.also and self._better(self.also, rows, i, best_also):
                best_also, last_gain = i, i
            if i - last_gain >= self.patience and i + 1 >= self.min_epochs:
                return i + 1, best + 1
        return None


TODAY = Rule("val_accuracy", 20)
RULES = [TODAY, Rule("val_accuracy", 40), Rule("val_accuracy", 20, min_epochs=60),
         Rule("val_loss", 20), Rule("val_kl", 20), Rule("val_kl", 10), Rule("val_kl_t", 20), Rule("val_kd", 20),
         Rule("val_kl", 20, min_delta=1e-3), Rule("val_kl", 20, min_delta=1e-2), Rule("val_kd", 20, min_delta=1e-3),
         Rule("val_kl_t", 20, min_delta=1e-3), Rule("val_kl_t", 20, min_delta=1e-2), Rule("val_kl_t", 10),
         Rule("val_kl_t", 20, also="val_accuracy"), Rule("val_accuracy", 20, also="val_kl_t")]


def score(results, defaults, seeds, rule):
    """Per set: the per-seed gains of `rule` against the default cells' scratch twins, and its (stop, best)."""
    table = {}
    for name, r in results.items():
        gains, stops = [], []
        for seed in seeds:
            rows = r["runs"]["curve"].get(str(seed))
            scratch = r.get("scratch", {}).get(str(seed)) or \
                defaults.get(name, {}).get("runs", {}).get("default", {}).get(str(seed))
            if rows is None or scratch is None:
                continue
            replay = rule.replay(rows)
            stop, best = replay or (len(rows), max(range(len(rows)), key=lambda i: _key(rule, rows[i])) + 1)
            gains.append(100 * (rows[best - 1]["test_accuracy"] - scratch["scratch"]))
            stops.append((stop, best, replay is None))
        table[name] = (gains, stops)
    return table


def _key(rule, row):
    value = row[rule.signal]
    return -value if rule.signal in LOWER_IS_BETTER else (value, -row["val_loss"])


def markdown(results, defaults, seeds, epochs):
    """The Markdown section: per rule, the mean gain over all sets, the worst set mean and seed, and epochs."""
    lines = [
        "## Stopping rules for the distilled student",
        "",
        f"Written by `benchmarks/stopping.py`: each set's one-shot default student trained {epochs} epochs "
        "without stopping, every stopping rule replayed on its validation curves, the kept epoch's test "
        "accuracy against the scratch twin of `benchmarks/defaults.py` (same seed and initial weights). "
        "Gain in points: the mean over sets of the per-set mean, the worst set's mean, the worst single "
        "seed; epochs: mean epochs run (best kept). `*` marks a curve that ended before the rule stopped. "
        "A replay on recorded curves, not a timing: it counts epochs; the chosen rule's cost is measured with "
        "whole processes in the one-shot section. Each seed's gain is in `benchmarks/stopping.json`; the worst "
        "seed column bounds the spread.",
        "",
        "| rule | mean gain | worst set (mean) | worst seed | epochs run (best) | "
        + " | ".join(results) + " |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in results) + " |",
    ]
    for rule in RULES:
        table = score(results, defaults, seeds, rule)
        per_set = {name: np.mean(g) for name, (g, _) in table.items() if g}
        every = [g for gains, _ in table.values() for g in gains]
        stops = [s for _, ss in table.values() for s in ss]
        if not every:
            continue
        worst = min(per_set, key=per_set.get)
        ended = "*" if any(s[2] for s in stops) else ""
        lines.append(f"| {rule.name} | {points(np.mean(list(per_set.values())))} | {points(per_set[worst])} ({worst}) | "
                     f"{points(min(every))} | {np.mean([s[0] for s in stops]):.0f}{ended} "
                     f"({np.mean([s[1] for s in stops]):.0f}) | "
                     + " | ".join(points(per_set[n]) if n in per_set else "" for n in results) + " |")
    return lines


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, json_default=HERE / "stopping.json",
                         keeps="nothing (the teachers come from --teachers)")
    parser.add_argument("--teachers", help="the --workdir of a defaults.py run")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--defaults", default=str(HERE / "defaults.json"), help="defaults.py's --json")
    args = parser.parse_args()
    cells = grid.Grid(args.json, args.sets, ["curve"], args.seeds, seeds_first=True)
    if not args.render:
        def cell(name, _, seed):
            folder = Path(args.teachers) / name
            rows = curves(folder / "teacher.keras", make_data(name, folder), seed, args.epochs)
            print(f"{name} / seed {seed}: {len(rows)} epochs", flush=True)
            return rows

        cells.run(cell, lambda name: (Path(args.teachers) / name / "teacher.keras").exists())
    import json
    defaults = json.loads(Path(args.defaults).read_text()) if Path(args.defaults).exists() else {}
    for name, entry in cells.results.items():  # each set's twins, kept with its curves (the teachers they shared)
        twins = defaults.get(name, {}).get("runs", {}).get("default", {})
        entry.setdefault("scratch", {}).update({seed: {"scratch": t["scratch"]} for seed, t in twins.items()
                                                if seed not in entry.get("scratch", {})})
    cells.save()
    results = {name: cells.results[name] for name in SETS if cells.results.get(name, {}).get("runs")}
    longest = max((len(rows) for r in results.values() for rows in r["runs"]["curve"].values()), default=args.epochs)
    grid.write_section(markdown(results, defaults, args.seeds, longest), args.markdown)


if __name__ == "__main__":
    main()
