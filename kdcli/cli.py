"""The `kdcli` command line: parses options and calls `kdcli.pipeline`.

Conventions: the result (an artifact's path, a report) goes to stdout, talk
to stderr; an expected error is one `error: ...` line and its exit code (2 for
a usage error, with a `try 'kdcli ... --help'` line; 3 for a failed gate; 4 for
bad input); `--debug` shows tracebacks. TensorFlow is imported only inside
commands, and `--help` is plain text that needs neither Rich nor pydantic, so it
answers at once.
"""

import copy
import functools
import inspect
import re
import shutil
import sys
import textwrap
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional, get_args

import typer

# Typer (0.26 and later, see pyproject.toml) carries its own copy of Click.
from typer._click import exceptions as click_errors
from typer._click.globals import get_current_context
from typer.core import TyperCommand, TyperGroup

from kdcli import __version__
from kdcli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, KdcliError, UsageError
from kdcli.methods import DEFAULT_METHOD, method_help
from kdcli.options import TEACHER_BUDGET, Budget, Runtime, parse_epochs
from kdcli.specs import (
    COLOR_MODES,
    FORMATS,
    LOGIT_DTYPES,
    LR_SCHEDULES,
    MIN_INT8_AGREEMENT,
    PRECISIONS,
    QUANTIZATIONS,
    STRATEGIES,
    STUDENT_OUTPUTS,
)

# The commands in the order a pipeline runs them, which is the order `kdcli --help` lists them.
PIPELINE_ORDER = ("train-teacher", "soft-labels", "distill", "compress", "evaluate", "export", "info")
# Method parameters were options of their own; each now goes in --method NAME:key=value.
METHOD_OPTIONS = {
    "--temperature": "kd:temperature=T", "--alpha": "kd:alpha=A", "--dkd-alpha": "dkd:alpha=A",
    "--dkd-beta": "dkd:beta=B", "--warmup-epochs": "dkd:warmup=N", "--beta": "dist:beta=B",
    "--gamma": "dist:gamma=G", "--standardize-logits": "kd:standardize=true",
    "--hint-weight": "hints:hint_weight=W", "--student-layer": "hints:student_layer=NAME",
    "--teacher-layer": "hints:teacher_layer=NAME",
}


