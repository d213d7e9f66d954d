"""`kdcli compress`: the smallest student that stays within `--max-drop` points of its teacher.

The search (`kdcli.tuning`, on Optuna) runs over the student's size (widths of
`shrink:F` of the teacher, or of a built-in student) and the distillation
settings `--tune` searches, scratch among them. It is a two-objective study:
validation accuracy up, the objective (`params`, `size` or `latency`) down.
Every candidate trains under the usual budget rule (`--epochs auto`) and is
measured as the artifact of `--format`: with `int8`, accuracy, size and
latency are the exported `.tflite` file's.

The target: a candidate's validation accuracy at least the teacher's test
accuracy less `--max-drop` points. The teacher is measured on the test split
because it may have trained on the validation rows (a kdcli teacher trains on
the whole training split); the candidates, which never did, are compared and
chosen on the validation split alone. The chosen one is the smallest by the
objective that meets the target (the more accurate of equals).

The study lives in `--study URL`, by default `OUT.study.db` beside the output,
and the candidates in `OUT.trials/`, each with its checkpoints, student and
export: run the same command again and the search continues; give the same
URL to several processes or machines and they share the trials.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from kdcli.console import Reporter
from kdcli.errors import KdcliError, UsageError
from kdcli.options import Runtime
from kdcli.pipeline import (
    TRIAL_STUDENT,
    Outcome,
    TrialRunner,
    discard_trials,
    resolve_data,
    student_record,
    study_identity,
    study_url,
    teacher_logits_for,
    teacher_record_metrics,
)
from kdcli.plan import check_distill_request, plan_distill, search_space
from kdcli.specs import parse_spec

SCHEMA = "kdcli.compress/1"
OBJECTIVES = {"params": "params", "size": "size_bytes", "latency": "latency_ms"}
FORMATS = ("keras", "float16", "int8")
# The default widths: factors of the teacher's (shrink:F), or multiples of a built-in student's width.
SHRINK_WIDTHS = (0.5, 0.25, 0.125, 0.0625, 0.03125)
BUILTIN_WIDTHS = (2.0, 1.0, 0.5, 0.25, 0.125)
DEFAULT_TRIALS = 16
SERVED = "served.keras"
STUDY_NAME = "compress"


def check_compress(max_drop, objective, format, trials, minutes, widths):
    """Refuse a bad `compress` option, before any work.

    Raises:
        UsageError: the first option that is wrong.
    """
    if max_drop is None or not np.isfinite(max_drop) or max_drop < 0:
        raise UsageError(f"--max-drop is in accuracy points, 0 or more; got {max_drop}")
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if trials is not None and trials < 2:
        raise UsageError(f"--trials needs 2 or more (a distilled and a scratch student), got {trials}")
    if minutes is not None and not minutes > 0:
        raise UsageError(f"--minutes must be above 0, got {minutes}")
    if widths is not None and (not widths or any(not w > 0 for w in widths)):
        raise UsageError("--widths needs positive numbers")


def compress(teacher, data=None, out=None, *, max_drop=1.0, objective="params", format="keras", student=None,
             widths=None, trials=None, minutes=None, study=None, budget=None, runtime=None, data_options=None,
             latency_runs=100, unsafe=False, reporter=None):
    """Search the smallest student within `max_drop` points of `teacher`, and write it to `out`.

    Args:
        teacher: the teacher `.keras` file (any model kdcli reads).
        data: a `Dataset` or a `--data` value; by default the teacher's.
        out: the student `.keras` file to write (by default `T.student.keras`
            beside the teacher), with its export beside it when `format` is
            not `keras` (`OUT-int8.tflite`).
        max_drop: the accuracy points the student may lose to the teacher.
        objective: what "smallest" means: `params`, `size` (the artifact's
            bytes) or `latency` (batch-1, as `evaluate` measures it).
        format: the artifact that must meet the target: `keras`, `float16`
            or `int8` (a TFLite file).
        student: `shrink:1` (the teacher's architecture, narrowed; the
            default), `mlp` or `cnn`; `widths` scale it.
        widths: the widths searched, as factors of the student's (default
            `SHRINK_WIDTHS` for shrink, `BUILTIN_WIDTHS` for the others).
        trials: the study's trial count (default 16 without `minutes`).
        minutes: start no trial after this many minutes.
        study: the Optuna database URL (default: `OUT.study.db`, SQLite).
        budget, runtime, data_options, unsafe, reporter: as in `distill_student`;
            `runtime.restart` discards the study's trials and starts over.
        latency_runs: single-sample calls timed per candidate.

    Returns:
        The result (schema `kdcli.compress/1`): `teacher`, `target`,
        `objective`, `format`, `study`, `trials`, `frontier` (one row per
        width), `chosen` (a trial, or None) and `met`; `out` when written.
    """
    reporter = reporter or Reporter(quiet=True)
    check_compress(max_drop, objective, format, trials, minutes, widths)
    n = trials or (DEFAULT_TRIALS if minutes is None else None)  # None: as many as --minutes allow
    student = student or "shrink:1"
    if parse_spec(student, "student")[0] not in ("shrink", "builtin"):
        raise UsageError(f"compress searches the widths of shrink:F or a built-in student, not --student {student}")
    if widths is None:
        widths = SHRINK_WIDTHS if student.startswith("shrink:") else BUILTIN_WIDTHS
    # The search always continues where it stopped (`--restart` discards it instead).
    runtime = runtime or Runtime()
    runtime = dataclasses.replace(runtime, resume=runtime.resume or not runtime.restart)
    request = check_distill_request(
        out, soft_labels=None, teacher=teacher, student=student, width=None, depth=None, method=None, budget=budget,
        runtime=runtime, online=False, baseline=False, seeds=1, tune=n or DEFAULT_TRIALS, tune_json=None,
        tune_widths=tuple(widths),
        student_output="auto", unsafe=unsafe, reporter=reporter, study=study)
    out = request.out
    folder = Path(runtime.checkpoint_dir) if runtime.checkpoint_dir else out.with_name(f"{out.stem}.trials")
    request = dataclasses.replace(request, runtime=dataclasses.replace(runtime, checkpoint_dir=folder),
                                  study=study_url(request, out.with_name(f"{out.stem}.study.db")))
    if runtime.restart:
        _discard(request)
    data = resolve_data(data, data_options, *request.recorded_in)
    plan = plan_distill(request, data, reporter)
    plan.space = search_space(request, data, plan.source, scratch_everywhere=True)
    return _search(plan, request, max_drop, objective, format, n, minutes, latency_runs, reporter)


def _discard(request):
    """`--restart`: delete the study and its trials' folders."""
    from kdcli.tuning import discard_study

    discard_study(request.study, STUDY_NAME)
    discard_trials(request.checkpoint_dir)


