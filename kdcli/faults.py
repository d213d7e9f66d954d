"""Fault injection for kdcli's own tests: stop a run at an exact moment, as a kill would.

The points: `step` (after a training step), `checkpoint-written` (a checkpoint's
files are written but not yet recorded as the last good one), `artifact-written`
(an artifact is complete in its temporary file, not yet renamed into place),
`soft-labels-batch` (a batch of logits written). Unused, a point costs a
check and one dictionary lookup.

In a subprocess, `KDCLI_FAULT=POINT:N:SIGNAL` makes the process send itself
SIGNAL (KILL or INT) the N-th time it reaches POINT: a real kill, or a real
Ctrl-C (tests/test_reliability.py).

In process, `with inject(POINT, N):` makes the N-th arrival at POINT raise
`Killed` (tests of the features that resume, through Typer's CliRunner). Like
a kill, it stops the run there: nothing after that point runs, no checkpoint
is written on the way out, and no `except Exception` or `except KeyboardInterrupt`
of kdcli catches it (it is neither), so the error reporting and the
checkpoint-on-Ctrl-C path do not run. What it cannot skip are the `finally`
blocks and `__exit__` methods it passes through, which a kill would not run:
kdcli's (the training hooks' `on_train_end` among them, told the run did not
finish) only restore process state (signal handlers, file descriptors, the
progress display, `sys.modules`, the distribution strategy's scope), close the
TensorBoard writer (whose epochs were already flushed), and delete an unfinished
temporary file (`artifact-written`: after a kill the temporary file stays, for
the next run to ignore). None of them may write a checkpoint, a log row or an
artifact, so that the resumed run sees what it would see after a kill. The
counts start again at each `inject`, so one in-process run does not shift the
next one's point.
"""

import contextlib
import os
import signal

_counts = {}
_injected = {}  # the in-process injection of `inject`: {"point": POINT, "at": N}


class Killed(BaseException):
    """Raised by `fault_point` at the point and count given to `inject`: the run stops there as if killed.

    A BaseException, like SystemExit, so that no `except Exception` (nor `except KeyboardInterrupt`)
    of kdcli handles it.
    """

    def __init__(self, point, count):
        super().__init__(f"stopped at {point} {count} (kdcli.faults.inject)")
        self.point, self.count = point, count


@contextlib.contextmanager
def inject(point, at):
    """Within the block, the `at`-th arrival at `point` (counted from the start of the block) raises `Killed`.

    The environment's `KDCLI_FAULT` is ignored meanwhile. Not for concurrent use: one injection at a time.
    """
    if int(at) < 1:
        raise ValueError(f"at must be 1 or more, got {at!r}")
    if _injected:
        raise RuntimeError("kdcli.faults.inject is already active")
    _counts.clear()
    _injected.update(point=point, at=int(at))
    try:
        yield
    finally:
        _injected.clear()
        _counts.clear()


def fault_point(name):
    """Maybe interrupt the run here (see the module docstring)."""
    if _injected:
        if _injected["point"] == name:
            _counts[name] = _counts.get(name, 0) + 1
            if _counts[name] == _injected["at"]:
                raise Killed(name, _counts[name])
        return
    spec = os.environ.get("KDCLI_FAULT")
    if not spec:
        return
    point, n, sig = spec.split(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(n):
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