class _CompactHelp:
    """A help that fits a screen, in plain text (like git's or ripgrep's): the usage line, the description,
    then a section per help panel (`rich_help_panel=`), each option on its own line with its help, and a
    group's commands in pipeline order. Flags show no value placeholder (Typer would print `<bool>` beside
    each), and a default follows its help text (`[default: X]`) instead of taking a line of its own.

    Typer would draw the help with Rich, whose import and layout take a quarter of a second."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
                if param.default is None:  # a bool, so that Typer need not import its value coercion
                    param.default = False
            default = getattr(param, "default", None)
            default = getattr(default, "value", default)  # a choice's Enum member
            if getattr(param, "show_default", None) is not False and default is not None and default != "" \
                    and not getattr(param, "is_flag", False) and param.help:
                param.help = f"{param.help} [default: {default}]"
                param.show_default = False
        return params

    def format_help(self, ctx, formatter):
        if ctx.terminal_width is None:  # the terminal's width, even under Click's floor of 50 columns
            columns = shutil.get_terminal_size().columns
            formatter.width = max(min(columns, ctx.max_content_width or columns) - 2, 30)
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        for panel, rows in _help_sections(self, ctx):
            with formatter.section(panel):
                _write_rows(formatter, rows)
        self.format_epilog(ctx, formatter)


# The widest option (with its metavar) whose help starts on the same line; a wider one's starts on the next.
HELP_COLUMN = 26
ARGUMENTS_PANEL, OPTIONS_PANEL, COMMANDS_PANEL = "Arguments", "Options", "Commands"  # Typer's panel titles


def _help_sections(command, ctx):
    """The sections of a command's help, as `(panel, [(name, help), ...])` in the order the help shows them:
    the arguments, then the options, each kind's default panel first and the others in the order of their
    first parameter; then a group's commands, in `list_commands` order, each with its help's first paragraph."""
    panels = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:  # hidden
            continue
        argument = param.param_type_name == "argument"
        if argument:  # `MODEL <list[Path]>`: the argument's name says it; Typer appends its Python type
            record = (re.sub(r" <[^>]*>$", "", record[0]), record[1])
        default = ARGUMENTS_PANEL if argument else OPTIONS_PANEL
        panel = getattr(param, "rich_help_panel", None) or default
        panels.setdefault((not argument, panel != default, panel), []).append(record)
    sections = [(key[2], panels[key]) for key in sorted(panels, key=lambda key: key[:2])]  # stable sort
    commands = []
    for name in getattr(command, "list_commands", lambda ctx: [])(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            text = inspect.cleandoc(sub.short_help or sub.help or "").split("\n\n")[0]
            commands.append((name, text))
    return sections + ([(COMMANDS_PANEL, commands)] if commands else [])


def _write_rows(formatter, rows):
    """`  NAME  help`, the help wrapped to the formatter's width in a column of its own, as wide as the
    section's widest NAME up to `HELP_COLUMN` (a wider NAME puts its help on the next line). Words are
    neither cut nor split at hyphens, and `[default: X]` stays on one line."""
    indent = " " * formatter.current_indent
    column = max((len(name) for name, _ in rows if len(name) <= HELP_COLUMN), default=HELP_COLUMN) + 2
    width = max(formatter.width - formatter.current_indent - column, 20)
    for name, text in rows:
        text = " ".join(text.split()).replace("[default: ", "[default:\0")  # \0: no line break there
        lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]
        if len(name) + 2 > column:
            formatter.write(f"{indent}{name}\n")
            name = ""
        for line in lines:
            formatter.write(f"{indent}{name:<{column}}{line}".rstrip().replace("\0", " ") + "\n")
            name = ""


class _Command(_CompactHelp, TyperCommand):
    """A kdcli subcommand."""


class _Group(_CompactHelp, TyperGroup):
    """Typer's command group, with Click's usage errors reported as kdcli reports every error:
    one `error:` line, then one `try 'kdcli COMMAND --help'` line, exit code 2 (no box)."""

    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: PIPELINE_ORDER.index(n) if n in PIPELINE_ORDER else len(PIPELINE_ORDER))

    def parse_args(self, ctx, args):
        """A subcommand's --help (`kdcli soft-labels merge --help`) is answered before the group's own options
        are processed, when none of them is given: Typer would check their defaults, importing pydantic."""
        if not ctx.resilient_parsing:
            try:
                given, rest, _ = self.make_parser(ctx).parse_args(args=list(args))
            except click_errors.UsageError:
                given, rest = True, []  # the usual parsing reports it
            sub = self.get_command(ctx, rest[0]) if rest and not given else None
            if sub is not None:
                sub_ctx = sub.context_class(sub, info_name=rest[0], parent=ctx)
                help_option = sub.get_help_option(sub_ctx)
                try:
                    wanted = help_option is not None and sub.make_parser(sub_ctx).parse_args(args=rest[1:])[0].get(
                        help_option.name)
                except click_errors.UsageError:
                    wanted = False
                if wanted:
                    sub.make_context(rest[0], rest[1:], parent=ctx)  # prints the help and exits
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        refused = _method_option_given(sys.argv[1:] if args is None else args)
        try:
            if refused:
                raise click_errors.UsageError(refused)
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as e:  # `kdcli` alone: its help, on stdout
            typer.echo(e.format_message())
            code = EXIT_USAGE
        except click_errors.ClickException as e:  # usage errors (exit code 2) and the like
            ctx = getattr(e, "ctx", None)
            _usage_error(e.format_message(), ctx.command_path if ctx else "kdcli distill" if refused else "kdcli")
            code = e.exit_code
        except typer.Abort:
            _error_line("aborted")
            code = EXIT_INTERNAL
        sys.exit(code if isinstance(code, int) else 0)


def _method_option_given(args):
    """The line for a method parameter given as an option of its own, naming its spelling in --method."""
    for arg in map(str, args):
        option = arg.split("=", 1)[0]
        if option in METHOD_OPTIONS:
            return f"{option} is a method parameter: give it in --method, as --method {METHOD_OPTIONS[option]}"
    return None


app = typer.Typer(
    name="kdcli",
    help="Compress trained Keras models by knowledge distillation.",
    cls=_Group,
    no_args_is_help=True,
    rich_markup_mode=None,  # help texts are plain text (see _CompactHelp)
    pretty_exceptions_enable=False,
    # The help is wrapped to the terminal's width, up to 120 columns (Click's default stops at 80).
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)


def _show_version(value):
    if value:
        typer.echo(f"kdcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    # A plain bool: Typer then skips its (slow to import) value coercion, and --help answers at once.
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, help="Print kdcli's version and exit.")] = False,
):
    """Compress trained Keras models by knowledge distillation."""


# The width of `evaluate`'s table when stdout is not a terminal (a file, a CI log).
LOG_WIDTH = 150
# The defaults of the options, from the library's own (each defined once).
DISTILL_BUDGET = Budget()
RUNTIME = Runtime()


def _choices(name, *values):
    """A str Enum of option values, so Typer lists them and refuses others (exit code 2)."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


# The choices come from `kdcli.specs`, beside the modules that check them (it imports no NumPy or TensorFlow).
ColorModeChoice = _choices("ColorModeChoice", *COLOR_MODES)
Precision = _choices("Precision", *PRECISIONS)
StrategyName = _choices("StrategyName", *STRATEGIES)
LogitsType = _choices("LogitsType", *LOGIT_DTYPES)
ExportFormat = _choices("ExportFormat", *FORMATS)
Schedule = _choices("Schedule", *LR_SCHEDULES)
Quantization = _choices("Quantization", *QUANTIZATIONS)
StudentOutput = _choices("StudentOutput", *STUDENT_OUTPUTS)
TEACHER_SCHEDULE, DISTILL_SCHEDULE = Schedule(TEACHER_BUDGET.lr_schedule), Schedule(DISTILL_BUDGET.lr_schedule)
DEFAULT_PRECISION, DEFAULT_STRATEGY = Precision(RUNTIME.mixed_precision), StrategyName(RUNTIME.strategy)

# The help panels, in the order the help shows them.
DATA, MODEL, STUDENT, METHOD, BUDGET, COMPARE, RUNTIME_PANEL, OUTPUT = (
    "Data", "Model", "Student", "Method", "Budget", "Compare and tune", "Runtime", "Output")
TEACHER_AND_DATA = "Teacher and data"


def in_panel(option, panel):
    """The same option, shown in another help panel."""
    base, info = get_args(option)
    info = copy.copy(info)
    info.rich_help_panel = panel
    return Annotated[base, info]


DATA_HELP = ("digits or texts (bundled), mnist, fashion_mnist, cifar10, cifar100 (Keras' cache), an .npz or .h5 "
             "file, or a folder of images or .txt files")
Data = Annotated[Optional[str], typer.Option(
    help=f"{DATA_HELP}; default: the data recorded in the input file.", rich_help_panel=DATA, metavar="DATA")]
ValSplit = Annotated[Optional[float], typer.Option(
    help="Share held out for testing when the data has no test split (default 0.2).", rich_help_panel=DATA,
    metavar="SHARE")]