def _search(plan, request, max_drop, objective, format, n, minutes, latency_runs, reporter):
    from kdcli.tuning import open_study, position, records, search

    identity = study_identity(plan, objective=objective, format=format)
    study = open_study(request.study, STUDY_NAME, identity, ["maximize", "minimize"], plan.budget.seed,
                       queued=plan.space.queued_for_compress())
    request.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    held = held_out(plan.data, plan.budget)
    teacher = measure_teacher(plan, held, latency_runs)
    measure = Measure(plan, held, objective, format, latency_runs)
    logits = teacher_logits_for(plan, reporter)
    search(study, plan.space, n, TrialRunner(plan, logits, reporter, n, score=measure), minutes, reporter.say)
    result = frontier(records(study), teacher, max_drop, objective, format, request.study)
    result["pareto"] = sorted(position(t) for t in study.best_trials)  # no trial both more accurate and smaller
    if result["met"]:
        result["out"] = _write(plan, result, reporter)
    return result


def held_out(data, budget):
    """The validation rows every candidate is scored on (those `--epochs auto` holds out with `budget.seed`)."""
    from kdcli.data import stratified_split

    _, held = stratified_split(data.train.y, budget.validation, budget.seed)
    return data.train.take(held)


def _accuracy(runner, split):
    return float(np.mean(np.argmax(runner.predict(split, 256), axis=-1) == split.y))


