"""Talking to the user: everything here goes to stderr, so stdout carries only results."""

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

stderr = Console(stderr=True, highlight=False)

# Without a terminal (CI logs, pipelines), one line per epoch, but at most one
# line per LOG_EVERY seconds when epochs are short: the log stays readable.
LOG_EVERY = 5.0


class Reporter:
    """Progress bars and one-line messages on stderr; silent when `quiet`.

    Progress bars are drawn only when stderr is a terminal. Otherwise (CI
    jobs, pipelines) training prints one line per epoch instead, at most one
    every `LOG_EVERY` seconds, and the last epoch's always.
    """

    def __init__(self, quiet=False):
        self.quiet = quiet

    def say(self, message):
        """One line of talk on stderr."""
        if not self.quiet:
            stderr.print(message, soft_wrap=True)

    def progress(self, description):
        """A progress object for the training loop and batched inference."""
        return _Bar(description, enabled=not self.quiet and stderr.is_terminal, reporter=self,
                    log_epochs=not self.quiet and not stderr.is_terminal)


class _Bar:
    """A Rich progress bar with the `start/advance/epoch_end/stop` protocol of
    `kdcli.train`, and `say` for a line of talk (such as where a resumed run continues)."""

    def __init__(self, description, enabled, reporter, log_epochs=False):
        self.description = description
        self.enabled = enabled
        self.log_epochs = log_epochs
        self.say = reporter.say
        self._progress = None
        self._logged_at = None

    def start(self, total):
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
            console=stderr, transient=True,
        )
        self._task = self._progress.add_task(self.description, total=total, status="")
        self._progress.start()

    def advance(self, logs):
        if self._progress is None:
            return
        status = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items())
        self._progress.update(self._task, advance=1, status=status)

    def epoch_end(self, epoch, epochs, logs, last):
        """One line for a finished epoch when stderr is not a terminal:
        `distilling: epoch 3/300  loss 0.4123  accuracy 0.9120  val_accuracy 0.9340  1.2 s`."""
        now = time.monotonic()
        if not self.log_epochs or not (last or self._logged_at is None or now - self._logged_at >= LOG_EVERY):
            return
        self._logged_at = now
        fields = "  ".join(f"{key} {value:.4f}" for key, value in logs.items() if key != "seconds")
        self.say(f"{self.description}: epoch {epoch}/{epochs}  {fields}  {logs['seconds']:.1f} s")

    def stop(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def plural(count, word):
    """`1 epoch`, `2 epochs`."""
    return f"{count} {word}{'' if count == 1 else 's'}"
