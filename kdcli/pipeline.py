"""The four steps of the pipeline as functions: what each subcommand does.

Each step reads files, writes one artifact atomically with its provenance,
and returns what it wrote. A notebook can call them exactly as the command
line does:

    from kdcli import pipeline
    pipeline.train_teacher("digits", "runs/teacher.keras")
    pipeline.make_soft_labels("runs/teacher.keras", "digits", "runs/soft.h5")
    pipeline.distill_student("digits", "runs/student.keras", soft_labels="runs/soft.h5")
    report = pipeline.evaluate(["runs/teacher.keras", "runs/student.keras"], "digits")

Wherever a step takes a teacher, a list of teachers is an ensemble (see
`kdcli.ensembles`): `make_soft_labels(["a.keras", "b.keras"], ...)`.

`train_teacher`, `make_soft_labels` and `distill_student` take `dry_run=True`:
they then check everything a run would, resolve what it would do, and return
`(None, plan)` without training, running a teacher over the data or writing
anything; `str(plan)` (or `plan.lines()`) says what would run and be written
(see `kdcli.plan`).
"""

import dataclasses
import json
from pathlib import Path

from kdcli.artifacts import read_provenance
from kdcli.augment import resolve_augment, teacher_augment
from kdcli.checkpoints import check_checkpoints, remove_checkpoints
from kdcli.console import Reporter, plural
from kdcli.data import Dataset, is_named, load_data, rebase_data_record
from kdcli.distribute import is_chief, make_strategy
from kdcli.errors import KdcliError, UsageError
from kdcli.files import (
    artifact_size,
    check_output,
    locate_recorded,
    provenance,
    rebase_recorded,
    relative_to_artifact,
    sha256_file,
)
from kdcli.model_files import model_format, save_model
from kdcli.options import TEACHER_BUDGET, Runtime, refit_folder
from kdcli.plan import (  # noqa: F401 - default_student_path: still importable from here
    DISTILLED,
    LOGITS,
    SOFT_LABELS,
    SoftLabelsPlan,
    TeacherPlan,
    check_distill_request,
    default_student_path,
    load_teachers,
    plan_distill,
    require_architecture,
    require_file,
    teacher_paths,
    teachers_record,
)
from kdcli.report import format_size, gain_phrase, loss_advice
from kdcli.specs import MIN_INT8_AGREEMENT, parse_spec, resolve_spec


def resolve_data(data, options=None, *recorded_in):
    """A `Dataset` from a `--data` value, or from the provenance of an artifact.

    Args:
        data: a `Dataset`, a `--data` value, or None to take the data named in
            the provenance of the first of `recorded_in` that records one.
        options: `load_data` keywords (`val_split`, `image_size`,
            `color_mode`, `num_classes`); those left out or None are taken from
            the provenance when it names the same data, else from the defaults.
        *recorded_in: artifact paths to look in.
    """
    if isinstance(data, Dataset):
        return data
    recorded = source = None
    for path in recorded_in:
        record = read_provenance(path)
        if record and record.get("data"):
            recorded, source = record["data"], path
            break
    located = None
    if recorded is not None:
        spec = recorded["spec"]
        located = spec if is_named(spec) else locate_recorded(spec, source)
    if data is None:
        if recorded is None:
            raise UsageError("no --data given and none is recorded in the input files; pass --data")
        if located is None:
            raise KdcliError(
                f"{spec}: no such data (the path recorded in the provenance of {source}, looked for beside it "
                "and in the current folder); pass --data"
            )
        data = located
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if located is not None and _same_data(str(data), located):
        options = {**recorded.get("options", {}), **options}
    return load_data(data, **{k: v for k, v in options.items() if v is not None})


def _same_data(a, b):
    if is_named(a) or is_named(b):
        return a == b
    return Path(a).resolve() == Path(b).resolve()



def load_teacher(path, data, unsafe=False):
    """A teacher's logits model, checked against the data (whose classes it sets), and
    what its own head outputs (`logits`, `softmax` or `sigmoid`: see `kdcli.models.head_kind`)."""
    models, heads = load_teachers([path], data, unsafe)
    return models[0], heads[0]




def _epochs_run(metrics, prefix=""):
    """`12 epochs`, or `57 epochs (best 37 by validation kl, stopped: patience)` for a run that stopped on its
    validation split."""
    done = plural(metrics[f"{prefix}epochs"], "epoch")
    if metrics.get(f"{prefix}refit"):
        return (f"{done} on the whole training split, the best of {metrics[f'{prefix}search_epochs']} "
                f"on a validation split (stopped: {metrics[f'{prefix}stopped']})")
    if f"{prefix}best_epoch" in metrics:
        monitor = metrics.get(f"{prefix}monitor", "accuracy")
        done += f" (best {metrics[f'{prefix}best_epoch']} by validation {monitor}, stopped: {metrics[f'{prefix}stopped']})"
    return done


