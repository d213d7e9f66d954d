"""The `kdcli` command line: parses options and calls `kdcli.pipeline`.

Conventions: the result (an artifact's path, a report) goes to stdout, talk
to stderr; an expected error is one `error: ...` line and its exit code (2 for
a usage error, with a `try 'kdcli ... --help'` line; 3 for a failed gate; 4 for
bad input); `--debug` shows tracebacks. TensorFlow is imported only inside
commands, so `--help` answers at once.
"""

import functools
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

# Typer (0.26 and later, see pyproject.toml) carries its own copy of Click.
from typer._click import exceptions as click_errors
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from kdcli import __version__
from kdcli.console import Reporter, stderr
from kdcli.data import COLOR_MODES
from kdcli.distribute import STRATEGIES
from kdcli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, KdcliError, UsageError
from kdcli.export import FORMATS, QUANTIZATIONS
from kdcli.methods import DEFAULT_METHOD, distill_methods, option_help
from kdcli.runs import AUTO_EPOCHS, MAX_EPOCHS, PATIENCE, TEACHER_BUDGET, Budget, Runtime, parse_epochs
from kdcli.soft_labels import DTYPES
from kdcli.specs import LR_SCHEDULES, PRECISIONS, STUDENT_OUTPUTS


class _Group(TyperGroup):
    """Typer's command group, with Click's usage errors reported as kdcli reports every error:
    one `error:` line, then one `try 'kdcli COMMAND --help'` line, exit code 2 (no box)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError:
            code = EXIT_USAGE  # Typer has printed the help
        except click_errors.ClickException as e:  # usage errors (exit code 2) and the like
            ctx = getattr(e, "ctx", None)
            _usage_error(e.format_message(), ctx.command_path if ctx else "kdcli")
            code = e.exit_code
        except typer.Abort:
            _error_line("aborted")
            code = EXIT_INTERNAL
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="kdcli",
    help="Compress trained Keras models by knowledge distillation.",
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value):
    if value:
        typer.echo(f"kdcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_show_version, is_eager=True, help="Print kdcli's version and exit.")] = None,
):
    """Compress trained Keras models by knowledge distillation."""


# The width of `evaluate`'s table when stdout is not a terminal (a file, a CI log).
LOG_WIDTH = 150


def _choices(name, *values):
    """A str Enum of option values, so Typer lists them and refuses others (exit code 2)."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


# The choices come from the modules that check them (none imports TensorFlow).
ColorModeChoice = _choices("ColorModeChoice", *COLOR_MODES)
Precision = _choices("Precision", *PRECISIONS)
StrategyName = _choices("StrategyName", *STRATEGIES)
LogitsType = _choices("LogitsType", *DTYPES)
ExportFormat = _choices("ExportFormat", *FORMATS)
Schedule = _choices("Schedule", *LR_SCHEDULES)
Quantization = _choices("Quantization", *QUANTIZATIONS)
MethodName = _choices("MethodName", *distill_methods())
StudentOutput = _choices("StudentOutput", *STUDENT_OUTPUTS)
DEFAULT_METHOD_CHOICE = MethodName(DEFAULT_METHOD)
TEACHER_SCHEDULE = Schedule(TEACHER_BUDGET.lr_schedule)


DATA_HELP = ("digits or texts (bundled), mnist, fashion_mnist, cifar10, cifar100 (from Keras' cache), "
             "an .npz or .h5 file (numbers, token ids or strings), or a folder of images or .txt files")
Data = Annotated[Optional[str], typer.Option(help=f"{DATA_HELP}; defaults to the data recorded in the input file.")]


ValSplit = Annotated[
    Optional[float],
    typer.Option(help="Share held out for testing when the data has no test split (default 0.2)."),
]
ImageSize = Annotated[
    Optional[str], typer.Option(help="Image folders: resize images to HxW, e.g. 32x32 (default: the first image's size).")
]
ColorMode = Annotated[Optional[ColorModeChoice], typer.Option(help="Image folders: grayscale, rgb or auto (the first image's).")]
NumClasses = Annotated[Optional[int], typer.Option(
    help="Declare the number of classes, ids 0..N-1, so that a class with no training samples is accepted "
         "(by default every id up to the largest label needs some).", metavar="N")]