ImageSize = Annotated[Optional[str], typer.Option(
    help="Image folders: resize to HxW, e.g. 32x32 (default: the first image's).", rich_help_panel=DATA,
    metavar="HxW")]
ColorMode = Annotated[Optional[ColorModeChoice], typer.Option(
    help="Image folders: grayscale, rgb or auto (the first image's).", rich_help_panel=DATA, metavar="MODE")]
NumClasses = Annotated[Optional[int], typer.Option(
    help="Classes 0..N-1, so that a class without training samples is accepted.", metavar="N",
    rich_help_panel=DATA)]
Unsafe = Annotated[bool, typer.Option(
    "--unsafe", help="Load models that hold code (Lambda layers). Only for files you trust.", rich_help_panel=DATA)]
Imports = Annotated[Optional[list[str]], typer.Option(
    "--import", metavar="MODULE", rich_help_panel=DATA,
    help="Import a module (a name or a .py file) that registers custom layers, before loading models. "
         "Repeatable.")]

# Values are checked where the library checks them (kdcli.options, kdcli.models...), each rule once.
Epochs = Annotated[str, typer.Option(
    help="Passes over the training split, or auto: stop when the score on a held-out 10% (--monitor) has not improved "
         "for --patience epochs (see --monitor), keeping the best epoch.", metavar="N|auto", rich_help_panel=BUDGET)]
Patience = Annotated[int, typer.Option(help="With --epochs auto: epochs without a better validation score.",
                                       metavar="N", rich_help_panel=BUDGET)]
Monitor = Annotated[str, typer.Option(
    help="With --epochs auto: what the validation split judges. accuracy; loss (cross-entropy); kl (the "
         "student's divergence from its teacher); auto: kl for a distilled student, accuracy otherwise.",
    metavar="NAME", rich_help_panel=BUDGET)]
MaxEpochs = Annotated[int, typer.Option(help="With --epochs auto: the most epochs.", metavar="N",
                                        rich_help_panel=BUDGET)]
Refit = Annotated[bool, typer.Option(
    "--refit", help="With --epochs auto: then retrain on the whole training split for the best epoch's count.",
    rich_help_panel=BUDGET)]
BatchSize = Annotated[int, typer.Option(help="Samples per training step.", metavar="N", rich_help_panel=BUDGET)]
LearningRate = Annotated[float, typer.Option(help="Adam's step size (the schedule's peak).", metavar="RATE",
                                             rich_help_panel=BUDGET)]
LrSchedule = Annotated[Schedule, typer.Option(
    metavar="NAME", help="cosine (decays to 0), constant, or plateau (halves when validation stalls; --epochs auto).",
    rich_help_panel=BUDGET)]
Seed = Annotated[int, typer.Option(help="Seed of initialisation, shuffling, dropout and augmentation.",
                                   metavar="N", rich_help_panel=BUDGET)]
AUGMENT_HELP = "shift[:N] (shifted copies, up to N pixels), mixup, shift+mixup"
Augment = Annotated[str, typer.Option(
    help=f"none, {AUGMENT_HELP}; the teacher runs on every batch to label them.", metavar="KIND",
    rich_help_panel=METHOD)]
TeacherAugment = Annotated[str, typer.Option(
    help=f"auto (shift for a cnn, else none), none, {AUGMENT_HELP}.", metavar="KIND", rich_help_panel=BUDGET)]
Width = Annotated[Optional[int], typer.Option(
    help="Units per hidden layer (mlp), filters of the first block (cnn).", metavar="N", rich_help_panel=MODEL)]
Depth = Annotated[Optional[int], typer.Option(
    help="Hidden layers (mlp), blocks (cnn), or a shrunk KerasHub backbone's layers.", metavar="N",
    rich_help_panel=MODEL)]

CheckpointDir = Annotated[Optional[Path], typer.Option(
    help="Where checkpoints go (default: OUT with .ckpt, beside it).", metavar="DIR", rich_help_panel=RUNTIME_PANEL)]
CheckpointEvery = Annotated[float, typer.Option(
    help="Seconds between checkpoints (0: every epoch); also one at the end and on Ctrl-C or SIGTERM.",
    metavar="SECONDS", rich_help_panel=RUNTIME_PANEL)]
LogDir = Annotated[Optional[Path], typer.Option(
    help="Write per-epoch training logs there (TensorBoard and metrics.csv).", metavar="DIR",
    rich_help_panel=RUNTIME_PANEL)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.",
                                      rich_help_panel=RUNTIME_PANEL)]
Restart = Annotated[bool, typer.Option(
    "--restart", help="Discard an unfinished run's checkpoint and start over.", rich_help_panel=RUNTIME_PANEL)]
MixedPrecision = Annotated[Precision, typer.Option(
    metavar="MODE", help="off, or bf16: compute in bfloat16 (weights and logits stay float32).", rich_help_panel=RUNTIME_PANEL)]
Strategy = Annotated[StrategyName, typer.Option(
    metavar="NAME", help="tf.distribute: default, mirrored (local GPUs), multi-worker (TF_CONFIG) or auto; "
                         "--batch-size is then per replica.",
    rich_help_panel=RUNTIME_PANEL)]
StepsPerCallOption = Annotated[Optional[int], typer.Option(
    help="Training steps per compiled call (default: chosen, about 0.2 s of work a call); the result is the same.",
    metavar="K", rich_help_panel=RUNTIME_PANEL)]
