"""What a step will do, resolved before it does any of it: its plan.

A `distill` request is checked once, before TensorFlow (`check_distill_request`
gives a `DistillRequest`); with the data loaded it resolves (`plan_distill`)
into a `TeacherSource` (a soft-label file, the teacher's logits computed once
in memory, or a live teacher) and a `DistillPlan`: the student, the method,
the budget and the `Run`s (the distilled student and its scratch twin for
each seed, or the tuner's trials). `kdcli.pipeline` then runs the plan and
records it.

A dry run (`dry_run=True` in `kdcli.pipeline`) stops at the plan: each plan
here (`DistillPlan`, `TeacherPlan`, `SoftLabelsPlan`) says in `lines()`, or
as a whole in `str(plan)`, what would run and what would be written.
"""

import dataclasses
import os
from pathlib import Path

from kdcli.artifacts import read_provenance
from kdcli.augment import NEEDS_TEACHER, parse_augment, resolve_augment
from kdcli.checkpoints import check_checkpoints
from kdcli.console import plural
from kdcli.data import stratified_split
from kdcli.errors import KdcliError, UsageError
from kdcli.files import check_output, locate_recorded, rebase_recorded, relative_to_artifact, sha256_file
from kdcli.methods import DEFAULT_METHOD, make_method
from kdcli.model_files import load_model, model_format
from kdcli.options import Budget, Runtime, is_finite_number, refit_folder
from kdcli.specs import STUDENT_OUTPUTS, parse_spec, resolve_spec

# Where a distillation's teacher logits come from (`TeacherSource.kind`).
SOFT_LABELS, LOGITS, LIVE = "soft-labels", "logits", "live"
# What a run trains (`Run.role`): the distilled student, its `--baseline` twin from scratch, a `--tune` trial.
DISTILLED, SCRATCH, TRIAL = "distilled", "scratch", "trial"
DRY_RUN = "a dry run: nothing is trained or written"


def require_file(path, what):
    """Refuse a missing input file before any work starts."""
    if not Path(path).is_file():
        raise KdcliError(f"{path}: no such {what}")


def require_architecture(path, option="--model"):
    """Refuse, before any work, an architecture file that is missing or is not a trainable model."""
    if model_format(path) == "saved_model":
        raise KdcliError(f"{path}: a SavedModel has no architecture to train; give {option} a .keras or .h5 file")


def teacher_paths(teacher):
    """A `teacher` argument as a list of paths: one path, or a list of them (an ensemble); None stays None."""
    if teacher is None:
        return None
    paths = [teacher] if isinstance(teacher, (str, os.PathLike)) else list(teacher)
    if not paths:
        raise UsageError("give a teacher: --teacher model.keras (repeat it for an ensemble)")
    return paths


def default_student_path(teacher):
    """Where the one-shot `distill --teacher T.keras` writes: `T.student.keras` beside the teacher."""
    teacher = Path(teacher)
    return teacher.with_name(f"{teacher.stem}.student.keras")


def load_teachers(paths, data, unsafe=False):
    """The logits models and heads of several teachers (see `kdcli.pipeline.load_teacher`), checked to
    agree with each other on their input shape and classes (`kdcli.ensembles.check_members`), then
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


def teachers_record(paths, shas, heads, artifact):
    """An ensemble's teachers for provenance, in order: each one's path (relative to the artifact), format
    (`kdcli.model_files.MODEL_FORMATS`), sha256, head."""
    return [{"path": relative_to_artifact(path, artifact), "format": model_format(path), "sha256": sha, "head": head}
            for path, sha, head in zip(paths, shas, heads)]


@dataclasses.dataclass(frozen=True)
class DistillRequest:
    """A `distill` request, checked (see `check_distill_request`) but not yet resolved against the data.

    `student` is the spec as given or defaulted (`auto` not yet resolved),
    `student_kind` what `kdcli.specs.parse_spec` says it is; `out` is the
    checked output path; the other fields are `kdcli.pipeline.distill_student`'s.
    """

    out: Path
    soft_labels: object
    teachers: list | None
    student: str
    student_kind: str
    width: int | None
    depth: int | None
    method: object
    budget: Budget
    runtime: Runtime
    online: bool
    baseline: bool
    seeds: int
    tune: int
    tune_json: Path | None
    tune_widths: tuple
    student_output: str
    unsafe: bool
    study: str | None = None

    @property
    def checkpoint_dir(self):
        """The folder holding the runs' checkpoint folders."""
        return self.runtime.checkpoints_for(self.out)

    @property
    def seed_list(self):
        """`--seeds K`'s seeds: `budget.seed` and the next ones."""
        return [self.budget.seed + k for k in range(self.seeds)]

    def seed_folders(self):
        """Per seed, the checkpoint folders of the student's run and of its `--baseline` twin's."""
        roles = ("student", *(("baseline",) if self.baseline else ()))
        return [[self.checkpoint_dir / f"{role}{'' if k == 0 else f'-seed{seed}'}" for role in roles]
                for k, seed in enumerate(self.seed_list)]

    def run_folders(self):
        """Every checkpoint folder the request may train in (refits' included): checked before any work,
        removed once the student is written."""
        folders = [folder for folders in self.seed_folders() for folder in folders]
        if not self.study:  # a study of its own: its trials' folders are this run's (a --study's are kept)
            folders += sorted(self.checkpoint_dir.glob("trial-*"))
        return folders + ([refit_folder(folder) for folder in folders] if self.budget.refit else [])

    @property
    def recorded_in(self):
        """The inputs whose provenance may name the data: the soft labels, else the teachers."""
        return [self.soft_labels] if self.soft_labels else self.teachers


