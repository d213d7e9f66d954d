"""Errors that the command line turns into one readable line and an exit code."""

# Exit codes of the command-line contract.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_GATE_FAILED = 3
EXIT_BAD_INPUT = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM stopped


class KdcliError(Exception):
    """An expected failure, reported as `error: <message>` without a traceback.

    Args:
        message: one line saying what is wrong and, where possible, what to do.
        exit_code: the process exit code; bad input (4) unless said otherwise.
    """

    def __init__(self, message, exit_code=EXIT_BAD_INPUT):
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(KdcliError):
    """A bad option value, found by the library: exit code 2, like Click's usage errors.

    Args:
        message: one line that names the option, says what was given and what is expected.
    """

    def __init__(self, message):
        super().__init__(message, EXIT_USAGE)


def first_line(error):
    """The first line of an exception's message (or its type's name): for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