Xla = Annotated[bool, typer.Option(
    "--xla", help="Compile the training step with XLA (jit_compile; one replica, not text). Off by default: "
                  "slower on CPUs.",
    rich_help_panel=RUNTIME_PANEL)]
Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.", rich_help_panel=RUNTIME_PANEL)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but the result.", rich_help_panel=OUTPUT)]
DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Print the resolved plan and exit, writing nothing.", rich_help_panel=OUTPUT)]


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
            finally:
                clear_status()

        return (register_with or app.command(name, cls=_Command))(wrapper)

    return register


# kdcli.console, and Rich with it, is imported by the commands that talk, not for --help.
def _reporter(quiet):
    """The command's `kdcli.console.Reporter`."""
    from kdcli.console import Reporter

    return Reporter(quiet)


def clear_status():
    """Clear the status line of `Reporter.status`, if one shows (none can before kdcli.console is imported)."""
    console = sys.modules.get("kdcli.console")
    if console is not None:
        console.clear_status()


def _stderr():
    """The Rich console on stderr that all talk goes through (`kdcli.console.stderr`)."""
    from kdcli.console import stderr

    return stderr


def _loading(quiet):
    """The command's `Reporter`, showing `loading ...` on a terminal until its first line or bar."""
    reporter = _reporter(quiet)
    reporter.status("loading TensorFlow, the data and the models ...")
    return reporter


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
    _stderr().print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def _usage_error(message, command_path):
    """A usage error: the `error:` line, then where to read about the options."""
    if message[:1].isupper() and message[1:2].islower():  # Click's "Invalid value..." reads as ours
        message = message[0].lower() + message[1:]
    _error_line(message)
    _stderr().print(f"try '{command_path} --help'", markup=False, highlight=False, soft_wrap=True)


def _data_options(val_split, image_size, color_mode, num_classes=None):
    """The `load_data` keywords given on the command line (None: not given)."""
    return {"val_split": val_split, "image_size": None if image_size is None else _image_size(image_size),
            "color_mode": color_mode.value if color_mode else None, "num_classes": num_classes}


def _image_size(text):
    """`HxW` as `[H, W]`, both positive."""
    try:
        size = [int(v) for v in text.lower().split("x")]
    except ValueError:
        size = []
    if len(size) != 2 or min(size) < 1:
        raise typer.BadParameter(f"give HxW, like 32x32; got {text!r}", param_hint="--image-size")
    return size


def _runtime(strategy, mixed_precision, checkpoint_dir, resume, restart, checkpoint_every, log_dir,
             steps_per_call=None, xla=False):
    """The `Runtime` of the training commands' shared options."""
    return Runtime(strategy=strategy.value, mixed_precision=mixed_precision.value, checkpoint_dir=checkpoint_dir,
                   resume=resume, restart=restart, checkpoint_every=checkpoint_every, log_dir=log_dir,
                   steps_per_call=steps_per_call, xla=xla)


def _numbers(text, option):
    """A comma-separated list of numbers (`1,1.5,2`)."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"{option} needs numbers separated by commas, like 1,1.5,2; got {text!r}") from None


def _result(path):
    """Print an artifact's path, alone, on stdout."""
    clear_status()
    typer.echo(str(path))


def _plan(plan):
    """Print a dry run's plan on stdout."""
    clear_status()
    typer.echo(str(plan))


@command("train-teacher")
def train_teacher(
    data: Annotated[str, typer.Option(help=DATA_HELP + ".", rich_help_panel=DATA, metavar="DATA")] = "digits",
    val_split: ValSplit = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    num_classes: NumClasses = None,
    arch: Annotated[str, typer.Option(
        help="mlp, cnn, sequence (token ids), text (strings), or auto (picked from the data).", metavar="ARCH",
        rich_help_panel=MODEL)] = "auto",
    model: Annotated[Optional[Path], typer.Option(
        help="Train your own untrained architecture (.keras) instead of --arch.", metavar="PATH",
        rich_help_panel=MODEL)] = None,
    width: Width = None,
    depth: Depth = None,
    epochs: Epochs = str(TEACHER_BUDGET.epochs),
    patience: Patience = TEACHER_BUDGET.patience,
    monitor: Monitor = TEACHER_BUDGET.monitor,
    max_epochs: MaxEpochs = TEACHER_BUDGET.max_epochs,
    refit: Refit = TEACHER_BUDGET.refit,
    batch_size: BatchSize = TEACHER_BUDGET.batch_size,
    learning_rate: LearningRate = TEACHER_BUDGET.learning_rate,
    lr_schedule: LrSchedule = TEACHER_SCHEDULE,
    augment: TeacherAugment = TEACHER_BUDGET.augment,
    seed: Seed = TEACHER_BUDGET.seed,
    checkpoint_dir: CheckpointDir = None,
    checkpoint_every: CheckpointEvery = RUNTIME.checkpoint_every,
    steps_per_call: StepsPerCallOption = None,
    xla: Xla = False,
    log_dir: LogDir = None,
    resume: Resume = False,
    restart: Restart = False,
    mixed_precision: MixedPrecision = DEFAULT_PRECISION,
    strategy: Strategy = DEFAULT_STRATEGY,
    imports: in_panel(Imports, MODEL) = None,
    unsafe: in_panel(Unsafe, MODEL) = False,
    debug: Debug = False,
    out: Annotated[Path, typer.Option(help="The teacher .keras file to write.", metavar="PATH",
                                      rich_help_panel=OUTPUT)] = Path("teacher.keras"),
    dry_run: DryRun = False,
    quiet: Quiet = False,
):
    """Train a teacher on hard labels and write it as a .keras file."""
    from kdcli import pipeline

    path, plan = pipeline.train_teacher(
        data, out, arch=arch, model=model, width=width, depth=depth,
        budget=Budget(epochs=parse_epochs(epochs), batch_size=batch_size, learning_rate=learning_rate,
                      lr_schedule=lr_schedule.value, seed=seed, augment=augment, patience=patience,
                      max_epochs=max_epochs, refit=refit, monitor=monitor),
        runtime=_runtime(strategy, mixed_precision, checkpoint_dir, resume, restart, checkpoint_every, log_dir,
                         steps_per_call, xla),
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe,
        reporter=_loading(quiet), dry_run=dry_run,
    )
    _plan(plan) if dry_run else _result(path)