def _metrics(model, data, history, prefix=""):
    """What a training run reached, for provenance: test accuracy, epochs, and with `--epochs auto`
    the best epoch, why the run stopped, the validation curve (and the step size's halvings).
    `prefix` names a `--baseline` run's."""
    from kdcli.inference import accuracy

    metrics = {"test_accuracy": accuracy(model, data.test), "train_accuracy": history["accuracy"][-1],
               "train_seconds": history["seconds"], "epochs": len(history["loss"])}
    if "best_epoch" in history:
        metrics.update(monitor=history.get("monitor", "accuracy"), best_epoch=history["best_epoch"],
                       stopped=history["stopped"], validation_accuracy=history["val_accuracy"],
                       validation_loss=history["val_loss"])
        if "val_kl" in history:
            metrics["validation_kl"] = history["val_kl"]
    if "lr_decays" in history:  # --lr-schedule plateau: the epochs after which the step size was halved
        metrics["lr_decays"] = history["lr_decays"]
    if history.get("refit"):  # then the epochs above are the refit's, on the whole training split
        metrics.update(refit=True, search_epochs=history["search_epochs"])
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def train_teacher(
    data, out, arch="auto", *, model=None, width=None, depth=None, budget=None, runtime=None, data_options=None,
    unsafe=False, reporter=None, dry_run=False,
):
    """Train a teacher on hard labels and save it to `out` (a `.keras` file).

    Args:
        data: a `Dataset` or a `--data` value.
        out: the `.keras` file to write.
        arch: a built-in architecture (`cnn`, `mlp`, or `auto`: a cnn for
            image-shaped samples and signals, an mlp otherwise, see `kdcli.specs.auto_arch`)
            or a `.keras` file holding an untrained architecture of the user's.
        model: a `.keras` file holding an untrained architecture of the user's,
            instead of `arch` (`train-teacher --model`).
        width, depth: knobs of the built-in architectures.
        budget: a `kdcli.options.Budget`; by default train-teacher's: 40 epochs,
            a cosine schedule and `augment="auto"` (`shift` for the built-in
            cnn on images it can shift, else `none`).
        runtime: a `kdcli.options.Runtime`: strategy, precision, checkpoints
            (removed once `out` is written). In a multi-worker run only the
            chief writes `out` and the checkpoints.
        data_options: `load_data` keywords (`val_split`, `image_size`, `color_mode`, `num_classes`).
        unsafe: allow models that hold code (`Lambda` layers).
        reporter: a `kdcli.console.Reporter` for progress and talk.
        dry_run: check everything and build the teacher, but train and
            write nothing.

    Returns:
        `(path, metrics)`, metrics holding `test_accuracy` and `train_seconds`.
        With `dry_run`, `(None, plan)`: a `kdcli.plan.TeacherPlan`, whose
        `lines()` (or `str(plan)`) say what would run and be written.
    """
    budget = budget or TEACHER_BUDGET
    runtime = runtime or Runtime()
    reporter = reporter or Reporter(quiet=True)
    if budget.monitor == "kl":
        raise UsageError("--monitor kl measures a student against its teacher; a teacher learns the labels: "
                         "give accuracy or loss")
    if model is not None:
        arch = str(model)
    if parse_spec(arch, "teacher", "--model" if model is not None else "--arch")[0] == "file":
        require_architecture(arch)
    check_output(out, ".keras")
    checkpoint_dir = runtime.checkpoints_for(out)
    run_folders = [checkpoint_dir, *([refit_folder(checkpoint_dir)] if budget.refit else [])]
    check_checkpoints(run_folders, runtime.resume, runtime.restart)
    data = resolve_data(data, data_options)  # before TensorFlow: a data error answers at once
    from kdcli.models import build_from_spec  # TensorFlow: once the options, files and data are known to be right
    from kdcli.training import train

    arch = resolve_spec(arch, data)
    augment = resolve_augment(teacher_augment(budget.augment, arch, data.input_shape), data.input_shape,
                              data.input_kind)
    budget = dataclasses.replace(budget, augment=augment)
    strategy = make_strategy(runtime.strategy)
    with strategy.scope():
        model = build_from_spec(arch, data, "teacher", width=width, depth=depth, seed=budget.seed, unsafe=unsafe,
                                mixed_precision=runtime.mixed_precision)
    if dry_run:
        return None, TeacherPlan(data, arch, width, depth, model, budget, runtime, strategy, Path(out))
    history = train(
        model, data, budget, progress=reporter.progress("training teacher"), checkpoint_dir=checkpoint_dir,
        resume=runtime.resume, restart=runtime.restart, run_config={"arch": arch}, strategy=strategy,
        checkpoint_every=runtime.checkpoint_every, log_dir=runtime.log_for(), steps_per_call=runtime.steps_per_call,
        xla=runtime.xla,
    )
    metrics = _metrics(model, data, history)
    hyper = {"arch": arch, "width": width, "depth": depth, **budget.record(), **runtime.record(),
             "replicas": strategy.num_replicas_in_sync}
    if not is_chief(strategy):
        return Path(out), metrics
    save_model(model, out, provenance("teacher", data=data.describe(out), hyperparameters=hyper, metrics=metrics))
    remove_checkpoints(run_folders)
    reporter.say(
        f"teacher: test accuracy {100 * metrics['test_accuracy']:.1f}% after {_epochs_run(metrics)} "
        f"({history['seconds']:.1f} s)"
    )
    return Path(out), metrics