def check_distill_request(out, *, soft_labels, teacher, student, width, depth, method, budget, runtime, online,
                          baseline, seeds, tune, tune_json, tune_widths, student_output, unsafe, reporter,
                          study=None):
    """Check a `distill` request before any work, and before TensorFlow (the arguments are
    `kdcli.pipeline.distill_student`'s; `reporter` is told why a default student was changed).

    Returns:
        A `DistillRequest`.

    Raises:
        UsageError, KdcliError: the first thing wrong, in a fixed order.
    """
    teachers = teacher_paths(teacher)
    if soft_labels is None and teacher is None:
        raise UsageError("give --teacher (a .keras model) or --soft-labels (a file from kdcli soft-labels)")
    if online and (teacher is None or soft_labels is not None):
        raise UsageError("--online runs the teacher on every batch: give --teacher, without --soft-labels")
    budget, runtime = budget or Budget(), runtime or Runtime()
    if parse_augment(budget.augment) and (teacher is None or soft_labels is not None):
        raise UsageError(NEEDS_TEACHER)
    _check_runs(baseline, seeds, tune, budget, tune_widths, runtime.strategy)
    tune_json = check_output(tune_json, option="--tune-json") if tune and tune_json else None
    if study and not tune:
        raise UsageError("--study holds a search: give it with --tune")
    if student_output not in STUDENT_OUTPUTS:
        raise UsageError(f"--student-output must be one of {', '.join(STUDENT_OUTPUTS)}, got {student_output!r}")
    student = _default_student(student, teachers, soft_labels, reporter)
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
        require_architecture(student, "--student")
    out = check_output(out or (default_student_path(teachers[0]) if teachers and not soft_labels else "student.keras"),
                       ".keras")
    request = DistillRequest(out, soft_labels, teachers, student, student_kind, width, depth, method, budget, runtime,
                             online, baseline, seeds, tune, tune_json, tuple(tune_widths), student_output, unsafe,
                             study)
    check_checkpoints(request.run_folders(), runtime.resume, runtime.restart)
    return request


def _check_runs(baseline, seeds, tune, budget, widths, strategy="default"):
    """Refuse `--seeds` and `--tune` values, and what `--tune` cannot combine with."""
    if not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"--seeds must be a whole number of 1 or more, got {seeds}")
    if seeds > 1 and not baseline:
        raise UsageError("--seeds K compares K seeds of the distilled and the scratch student: add --baseline")
    if not tune:
        return
    if not isinstance(tune, int) or tune < 2:
        raise UsageError(f"--tune N needs 2 trials or more (scratch and distillation), got {tune}")
    if not widths or not all(is_finite_number(w) and w > 0 for w in widths):
        raise UsageError(f"--tune-widths needs positive numbers, got {','.join(map(str, widths))}")
    if not budget.auto:
        raise UsageError("--tune scores its trials on the validation split of --epochs auto: leave --epochs out")
    if budget.refit or seeds > 1:
        raise UsageError(f"--tune keeps the winning trial: it does not combine with {'--refit' if budget.refit else '--seeds'}")
    if strategy == "multi-worker":  # each worker would ask the study for a trial of its own
        raise UsageError("--tune runs its trials in one process: not under --strategy multi-worker (processes "
                         "share a search through --study)")