soft_labels_app = typer.Typer(cls=_Group, rich_markup_mode=None,
                              help="Write a teacher's (or an ensemble's) logits for the training split "
                                   "(and merge sharded runs).")
app.add_typer(soft_labels_app, name="soft-labels")


@command("soft-labels", register_with=soft_labels_app.callback(invoke_without_command=True))
def soft_labels(
    ctx: typer.Context,
    teacher: Annotated[Optional[list[Path]], typer.Option(
        metavar="PATH", rich_help_panel=TEACHER_AND_DATA,
        help="The teacher .keras file (required). Repeat it for an ensemble (the log of the mean probabilities).")
    ] = None,
    data: in_panel(Data, TEACHER_AND_DATA) = None,
    val_split: in_panel(ValSplit, TEACHER_AND_DATA) = None,
    image_size: in_panel(ImageSize, TEACHER_AND_DATA) = None,
    color_mode: in_panel(ColorMode, TEACHER_AND_DATA) = None,
    num_classes: in_panel(NumClasses, TEACHER_AND_DATA) = None,
    imports: in_panel(Imports, TEACHER_AND_DATA) = None,
    unsafe: in_panel(Unsafe, TEACHER_AND_DATA) = False,
    split: Annotated[str, typer.Option(help="The split to label: soft labels are for training, so only train.",
                                       metavar="SPLIT",
                                       rich_help_panel=TEACHER_AND_DATA)] = "train",
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per teacher call.", metavar="N",
                                            rich_help_panel=RUNTIME_PANEL)] = 256,
    shard: Annotated[Optional[str], typer.Option(
        metavar="I/N", rich_help_panel=RUNTIME_PANEL,
        help="Write only the I-th of N parts of the rows, for parallel runs; join them with soft-labels merge.")
    ] = None,
    debug: Debug = False,
    out: Annotated[Path, typer.Option(help="The soft-label .h5 file to write.", metavar="PATH",
                                      rich_help_panel=OUTPUT)] = Path("soft.h5"),
    dtype: Annotated[LogitsType, typer.Option(help="Storage type of the logits: float32 or float16.", metavar="TYPE",
                                              rich_help_panel=OUTPUT)
    ] = LogitsType.float32,
    top_k: Annotated[Optional[int], typer.Option(
        help="Keep only each sample's K largest logits (smaller files).", metavar="K", rich_help_panel=OUTPUT)] = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
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

    written = pipeline.make_soft_labels(
        teacher, data, out, batch_size=batch_size, dtype=dtype.value,
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe,
        reporter=_loading(quiet), top_k=top_k, shard=_shard(shard), dry_run=dry_run,
    )
    _plan(written[1]) if dry_run else _result(written)


def _shard(text):
    """`I/N` (1-based on the command line) as `(index, count)`, 0-based."""
    if text is None:
        return None
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        index, count = 0, 0
    if not 1 <= index <= count:
        raise typer.BadParameter(f"give I/N with 1 <= I <= N, like 2/3; got {text!r}", param_hint="--shard")
    return index - 1, count