def make_soft_labels(teacher, data, out, *, batch_size=256, dtype="float32", data_options=None, unsafe=False, reporter=None,
                     top_k=None, shard=None, dry_run=False):
    """Write the teacher's logits for the training split of `data` to `out` (`.h5`).

    A teacher that ends in a softmax gives its pre-softmax logits. `teacher`
    is a `.keras` path, or a list of them: an ensemble, whose logits are the
    log of the teachers' mean probabilities (see `kdcli.ensembles`); the file
    then records every teacher's sha256 (`teacher_sha256s`) and provenance
    lists them under `teachers`, while a single teacher's file is exactly as
    it always was. The data defaults to the one recorded in the (first)
    teacher's provenance. With `shard`, `(index, count)` (0-based), only that
    contiguous part of the rows is computed and written; `merge_soft_labels`
    joins the parts. With `dry_run`, the teachers are loaded and checked but
    run over no data, and nothing is written.

    Returns:
        The path written. With `dry_run`, `(None, plan)`: a
        `kdcli.plan.SoftLabelsPlan`, whose `lines()` (or `str(plan)`) say
        what would be computed and written.
    """
    reporter = reporter or Reporter(quiet=True)
    teachers = teacher_paths(teacher)
    for path in teachers:
        model_format(path)
    check_output(out, ".h5")
    data = resolve_data(data, data_options, *teachers)  # before TensorFlow: a data error answers at once
    from kdcli.ensembles import ensemble_head, ensemble_model, ensemble_sha256
    from kdcli.inference import iter_logits
    from kdcli.soft_labels import shard_rows, write_soft_labels

    members, heads = load_teachers(teachers, data, unsafe)
    shas = [sha256_file(path) for path in teachers]
    if dry_run:
        _check_logit_options(dtype, top_k, data.num_classes)
        rows = shard_rows(len(data.train), *shard, batch_size) if shard else None
        return None, SoftLabelsPlan(data, teachers, shas, heads, rows, Path(out), dtype, batch_size, top_k, shard)
    ensemble = len(teachers) > 1
    # One teacher: the very fields of a single teacher's file, in the same order.
    named = {"teachers": teachers_record(teachers, shas, heads, out)} if ensemble else \
        {"teacher": relative_to_artifact(teachers[0], out), "teacher_format": model_format(teachers[0])}
    record = provenance(
        "soft-labels", data=data.describe(out), **named, teacher_sha256=ensemble_sha256(shas),
        teacher_head=ensemble_head(heads),
        hyperparameters={"dtype": dtype, "batch_size": batch_size, "top_k": top_k},
    )
    split = data.train.subset(*shard_rows(len(data.train), *shard, batch_size)) if shard else data.train
    batches = iter_logits(ensemble_model(members), split, batch_size, reporter.progress("soft labels"))
    write_soft_labels(
        out, batches, len(data.train), data.num_classes, fingerprint=data.fingerprint,
        teacher_sha256=ensemble_sha256(shas), record=record, dtype=dtype, top_k=top_k, shard=shard,
        teacher_sha256s=shas if ensemble else None, batch_size=batch_size,
    )
    kept = f"top {top_k} of {data.num_classes}" if top_k else str(data.num_classes)
    of = f" of an ensemble of {len(teachers)} teachers (the log of their mean probabilities)" if ensemble else ""
    reporter.say(f"soft labels: {len(split)} x {kept} logits{of} ({dtype}, {format_size(Path(out).stat().st_size)})")
    return Path(out)


def _check_logit_options(dtype, top_k, num_classes):
    """Refuse, in a dry run, the `--dtype` and `--top-k` that writing the file would refuse
    (`kdcli.soft_labels.write_soft_labels`), with its messages."""
    from kdcli.soft_labels import DTYPES

    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if top_k is not None and not 1 <= top_k < num_classes:
        raise UsageError(f"--top-k must be between 1 and {num_classes - 1} (the classes less one), got {top_k}")