def _default_student(student, teachers, soft_labels, reporter):
    """The student spec: as given, else `shrink:0.25` of a teacher, or `auto` with soft labels or a
    SavedModel teacher (which has no architecture to shrink; the reporter is told)."""
    if student is None and teachers and not soft_labels and model_format(teachers[0]) == "saved_model":
        reporter.say(f"student: auto (built for the data), since {teachers[0]} is a SavedModel, which has no "
                     "architecture to shrink")
        return "auto"
    return student or ("auto" if soft_labels else "shrink:0.25")


@dataclasses.dataclass
class TeacherSource:
    """Where a distillation's teacher logits come from, and the teachers behind them.

    Args:
        kind: `soft-labels` (a file: the teacher never runs), `logits` (the
            teachers' logits for the training split, computed once in
            memory) or `live` (the teacher runs on every batch).
        paths: the teachers' files: given, or with soft labels and a
            `shrink:F` student, those recorded in the file's provenance; None
            when there are none.
        shas: their sha256s, in the same order.
        soft_labels: the soft-label file, or None.
        soft: the open file (`kdcli.soft_labels.SoftLabels`), or None.
        members: the teachers' logits models, when loaded (see `load_teachers`).
        heads: their heads (`logits`, `softmax`, `sigmoid`).
        model: the teacher that runs: one teacher, or an ensemble's mean (`kdcli.ensembles.ensemble_model`).
        sha256: the teacher's sha256 (an ensemble's combined one) that the student records.
        head: the teachers' common head (recorded with soft labels, else from `heads`).
        record: an ensemble's teachers for provenance (`teachers_record`), or None.
    """

    kind: str
    paths: list | None = None
    shas: list | None = None
    soft_labels: object = None
    soft: object = None
    members: list | None = None
    heads: list | None = None
    model: object = None
    sha256: str | None = None
    head: str | None = None
    record: list | None = None

    def soft_config(self):
        """What identifies the soft labels in a distilled run's checkpoints (None without them)."""
        return {k: self.soft.attrs.get(k) for k in ("top_k", "dtype")} if self.soft is not None else None

    def lines(self):
        """The teachers and where their logits come from, for a plan."""
        lines = []
        if self.soft_labels is not None:
            attrs = self.soft.attrs
            kept = f"top {attrs['top_k']} of {attrs['num_classes']}" if attrs.get("top_k") else \
                f"{attrs['num_classes']}"
            lines.append(f"soft labels: {self.soft_labels} ({attrs['n']:,} x {kept} logits, {attrs.get('dtype')}; "
                         f"teacher head {self.head or 'not recorded'}, sha256 {self.sha256[:12]}): "
                         "the teacher never runs")
        if self.paths:
            lines += _teacher_lines(self.paths, self.shas, self.heads)
        if self.kind == LOGITS:
            lines.append("teacher logits: computed once for the training split, in memory")
        elif self.kind == LIVE:
            lines.append("teacher logits: the teacher runs on every batch (online)")
        elif self.paths:
            lines.append("  (used to derive the student and to report the teachers' accuracy)")
        return lines


def _teacher_lines(paths, shas, heads):
    """One line per teacher: its path, format, head and sha256 (heads None: not loaded)."""
    heads = heads or [None] * len(paths)
    named = [f"{path} ({model_format(path)}, head {head or 'not read'}, sha256 {sha[:12]})"
             for path, sha, head in zip(paths, shas, heads)]
    if len(paths) == 1:
        return [f"teacher: {named[0]}"]
    return [f"teachers: an ensemble of {len(paths)} (the mean of their probabilities)",
            *(f"  {line}" for line in named)]