@command("merge", register_with=soft_labels_app.command("merge", cls=_Command))
def merge(
    parts: Annotated[list[Path], typer.Argument(metavar="PART", help="The part files of a sharded run (--shard I/N), in any order.")],
    out: Annotated[Path, typer.Option(help="The merged soft-label .h5 file to write.", metavar="PATH")] = Path("soft.h5"),
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Merge the parts of a sharded soft-labels run into one file, equal to an unsharded run's."""
    from kdcli import pipeline

    _result(pipeline.merge_soft_labels(parts, out, _reporter(quiet)))


# distill's own options.
SoftLabels = Annotated[Optional[Path], typer.Option(
    help="Soft labels from kdcli soft-labels (the teacher never runs).", metavar="PATH",
    rich_help_panel=TEACHER_AND_DATA)]
Teachers = Annotated[Optional[list[Path]], typer.Option(
    metavar="PATH", rich_help_panel=TEACHER_AND_DATA,
    help="A teacher model; alone, all distill needs. Repeat it for an ensemble (mean probabilities). "
         "With --soft-labels: their teachers, to derive a shrink:F student.")]
StudentSpec = Annotated[Optional[str], typer.Option(
    metavar="SPEC", rich_help_panel=STUDENT,
    help="auto, mlp, cnn, sequence, text, shrink:F (the teacher, widths scaled by F), app:NAME[:key=value,...] "
         "(keras.applications) or a .keras architecture; default shrink:0.25 with --teacher, else auto.")]
StudentOutputOption = Annotated[StudentOutput, typer.Option(
    help="What the saved student outputs: auto (as its teacher), logits, softmax or sigmoid.", metavar="KIND",
    rich_help_panel=STUDENT)]
MethodSpec = Annotated[Optional[str], typer.Option(
    metavar="NAME[:key=value,...]", rich_help_panel=METHOD, show_default=False,
    help=f"The loss and its parameters, e.g. dkd:beta=2,warmup=10 (default {DEFAULT_METHOD}). {method_help()}.")]
Online = Annotated[bool, typer.Option(
    "--online", help="Run the teacher on every batch instead of once (with --teacher).", rich_help_panel=METHOD)]
Baseline = Annotated[bool, typer.Option(
    "--baseline", help="Also train the student from scratch, and report what distillation gained.",
    rich_help_panel=COMPARE)]
Seeds = Annotated[int, typer.Option(
    help="With --baseline: K seeds from --seed; reports mean ± std.", metavar="K", rich_help_panel=COMPARE)]
Tune = Annotated[int, typer.Option(
    help="Search N trials of methods, their parameters and augmentations (scratch among them) on the "
         "validation split, and keep the best.", metavar="N", rich_help_panel=COMPARE)]
TuneJson = Annotated[Optional[Path], typer.Option(
    help="With --tune: also write the trials to this JSON file.", metavar="PATH", rich_help_panel=COMPARE)]
TuneWidths = Annotated[str, typer.Option(
    help="With --tune: widths to try, as multiples of the student's (1,1.5,2).", metavar="LIST",
    rich_help_panel=COMPARE)]
Study = Annotated[Optional[str], typer.Option(
    help="The search's Optuna database URL (sqlite:///PATH, postgresql://...), shared by processes that split "
         "its trials.", metavar="URL", rich_help_panel=COMPARE)]
StudentOut = Annotated[Optional[Path], typer.Option(
    help="The student .keras file to write (default: T.student.keras beside a teacher T.keras, else "
         "student.keras).", metavar="PATH", rich_help_panel=OUTPUT)]


@command("distill")
def distill(
    soft_labels: SoftLabels = None,
    teacher: Teachers = None,
    data: in_panel(Data, TEACHER_AND_DATA) = None,
    val_split: in_panel(ValSplit, TEACHER_AND_DATA) = None,
    image_size: in_panel(ImageSize, TEACHER_AND_DATA) = None,
    color_mode: in_panel(ColorMode, TEACHER_AND_DATA) = None,
    num_classes: in_panel(NumClasses, TEACHER_AND_DATA) = None,
    imports: in_panel(Imports, TEACHER_AND_DATA) = None,
    unsafe: in_panel(Unsafe, TEACHER_AND_DATA) = False,
    student: StudentSpec = None,
    width: in_panel(Width, STUDENT) = None,
    depth: in_panel(Depth, STUDENT) = None,
    student_output: StudentOutputOption = StudentOutput.auto,
    method: MethodSpec = None,
    augment: Augment = DISTILL_BUDGET.augment,
    online: Online = False,
    epochs: Epochs = str(DISTILL_BUDGET.epochs),
    patience: Patience = DISTILL_BUDGET.patience,
    monitor: Monitor = DISTILL_BUDGET.monitor,
    max_epochs: MaxEpochs = DISTILL_BUDGET.max_epochs,
    refit: Refit = DISTILL_BUDGET.refit,
    batch_size: BatchSize = DISTILL_BUDGET.batch_size,
    learning_rate: LearningRate = DISTILL_BUDGET.learning_rate,
    lr_schedule: LrSchedule = DISTILL_SCHEDULE,
    seed: Seed = DISTILL_BUDGET.seed,
    baseline: Baseline = False,
    seeds: Seeds = 1,
    tune: Tune = 0,
    tune_json: TuneJson = None,
    tune_widths: TuneWidths = "1",
    study: Study = None,
    checkpoint_dir: CheckpointDir = None,
    checkpoint_every: CheckpointEvery = RUNTIME.checkpoint_every,
    steps_per_call: StepsPerCallOption = None,
    xla: Xla = False,
    log_dir: LogDir = None,
    resume: Resume = False,
    restart: Restart = False,
    mixed_precision: MixedPrecision = DEFAULT_PRECISION,
    strategy: Strategy = DEFAULT_STRATEGY,
    debug: Debug = False,
    out: StudentOut = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
):
    """Train a small student from a teacher's soft labels, or from the teacher itself."""
    from kdcli import pipeline
    from kdcli.methods import parse_method

    if tune and (method is not None or augment != DISTILL_BUDGET.augment):
        given = [name for name, value in (("--method", method), ("--augment", augment != "none")) if value]
        raise UsageError(f"--tune searches the method, its parameters and the augmentation: leave out "
                         f"{', '.join(given)}")
    path, plan = pipeline.distill_student(
        data, out, soft_labels=soft_labels, teacher=teacher or None, student=student, width=width, depth=depth,
        method=parse_method(method or DEFAULT_METHOD), online=online, baseline=baseline, seeds=seeds, tune=tune,
        tune_json=tune_json, tune_widths=_numbers(tune_widths, "--tune-widths"), study=study,
        student_output=student_output.value,
        budget=Budget(epochs=parse_epochs(epochs), batch_size=batch_size, learning_rate=learning_rate,
                      lr_schedule=lr_schedule.value, seed=seed, augment=augment, patience=patience,
                      max_epochs=max_epochs, refit=refit, monitor=monitor),
        runtime=_runtime(strategy, mixed_precision, checkpoint_dir, resume, restart, checkpoint_every, log_dir,
                         steps_per_call, xla),
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe,
        reporter=_loading(quiet), dry_run=dry_run,
    )
    _plan(plan) if dry_run else _result(path)


SEARCH = "Search"
# compress's own options.
CompressTeacher = Annotated[Path, typer.Option(metavar="PATH", rich_help_panel=TEACHER_AND_DATA,
                                               help="The teacher model to compress.")]
MaxDrop = Annotated[float, typer.Option(
    metavar="POINTS", rich_help_panel=SEARCH,
    help="The accuracy points the student may lose to the teacher (its test accuracy).")]
Objective = Annotated[str, typer.Option(
    metavar="NAME", rich_help_panel=SEARCH,
    help="What smallest means: params, size (the artifact's bytes) or latency (batch 1, as evaluate).")]
TargetFormat = Annotated[str, typer.Option(
    metavar="FORMAT", rich_help_panel=SEARCH,
    help="The artifact that must meet the target: keras, float16 or int8 (TFLite, measured as exported).")]
SearchedStudent = Annotated[Optional[str], typer.Option(
    metavar="SPEC", rich_help_panel=SEARCH,
    help="shrink:1 (the teacher's architecture; default), mlp or cnn; --widths scale it.")]
Widths = Annotated[Optional[str], typer.Option(
    metavar="LIST", rich_help_panel=SEARCH,
    help="Widths searched, as factors of the student's (default 0.5,0.25,0.125,0.0625,0.03125 for shrink, "
         "2,1,0.5,0.25,0.125 for mlp and cnn).")]
Trials = Annotated[Optional[int], typer.Option(
    metavar="N", rich_help_panel=SEARCH, help="Trials in the study, shared by every process on it (default 16).")]
Minutes = Annotated[Optional[float], typer.Option(
    metavar="M", rich_help_panel=SEARCH, help="Start no trial after M minutes.")]
TrialsDir = Annotated[Optional[Path], typer.Option(
    help="Where the trials go (default: OUT with .trials, beside it).", metavar="DIR", rich_help_panel=RUNTIME_PANEL)]
SearchResume = Annotated[bool, typer.Option(
    "--resume", help="Continue the search, as compress always does when run again.", rich_help_panel=RUNTIME_PANEL)]
SearchRestart = Annotated[bool, typer.Option(
    "--restart", help="Delete the study and its trials' folder, and start over.", rich_help_panel=RUNTIME_PANEL)]
CandidateLatencyRuns = Annotated[int, typer.Option(
    min=10, help="Single-sample calls timed per candidate.", metavar="N", rich_help_panel=RUNTIME_PANEL)]
ResultJson = Annotated[Optional[str], typer.Option(
    "--json", help="Write the result (frontier, trials, choice) as JSON to PATH, or to stdout with -.",
    metavar="PATH", rich_help_panel=OUTPUT)]
FrontierPlot = Annotated[Optional[str], typer.Option(
    help="Draw test accuracy against the objective, distilled and scratch, to a PNG (needs matplotlib).",
    metavar="PATH", rich_help_panel=OUTPUT)]


@command("compress")
def compress(
    teacher: CompressTeacher,
    max_drop: MaxDrop = 1.0,
    objective: Objective = "params",
    format: TargetFormat = "keras",
    student: SearchedStudent = None,
    widths: Widths = None,
    trials: Trials = None,
    minutes: Minutes = None,
    study: in_panel(Study, SEARCH) = None,
    data: in_panel(Data, TEACHER_AND_DATA) = None,
    val_split: in_panel(ValSplit, TEACHER_AND_DATA) = None,
    image_size: in_panel(ImageSize, TEACHER_AND_DATA) = None,
    color_mode: in_panel(ColorMode, TEACHER_AND_DATA) = None,
    num_classes: in_panel(NumClasses, TEACHER_AND_DATA) = None,
    imports: in_panel(Imports, TEACHER_AND_DATA) = None,
    unsafe: in_panel(Unsafe, TEACHER_AND_DATA) = False,
    patience: Patience = DISTILL_BUDGET.patience,
    monitor: Monitor = DISTILL_BUDGET.monitor,
    max_epochs: MaxEpochs = DISTILL_BUDGET.max_epochs,
    batch_size: BatchSize = DISTILL_BUDGET.batch_size,
    learning_rate: LearningRate = DISTILL_BUDGET.learning_rate,
    lr_schedule: LrSchedule = DISTILL_SCHEDULE,
    seed: Seed = DISTILL_BUDGET.seed,
    checkpoint_dir: TrialsDir = None,
    checkpoint_every: CheckpointEvery = RUNTIME.checkpoint_every,
    steps_per_call: StepsPerCallOption = None,
    xla: Xla = False,
    resume: SearchResume = False,
    restart: SearchRestart = False,
    latency_runs: CandidateLatencyRuns = 100,
    debug: Debug = False,
    out: StudentOut = None,
    json_out: ResultJson = None,
    plot: FrontierPlot = None,
    quiet: Quiet = False,
):
    """Find the smallest student within --max-drop points of the teacher (exit 3 if none is)."""
    import json

    from rich.console import Console

    from kdcli import report
    from kdcli.compression import compress as run_compress
    from kdcli.errors import EXIT_GATE_FAILED
    from kdcli.files import write_text

    _check_report_outputs(json_out, plot)
    result = run_compress(
        teacher, data, out, max_drop=max_drop, objective=objective, format=format, student=student,
        widths=_numbers(widths, "--widths") if widths else None, trials=trials, minutes=minutes, study=study,
        budget=Budget(batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule.value, seed=seed,
                      patience=patience, max_epochs=max_epochs, monitor=monitor),
        runtime=Runtime(checkpoint_dir=checkpoint_dir, resume=resume, restart=restart, checkpoint_every=checkpoint_every,
                        steps_per_call=steps_per_call, xla=xla),
        data_options=_data_options(val_split, image_size, color_mode, num_classes), latency_runs=latency_runs,
        unsafe=unsafe, reporter=_loading(quiet))
    clear_status()
    text = json.dumps(result, indent=2, default=float) + "\n"
    if json_out == "-":
        typer.echo(text, nl=False)
    else:
        console = Console(width=None if sys.stdout.isatty() else LOG_WIDTH)
        console.print(report.frontier_table(result))
        for line in report.frontier_lines(result):
            console.print(line, markup=False, highlight=False)
    for path, write in ((json_out if json_out != "-" else None, lambda p: write_text(p, text)),
                        (plot, lambda p: report.frontier_plot(result, p))):
        if path:
            write(path)
    if not result["met"]:
        raise typer.Exit(EXIT_GATE_FAILED)


def _check_report_outputs(json_out, plot, markdown=None):
    """Check a report's outputs and optional dependency before the (long) work: `--json` (a path, or -
    for stdout), `--plot` (a PNG, which needs matplotlib) and `--markdown`."""
    from kdcli import report
    from kdcli.files import check_output

    for option, path, suffix in (("--json", json_out, None), ("--markdown", markdown, None), ("--plot", plot, ".png")):
        if path is not None and not path.strip():
            raise UsageError(f"{option}: the path is empty (an unset variable?); give a file path")
        if path and path != "-" and not path.startswith("/dev/"):
            check_output(path, suffix, option)
    if markdown == "-" or plot == "-":
        raise UsageError(f"{'--markdown' if markdown == '-' else '--plot'}: '-' (stdout) is for --json; give a file path")
    if plot:
        report.require_matplotlib()


GATES = "Gates"


@command("evaluate")
def evaluate(
    models: Annotated[list[Path], typer.Argument(metavar="MODEL", help="Models to compare (any kind kdcli reads, .tflite too); the "
                                                     "first is the reference.")],
    data: Data = None,
    val_split: ValSplit = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    num_classes: NumClasses = None,
    imports: Imports = None,
    unsafe: Unsafe = False,
    min_accuracy: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, metavar="FRACTION", rich_help_panel=GATES,
        help="Fail (exit 3) if any model's accuracy is below this, e.g. 0.9.")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(
        min=0.0, metavar="POINTS", rich_help_panel=GATES,
        help="Fail (exit 3) if a model loses more than these points against the first.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per call when measuring accuracy.", metavar="N",
                                            rich_help_panel=RUNTIME_PANEL)] = 256,
    latency_runs: Annotated[int, typer.Option(min=10, help="Single-sample calls timed per model.", metavar="N",
                                              rich_help_panel=RUNTIME_PANEL)] = 200,
    debug: Debug = False,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", help="Write the report as JSON to PATH, or to stdout with -.", metavar="PATH",
        rich_help_panel=OUTPUT)] = None,
    markdown: Annotated[Optional[str], typer.Option(
        help="Write the report as Markdown (for CI job summaries).", metavar="PATH", rich_help_panel=OUTPUT)] = None,
    append: Annotated[bool, typer.Option(
        "--append", help="Append the Markdown to the file (as $GITHUB_STEP_SUMMARY expects).",
        rich_help_panel=OUTPUT)] = False,
    plot: Annotated[Optional[str], typer.Option(
        help="Draw accuracy against latency to a PNG (needs pip install 'kdcli[plot]').", metavar="PATH",
        rich_help_panel=OUTPUT)] = None,
    quiet: Quiet = False,
):
    """Compare models on the test split: accuracy, size, latency; gate on accuracy."""
    from rich.console import Console

    from kdcli import pipeline, report
    from kdcli.errors import EXIT_GATE_FAILED
    from kdcli.files import write_text

    _check_report_outputs(json_out, plot, markdown)
    if append and not markdown:
        raise UsageError("--append adds the report to the --markdown file: give --markdown PATH")
    reporter = _loading(quiet)
    result = pipeline.evaluate(
        models, data, batch_size=batch_size, latency_runs=latency_runs,
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe,
    )
    from kdcli.evaluation import check_gates, describe_failure

    failed = check_gates(result, min_accuracy, max_accuracy_drop)
    clear_status()
    if json_out == "-":
        typer.echo(report.to_json(result))
    else:
        # A terminal gets a layout that fits it; a file or a CI log, a fixed width read later.
        report.render(result, Console(width=None if sys.stdout.isatty() else LOG_WIDTH))
    for path, write in ((json_out if json_out != "-" else None, lambda p: write_text(p, report.to_json(result) + "\n")),
                        (markdown, lambda p: write_text(p, report.markdown(result), append=append)),
                        (plot, lambda p: report.plot(result, p))):
        if path:
            write(path)
            reporter.say(f"wrote {path}")
    for gate in failed:
        _error_line(f"gate failed: {describe_failure(gate)}")
    if failed:
        raise typer.Exit(EXIT_GATE_FAILED)