def merge_soft_labels(parts, out, reporter=None):
    """Join the parts of a sharded `soft-labels` run into one file (see `kdcli.soft_labels.merge_soft_labels`)."""
    from kdcli.soft_labels import merge_soft_labels as merge

    reporter = reporter or Reporter(quiet=True)
    for part in parts:
        require_file(part, "soft-label part")
    check_output(out, ".h5")
    first = read_provenance(parts[0]) or {}
    # Paths in a part's provenance are relative to the part's folder; the merged file's, to its own.
    teachers = [{**t, "path": rebase_recorded(t["path"], parts[0], out)} for t in first.get("teachers") or ()]
    record = provenance(
        "soft-labels", data=rebase_data_record(first.get("data"), parts[0], out),
        **({"teachers": teachers} if teachers else
           {"teacher": rebase_recorded(first["teacher"], parts[0], out) if first.get("teacher") else None}),
        teacher_sha256=first.get("teacher_sha256"), teacher_head=first.get("teacher_head"),
        hyperparameters=first.get("hyperparameters"),
        merged_from=[relative_to_artifact(p, out) for p in parts],
    )
    merge(parts, out, record)
    reporter.say(f"soft labels: merged {len(parts)} parts")
    return Path(out)


def distill_student(
    data=None, out=None, *, soft_labels=None, teacher=None, student=None, width=None, depth=None, method=None,
    budget=None, runtime=None, online=False, baseline=False, seeds=1, tune=0, tune_json=None, tune_widths=(1.0,),
    study=None, student_output="auto", data_options=None, unsafe=False, reporter=None, dry_run=False,
):
    """Distill a student from soft labels or from a teacher model.

    Args:
        data: a `Dataset`, a `--data` value, or None for the data recorded in
            the soft labels' or the teacher's provenance.
        out: the `.keras` file to write; by default `student.keras`, or
            `T.student.keras` beside a teacher `T.keras` (the first teacher
            of an ensemble).
        soft_labels: a soft-label `.h5` file (the teacher never runs).
        teacher: a teacher `.keras` file, or a list of them: an ensemble,
            whose targets are the mean of the teachers' probabilities (see
            `kdcli.ensembles`; they must agree on their input shape and
            classes). Its logits for the training split are computed once,
            in memory, unless `online`. With `soft_labels` too, they must be
            the teachers the file was made with, all of them in any order
            (checked by sha256): they are then used only to derive a
            `shrink:F` student and to report their accuracy.
        student: `auto` (a cnn for image-shaped samples and signals, else an mlp), `mlp`,
            `cnn`, `shrink:F` (derived from the first teacher of an
            ensemble) or a `.keras` architecture; by default `shrink:0.25`
            with a teacher, `auto` with soft labels.
        method: a `kdcli.methods.Method`, or a name in `kdcli.methods.REGISTRY`
            (with its default parameters); by default `kd` (Hinton's loss,
            `T = 4`, `alpha = 0.9`).
        budget: a `kdcli.options.Budget`; by default `epochs="auto"`: stop once
            the student's KL divergence from its teacher on a validation share
            of the training split stops improving, keeping the best epoch (the
            baseline stops on its own validation accuracy; see `--monitor`). Its `augment` (`shift`,
            `shift:N`) distills on randomly shifted copies of the images, the
            teacher running on each batch to give its logits for the same
            copies (implies `online`; needs `teacher`); the baseline is
            trained on shifted copies too.
        runtime: a `kdcli.options.Runtime`: strategy, precision, checkpoints
            (removed once `out` is written). In a multi-worker run only the
            chief writes `out` and the checkpoints.
        online: run the teacher on every batch instead of once.
        baseline: also train the same student from scratch on the hard
            labels, with the same budget, and record what distillation gained.
        seeds: with `baseline`, train both students with this many seeds
            (`budget.seed` and the next ones) and record each seed's
            accuracies, their means and standard deviations, and the gain's;
            `out` is the first seed's student.
        tune: with 2 or more, search that many trials of methods and
            augmentations (`kdcli.tuning`) scored on the validation split,
            scratch among them, and keep the winning trial; `method` and
            `budget.augment` are then not used.
        tune_json: a path for the trials as JSON (they are also in the
            student's provenance, under `metrics.tune`).
        tune_widths: with `tune`, the student's widths to try, as multiples
            of its own (the factor of `shrink:F`, or `width` of a built-in
            student); the student trained from scratch is tried at each.
        study: with `tune`, the Optuna study's database URL (by default an
            SQLite file in the checkpoint folder, removed with it).
        student_output: what the saved student outputs: `auto` (the same kind
            as its teacher, so it is a drop-in replacement: probabilities for
            a softmax teacher, one sigmoid probability for a binary sigmoid
            teacher, logits for a logits teacher; for an ensemble, its
            teachers' common head, or `softmax` when they differ: see
            `kdcli.ensembles.ensemble_head`), `logits`, `softmax` or
            `sigmoid` (two classes). Training uses logits whatever it is;
            the choice is recorded in provenance as `output`.
        data_options, unsafe, reporter: as in `train_teacher`.
        dry_run: check and resolve everything as a run would (the teachers
            loaded, the student built), but train nothing, run no teacher
            over the data and write nothing.

    Returns:
        `(path, metrics)`; metrics hold `test_accuracy`, `train_seconds`, the
        teacher's `teacher_test_accuracy` when it was loaded (for an
        ensemble, the ensemble's, also as `ensemble_test_accuracy`, and each
        teacher's in `teacher_test_accuracies`), and with `baseline` the
        `baseline_test_accuracy` and `distillation_gain_points`. With
        `dry_run`, `(None, plan)`: a `kdcli.plan.DistillPlan`, whose
        `lines()` (or `str(plan)`) say what would run and be written.
    """
    reporter = reporter or Reporter(quiet=True)
    request = check_distill_request(
        out, soft_labels=soft_labels, teacher=teacher, student=student, width=width, depth=depth, method=method,
        budget=budget, runtime=runtime, online=online, baseline=baseline, seeds=seeds, tune=tune,
        tune_json=tune_json, tune_widths=tune_widths, study=study, student_output=student_output, unsafe=unsafe,
        reporter=reporter,
    )
    data = resolve_data(data, data_options, *request.recorded_in)  # before TensorFlow: a data error answers at once
    plan = plan_distill(request, data, reporter)  # TensorFlow: once the options, files and data are right
    if dry_run:
        return None, plan
    return record_student(plan, run_plan(plan, reporter), reporter)