def resolve_source(request, data, online):
    """The `TeacherSource` of a checked request: reads the soft labels' file (checked against the
    data and against the teachers given with it) and loads the teachers (checked against the data);
    runs no teacher over the data."""
    from kdcli.ensembles import ensemble_head, ensemble_model, ensemble_sha256

    teachers, soft_labels = request.teachers, request.soft_labels
    kind = SOFT_LABELS if soft_labels is not None else LIVE if online else LOGITS
    shas = [sha256_file(path) for path in teachers] if teachers else None  # once: teachers can be large
    source = TeacherSource(kind, teachers, shas, soft_labels)
    if soft_labels is not None:
        _read_soft_labels(source, request, data)
    else:
        source.sha256 = ensemble_sha256(shas)
    if source.paths is not None:
        source.members, source.heads = load_teachers(source.paths, data, request.unsafe)
        source.model, source.head = ensemble_model(source.members), ensemble_head(source.heads)
        if len(source.paths) > 1:
            source.record = teachers_record(source.paths, source.shas, source.heads, request.out)
    return source


def _read_soft_labels(source, request, data):
    """Fill `source` from its soft-label file: the file checked against the data, its teacher's sha256
    and head, and its teachers (given ones checked to be those; for shrink:F, the recorded ones)."""
    from kdcli.soft_labels import read_soft_labels

    path = source.soft_labels
    recorded = read_provenance(path) or {}
    source.head, source.record = recorded.get("teacher_head"), recorded.get("teachers")
    if source.record:  # an ensemble's file: its teachers, with paths relative to the student
        source.record = [{**t, "path": rebase_recorded(t["path"], path, request.out)} for t in source.record]
    source.soft = read_soft_labels(path)
    data.expect_classes(source.soft.attrs["num_classes"], Path(path).name)
    source.soft.check_matches(data, path)
    source.sha256 = source.soft.attrs["teacher_sha256"]
    if source.paths is not None:
        _check_teachers_of(path, source.paths, source.shas, source.soft.attrs)
    elif request.student_kind == "shrink":
        source.paths, source.shas = _recorded_teachers(path, source.soft.attrs)


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


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a plan.

    Args:
        role: `distilled`, `scratch` (the `--baseline` twin, on hard labels) or `trial` (of `--tune`).
        seed: its seed.
        folder: its checkpoint folder (its log folder is named alike, see `kdcli.options.Runtime.log_for`).
        label: what its progress says (`distilling`, `baseline (seed 4)`, `trial 2/8 (kd T=4 alpha=0.9)`).
        augment: its augmentation (resolved).
        trial: a trial's `kdcli.tuning.Trial` (its method and the student's width), else None.
    """

    role: str
    seed: int
    folder: Path
    label: str
    augment: str
    trial: object = None

    @property
    def scratch(self):
        """Whether the run trains on the hard labels alone."""
        return self.role == SCRATCH or (self.trial is not None and self.trial.scratch)

    def describe(self):
        """`distilled student, seed 0`, `trial 2/8: kd T=4 alpha=0.9`."""
        if self.trial is not None:
            return f"{self.label.split(' (', 1)[0]}: {self.trial.label()}"
        return f"{'distilled student' if self.role == DISTILLED else 'scratch twin (--baseline)'}, seed {self.seed}"


def seed_runs(request, budget):
    """The runs of `--seeds` (one seed by default): per seed, the distilled student, then with
    `--baseline` its twin from scratch (same architecture and initial weights)."""
    runs = []
    for k, (seed, folders) in enumerate(zip(request.seed_list, request.seed_folders())):
        named = "" if k == 0 else f" (seed {seed})"
        runs.append(Run(DISTILLED, seed, folders[0], f"distilling{named}", budget.augment))
        if request.baseline:
            runs.append(Run(SCRATCH, seed, folders[1], f"baseline{named}", budget.augment))
    return runs


def search_space(request, data, source, scratch_everywhere=False):
    """What `--tune` (and `compress`) may try on `data`: a `kdcli.tuning.Space` of the request's widths,
    with the augmentations and hints a live teacher allows."""
    from kdcli.tuning import Space

    live = source.model is not None  # augmentations need it, hints one teacher's layers
    augments = ("none", *(_augments_for(data) if live else []))
    # --tune's first trials, scratch and the default, are the student itself: width 1 is always in its space
    widths = tuple(request.tune_widths) if scratch_everywhere else tuple(dict.fromkeys((1.0, *request.tune_widths)))
    return Space(augments, hints=live and len(source.members) == 1, widths=widths,
                 scratch_everywhere=scratch_everywhere)


def trial_run(request, budget, index, n, trial, folder=None):
    """The run of trial `index` (from 0) of a search of `n` (None: unbounded), in its checkpoint folder
    (`trial-{index + 1}`)."""
    return Run(TRIAL, budget.seed, request.checkpoint_dir / (folder or f"trial-{index + 1}"),
               f"trial {index + 1}{f'/{n}' if n else ''} ({trial.label()})", trial.augment, trial)


def _augments_for(data):
    """The augmentations a tuner may try on `data` with a live teacher: mixup for numbers, shifts for images."""
    found = []
    for spec in ("mixup", "shift"):
        try:
            found.append(resolve_augment(spec, data.input_shape, data.input_kind))
        except KdcliError:
            pass
    return found


@dataclasses.dataclass
class DistillPlan:
    """A distillation, resolved: what `kdcli.pipeline.distill_student` runs and records.

    Args:
        request: the checked `DistillRequest`.
        data: the `kdcli.Dataset`.
        student: the student spec, `auto` resolved for the data.
        budget: the request's budget, its augmentation resolved for the data.
        online: the teacher runs on every batch (asked, or needed by the augmentation or the method).
        strategy: the `tf.distribute.Strategy` the students are built and trained in.
        source: the `TeacherSource`.
        output: what the saved student outputs (`logits`, `softmax`, `sigmoid`).
        model: the first student, built (trained by the first run).
        runs: the `Run`s, in the order they train.
    """

    request: DistillRequest
    data: object
    student: str
    budget: Budget
    online: bool
    strategy: object
    source: TeacherSource
    output: str
    model: object = None
    runs: list = dataclasses.field(default_factory=list)
    space: object = None  # a search's `kdcli.tuning.Space`; its queued trials are the runs

    @property
    def trials(self):
        """The `--tune` trials, in order (none without `--tune`)."""
        return [run.trial for run in self.runs if run.role == TRIAL]

    def build_student(self, seed, scale=1.0):
        """A new student with initial weights from `seed`; `scale` multiplies its widths (`--tune-widths`:
        the factor of shrink:F, or the width of a built-in student)."""
        from kdcli.models import build_from_spec

        spec, width = self.student_at(scale)
        # shrink:F derives the student from the first teacher of an ensemble.
        with self.strategy.scope():
            return build_from_spec(spec, self.data, "student", width=width, depth=self.request.depth, seed=seed,
                                   unsafe=self.request.unsafe,
                                   teacher=self.source.members[0] if self.source.members else None,
                                   mixed_precision=self.request.runtime.mixed_precision)

    def student_at(self, scale):
        """`(spec, width)` of the student at `scale` times its width: shrink:F's factor scaled, or a
        built-in student's width (check_distill_request lets only these two kinds scale)."""
        from kdcli.models import DEFAULTS

        spec, width = self.student, self.request.width
        if scale != 1:
            kind, value = parse_spec(self.student, "student")
            if kind == "shrink":
                spec = f"shrink:{value * scale:g}"
            else:
                width = max(1, round((width or DEFAULTS["student"][self.student][0]) * scale))
        return spec, width

    def offline(self, run, method):
        """Whether `run` (distilled with `method`) reads teacher logits rather than running the teacher:
        logits there are, the run does not augment, the method reads no layers."""
        return self.source.kind != LIVE and run.augment == "none" and not method.needs_live_teacher

    def feed(self, run):
        """What `run` learns from: `hard labels`, `teacher logits` (read or computed once) or `live teacher`."""
        if run.scratch:
            return "hard labels"
        method = self.request.method if run.trial is None else run.trial.make_method()
        return "teacher logits" if self.offline(run, method) else "live teacher"

    def lines(self):
        """The plan in words: data, teachers, student, method, budget, runs and outputs."""
        from kdcli.models import count_params

        request = self.request
        width = f", width {request.width}" if request.width else ""
        depth = f", depth {request.depth}" if request.depth else ""
        method = "searched by --tune (the queued trials below; Optuna's TPE proposes the rest)" if request.tune \
            else _method_line(request.method)
        lines = [f"distill, {DRY_RUN}", *_data_lines(self.data, self.budget), *self.source.lines(),
                 f"student: {self.student}{width}{depth}, {count_params(self.model)[0]:,} parameters; "
                 f"saved with a {self.output} head",
                 f"method: {method}", *_budget_lines(self.budget, request.runtime, self.strategy, distilled=True)]
        lines.append(f"runs ({len(self.runs)}):")
        lines += [f"  {i}. {run.describe()}, from the {self.feed(run)}: "
                  f"{_folders(run.folder, request.runtime.log_for(run.folder), self.budget.refit)}" for i, run in enumerate(self.runs, 1)]
        return lines + ["outputs:", f"  student: {request.out}", *_checkpoint_lines(request.checkpoint_dir, request.runtime),
                        *([f"  tuning trials (JSON): {request.tune_json}"] if request.tune_json else [])]

    def __str__(self):
        return "\n".join(self.lines())


