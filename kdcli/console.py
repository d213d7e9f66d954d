"""Talking to the user: everything here goes to stderr, so stdout carries only results."""

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr = Console(stderr=True, highlight=False)

# Without a terminal (CI logs, pipelines), one line per epoch, but at most one
# line per LOG_EVERY seconds when epochs are short: the log stays readable.
LOG_EVERY = 5.0


# The status line showing, if any (one live display at a time on a console).
_status = []


def clear_status():
    """Clear the status line of `Reporter.status`, if one shows (the command line does when a command ends)."""
    while _status:
        _status.pop().stop()


class Reporter:
    """Progress bars and one-line messages on stderr; silent when `quiet`.

    Progress bars are drawn only when stderr is a terminal. Otherwise (CI
    jobs, pipelines) training prints one line per epoch instead, at most one
    every `LOG_EVERY` seconds, and the last epoch's always.
    """

    def __init__(self, quiet=False):
        self.quiet = quiet

    def status(self, message):
        """A status line with a spinner on a terminal's stderr (`loading ...`) for the seconds before
        anything else shows; the next line of talk or progress bar replaces it (see `clear_status`)."""
        clear_status()
        if not self.quiet and stderr.is_terminal:
            _status.append(stderr.status(message))
            _status[0].start()

    def done(self):
        """Clear the status line, if one shows."""
        clear_status()

    def say(self, message):
        """One line of talk on stderr."""
        self.done()
        if not self.quiet:
            stderr.print(message, soft_wrap=True)

    def progress(self, description):
        """A progress object for the training loop and batched inference."""
        self.done()  # one live display at a time
        return _Bar(description, enabled=not self.quiet and stderr.is_terminal, reporter=self,
                    log_epochs=not self.quiet and not stderr.is_terminal)


class Display:
    """What training and batched inference tell a progress display, as no-ops to override.

    `start(total)`, `advance(logs, steps=1)` and `stop()` frame a run of `total`
    steps (batched inference, `kdcli.inference.iter_logits`, tells only
    these); training also tells `say(line)`, a line of talk (where a resumed
    run continues), and `epoch_end(epoch, epochs, logs, last)`, a finished
    epoch's figures. A `total` of None is a run whose length is not known in
    advance (`--epochs auto`, which stops on its own): no bar, no ETA.
    """

    def start(self, total):
        pass

    def advance(self, logs, steps=1):
        pass

    def stop(self):
        pass

    def say(self, line):
        pass

    def epoch_end(self, epoch, epochs, logs, last):
        pass


class _Bar(Display):
    """A Rich progress bar (the `Display` protocol), and `say` for a line of talk.

    The status of each step reads `epoch 3`, or under `--epochs auto`
    `epoch 37 · best 30 · patience 7/20 · val_acc 0.934`, without a bar
    counting towards `--max-epochs` and without an ETA.
    """

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
        counted = (BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeRemainingColumn())
        self._progress = Progress(
            TextColumn("{task.description}"),
            *(counted if total is not None else (TextColumn("{task.fields[status]}"), TimeElapsedColumn())),
            console=stderr, transient=True,
        )
        self._task = self._progress.add_task(self.description, total=total, status="")
        self._progress.start()

    def advance(self, logs, steps=1):
        if self._progress is None:
            return
        self._progress.update(self._task, advance=steps, status=status_text(logs))

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


def status_text(logs):
    """A step's status: `epoch 37 · best 30 · patience 7/20 · val_acc 0.934`."""
    return " · ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items())


def plural(count, word):
    """`1 epoch`, `2 epochs`."""
    return f"{count} {word}{'' if count == 1 else 's'}"