@dataclasses.dataclass
class Outcome:
    """What the runs of a `kdcli.plan.DistillPlan` gave: the student to keep, its metrics, and the method
    and augmentation it was trained with (with `--tune`, the winning trial's)."""

    model: object
    metrics: dict
    method: object
    augment: str


def run_plan(plan, reporter):
    """Train a plan's runs, in order: the seeds' students (and their scratch twins), or the `--tune`
    trials. Returns the `Outcome`."""
    logits = teacher_logits_for(plan, reporter)
    if plan.request.tune:
        return _run_trials(plan, logits, reporter)
    return _run_seeds(plan, logits, reporter)


def teacher_logits_for(plan, reporter):
    """The teacher logits the runs read: the soft-label file's, or the teacher's computed once for the
    training split (in memory, never per epoch); None where the teacher runs live."""
    if plan.source.kind == SOFT_LABELS:
        from kdcli.soft_labels import teacher_logits

        return teacher_logits(plan.source.soft_labels)
    if plan.source.kind == LOGITS:
        from kdcli.inference import predict_logits

        return predict_logits(plan.source.model, plan.data.train, progress=reporter.progress("teacher logits"))
    return None


def _train(plan, run, model, logits, reporter, prune=None, resume=None):
    """Train `model` as `run` says: on the hard labels, or distilled (from `logits`, or from the live
    teacher where the run needs it); `resume` overrides `--resume`. Returns its history."""
    from kdcli.training import distill, train

    runtime, source = plan.request.runtime, plan.source
    budget = dataclasses.replace(plan.budget, seed=run.seed, augment=run.augment)
    common = {"progress": reporter.progress(run.label), "checkpoint_dir": run.folder,
              "log_dir": runtime.log_for(run.folder), "prune": prune, "strategy": plan.strategy,
              "resume": runtime.resume if resume is None else resume,
              "restart": runtime.restart if resume is None else False, "checkpoint_every": runtime.checkpoint_every,
              "steps_per_call": runtime.steps_per_call, "xla": runtime.xla}
    if run.scratch:
        return train(model, plan.data, budget, run_config={"student": plan.student}, **common)
    method = plan.request.method if run.trial is None else run.trial.make_method()
    offline = plan.offline(run, method)
    # What identifies the run's checkpoints: a trial's never named the soft labels.
    config = {"student": plan.student, "teacher_sha256": source.sha256,
              **({"soft_labels": source.soft_config()} if run.trial is None else {})}
    return distill(model, plan.data, budget, teacher_logits=logits if offline else None,
                   teacher=None if offline else source.model, method=method, run_config=config, **common)


def _run_seeds(plan, logits, reporter):
    """Per seed, the distilled student and, with `--baseline`, its scratch twin (the same architecture
    and initial weights: the same seed). The first seed's student is kept; its metrics hold, with
    `--seeds`, every seed's."""
    per_seed, kept = {}, None
    for run in plan.runs:
        model = plan.model if run is plan.runs[0] else plan.build_student(run.seed)
        history = _train(plan, run, model, logits, reporter)
        if run.role == DISTILLED:
            per_seed[run.seed] = _metrics(model, plan.data, history)
            kept = model if kept is None else kept
        else:
            metrics = per_seed[run.seed]
            metrics.update(_baseline_metrics(metrics, model, history, plan.data))
    metrics = per_seed[plan.budget.seed]
    if plan.request.seeds > 1:
        metrics.update(_over_seeds(plan.request.seed_list, list(per_seed.values())))
    return Outcome(kept, metrics, plan.request.method, plan.budget.augment)


TRIAL_STUDENT, TRIAL_HISTORY = "student.keras", "history.json"


