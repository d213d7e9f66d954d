"""Shared test helpers (running kdcli in-process and in subprocesses, the error contract, checkpoint
checks, interrupting a run and resuming it) and fixtures: a tiny pipeline run once per session through the CLI."""

import json
import os
import re
import signal
import subprocess
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest
from typer.testing import CliRunner

import kdcli
from kdcli import faults
from kdcli.cli import app


def run_cli(*args):
    """Invoke kdcli in-process; returns the result with separate stdout and stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


EPOCH_LINE = re.compile(r".+: epoch \d+/\d+  loss [-.\w]+  accuracy .* s")


def talk(stderr):
    """The lines of `stderr` without the per-epoch log lines of training."""
    return [line for line in stderr.strip().splitlines() if not EPOCH_LINE.fullmatch(line)]


def assert_one_line_error(result, code=4, contains=None):
    """The contract for an expected error: exit code, one `error:` line, no traceback.

    A usage error (code 2) is followed by one `try 'kdcli COMMAND --help'` line.
    Lines of the epochs that ran before the error may precede it.
    """
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = talk(result.stderr)
    if code == 2:
        assert len(lines) == 2 and re.fullmatch(r"try 'kdcli( [a-z-]+)* --help'", lines[1]), result.stderr
        lines = lines[:1]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    if contains:
        assert contains in lines[0], lines[0]


STEPS_PER_EPOCH = 23  # 1,438 digits at batch 64


def kdcli_process(*args, fault=None):
    """Run `python -m kdcli` to the end; `fault` (`POINT:N:SIGNAL`, see kdcli/faults.py) interrupts it."""
    env = dict(os.environ)
    env.pop("KDCLI_FAULT", None)
    if fault:
        env["KDCLI_FAULT"] = fault
    # A job started in the background (nohup, some CI runners) inherits SIGINT ignored, and Python
    # then never raises KeyboardInterrupt: give the child the default Ctrl-C of a terminal.
    return subprocess.run([sys.executable, "-m", "kdcli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def interrupt(*args, point="step", at):
    """Run kdcli in process, stopped as a kill would stop it the `at`-th time it reaches `point`
    (`kdcli.faults.inject`: no checkpoint or cleanup after that point); it must get there."""
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    with faults.inject(point, at), pytest.raises(faults.Killed) as stopped:
        run_cli(*args)
    assert (stopped.value.point, stopped.value.count) == (point, at)
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers  # left as they were


def interrupt_and_resume(*args, point="step", at, between=None, continues=True):
    """Run kdcli in process, stopped at the `at`-th `point` as a kill would stop it (see `interrupt`),
    call `between()` if given (to look at what the stopped run left), then run the same command with
    `--resume`, which must succeed and, where `continues`, say that it continues a checkpoint (a run
    started over from nothing would give the same result with the same seed). Returns the resumed
    run's result (stdout and stderr apart).

    The in-process form of `kdcli_process(*args, fault="POINT:N:KILL")` then `kdcli_process(*args,
    "--resume")`, for the features that resume; tests/test_reliability.py keeps the real kills.
    """
    interrupt(*args, point=point, at=at)
    if between is not None:
        between()
    r = run_cli(*args, "--resume")
    assert r.exit_code == 0, r.stderr
    assert not continues or "resuming from" in r.stderr, r.stderr
    return r


def assert_same_weights(path, reference):
    """The model at `path` has the `reference` weights, to 1e-6."""
    weights = kdcli.load_model(path).get_weights()
    assert len(weights) == len(reference)
    for a, b in zip(weights, reference):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def state(checkpoint_dir):
    """The `state.json` of a checkpoint folder."""
    return json.loads((checkpoint_dir / "state.json").read_text())


def start_kdcli(*args, env=None):
    """Start kdcli in a subprocess (a worker of a cluster...); see `finish`."""
    return subprocess.Popen([sys.executable, "-m", "kdcli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def finish(process, timeout=300):
    """Wait for a process of `start_kdcli`; it must succeed. Returns its stdout."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """The four artifacts of a short run on digits: teacher, soft labels, student."""
    d = tmp_path_factory.mktemp("pipeline")
    paths = {"dir": d, "teacher": d / "teacher.keras", "soft": d / "soft.h5", "student": d / "student.keras"}
    r = run_cli("train-teacher", "--data", "digits", "--arch", "mlp", "--epochs", "5", "--out", paths["teacher"])
    assert r.exit_code == 0, r.stderr
    r = run_cli("soft-labels", "--teacher", paths["teacher"], "--data", "digits", "--out", paths["soft"])
    assert r.exit_code == 0, r.stderr
    r = run_cli("distill", "--soft-labels", paths["soft"], "--data", "digits", "--epochs", "3", "--out", paths["student"])
    assert r.exit_code == 0, r.stderr
    return paths
