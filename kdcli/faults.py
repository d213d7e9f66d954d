"""Fault injection for kdcli's own reliability tests.

`KDCLI_FAULT=POINT:N:SIGNAL` makes the process send itself SIGNAL (KILL or
INT) the N-th time it reaches POINT, so tests can interrupt a real run at an
exact moment: `step` (after a training step), `checkpoint-written` (a
checkpoint's files are written but not yet recorded as the last good one),
`artifact-written` (an artifact is complete in its temporary file, not yet
renamed into place), `soft-labels-batch` (a batch of logits written). Unset,
it costs one dictionary lookup.
"""

import os
import signal

_counts = {}


def fault_point(name):
    """Maybe interrupt the process here (see the module docstring)."""
    spec = os.environ.get("KDCLI_FAULT")
    if not spec:
        return
    point, n, sig = spec.split(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(n):
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