class TrialRunner:
    """`kdcli.tuning.search`'s `run_trial` for a plan's search: trains the trial Optuna proposes in its
    checkpoint folder (continuing it there if it was cut off) and leaves beside the checkpoints the
    trained student and its history, which `load` reads back, in this process or a later one.

    `score`, if given, is `(run, model, attrs) -> values` (compress's measures of the student, which it
    adds to `attrs`); by default a trial's value is its validation accuracy."""

    def __init__(self, plan, logits, reporter, n, score=None):
        self.plan, self.logits, self.reporter, self.n, self.score = plan, logits, reporter, n, score

    def __call__(self, ot, trial, folder, prune):
        """Train `trial` (Optuna's `ot`): `(values, attrs)`, or None if its loss diverged."""
        from kdcli.plan import trial_run
        from kdcli.training import NonFiniteLoss
        from kdcli.tuning import SCRATCH

        plan = self.plan
        run = trial_run(plan.request, plan.budget, int(folder.rpartition("-")[2]) - 1, self.n, trial, folder)
        model = plan.build_student(plan.budget.seed, trial.width)  # the same initial weights at a width
        try:
            history = _train(plan, run, model, self.logits, self.reporter, prune, resume=True)
        except NonFiniteLoss:
            if trial == SCRATCH and self.score is None:  # --tune's scratch: the reference every trial must beat
                raise
            return None
        best = history["best_epoch"] - 1
        attrs = {"method": trial.method, "augment": trial.augment, "width": trial.width, "scratch": trial.scratch,
                 "epochs": len(history["val_accuracy"]), "best_epoch": history["best_epoch"],
                 "stopped": history["stopped"], "val_accuracy": history["val_accuracy"][best],
                 "val_loss": history["val_loss"][best], "seconds": sum(history["epoch_seconds"])}
        # Measured before its checkpoints go: a measure cut off (Ctrl-C) is taken again without training.
        values = [attrs["val_accuracy"]] if self.score is None else self.score(run, model, attrs)
        if is_chief(plan.strategy):  # what the trial leaves: its student and history, not its checkpoints
            model.save(run.folder / TRIAL_STUDENT)
            (run.folder / TRIAL_HISTORY).write_text(json.dumps(history))
            remove_checkpoints([run.folder])
        return values, attrs

    def load(self, record):
        """The student and history a trial (a `kdcli.tuning.records` entry) left in its folder."""
        from kdcli.model_files import load_model

        folder = self.plan.request.checkpoint_dir / record["folder"]
        with self.plan.strategy.scope():
            model = load_model(folder / TRIAL_STUDENT)
        return model, json.loads((folder / TRIAL_HISTORY).read_text())


def study_url(request, default):
    """The search's `--study` URL, by default the SQLite file `default`."""
    return request.study or f"sqlite:///{Path(default).resolve()}"


def study_identity(plan, **more):
    """What a study is made for: the teacher, the data, the student, the search and the budget."""
    return {"teacher_sha256": plan.source.sha256, "data": plan.data.fingerprint, "student": plan.student,
            "widths": list(plan.space.widths), "budget": plan.budget.record(), **more}


def _run_trials(plan, logits, reporter):
    """Search the `--tune` trials: the winning trial's `Outcome`, its metrics holding the scratch
    trial's as the baseline and the trials under `tune`."""
    from kdcli.tuning import discard_study, open_study, records, search, trials_table, winner

    request = plan.request
    url = study_url(request, request.checkpoint_dir / "study.db")
    request.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if request.runtime.restart:  # the study, and the trials' folders, go
        discard_study(url, "tune")
        discard_trials(request.checkpoint_dir)
    study = open_study(url, "tune", study_identity(plan), ["maximize"], plan.budget.seed,
                       prune=True, queued=[run.trial for run in plan.runs])
    runner = TrialRunner(plan, logits, reporter, request.tune)
    search(study, plan.space, request.tune, runner, say=reporter.say)
    trials = records(study)
    best = winner(trials)
    if not reporter.quiet:
        from kdcli.console import stderr

        stderr.print(trials_table(trials, best))
    outcome = "scratch won: distillation did not pay on the validation split" if trials[best]["scratch"] else \
        f"trial {trials[best]['trial']} won ({trials[best]['label']})"
    reporter.say(f"tuning: {outcome}; kept as trained, on the training split less its validation share")
    public = [{k: v for k, v in r.items() if k != "folder"} for r in trials]
    if request.tune_json:
        from kdcli.files import write_text

        write_text(request.tune_json, json.dumps({"trials": public, "winner": public[best]["trial"]}, indent=2) + "\n")
    model, history = runner.load(trials[best])
    metrics = _metrics(model, plan.data, history)
    scratch = next(r for r in trials if r["label"] == "scratch")
    metrics.update(_baseline_metrics(metrics, *runner.load(scratch), plan.data))
    metrics["tune"] = {"trials": public, "winner": public[best]["trial"],
                       "kept": "the winning trial, trained on the training split less its validation share"}
    from kdcli.tuning import Trial

    won = Trial(trials[best]["method"], trials[best]["augment"], trials[best]["width"])
    return Outcome(model, metrics, won.make_method(), won.augment)