# Values are checked where the library checks them (kdcli.runs, kdcli.models...), each rule once.
Seed = Annotated[int, typer.Option(help="Seed of initialisation, shuffling and dropout.")]
EPOCHS_HELP = ("Passes over the training split, or auto: hold out 10% of it (stratified, from --seed) and stop "
               "once its accuracy has not improved for --patience epochs, keeping the best epoch's weights")
Epochs = Annotated[str, typer.Option(help=EPOCHS_HELP + ".")]
Patience = Annotated[int, typer.Option(help="With --epochs auto: epochs without a better validation accuracy "
                                            "before the run stops.")]
MaxEpochs = Annotated[int, typer.Option(help="With --epochs auto: the most epochs (a cosine schedule spans them).")]
Refit = Annotated[bool, typer.Option("--refit", help="With --epochs auto: then retrain from the same start on the whole "
                                                      "training split for the best epoch's count.")]
BatchSize = Annotated[int, typer.Option(help="Samples per training step.")]
LearningRate = Annotated[float, typer.Option(help="Adam step size (the peak of the schedule).")]
SCHEDULE_HELP = ("cosine: the step size decays to 0 over the run (over --max-epochs with --epochs auto); constant: "
                 "it does not; plateau (with --epochs auto): it halves each time a quarter of --patience passes "
                 "without a better validation score")
LrSchedule = Annotated[Schedule, typer.Option(help=SCHEDULE_HELP + ".")]


SHIFT_HELP = ("shift or shift:N: train on copies of the images shifted by up to N pixels (default about 1/14 of "
              "the side); mixup: on random mixes of two inputs and their labels; shift+mixup: both")
Augment = Annotated[str, typer.Option(
    help=f"none, {SHIFT_HELP}. The teacher then runs on every batch to label the same inputs "
         "(mixup: function matching).")]
TeacherAugment = Annotated[str, typer.Option(
    help=f"auto (shift for --arch cnn, else none), none, {SHIFT_HELP}.")]
Width = Annotated[Optional[int], typer.Option(help="Units per hidden layer (mlp) or filters of the first block (cnn).")]
Depth = Annotated[Optional[int], typer.Option(
    help="Hidden layers (mlp), convolution blocks (cnn), or with shrink:F a KerasHub transformer backbone's layers.")]
CheckpointDir = Annotated[
    Optional[Path], typer.Option(help="Where per-epoch checkpoints go (default: OUT's name with .ckpt, beside it).")
]
CheckpointEvery = Annotated[float, typer.Option(
    help="Seconds between two checkpoints, taken at the next step or epoch boundary; also one when the run ends, "
         "and on Ctrl-C or SIGTERM. 0: at the end of every epoch.", metavar="SECONDS")]
LogDir = Annotated[Optional[Path], typer.Option(
    help="Write training logs there: per epoch the loss and its parts, accuracy, validation accuracy and loss, "
         "step size and seconds, as TensorBoard scalars and in metrics.csv (one folder per run).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the last good checkpoint of an interrupted run.")]
Restart = Annotated[bool, typer.Option(
    "--restart", help="Discard the checkpoint of an unfinished run and start over (without --resume or --restart, "
                      "a checkpoint found is refused).")]
MixedPrecision = Annotated[
    Precision, typer.Option(help="bf16: compute in bfloat16 (weights and logits stay float32); off by default.")
]
Strategy = Annotated[StrategyName, typer.Option(
    help="tf.distribute strategy: mirrored (local GPUs), multi-worker (TF_CONFIG), auto (mirrored when several "
         "GPUs are visible); --batch-size is then per replica.")]