def measure_teacher(plan, held, latency_runs):
    """The teacher's row: its test accuracy (the target's reference), validation accuracy, size and latency."""
    from kdcli.evaluation import measure_latency, open_model
    from kdcli.files import artifact_size

    path = plan.source.paths[0]
    runner = open_model(path, plan.request.unsafe, plan.data)
    return {"path": str(path), "test_accuracy": _accuracy(runner, plan.data.test),
            "val_accuracy": _accuracy(runner, held), "params": runner.params, "size_bytes": artifact_size(path),
            "latency_ms": measure_latency(runner.call, plan.data.test.read(np.arange(1)), runs=latency_runs)[0]}


class Measure:
    """A candidate's measures, as `TrialRunner`'s `score`: the student is saved with its head (and
    exported in `format`), then that artifact's validation and test accuracy, parameters, size and
    latency go into the trial's attributes. Returns the study's values: validation accuracy, objective;
    None where the artifact could not be made or read (`attrs["stopped"]` says why)."""

    def __init__(self, plan, held, objective, format, latency_runs):
        self.plan, self.held, self.objective, self.format, self.runs = plan, held, objective, format, latency_runs

    def __call__(self, run, model, attrs):
        from kdcli.evaluation import measure_latency, open_model
        from kdcli.export import export_model
        from kdcli.files import artifact_size
        from kdcli.inference import accuracy
        from kdcli.model_files import save_model
        from kdcli.models import count_params, with_head

        plan = self.plan
        with plan.strategy.scope():
            served = with_head(model, plan.output)
        artifact = run.folder / SERVED
        save_model(served, artifact)
        try:
            if self.format != "keras":
                # the artifact's own accuracy is measured below: no agreement is required of it
                artifact = export_model(artifact, run.folder / f"student-{self.format}.tflite", "tflite",
                                        self.format, plan.data, min_agreement=0)
            runner = open_model(artifact, plan.request.unsafe, plan.data)
        except KdcliError as e:  # a student this format cannot hold: a failed trial, the search goes on
            attrs["stopped"] = f"the {self.format} artifact failed: {e}"
            return None
        # The artifact's accuracies decide; the .keras model's test accuracy is what its provenance reports.
        attrs.update(val_accuracy=_accuracy(runner, self.held), test_accuracy=_accuracy(runner, plan.data.test),
                     keras_test_accuracy=accuracy(model, plan.data.test),
                     params=count_params(served)[0], size_bytes=artifact_size(artifact),
                     latency_ms=measure_latency(runner.call, plan.data.test.read(np.arange(1)), runs=self.runs)[0])
        return [attrs["val_accuracy"], float(attrs[OBJECTIVES[self.objective]])]