def discard_trials(folder):
    """Delete a search's trial folders (`trial-N/`) in `folder`, whatever they hold (`--restart`)."""
    import shutil

    for trial in Path(folder).glob("trial-*"):
        shutil.rmtree(trial, ignore_errors=True)


def remove_search(folder, study_file=None):
    """Delete what a finished search left in `folder`: its trials' students and histories, and its SQLite
    study file (`remove_checkpoints` takes the checkpoints and the emptied folders)."""
    for name in (TRIAL_STUDENT, TRIAL_HISTORY):
        for path in Path(folder).glob(f"trial-*/{name}"):
            path.unlink()
    if study_file is not None:
        Path(study_file).unlink(missing_ok=True)


def record_student(plan, outcome, reporter):
    """Record what a plan's runs gave: the teachers' accuracy in the metrics, the provenance; then the
    chief saves the student with its head and removes the checkpoints. Returns `(path, metrics)`."""
    from kdcli.models import count_params, with_head

    request, metrics = plan.request, outcome.metrics
    metrics.update(_teacher_metrics(plan.source, plan.data))
    record = student_record(plan, outcome)
    if not is_chief(plan.strategy):
        return request.out, metrics
    with plan.strategy.scope():
        served = with_head(outcome.model, plan.output)
    save_model(served, request.out, record)
    if request.tune and not request.study:  # a --study's trials stay, with their students, for its other users
        remove_search(request.checkpoint_dir, request.checkpoint_dir / "study.db")
    remove_checkpoints(request.run_folders(), parent=request.checkpoint_dir)
    _summarise(reporter, request.out, served, metrics, plan.source, count_params)  # the saved model's parameters
    return request.out, metrics


def teacher_record_metrics(plan):
    """The metrics a student's provenance holds about its teachers (see `_teacher_metrics`)."""
    return _teacher_metrics(plan.source, plan.data)


def _teacher_metrics(source, data):
    """The loaded teachers' test accuracy (an ensemble's, and each member's); none when none was loaded."""
    from kdcli.ensembles import ensemble_accuracies

    if source.members is None:
        return {}
    each, together = ensemble_accuracies(source.members, data.test)
    if len(source.members) > 1:
        return {"teacher_test_accuracy": together, "teacher_test_accuracies": each, "ensemble_test_accuracy": together}
    return {"teacher_test_accuracy": together}


def student_record(plan, outcome):
    """The student's provenance: its data, teachers or soft labels, head, hyperparameters and metrics."""
    request, source, out = plan.request, plan.source, plan.request.out
    method, budget = outcome.method, dataclasses.replace(plan.budget, augment=outcome.augment)
    online = plan.online or outcome.augment != "none" or method.needs_live_teacher  # a --tune winner's own
    hyper = {"student": plan.student, "width": request.width, "depth": request.depth, "method": method.config(),
             "student_output": plan.output, **({"seeds": request.seeds} if request.seeds > 1 else {}),
             **({"tune": request.tune} if request.tune else {}), **budget.record(), **request.runtime.record(),
             "replicas": plan.strategy.num_replicas_in_sync,
             "mode": "soft-labels" if request.soft_labels else ("online" if online else "teacher-logits-once")}
    one = source.paths and not source.record  # one teacher, named as it always was; an ensemble under teachers
    return provenance(
        "student", data=plan.data.describe(out), teacher_sha256=source.sha256,
        **({"teachers": source.record} if source.record else {}),
        soft_labels=relative_to_artifact(request.soft_labels, out) if request.soft_labels else None,
        teacher=relative_to_artifact(source.paths[0], out) if one else None,
        teacher_format=model_format(source.paths[0]) if one else None,
        output=plan.output, hyperparameters=hyper, metrics=outcome.metrics,
    )


def _baseline_metrics(metrics, scratch, history, data):
    """The `baseline_` metrics of a student trained from scratch beside `metrics`' distilled one, and the gain."""
    baseline = _metrics(scratch, data, history, prefix="baseline_")
    kept = ("test_accuracy", "epochs", "best_epoch", "stopped", "monitor", "lr_decays", "refit", "search_epochs")
    baseline = {k: v for k, v in baseline.items() if k.removeprefix("baseline_") in kept}
    baseline["distillation_gain_points"] = 100 * (metrics["test_accuracy"] - baseline["baseline_test_accuracy"])
    return baseline


def _over_seeds(seeds, per_seed):
    """`--seeds K`'s metrics: each seed's test accuracies and gain (in points), and
    their means and standard deviations over the seeds (NumPy's, ddof 0)."""
    import numpy as np

    series = {"test_accuracy": [m["test_accuracy"] for m in per_seed],
              "baseline_test_accuracy": [m["baseline_test_accuracy"] for m in per_seed],
              "distillation_gain_points": [m["distillation_gain_points"] for m in per_seed]}
    summary = {"seeds": seeds}
    for key, values in series.items():
        summary[f"seed_{key}"] = values
        summary[f"mean_{key}"], summary[f"std_{key}"] = float(np.mean(values)), float(np.std(values))
    return summary