@dataclasses.dataclass
class TeacherPlan:
    """A `train-teacher` run, resolved: what `kdcli.pipeline.train_teacher` would train and write.

    Args:
        data: the `kdcli.Dataset`.
        arch: the architecture (`auto` resolved, or a `.keras` file).
        width, depth: the built-in architectures' knobs, or None.
        model: the teacher, built (untrained).
        budget: the budget, its augmentation resolved.
        runtime: the `kdcli.options.Runtime`.
        strategy: the `tf.distribute.Strategy`.
        out: the teacher file to write.
    """

    data: object
    arch: str
    width: int | None
    depth: int | None
    model: object
    budget: Budget
    runtime: Runtime
    strategy: object
    out: Path

    def lines(self):
        """The plan in words: data, teacher, method, budget, run and outputs."""
        from kdcli.models import count_params, head_kind

        width = f", width {self.width}" if self.width else ""
        depth = f", depth {self.depth}" if self.depth else ""
        folder = self.runtime.checkpoints_for(self.out)
        return [f"train-teacher, {DRY_RUN}", *_data_lines(self.data, self.budget),
                f"teacher: {self.arch}{width}{depth}, {count_params(self.model)[0]:,} parameters, "
                f"head {head_kind(self.model)}",
                "method: hard labels (cross-entropy)", *_budget_lines(self.budget, self.runtime, self.strategy),
                "runs (1):", f"  1. teacher, seed {self.budget.seed}: {_folders(folder, self.runtime.log_for(), self.budget.refit)}",
                "outputs:", f"  teacher: {self.out}", *_checkpoint_lines(folder, self.runtime)]

    def __str__(self):
        return "\n".join(self.lines())