def frontier(trials, teacher, max_drop, objective, format, study):
    """The search's result from its trials (`kdcli.tuning.records`): the target, the chosen trial (the
    smallest by `objective` whose validation accuracy meets the target; else the best found), and the
    frontier, one row per width from the widest: its best distilled trial (the chosen one, where it is
    distilled and of that width) and its scratch trial; and the
    scratch trial at the chosen one's width, its twin."""
    key = OBJECTIVES[objective]
    bar = teacher["test_accuracy"] - max_drop / 100
    finished = [t for t in trials if t.get("val_accuracy") is not None]
    meets = [t for t in finished if t["val_accuracy"] >= bar]
    if meets:
        chosen = min(meets, key=lambda t: (t[key], -t["val_accuracy"], t["trial"]))
    else:
        chosen = max(finished, key=lambda t: (t["val_accuracy"], -t[key], -t["trial"])) if finished else None
    rows = []
    for width in sorted({t["width"] for t in finished}, reverse=True):
        distilled = [t for t in finished if t["width"] == width and not t["scratch"]]
        scratch = [t for t in finished if t["width"] == width and t["scratch"]]
        best = chosen if chosen in distilled else \
            max(distilled, key=lambda t: (t["val_accuracy"], -t["trial"])) if distilled else None
        rows.append({"width": width, "distilled": best, "scratch": scratch[0] if scratch else None})
    twin = next((row["scratch"] for row in rows if chosen and row["width"] == chosen["width"]), None)
    return {"schema": SCHEMA, "teacher": teacher, "objective": objective, "objective_key": key, "format": format,
            "study": study,
            "target": {"max_drop_points": max_drop, "teacher_test_accuracy": teacher["test_accuracy"],
                       "min_val_accuracy": bar},
            "met": bool(meets), "chosen": chosen, "scratch_twin": twin,
            "drop_points": None if chosen is None else 100 * (teacher["test_accuracy"] - chosen["val_accuracy"]),
            "frontier": rows, "trials": trials}


def _write(plan, result, reporter):
    """Write the chosen student to the request's output, with its provenance (and its export)."""
    from kdcli.export import default_export_path, export_model
    from kdcli.model_files import load_model, save_model
    from kdcli.tuning import Trial

    request, chosen = plan.request, result["chosen"]
    folder = request.checkpoint_dir / chosen["folder"]
    if not (folder / SERVED).is_file():
        raise KdcliError(f"{folder}: trial {chosen['trial']}, the one chosen, trained elsewhere and its student is "
                         "not here; give the processes sharing a study one --checkpoint-dir they all reach")
    with plan.strategy.scope():
        served = load_model(folder / SERVED)
        model = load_model(folder / TRIAL_STUDENT)
    history = json.loads((folder / "history.json").read_text())
    trial = Trial(chosen["method"], chosen["augment"], chosen["width"])
    twin = None if trial.scratch else result["scratch_twin"]
    keras = chosen["keras_test_accuracy"]
    metrics = {"test_accuracy": keras, "epochs": chosen["epochs"],
               "best_epoch": chosen["best_epoch"], "stopped": chosen["stopped"],
               "train_seconds": history["seconds"],
               **({"baseline_test_accuracy": twin["keras_test_accuracy"],
                   "distillation_gain_points": 100 * (keras - twin["keras_test_accuracy"])} if twin else {}),
               **teacher_record_metrics(plan),
               "compress": {"max_drop_points": result["target"]["max_drop_points"], "objective": result["objective"],
                            "format": result["format"], "study": result["study"], "trial": chosen["trial"],
                            "width": chosen["width"], "val_accuracy": chosen["val_accuracy"],
                            "test_accuracy": chosen["test_accuracy"],
                            "drop_points": result["drop_points"], OBJECTIVES[result["objective"]]:
                                chosen[OBJECTIVES[result["objective"]]]}}
    spec, width = plan.student_at(trial.width)  # the chosen student as distill would name it
    chosen_plan = dataclasses.replace(plan, student=spec,
                                      request=dataclasses.replace(request, width=width, tune=0))
    record = student_record(chosen_plan, Outcome(model, metrics, trial.make_method(), trial.augment))
    if trial.scratch:  # the smallest within the target learned from the labels alone
        record["hyperparameters"]["mode"] = "hard-labels"
    save_model(served, request.out, record)
    written = [str(request.out)]
    if result["format"] != "keras":
        export = default_export_path(request.out, "tflite", result["format"])
        export_model(request.out, export, "tflite", result["format"], plan.data, min_agreement=0)  # as measured
        written.append(str(export))
    reporter.say(f"compress: wrote {', '.join(written)}")
    return written