Unsafe = Annotated[bool, typer.Option("--unsafe", help="Load models that hold code (Lambda layers). Only for files you trust.")]
Imports = Annotated[Optional[list[str]], typer.Option(
    "--import", metavar="MODULE",
    help="Import this module (a name on the Python path, or a .py file) before loading models, so that the custom "
         "layers it registers load. Repeatable.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but the result.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]


def command(name, register_with=None):
    """Register a subcommand whose errors become one line and an exit code.

    `register_with` is how to register it (by default `app.command(name)`).
    """

    def register(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                if kwargs.get("imports"):  # custom layers registered before any model is loaded
                    from kdcli.model_files import import_modules

                    import_modules(kwargs["imports"])
                return fn(*args, **kwargs)
            except KdcliError as e:
                _fail(str(e), e.exit_code, kwargs.get("debug"))
            except KeyboardInterrupt:
                _fail("interrupted", EXIT_INTERRUPTED, kwargs.get("debug"))
            except (typer.Exit, typer.Abort, typer.BadParameter):
                raise
            except Exception as e:  # an internal error: say so, briefly
                _fail(f"internal error: {type(e).__name__}: {e}".splitlines()[0] +
                      " (run again with --debug for the traceback)", EXIT_INTERNAL, kwargs.get("debug"))

        return (register_with or app.command(name))(wrapper)

    return register


def _fail(message, code, debug):
    if debug:
        traceback.print_exc(file=sys.stderr)
    if code == EXIT_USAGE:
        ctx = get_current_context(silent=True)
        _usage_error(message, ctx.command_path if ctx else "kdcli")
    else:
        _error_line(message)
    raise typer.Exit(code)


def _error_line(message):
    """The one line of an expected error, on stderr."""
    message = " ".join(message.split())  # one line, whatever the message holds
    stderr.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def _usage_error(message, command_path):
    """A usage error: the `error:` line, then where to read about the options."""
    if message[:1].isupper() and message[1:2].islower():  # Click's "Invalid value..." reads as ours
        message = message[0].lower() + message[1:]
    _error_line(message)
    stderr.print(f"try '{command_path} --help'", markup=False, highlight=False, soft_wrap=True)


def _data_options(val_split, image_size, color_mode, num_classes=None):
    """The `load_data` keywords given on the command line (None: not given)."""
    size = None
    if image_size is not None:
        try:
            size = [int(v) for v in image_size.lower().split("x")]
            assert len(size) == 2 and min(size) > 0
        except (ValueError, AssertionError):
            raise typer.BadParameter(f"give HxW, like 32x32; got {image_size!r}", param_hint="--image-size") from None
    return {"val_split": val_split, "image_size": size, "color_mode": color_mode.value if color_mode else None,
            "num_classes": num_classes}


def _runtime(strategy, mixed_precision, checkpoint_dir, resume, restart, checkpoint_every, log_dir):
    """The `Runtime` of the training commands' shared options."""
    return Runtime(strategy=strategy.value, mixed_precision=mixed_precision.value, checkpoint_dir=checkpoint_dir,
                   resume=resume, restart=restart, checkpoint_every=checkpoint_every, log_dir=log_dir)


def _numbers(text, option):
    """A comma-separated list of numbers (`1,1.5,2`)."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"{option} needs numbers separated by commas, like 1,1.5,2; got {text!r}") from None


def _result(path):
    """Print an artifact's path, alone, on stdout."""
    typer.echo(str(path))


@command("train-teacher")
def train_teacher(
    data: Annotated[str, typer.Option(help=DATA_HELP + ".")] = "digits",
    arch: Annotated[str, typer.Option(
        help="Built-in architecture: mlp, cnn, sequence (token ids), text (strings), or auto (text for text, "
             "sequence for token ids, a cnn for image-shaped data, else an mlp).")] = "auto",
    model: Annotated[Optional[Path], typer.Option(help="Train your own untrained architecture (.keras) instead of --arch.")] = None,
    width: Width = None,
    depth: Depth = None,
    epochs: Epochs = str(TEACHER_BUDGET.epochs),
    patience: Patience = PATIENCE,
    max_epochs: MaxEpochs = MAX_EPOCHS,
    refit: Refit = False,
    batch_size: BatchSize = 64,
    learning_rate: LearningRate = 1e-3,
    seed: Seed = 0,
    val_split: ValSplit = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    num_classes: NumClasses = None,
    out: Annotated[Path, typer.Option(help="The teacher .keras file to write.")] = Path("teacher.keras"),
    checkpoint_dir: CheckpointDir = None,
    checkpoint_every: CheckpointEvery = 60.0,
    log_dir: LogDir = None,
    resume: Resume = False,
    restart: Restart = False,
    mixed_precision: MixedPrecision = Precision.off,
    strategy: Strategy = StrategyName.default,
    lr_schedule: LrSchedule = TEACHER_SCHEDULE,
    augment: TeacherAugment = TEACHER_BUDGET.augment,
    imports: Imports = None,
    unsafe: Unsafe = False,
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Train a teacher on hard labels and write it as a .keras file."""
    from kdcli import pipeline

    path, _ = pipeline.train_teacher(
        data, out, arch=arch, model=model, width=width, depth=depth,
        budget=Budget(epochs=parse_epochs(epochs), batch_size=batch_size, learning_rate=learning_rate,
                      lr_schedule=lr_schedule.value, seed=seed, augment=augment, patience=patience,
                      max_epochs=max_epochs, refit=refit),
        runtime=_runtime(strategy, mixed_precision, checkpoint_dir, resume, restart, checkpoint_every, log_dir),
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe, reporter=Reporter(quiet),
    )
    _result(path)


soft_labels_app = typer.Typer(help="Write a teacher's (or an ensemble's) logits for the training split "
                                   "(and merge sharded runs).")
app.add_typer(soft_labels_app, name="soft-labels")


@command("soft-labels", register_with=soft_labels_app.callback(invoke_without_command=True))
def soft_labels(
    ctx: typer.Context,
    teacher: Annotated[Optional[list[Path]], typer.Option(
        metavar="<path>",
        help="The teacher .keras file (required). Repeat it for an ensemble: the file then holds the log of the "
             "teachers' mean probabilities.")] = None,
    data: Data = None,
    out: Annotated[Path, typer.Option(help="The soft-label .h5 file to write.")] = Path("soft.h5"),
    dtype: Annotated[LogitsType, typer.Option(help="Storage type of the logits.")] = LogitsType.float32,
    top_k: Annotated[Optional[int], typer.Option(help="Keep only the K largest logits of each sample (smaller files).")] = None,
    shard: Annotated[Optional[str], typer.Option(help="I/N: write only the I-th of N contiguous parts of the rows (1 <= I <= N), for parallel runs; join them with 'soft-labels merge'.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per teacher call.")] = 256,
    split: Annotated[str, typer.Option(help="Split to label; soft labels are for training, so only 'train'.")] = "train",
    val_split: ValSplit = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    num_classes: NumClasses = None,
    imports: Imports = None,
    unsafe: Unsafe = False,
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Write the teacher's logits (or an ensemble's) for the training split to an HDF5 file."""
    if ctx.invoked_subcommand:
        return
    if not teacher:
        raise UsageError("give the teacher whose logits to write: --teacher model.keras")
    if split != "train":
        raise UsageError(f"--split {split}: soft labels are for the training split only (--split train); "
                         "distilling on test-set labels would leak the evaluation data")
    from kdcli import pipeline

    _result(pipeline.make_soft_labels(
        teacher, data, out, batch_size=batch_size, dtype=dtype.value,
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe, reporter=Reporter(quiet),
        top_k=top_k, shard=_shard(shard),
    ))


def _shard(text):
    """`I/N` (1-based on the command line) as `(index, count)`, 0-based."""
    if text is None:
        return None
    try:
        index, count = (int(v) for v in text.split("/"))
        assert 1 <= index <= count
    except (ValueError, AssertionError):
        raise typer.BadParameter(f"give I/N with 1 <= I <= N, like 2/3; got {text!r}", param_hint="--shard") from None
    return index - 1, count


@command("merge", register_with=soft_labels_app.command("merge"))
def merge(
    parts: Annotated[list[Path], typer.Argument(help="The part files of a sharded run (--shard I/N), in any order.")],
    out: Annotated[Path, typer.Option(help="The merged soft-label .h5 file to write.")] = Path("soft.h5"),
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Merge the parts of a sharded soft-labels run into one file, equal to an unsharded run's."""
    from kdcli import pipeline

    _result(pipeline.merge_soft_labels(parts, out, Reporter(quiet)))


@command("distill")
def distill(
    soft_labels: Annotated[Optional[Path], typer.Option(help="Soft labels from kdcli soft-labels (the teacher never runs).")] = None,
    teacher: Annotated[Optional[list[Path]], typer.Option(
        metavar="<path>",
        help="A teacher .keras file; alone, it is all distill needs (one shot). Repeat it for an ensemble: the "
             "targets are the mean of the teachers' probabilities, and shrink:F derives from the first. With "
             "--soft-labels, their teacher(s), all of them, used only to derive a shrink:F student.")] = None,
    data: Data = None,
    student: Annotated[Optional[str], typer.Option(
        help="auto (as train-teacher --arch auto picks), mlp, cnn, sequence, text, shrink:F (the teacher with every "
             "width scaled by F), app:NAME[:key=value,...] (a keras.applications model) or a .keras architecture; "
             "default shrink:0.25 with --teacher, auto with --soft-labels.")
    ] = None,
    width: Width = None,
    depth: Depth = None,
    method: Annotated[MethodName, typer.Option(
        help="kd (Hinton et al.), dkd (decoupled KD, Zhao et al.), dist (correlations, Huang et al.) or hints "
             "(kd plus matching an intermediate layer, FitNets; needs --teacher).")
    ] = DEFAULT_METHOD_CHOICE,
    temperature: Annotated[Optional[float], typer.Option(help=option_help("--temperature"))] = None,
    alpha: Annotated[Optional[float], typer.Option(help=option_help("--alpha"))] = None,
    dkd_alpha: Annotated[Optional[float], typer.Option(help=option_help("--dkd-alpha"))] = None,
    dkd_beta: Annotated[Optional[float], typer.Option(help=option_help("--dkd-beta"))] = None,
    warmup_epochs: Annotated[Optional[int], typer.Option(help=option_help("--warmup-epochs"))] = None,
    beta: Annotated[Optional[float], typer.Option(help=option_help("--beta"))] = None,
    gamma: Annotated[Optional[float], typer.Option(help=option_help("--gamma"))] = None,
    standardize_logits: Annotated[bool, typer.Option(
        "--standardize-logits", help=option_help("--standardize-logits"))] = False,
    hint_weight: Annotated[Optional[float], typer.Option(help=option_help("--hint-weight"))] = None,
    student_layer: Annotated[Optional[str], typer.Option(help=option_help("--student-layer"))] = None,
    teacher_layer: Annotated[Optional[str], typer.Option(help=option_help("--teacher-layer"))] = None,
    epochs: Annotated[str, typer.Option(help=EPOCHS_HELP + "; --baseline stops by the same rule on its own.")
    ] = AUTO_EPOCHS,
    patience: Patience = PATIENCE,
    max_epochs: MaxEpochs = MAX_EPOCHS,
    refit: Refit = False,
    batch_size: BatchSize = 64,
    learning_rate: LearningRate = 1e-3,
    seed: Seed = 0,
    baseline: Annotated[bool, typer.Option("--baseline", help="Also train the same student from scratch and report what distillation gained.")] = False,
    seeds: Annotated[int, typer.Option(
        help="With --baseline: train both students with K seeds (--seed and the next ones) and report the mean ± "
             "std of each and of the gain; OUT is --seed's student.", metavar="K")] = 1,
    tune: Annotated[int, typer.Option(
        help="Search N trials of methods, their temperature and weights, and augmentations (scratch among them), "
             "each scored on the validation split of --epochs auto, and keep the winner.", metavar="N")] = 0,
    tune_json: Annotated[Optional[Path], typer.Option(help="With --tune: also write the trials to this JSON file.")
    ] = None,
    tune_widths: Annotated[str, typer.Option(
        help="With --tune: the student's widths to try, as multiples of its own, comma-separated (1,1.5,2); "
             "scratch is tried at each.")] = "1",
    online: Annotated[bool, typer.Option("--online", help="Run the teacher on every batch instead of once (with --teacher).")] = False,
    student_output: Annotated[StudentOutput, typer.Option(
        help="What the saved student outputs: auto (like its teacher: probabilities for a softmax teacher, one "
             "sigmoid probability for a binary one, logits for a logits teacher), logits, softmax or sigmoid.")
    ] = StudentOutput.auto,
    val_split: ValSplit = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    num_classes: NumClasses = None,
    out: Annotated[Optional[Path], typer.Option(
        help="The student .keras file to write (default: T.student.keras beside a teacher T.keras, "
             "else student.keras).")] = None,
    checkpoint_dir: CheckpointDir = None,
    checkpoint_every: CheckpointEvery = 60.0,
    log_dir: LogDir = None,
    resume: Resume = False,
    restart: Restart = False,
    mixed_precision: MixedPrecision = Precision.off,
    strategy: Strategy = StrategyName.default,
    lr_schedule: LrSchedule = Schedule.constant,
    augment: Augment = "none",
    imports: Imports = None,
    unsafe: Unsafe = False,
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Train a small student from a teacher's soft labels, or from the teacher itself."""
    from kdcli import pipeline
    from kdcli.methods import method_from_options

    given = [name for name, value in (("--method", method.value != DEFAULT_METHOD_CHOICE.value),
                                      ("--augment", augment != "none")) if value]
    given += [f"--{name.replace('_', '-')}" for name, value in (
        ("temperature", temperature), ("alpha", alpha), ("dkd_alpha", dkd_alpha), ("dkd_beta", dkd_beta),
        ("warmup_epochs", warmup_epochs), ("beta", beta), ("gamma", gamma), ("hint_weight", hint_weight),
        ("student_layer", student_layer), ("teacher_layer", teacher_layer)) if value is not None]
    if tune and (given or standardize_logits):
        raise UsageError(f"--tune searches the method, its options and the augmentation: leave out "
                         f"{', '.join(given or ['--standardize-logits'])}")
    chosen = method_from_options(method.value, {
        "--temperature": temperature, "--alpha": alpha, "--dkd-alpha": dkd_alpha, "--dkd-beta": dkd_beta,
        "--warmup-epochs": warmup_epochs, "--beta": beta, "--gamma": gamma,
        "--standardize-logits": True if standardize_logits else None, "--hint-weight": hint_weight,
        "--student-layer": student_layer, "--teacher-layer": teacher_layer,
    })
    path, _ = pipeline.distill_student(
        data, out, soft_labels=soft_labels, teacher=teacher or None, student=student, width=width, depth=depth,
        method=chosen, online=online, baseline=baseline, seeds=seeds, tune=tune, tune_json=tune_json,
        tune_widths=_numbers(tune_widths, "--tune-widths"),
        student_output=student_output.value,
        budget=Budget(epochs=parse_epochs(epochs), batch_size=batch_size, learning_rate=learning_rate,
                      lr_schedule=lr_schedule.value, seed=seed, augment=augment, patience=patience,
                      max_epochs=max_epochs, refit=refit),
        runtime=_runtime(strategy, mixed_precision, checkpoint_dir, resume, restart, checkpoint_every, log_dir),
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe, reporter=Reporter(quiet),
    )
    _result(path)


@command("evaluate")
def evaluate(
    models: Annotated[list[Path], typer.Argument(help="Models (.keras or .tflite) to compare; the first is the reference.")],
    data: Data = None,
    json_out: Annotated[Optional[str], typer.Option("--json", help="Write the report as JSON to PATH, or to stdout with '-'.")] = None,
    markdown: Annotated[Optional[str], typer.Option(help="Write the report as Markdown (for CI job summaries).")] = None,
    append: Annotated[bool, typer.Option(
        "--append", help="Add the Markdown report to the end of the --markdown file instead of replacing it "
                         "(as $GITHUB_STEP_SUMMARY expects).")] = False,
    plot: Annotated[Optional[str], typer.Option(help="Draw accuracy against latency to a PNG (needs: pip install 'kdcli\\[plot]').")] = None,
    min_accuracy: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Gate: fail (exit 3) if any model's accuracy is below this fraction, e.g. 0.9.")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(min=0.0, help="Gate: fail (exit 3) if a model loses more than these percentage points against the first.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per call when computing accuracy.")] = 256,
    latency_runs: Annotated[int, typer.Option(min=10, help="Single-sample calls timed per model (more: slower, more precise).")] = 200,
    val_split: ValSplit = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    num_classes: NumClasses = None,
    imports: Imports = None,
    unsafe: Unsafe = False,
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Compare models on the test split: accuracy, size, latency; gate on accuracy."""
    from rich.console import Console

    from kdcli import pipeline, report
    from kdcli.errors import EXIT_GATE_FAILED
    from kdcli.files import check_output, write_text

    # Every output and optional dependency is checked before the (long) evaluation.
    for option, path, suffix in (("--json", json_out, None), ("--markdown", markdown, None), ("--plot", plot, ".png")):
        if path is not None and not path.strip():
            raise UsageError(f"{option}: the path is empty (an unset variable?); give a file path")
        if path and path != "-" and not path.startswith("/dev/"):
            check_output(path, suffix, option)
    if markdown == "-" or plot == "-":
        raise UsageError(f"{'--markdown' if markdown == '-' else '--plot'}: '-' (stdout) is for --json; give a file path")
    if append and not markdown:
        raise UsageError("--append adds the report to the --markdown file: give --markdown PATH")
    if plot:
        report.require_matplotlib()
    result = pipeline.evaluate(
        models, data, batch_size=batch_size, latency_runs=latency_runs,
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe,
    )
    from kdcli.evaluation import check_gates, describe_failure

    failed = check_gates(result, min_accuracy, max_accuracy_drop)
    if json_out == "-":
        typer.echo(report.to_json(result))
    else:
        # A terminal gets a layout that fits it; a file or a CI log, a fixed width read later.
        report.render(result, Console(width=None if sys.stdout.isatty() else LOG_WIDTH))
        if json_out:
            write_text(json_out, report.to_json(result) + "\n")
    if markdown:
        write_text(markdown, report.markdown(result), append=append)
    if plot:
        report.plot(result, plot)
    for gate in failed:
        _error_line(f"gate failed: {describe_failure(gate)}")
    if failed:
        raise typer.Exit(EXIT_GATE_FAILED)


@command("export")
def export(
    model: Annotated[Path, typer.Argument(help="The .keras model to export.")],
    format: Annotated[ExportFormat, typer.Option(help="tflite (phones, edge) or saved_model (TF Serving).")] = ExportFormat.tflite,
    quantize: Annotated[Quantization, typer.Option(help="TFLite: none, float16, dynamic (int8 weights) or int8 (full integer, calibrated on --data).")] = Quantization.none,
    data: Data = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write (default: beside the model, e.g. student-int8.tflite).")] = None,
    val_split: ValSplit = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    num_classes: NumClasses = None,
    imports: Imports = None,
    unsafe: Unsafe = False,
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Export a model for deployment: TFLite (optionally quantized) or a SavedModel."""
    from kdcli import pipeline

    if format.value == "saved_model" and quantize.value != "none":
        raise typer.BadParameter("applies to --format tflite; a SavedModel keeps float32 weights",
                                 param_hint="--quantize")

    _result(pipeline.export(
        model, out, format=format.value, quantize=quantize.value, data=data,
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe, reporter=Reporter(quiet),
    ))


@command("info")
def info(
    artifact: Annotated[Path, typer.Argument(help="A .keras model, a soft-label .h5 file, a .tflite file or a SavedModel folder.")],
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Show where an artifact came from (its provenance), as JSON."""
    import json

    from kdcli.artifacts import read_provenance

    if not artifact.exists():
        raise KdcliError(f"{artifact}: no such file")
    record = read_provenance(artifact)
    if record is None:
        raise KdcliError(f"{artifact}: carries no kdcli provenance")
    typer.echo(json.dumps(record, indent=2))


def main():
    """Entry point of the `kdcli` console script and of `python -m kdcli`."""
    app(prog_name="kdcli")  # the same name, help and completion script however it was started


if __name__ == "__main__":
    main()