@command("export")
def export(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="The model to export.")],
    format: Annotated[ExportFormat, typer.Option(
        metavar="FORMAT", help="tflite (phones, edge) or saved_model (TF Serving).", rich_help_panel=OUTPUT)] = ExportFormat.tflite,
    quantize: Annotated[Quantization, typer.Option(
        metavar="MODE", help="TFLite: none, float16, dynamic (int8 weights) or int8 (full integer, calibrated on --data; "
        "refused if it disagrees with the model).",
        rich_help_panel=OUTPUT)] = Quantization.none,
    out: Annotated[Optional[Path], typer.Option(
        help="Where to write (default: beside the model, e.g. student-int8.tflite).", metavar="PATH",
        rich_help_panel=OUTPUT)] = None,
    min_agreement: Annotated[float, typer.Option(
        min=0.0, max=1.0, metavar="FRACTION", rich_help_panel=OUTPUT,
        help="int8: the share of its calibration samples on which the file must give the model's class, "
        "else nothing is written (0: keep it whatever).")] = MIN_INT8_AGREEMENT,
    data: Data = None,
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
        data_options=_data_options(val_split, image_size, color_mode, num_classes), unsafe=unsafe,
        min_agreement=min_agreement, reporter=_loading(quiet),
    ))


@command("info")
def info(
    artifact: Annotated[Path, typer.Argument(metavar="ARTIFACT", help="A .keras model, a soft-label .h5 file, a .tflite file or a SavedModel folder.")],
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
