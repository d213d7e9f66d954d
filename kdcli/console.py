"""Talking to the user: everything here goes to stderr, so stdout carries only results."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

stderr = Console(stderr=True, highlight=False)


class Reporter:
    """Progress bars and one-line messages on stderr; silent when `quiet`.

    Progress bars are drawn only when stderr is a terminal, so logs of CI jobs
    and pipelines stay clean.
    """

    def __init__(self, quiet=False):
        self.quiet = quiet

    def say(self, message):
        """One line of talk on stderr."""
        if not self.quiet:
            stderr.print(message, soft_wrap=True)

    def progress(self, description):
        """A progress object for the training loop and batched inference."""
        return _Bar(description, enabled=not self.quiet and stderr.is_terminal, reporter=self)


class _Bar:
    """A Rich progress bar with the `start/advance/stop` protocol of `kdcli.train`,
    and `say` for a line of talk (such as where a resumed run continues)."""

    def __init__(self, description, enabled, reporter):
        self.description = description
        self.enabled = enabled
        self.say = reporter.say
        self._progress = None

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

    def stop(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def plural(count, word):
    """`1 epoch`, `2 epochs`."""
    return f"{count} {word}{'' if count == 1 else 's'}"