@dataclasses.dataclass
class SoftLabelsPlan:
    """A `soft-labels` run, resolved: what `kdcli.pipeline.make_soft_labels` would compute and write.

    Args:
        data: the `kdcli.Dataset`.
        teachers, shas, heads: the teachers' paths, sha256s and heads.
        rows: the rows of the training split to label (`(start, stop)`), or None for all.
        out: the soft-label file to write.
        dtype, batch_size, top_k, shard: as `make_soft_labels` takes them.
    """

    data: object
    teachers: list
    shas: list
    heads: list
    rows: tuple | None
    out: Path
    dtype: str
    batch_size: int
    top_k: int | None
    shard: tuple | None

    def lines(self):
        """The plan in words: data, teachers, what is computed and the output."""
        n, classes = len(self.data.train), self.data.num_classes
        kept = f"the top {self.top_k} of {classes}" if self.top_k else f"{classes}"
        rows = f"{n:,} rows" if self.rows is None else \
            f"rows {self.rows[0]:,} to {self.rows[1]:,} of {n:,} (shard {self.shard[0] + 1}/{self.shard[1]})"
        of = " of the ensemble (the log of their mean probabilities)" if len(self.teachers) > 1 else ""
        return ["soft-labels, a dry run: no teacher runs and nothing is written", *_data_lines(self.data, None),
                *_teacher_lines(self.teachers, self.shas, self.heads),
                f"logits{of}: {rows} of the training split x {kept}, {self.dtype}, {self.batch_size} samples per "
                "teacher call", "outputs:", f"  soft labels: {self.out}"]

    def __str__(self):
        return "\n".join(self.lines())


def _data_lines(data, budget):
    """The data, its splits' sizes, and the validation share that `--epochs auto` holds out."""
    n = len(data.train)
    lines = [f"data: {data.spec}: {n:,} training samples, {len(data.test):,} test samples, "
             f"{data.num_classes} classes, inputs of shape {tuple(data.input_shape)} ({data.input_kind})"]
    if budget is not None and budget.auto:
        # The held-out count per class does not depend on the seed: only which rows are drawn.
        held = len(stratified_split(data.train.y, budget.validation, budget.seed)[1])
        refit = "; then refit on all of them" if budget.refit else ""
        lines.append(f"  validation: {held:,} of the {n:,} training samples held out by --epochs auto "
                     f"({budget.validation:.0%}), trained on {n - held:,}{refit}")
    elif budget is not None:
        lines.append("  validation: none (fixed epochs): trained on all the training samples")
    return lines