def _described(path, model, accuracy, count_params):
    """`path: test accuracy 97.2%, 1,234 parameters, 12.3 KB`."""
    return f"{path}: test accuracy {100 * accuracy:.1f}%, {count_params(model)[0]:,} parameters, " \
           f"{format_size(artifact_size(path))}"


def _summarise(reporter, out, model, metrics, source, count_params):
    """The closing lines of a distillation: the teachers', the student's, and what distillation gained."""
    if source.members is not None:
        each = metrics.get("teacher_test_accuracies", [metrics["teacher_test_accuracy"]])
        for path, member, acc in zip(source.paths, source.members, each):
            reporter.say("teacher " + _described(path, member, acc, count_params))
        if len(source.members) > 1:
            reporter.say(f"ensemble of {len(source.members)} teachers (the mean of their probabilities): test accuracy "
                         f"{100 * metrics['ensemble_test_accuracy']:.1f}%")
    reporter.say("student " + _described(out, model, metrics["test_accuracy"], count_params) +
                 f" ({_epochs_run(metrics)}, {metrics['train_seconds']:.1f} s of training)")
    if "seeds" in metrics:
        m = {k: 100 * metrics[k] for k in ("mean_test_accuracy", "std_test_accuracy",
                                           "mean_baseline_test_accuracy", "std_baseline_test_accuracy")}
        gain, spread = metrics["mean_distillation_gain_points"], metrics["std_distillation_gain_points"]
        noise = max(spread, m["std_test_accuracy"], m["std_baseline_test_accuracy"])
        reporter.say(
            f"over {len(metrics['seeds'])} seeds ({', '.join(map(str, metrics['seeds']))}): distilled "
            f"{m['mean_test_accuracy']:.2f} ± {m['std_test_accuracy']:.2f}%, from scratch "
            f"{m['mean_baseline_test_accuracy']:.2f} ± {m['std_baseline_test_accuracy']:.2f}%; "
            f"{gain_phrase(gain, 2, spread)}{' (within noise)' if abs(gain) <= noise else loss_advice(gain, noise)}"
        )
    elif "baseline_test_accuracy" in metrics:
        scratch = "trial 1, the student trained from scratch," if "tune" in metrics else \
            "the same student trained from scratch"
        reporter.say(
            f"baseline: {scratch} reaches {100 * metrics['baseline_test_accuracy']:.1f}% "
            f"({_epochs_run(metrics, 'baseline_')}); {gain_phrase(metrics['distillation_gain_points'])}"
            f"{'' if 'tune' in metrics else loss_advice(metrics['distillation_gain_points'])}"
        )


def evaluate(models, data=None, *, batch_size=256, latency_runs=200, data_options=None, unsafe=False):
    """Evaluate and compare models on the test split (see `kdcli.evaluate_models`).

    The data defaults to the one recorded in the first model's provenance.
    """
    for path in models:
        if Path(path).suffix == ".tflite":
            require_file(path, "model file")
        else:
            model_format(path)
    data = resolve_data(data, data_options, *models)
    from kdcli.evaluation import evaluate_models  # TensorFlow: only once the inputs are known to be there

    return evaluate_models(models, data, batch_size, latency_runs, unsafe)


def export(model, out=None, *, format="tflite", quantize="none", data=None, data_options=None, unsafe=False,
           min_agreement=MIN_INT8_AGREEMENT, reporter=None):
    """Export a `.keras` model (see `kdcli.export.export_model`); int8 calibrates on `data`.

    The data defaults to the one recorded in the model's provenance; `out`
    defaults to a path beside the model (`student-int8.tflite`...). An int8
    export that gives the model's class on fewer than `min_agreement` of its
    calibration samples is refused.
    """
    reporter = reporter or Reporter(quiet=True)
    if model_format(model) == "saved_model":
        raise KdcliError(f"{model}: a SavedModel folder; export takes a .keras or .h5 model (a SavedModel converts "
                         "to TFLite with tf.lite.TFLiteConverter.from_saved_model)")
    from kdcli.export import check_export_output, default_export_path, export_model  # TensorFlow

    out = check_export_output(out or default_export_path(model, format, quantize), format)
    dataset = resolve_data(data, data_options, model) if quantize == "int8" else None
    export_model(model, out, format, quantize, dataset, unsafe, min_agreement)
    agreement = (read_provenance(out) or {}).get("agreement")
    checked = "" if agreement is None else \
        f", gives {Path(model).name}'s class on {agreement:.1%} of its calibration samples"
    reporter.say(f"export: {out} ({format}, quantize {quantize}, {format_size(artifact_size(out))}{checked})")
    return out
