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
"""

import dataclasses
import json
import os
from pathlib import Path

from kdcli.artifacts import read_provenance
from kdcli.augment import NEEDS_TEACHER, parse_augment, resolve_augment, teacher_augment
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
from kdcli.methods import DEFAULT_METHOD, make_method
from kdcli.model_files import load_model, model_format, save_model
from kdcli.report import format_size
from kdcli.runs import TEACHER_BUDGET, Budget, Runtime, is_finite_number, refit_folder
from kdcli.specs import STUDENT_OUTPUTS, parse_spec, resolve_spec


def require_file(path, what):
    """Refuse a missing input file before any work starts."""
    if not Path(path).is_file():
        raise KdcliError(f"{path}: no such {what}")


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


def teacher_paths(teacher):
    """A `teacher` argument as a list of paths: one path, or a list of them (an ensemble); None stays None."""
    if teacher is None:
        return None
    paths = [teacher] if isinstance(teacher, (str, os.PathLike)) else list(teacher)
    if not paths:
        raise UsageError("give a teacher: --teacher model.keras (repeat it for an ensemble)")
    return paths


def load_teacher(path, data, unsafe=False):
    """A teacher's logits model, checked against the data (whose classes it sets), and
    what its own head outputs (`logits`, `softmax` or `sigmoid`: see `kdcli.models.head_kind`)."""
    models, heads = load_teachers([path], data, unsafe)
    return models[0], heads[0]


def load_teachers(paths, data, unsafe=False):
    """The logits models and heads of several teachers (see `load_teacher`), checked to agree
    with each other on their input shape and classes (`kdcli.ensembles.check_members`), then
    against the data.

    Returns:
        `(models, heads)`, two lists in the order of `paths`.
    """
    from kdcli.ensembles import check_members
    from kdcli.models import check_compatible, head_kind, logits_model

    names = [Path(path).name for path in paths]
    loaded = [load_model(path, unsafe=unsafe, data=data) for path in paths]
    models = [logits_model(model, name) for model, name in zip(loaded, names)]
    check_members(models, names)  # before the data: the error then names the two teachers that differ
    for model, name in zip(models, names):
        data.expect_classes(model.output_shape[-1], name)
        check_compatible(model, data, name)
    return models, [head_kind(model, name) for model, name in zip(loaded, names)]


def _require_architecture(path, option="--model"):
    """Refuse, before any work, an architecture file that is missing or is not a trainable model."""
    if model_format(path) == "saved_model":
        raise KdcliError(f"{path}: a SavedModel has no architecture to train; give {option} a .keras or .h5 file")


def _teachers_record(paths, shas, heads, artifact):
    """An ensemble's teachers for provenance, in order: each one's path (relative to the artifact), format
    (`kdcli.model_files.MODEL_FORMATS`), sha256, head."""
    return [{"path": relative_to_artifact(path, artifact), "format": model_format(path), "sha256": sha, "head": head}
            for path, sha, head in zip(paths, shas, heads)]


def _epochs_run(metrics, prefix=""):
    """`12 epochs`, or `57 epochs (best 37, stopped: patience)` for a run that stopped on its validation split."""
    done = plural(metrics[f"{prefix}epochs"], "epoch")
    if metrics.get(f"{prefix}refit"):
        return (f"{done} on the whole training split, the best of {metrics[f'{prefix}search_epochs']} "
                f"on a validation split (stopped: {metrics[f'{prefix}stopped']})")
    if f"{prefix}best_epoch" in metrics:
        done += f" (best {metrics[f'{prefix}best_epoch']}, stopped: {metrics[f'{prefix}stopped']})"
    return done


def _metrics(model, data, history, prefix=""):
    """What a training run reached, for provenance: test accuracy, epochs, and with `--epochs auto`
    the best epoch, why the run stopped, the validation curve (and the step size's halvings).
    `prefix` names a `--baseline` run's."""
    from kdcli.training import accuracy

    metrics = {"test_accuracy": accuracy(model, data.test), "train_accuracy": history["accuracy"][-1],
               "train_seconds": history["seconds"], "epochs": len(history["loss"])}
    if "best_epoch" in history:
        metrics.update(best_epoch=history["best_epoch"], stopped=history["stopped"],
                       validation_accuracy=history["val_accuracy"], validation_loss=history["val_loss"])
    if "lr_decays" in history:  # --lr-schedule plateau: the epochs after which the step size was halved
        metrics["lr_decays"] = history["lr_decays"]
    if history.get("refit"):  # then the epochs above are the refit's, on the whole training split
        metrics.update(refit=True, search_epochs=history["search_epochs"])
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def train_teacher(
    data, out, arch="auto", *, model=None, width=None, depth=None, budget=None, runtime=None, data_options=None,
    unsafe=False, reporter=None,
):
    """Train a teacher on hard labels and save it to `out` (a `.keras` file).

    Args:
        data: a `Dataset` or a `--data` value.
        out: the `.keras` file to write.
        arch: a built-in architecture (`cnn`, `mlp`, or `auto`: a cnn for
            image-shaped samples, an mlp otherwise, see `kdcli.specs.auto_arch`)
            or a `.keras` file holding an untrained architecture of the user's.
        model: a `.keras` file holding an untrained architecture of the user's,
            instead of `arch` (`train-teacher --model`).
        width, depth: knobs of the built-in architectures.
        budget: a `kdcli.runs.Budget`; by default train-teacher's: 40 epochs,
            a cosine schedule and `augment="auto"` (`shift` for the built-in
            cnn on images it can shift, else `none`).
        runtime: a `kdcli.runs.Runtime`: strategy, precision, checkpoints
            (removed once `out` is written). In a multi-worker run only the
            chief writes `out` and the checkpoints.
        data_options: `load_data` keywords (`val_split`, `image_size`, `color_mode`, `num_classes`).
        unsafe: allow models that hold code (`Lambda` layers).
        reporter: a `kdcli.console.Reporter` for progress and talk.

    Returns:
        `(path, metrics)`, metrics holding `test_accuracy` and `train_seconds`.
    """
    budget = budget or TEACHER_BUDGET
    runtime = runtime or Runtime()
    reporter = reporter or Reporter(quiet=True)
    if model is not None:
        arch = str(model)
    if parse_spec(arch, "teacher", "--model" if model is not None else "--arch")[0] == "file":
        _require_architecture(arch)
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
    history = train(
        model, data, budget, progress=reporter.progress("training teacher"), checkpoint_dir=checkpoint_dir,
        resume=runtime.resume, restart=runtime.restart, run_config={"arch": arch}, strategy=strategy,
        checkpoint_every=runtime.checkpoint_every, log_dir=runtime.log_for(),
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
                     top_k=None, shard=None):
    """Write the teacher's logits for the training split of `data` to `out` (`.h5`).

    A teacher that ends in a softmax gives its pre-softmax logits. `teacher`
    is a `.keras` path, or a list of them: an ensemble, whose logits are the
    log of the teachers' mean probabilities (see `kdcli.ensembles`); the file
    then records every teacher's sha256 (`teacher_sha256s`) and provenance
    lists them under `teachers`, while a single teacher's file is exactly as
    it always was. The data defaults to the one recorded in the (first)
    teacher's provenance. With `shard`, `(index, count)` (0-based), only that
    contiguous part of the rows is computed and written; `merge_soft_labels`
    joins the parts.

    Returns:
        The path written.
    """
    reporter = reporter or Reporter(quiet=True)
    teachers = teacher_paths(teacher)
    for path in teachers:
        model_format(path)
    check_output(out, ".h5")
    data = resolve_data(data, data_options, *teachers)  # before TensorFlow: a data error answers at once
    from kdcli.ensembles import ensemble_head, ensemble_model, ensemble_sha256
    from kdcli.soft_labels import shard_rows, write_soft_labels
    from kdcli.training import iter_logits

    members, heads = load_teachers(teachers, data, unsafe)
    shas = [sha256_file(path) for path in teachers]
    ensemble = len(teachers) > 1
    # One teacher: the very fields of a single teacher's file, in the same order.
    named = {"teachers": _teachers_record(teachers, shas, heads, out)} if ensemble else \
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


def default_student_path(teacher):
    """Where the one-shot `distill --teacher T.keras` writes: `T.student.keras` beside the teacher."""
    teacher = Path(teacher)
    return teacher.with_name(f"{teacher.stem}.student.keras")


def distill_student(
    data=None, out=None, *, soft_labels=None, teacher=None, student=None, width=None, depth=None, method=None,
    budget=None, runtime=None, online=False, baseline=False, seeds=1, tune=0, tune_json=None, tune_widths=(1.0,),
    student_output="auto", data_options=None, unsafe=False, reporter=None,
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
        student: `auto` (a cnn for image-shaped samples, else an mlp), `mlp`,
            `cnn`, `shrink:F` (derived from the first teacher of an
            ensemble) or a `.keras` architecture; by default `shrink:0.25`
            with a teacher, `auto` with soft labels.
        method: a `kdcli.methods.Method`, or a name in `kdcli.methods.REGISTRY`
            (with its default parameters); by default `kd` (Hinton's loss,
            `T = 4`, `alpha = 0.9`).
        budget: a `kdcli.runs.Budget`; by default `epochs="auto"`: stop once
            the accuracy on a validation share of the training split stops
            improving, keeping the best epoch (the baseline stops by the same
            rule, on its own). Its `augment` (`shift`,
            `shift:N`) distills on randomly shifted copies of the images, the
            teacher running on each batch to give its logits for the same
            copies (implies `online`; needs `teacher`); the baseline is
            trained on shifted copies too.
        runtime: a `kdcli.runs.Runtime`: strategy, precision, checkpoints
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
        student_output: what the saved student outputs: `auto` (the same kind
            as its teacher, so it is a drop-in replacement: probabilities for
            a softmax teacher, one sigmoid probability for a binary sigmoid
            teacher, logits for a logits teacher; for an ensemble, its
            teachers' common head, or `softmax` when they differ: see
            `kdcli.ensembles.ensemble_head`), `logits`, `softmax` or
            `sigmoid` (two classes). Training uses logits whatever it is;
            the choice is recorded in provenance as `output`.
        data_options, unsafe, reporter: as in `train_teacher`.

    Returns:
        `(path, metrics)`; metrics hold `test_accuracy`, `train_seconds`, the
        teacher's `teacher_test_accuracy` when it was loaded (for an
        ensemble, the ensemble's, also as `ensemble_test_accuracy`, and each
        teacher's in `teacher_test_accuracies`), and with `baseline` the
        `baseline_test_accuracy` and `distillation_gain_points`.
    """
    teachers = teacher_paths(teacher)
    if soft_labels is None and teacher is None:
        raise UsageError("give --teacher (a .keras model) or --soft-labels (a file from kdcli soft-labels)")
    if online and (teacher is None or soft_labels is not None):
        raise UsageError("--online runs the teacher on every batch: give --teacher, without --soft-labels")
    budget = budget or Budget()
    runtime = runtime or Runtime()
    if parse_augment(budget.augment) and (teacher is None or soft_labels is not None):
        raise UsageError(NEEDS_TEACHER)
    reporter = reporter or Reporter(quiet=True)
    if not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"--seeds must be a whole number of 1 or more, got {seeds}")
    if seeds > 1 and not baseline:
        raise UsageError("--seeds K compares K seeds of the distilled and the scratch student: add --baseline")
    if tune:
        _check_tune(tune, budget or Budget(), seeds, tune_widths)
        tune_json = check_output(tune_json, option="--tune-json") if tune_json else None
    if student_output not in STUDENT_OUTPUTS:
        raise UsageError(f"--student-output must be one of {', '.join(STUDENT_OUTPUTS)}, got {student_output!r}")
    if student is None and teachers and not soft_labels and model_format(teachers[0]) == "saved_model":
        student = "auto"  # a SavedModel has no architecture to shrink
        reporter.say(f"student: auto (built for the data), since {teachers[0]} is a SavedModel, which has no "
                     "architecture to shrink")
    student = student or ("auto" if soft_labels else "shrink:0.25")
    student_kind, _ = parse_spec(student, "student")
    if tune and any(w != 1 for w in tune_widths) and student_kind not in ("shrink", "builtin"):
        raise UsageError(f"--tune-widths scales shrink:F and the built-in students, not --student {student}")
    method = make_method(method or DEFAULT_METHOD) if method is None or isinstance(method, str) else method
    method.check_teacher_source(live=teacher is not None and soft_labels is None)
    if method.needs_live_teacher and teachers and len(teachers) > 1:
        raise UsageError(f"--method {method.name} reads one teacher's layers: give one --teacher, not an ensemble")
    if soft_labels is not None:
        require_file(soft_labels, "soft-label file")
    for path in teachers or ():
        model_format(path)
    if student_kind == "file":
        _require_architecture(student, "--student")
    out = check_output(out or (default_student_path(teachers[0]) if teachers and not soft_labels else "student.keras"),
                       ".keras")
    checkpoint_dir = runtime.checkpoints_for(out)
    # Per seed, the student's run and its --baseline twin's, each in its own folder.
    seed_list = [budget.seed + k for k in range(seeds)]
    seed_folders = [[checkpoint_dir / f"{role}{'' if k == 0 else f'-seed{seed}'}"
                     for role in ("student", *(("baseline",) if baseline else ()))]
                    for k, seed in enumerate(seed_list)]
    run_folders = [folder for folders in seed_folders for folder in folders]
    run_folders += [checkpoint_dir / f"trial-{index + 1}" for index in range(tune)]
    run_folders += [refit_folder(folder) for folder in run_folders] if budget.refit else []
    check_checkpoints(run_folders, runtime.resume, runtime.restart)
    data = resolve_data(data, data_options, *([soft_labels] if soft_labels else teachers))  # before TensorFlow
    # TensorFlow: once the options, files and data are right
    from kdcli.ensembles import ensemble_accuracies, ensemble_head, ensemble_model, ensemble_sha256
    from kdcli.hub import check_task_output
    from kdcli.models import DEFAULTS, build_from_spec, count_params, with_head
    from kdcli.soft_labels import read_soft_labels, teacher_logits as open_teacher_logits
    from kdcli.training import distill, predict_logits, train

    student = resolve_spec(student, data)
    budget = dataclasses.replace(budget, augment=resolve_augment(budget.augment, data.input_shape, data.input_kind))
    online = online or budget.augment != "none" or method.needs_live_teacher
    strategy = make_strategy(runtime.strategy)  # first: multi-worker must start TensorFlow
    members = teacher_model = teacher_logits = None
    shas = [sha256_file(path) for path in teachers] if teachers else None  # once: teachers can be large
    soft_record = (read_provenance(soft_labels) or {}) if soft_labels else {}
    teacher_head, teachers_record = soft_record.get("teacher_head"), soft_record.get("teachers")
    if teachers_record:  # an ensemble's file: its teachers, with paths relative to the student
        teachers_record = [{**t, "path": rebase_recorded(t["path"], soft_labels, out)} for t in teachers_record]
    if soft_labels is not None:
        soft = read_soft_labels(soft_labels)
        data.expect_classes(soft.attrs["num_classes"], Path(soft_labels).name)
        soft.check_matches(data, soft_labels)
        teacher_sha, teacher_logits = soft.attrs["teacher_sha256"], open_teacher_logits(soft_labels)
        if teachers is not None:
            _check_teachers_of(soft_labels, teachers, shas, soft.attrs)
        elif student_kind == "shrink":
            teachers, shas = _recorded_teachers(soft_labels, soft.attrs)
    else:
        teacher_sha = ensemble_sha256(shas)
    if teachers is not None:
        members, heads = load_teachers(teachers, data, unsafe)
        teacher_model, teacher_head = ensemble_model(members), ensemble_head(heads)
        if len(teachers) > 1:
            teachers_record = _teachers_record(teachers, shas, heads, out)
    output = (teacher_head or "logits") if student_output == "auto" else student_output
    if output == "sigmoid" and data.num_classes != 2:
        raise UsageError(f"--student-output sigmoid is for two classes; the data has {data.num_classes}")

    def build(seed, scale=1.0):
        """The student (`scale`: its widths times that, for `--tune-widths`)."""
        spec, scaled_width = student, width
        if scale != 1:
            kind, value = parse_spec(student, "student")
            if kind == "shrink":
                spec = f"shrink:{value * scale:g}"
            elif kind == "builtin":
                scaled_width = max(1, round((width or DEFAULTS["student"][student][0]) * scale))
            else:
                raise UsageError(f"--tune-widths scales shrink:F and the built-in students, not --student {student}")
        # shrink:F derives the student from the first teacher of an ensemble.
        with strategy.scope():
            return build_from_spec(spec, data, "student", width=scaled_width, depth=depth, seed=seed, unsafe=unsafe,
                                   teacher=members[0] if members else None, mixed_precision=runtime.mixed_precision)

    model = build(budget.seed)  # before the teacher's logits: a student that cannot be built fails at once
    check_task_output(model, output)  # a KerasHub task's head, before training
    if members:
        _warn_if_not_smaller(reporter, model, members[0], teachers[0], count_params)
    if teacher_model is not None and soft_labels is None and not online:  # once, in memory: never per epoch
        teacher_logits = predict_logits(teacher_model, data.train, progress=reporter.progress("teacher logits"))
    runs = {"strategy": strategy, "resume": runtime.resume, "restart": runtime.restart,
            "checkpoint_every": runtime.checkpoint_every}

    def run_seed(seed, folders, model):
        """One seed's distilled student and, with --baseline, its scratch twin: the student and its metrics."""
        seed_budget = dataclasses.replace(budget, seed=seed)
        named = "" if seed == budget.seed else f" (seed {seed})"
        history = distill(
            model, data, seed_budget, teacher_logits=teacher_logits,
            teacher=teacher_model if teacher_logits is None else None, method=method,
            progress=reporter.progress(f"distilling{named}"), checkpoint_dir=folders[0],
            log_dir=runtime.log_for(folders[0]),
            run_config={"student": student, "teacher_sha256": teacher_sha,
                        "soft_labels": {k: soft.attrs.get(k) for k in ("top_k", "dtype")} if soft_labels else None},
            **runs,
        )
        metrics = _metrics(model, data, history)
        if baseline:
            scratch = build(seed)  # the same architecture and initial weights (same seed)
            scratch_history = train(scratch, data, seed_budget, progress=reporter.progress(f"baseline{named}"),
                                    checkpoint_dir=folders[1], log_dir=runtime.log_for(folders[1]),
                                    run_config={"student": student}, **runs)
            metrics.update(_baseline_metrics(metrics, scratch, data, scratch_history))
        return metrics

    if tune:
        from kdcli.training import NonFiniteLoss
        from kdcli.tuning import draw_trials, score

        live = teacher_model is not None  # augmentations need it, hints one teacher's layers
        augments = ["none", *(_augments_for(data) if live else [])]
        trials = draw_trials(tune, budget.seed, augments, hints=live and len(members) == 1, widths=tune_widths)

        def run_trial(index, trial, prune):
            # The same initial weights in every trial of a width.
            trial_model = model if index == 0 else build(budget.seed, trial.width)
            progress = reporter.progress(f"trial {index + 1}/{len(trials)} ({trial.label()})")
            folder = checkpoint_dir / f"trial-{index + 1}"
            try:
                history = _run_trial(trial_model, trial, prune, folder, progress)
            except NonFiniteLoss:
                if index == 0:  # scratch is the reference every trial must beat
                    raise
                return None
            trained[index] = trial_model, history
            # Only scratch and the best trial so far can be needed: let the others go.
            best = max((i for i in trained if i), key=lambda i: (score(trained[i][1]), -i), default=None)
            for other in [i for i in trained if i not in (0, best)]:
                del trained[other]
            return history

        def _run_trial(trial_model, trial, prune, folder, progress):
            trial_budget = dataclasses.replace(budget, augment=trial.augment)
            if trial.scratch:
                history = train(trial_model, data, trial_budget, progress=progress, checkpoint_dir=folder,
                                log_dir=runtime.log_for(folder), run_config={"student": student}, prune=prune,
                                **runs)
            else:
                trial_method = trial.make_method()
                offline = teacher_logits is not None and trial.augment == "none" and \
                    not trial_method.needs_live_teacher
                history = distill(
                    trial_model, data, trial_budget, teacher_logits=teacher_logits if offline else None,
                    teacher=None if offline else teacher_model, method=trial_method, progress=progress,
                    checkpoint_dir=folder, log_dir=runtime.log_for(folder),
                    run_config={"student": student, "teacher_sha256": teacher_sha}, prune=prune, **runs)
            return history

        trained = {}
        metrics, model, method, augment = _tuned(trials, run_trial, trained, data, reporter, tune_json)
        budget = dataclasses.replace(budget, augment=augment)
        online = soft_labels is None and (online or augment != "none" or method.needs_live_teacher)  # the winner's
    else:
        metrics = run_seed(budget.seed, seed_folders[0], model)
    if seeds > 1:
        others = [run_seed(seed, folders, build(seed)) for seed, folders in zip(seed_list[1:], seed_folders[1:])]
        metrics.update(_over_seeds(seed_list, [metrics, *others]))
    if members is not None:
        each, together = ensemble_accuracies(members, data.test)
        metrics["teacher_test_accuracy"] = together
        if len(members) > 1:
            metrics.update(teacher_test_accuracies=each, ensemble_test_accuracy=together)
    hyper = {"student": student, "width": width, "depth": depth, "method": method.config(), "student_output": output,
             **({"seeds": seeds} if seeds > 1 else {}), **({"tune": tune} if tune else {}),
             **budget.record(), **runtime.record(), "replicas": strategy.num_replicas_in_sync,
             "mode": "soft-labels" if soft_labels else ("online" if online else "teacher-logits-once")}
    record = provenance(
        "student", data=data.describe(out), teacher_sha256=teacher_sha,
        **({"teachers": teachers_record} if teachers_record else {}),
        soft_labels=relative_to_artifact(soft_labels, out) if soft_labels else None,
        teacher=relative_to_artifact(teachers[0], out) if teachers and not teachers_record else None,
        teacher_format=model_format(teachers[0]) if teachers and not teachers_record else None,
        output=output, hyperparameters=hyper, metrics=metrics,
    )
    if not is_chief(strategy):
        return out, metrics
    with strategy.scope():
        served = with_head(model, output)
    save_model(served, out, record)
    remove_checkpoints(run_folders, parent=checkpoint_dir)
    _summarise(reporter, out, served, metrics, teachers, members, count_params)  # the saved model's parameters
    return out, metrics


def _baseline_metrics(metrics, scratch, data, history):
    """The `baseline_` metrics of a student trained from scratch beside `metrics`' distilled one, and the gain."""
    baseline = _metrics(scratch, data, history, prefix="baseline_")
    kept = ("test_accuracy", "epochs", "best_epoch", "stopped", "lr_decays", "refit", "search_epochs")
    baseline = {k: v for k, v in baseline.items() if k.removeprefix("baseline_") in kept}
    baseline["distillation_gain_points"] = 100 * (metrics["test_accuracy"] - baseline["baseline_test_accuracy"])
    return baseline


def _check_tune(tune, budget, seeds, widths):
    """Refuse what `--tune` cannot combine with, before any work."""
    if not isinstance(tune, int) or tune < 2:
        raise UsageError(f"--tune N needs 2 trials or more (scratch and distillation), got {tune}")
    if not widths or not all(is_finite_number(w) and w > 0 for w in widths):
        raise UsageError(f"--tune-widths needs positive numbers, got {','.join(map(str, widths))}")
    if not budget.auto:
        raise UsageError("--tune scores its trials on the validation split of --epochs auto: leave --epochs out")
    if budget.refit or seeds > 1:
        raise UsageError(f"--tune keeps the winning trial: it does not combine with {'--refit' if budget.refit else '--seeds'}")


def _augments_for(data):
    """The augmentations a tuner may try on `data` with a live teacher: mixup for numbers, shifts for images."""
    from kdcli.augment import resolve_augment

    found = []
    for spec in ("mixup", "shift"):
        try:
            found.append(resolve_augment(spec, data.input_shape, data.input_kind))
        except KdcliError:
            pass
    return found


def _tuned(trials, run_trial, trained, data, reporter, tune_json=None):
    """Run the search; the winning trial's metrics (with the scratch trial's as the baseline and the
    trials under `tune`), its student, its method and its augmentation."""
    from kdcli.tuning import search, trials_table

    records, winner = search(trials, run_trial, reporter.say)
    if not reporter.quiet:
        from kdcli.console import stderr

        stderr.print(trials_table(records, winner))
    outcome = "scratch won: distillation did not pay on the validation split" if trials[winner].scratch else \
        f"trial {winner + 1} won ({trials[winner].label()})"
    reporter.say(f"tuning: {outcome}; kept as trained, on the training split less its validation share")
    if tune_json:
        from kdcli.files import write_text

        write_text(tune_json, json.dumps({"trials": records, "winner": winner + 1}, indent=2) + "\n")
    model, history = trained[winner]
    metrics = _metrics(model, data, history)
    scratch, scratch_history = trained[0]
    metrics.update(_baseline_metrics(metrics, scratch, data, scratch_history))
    metrics["tune"] = {"trials": records, "winner": winner + 1,
                       "kept": "the winning trial, trained on the training split less its validation share"}
    return metrics, model, trials[winner].make_method(), trials[winner].augment


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


def _recorded_teachers(soft_labels, attrs):
    """The teachers named in a soft-label file's provenance (one, or an ensemble's), each checked by its
    sha256: `(paths, sha256s)`."""
    record = read_provenance(soft_labels) or {}
    recorded = [(t.get("path"), t.get("sha256")) for t in record["teachers"]] if record.get("teachers") else \
        [(record.get("teacher"), attrs["teacher_sha256"])]
    paths = []
    for name, sha in recorded:
        path = locate_recorded(name, soft_labels) if name else None
        if not path or not Path(path).exists() or sha256_file(path) != sha:
            which = "the teacher these soft labels were made with" if len(recorded) == 1 else \
                f"one of the {len(recorded)} teachers these soft labels were made with"
            raise KdcliError(
                f"{soft_labels}: shrink derives the student from the teacher, and {which} "
                f"({name or 'not recorded'}) is not there unchanged; give "
                f"{'its path' if len(recorded) == 1 else 'all their paths'} with --teacher, "
                "or another --student (mlp, cnn, a .keras architecture)"
            )
        paths.append(path)
    return paths, [sha for _, sha in recorded]


def _check_teachers_of(soft_labels, teachers, given, attrs):
    """Refuse `--teacher`s given beside `--soft-labels` that are not the teachers they were made with:
    all of them, in any order, compared by sha256 (`given`: the teachers' sha256s)."""
    from kdcli.soft_labels import teacher_shas

    expected = teacher_shas(attrs)
    if len(expected) == len(given) == 1 and given != expected:
        raise KdcliError(
            f"{teachers[0]}: not the teacher {soft_labels} were made with (its sha256 differs); give that teacher, "
            "or make soft labels with this one (kdcli soft-labels)"
        )
    if sorted(given) != sorted(expected):
        made = f"an ensemble of {len(expected)} teachers" if len(expected) > 1 else "one teacher"
        raise KdcliError(
            f"{soft_labels} were made with {made} (sha256 {', '.join(s[:12] for s in expected)}), the --teacher "
            f"files given ({', '.join(Path(p).name for p in teachers)}) are not those; give all of those teachers, "
            "or make soft labels with these (kdcli soft-labels)"
        )


def _warn_if_not_smaller(reporter, student, teacher, teacher_path, count_params):
    """A warning line for a student with at least as many parameters as its teacher."""
    mine, theirs = count_params(student)[0], count_params(teacher)[0]
    if mine >= theirs:
        reporter.say(f"warning: the student has {mine:,} parameters, its teacher {teacher_path} {theirs:,}: it is not "
                     "smaller; choose a smaller --student (shrink:F, or --width)")


def _summarise(reporter, out, model, metrics, teachers, members, count_params):
    def describe(path, model, acc):
        return f"{path}: test accuracy {100 * acc:.1f}%, {count_params(model)[0]:,} parameters, " \
               f"{format_size(artifact_size(path))}"

    if members is not None:
        each = metrics.get("teacher_test_accuracies", [metrics["teacher_test_accuracy"]])
        for path, member, acc in zip(teachers, members, each):
            reporter.say("teacher " + describe(path, member, acc))
        if len(members) > 1:
            reporter.say(f"ensemble of {len(members)} teachers (the mean of their probabilities): test accuracy "
                         f"{100 * metrics['ensemble_test_accuracy']:.1f}%")
    reporter.say("student " + describe(out, model, metrics["test_accuracy"]) +
                 f" ({_epochs_run(metrics)}, {metrics['train_seconds']:.1f} s of training)")
    if "seeds" in metrics:
        m = {k: 100 * metrics[k] for k in ("mean_test_accuracy", "std_test_accuracy",
                                           "mean_baseline_test_accuracy", "std_baseline_test_accuracy")}
        gain, spread = metrics["mean_distillation_gain_points"], metrics["std_distillation_gain_points"]
        noise = max(spread, m["std_test_accuracy"], m["std_baseline_test_accuracy"])
        reporter.say(
            f"over {len(metrics['seeds'])} seeds ({', '.join(map(str, metrics['seeds']))}): distilled "
            f"{m['mean_test_accuracy']:.2f} ± {m['std_test_accuracy']:.2f}%, from scratch "
            f"{m['mean_baseline_test_accuracy']:.2f} ± {m['std_baseline_test_accuracy']:.2f}%; distillation gained "
            f"{gain:+.2f} ± {spread:.2f} points{' (within noise)' if abs(gain) <= noise else ''}"
        )
    elif "baseline_test_accuracy" in metrics:
        scratch = "trial 1, the student trained from scratch," if "tune" in metrics else \
            "the same student trained from scratch"
        reporter.say(
            f"baseline: {scratch} reaches {100 * metrics['baseline_test_accuracy']:.1f}% "
            f"({_epochs_run(metrics, 'baseline_')}); distillation gained {metrics['distillation_gain_points']:+.1f} points"
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
           reporter=None):
    """Export a `.keras` model (see `kdcli.export.export_model`); int8 calibrates on `data`.

    The data defaults to the one recorded in the model's provenance; `out`
    defaults to a path beside the model (`student-int8.tflite`...).
    """
    reporter = reporter or Reporter(quiet=True)
    if model_format(model) == "saved_model":
        raise KdcliError(f"{model}: a SavedModel folder; export takes a .keras or .h5 model (a SavedModel converts "
                         "to TFLite with tf.lite.TFLiteConverter.from_saved_model)")
    from kdcli.export import check_export_output, default_export_path, export_model  # TensorFlow

    out = check_export_output(out or default_export_path(model, format, quantize), format)
    dataset = resolve_data(data, data_options, model) if quantize == "int8" else None
    export_model(model, out, format, quantize, dataset, unsafe)
    reporter.say(f"export: {out} ({format}, quantize {quantize}, {format_size(artifact_size(out))})")
    return out