def _budget_lines(budget, runtime, strategy, distilled=False):
    """The budget and the runtime, in words (the monitor of a distilled run, and of its scratch twin)."""
    if budget.auto:
        watched = budget.monitor_for(distilled)
        if distilled and budget.monitor_for(False) != watched:
            watched += f", {budget.monitor_for(False)} from scratch"
        epochs = f"auto (monitor {watched}, patience {budget.patience}, at most " \
            f"{plural(budget.max_epochs, 'epoch')}" + (", then refit" if budget.refit else "") + ")"
    else:
        epochs = str(budget.epochs)
    replicas = strategy.num_replicas_in_sync
    return [f"budget: epochs {epochs}, batch size {budget.batch_size}, learning rate {budget.learning_rate:g}, "
            f"schedule {budget.lr_schedule}, seed {budget.seed}, augment {budget.augment}",
            f"runtime: strategy {runtime.strategy} ({plural(replicas, 'replica')}), mixed precision "
            f"{runtime.mixed_precision}, checkpoint every {runtime.checkpoint_every:g} s"
            f"{', resume' if runtime.resume else ''}{', restart' if runtime.restart else ''}"]


def _method_line(method):
    """`kd: temperature=4.0, alpha=0.9`: a method's name and all its parameters."""
    params = {k: v for k, v in method.config().items() if k != "name"}
    return f"{method.name}: {', '.join(f'{k}={v}' for k, v in params.items())}" if params else method.name


def _folders(folder, log, refit):
    """Where a run checkpoints (`folder`) and logs (`log`, or None)."""
    where = f"checkpoints in {folder}" + (f" (refit: {refit_folder(folder)})" if refit else "")
    return where + (f", logs in {log}" if log is not None else "")


def _checkpoint_lines(checkpoint_dir, runtime):
    """The outputs besides the artifact: checkpoints, removed once it is written, and logs."""
    lines = [f"  checkpoints: {checkpoint_dir} (removed once the artifact is written)"]
    if runtime.log_dir is not None:
        lines.append(f"  logs: {runtime.log_dir} (TensorBoard and metrics.csv)")
    return lines


def plan_distill(request, data, reporter):
    """Resolve a checked request against the data: the teacher source, the student (built, so one that
    cannot be built fails at once), the output head and the runs. Trains nothing, writes nothing, runs
    no teacher over the data.

    Returns:
        A `DistillPlan`.
    """
    from kdcli.distribute import make_strategy
    from kdcli.hub import check_task_output
    from kdcli.models import count_params

    student = resolve_spec(request.student, data)
    budget = dataclasses.replace(request.budget, augment=resolve_augment(request.budget.augment, data.input_shape,
                                                                         data.input_kind))
    online = request.online or budget.augment != "none" or request.method.needs_live_teacher
    strategy = make_strategy(request.runtime.strategy)  # first: multi-worker must start TensorFlow
    source = resolve_source(request, data, online)
    output = (source.head or "logits") if request.student_output == "auto" else request.student_output
    if output == "sigmoid" and data.num_classes != 2:
        raise UsageError(f"--student-output sigmoid is for two classes; the data has {data.num_classes}")
    plan = DistillPlan(request, data, student, budget, online, strategy, source, output)
    plan.model = plan.build_student(budget.seed)
    check_task_output(plan.model, output)  # a KerasHub task's head, before training
    if source.members and not request.tune:  # a search's student is built at each width it tries
        mine, theirs = count_params(plan.model)[0], count_params(source.members[0])[0]
        if mine >= theirs:
            reporter.say(f"warning: the student has {mine:,} parameters, its teacher {source.paths[0]} {theirs:,}: "
                         "it is not smaller; choose a smaller --student (shrink:F, or --width)")
    if request.tune:
        plan.space = search_space(request, data, source)
        plan.runs = [trial_run(request, budget, i, request.tune, trial)
                     for i, trial in enumerate(plan.space.queued_for_tune(request.tune, budget.seed))]
    else:
        plan.runs = seed_runs(request, budget)
    return plan
