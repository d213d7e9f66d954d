"""Shared fixtures: a tiny pipeline run once per session through the CLI."""

import os
import re

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest
from typer.testing import CliRunner

from kdcli.cli import app


def run_cli(*args):
    """Invoke kdcli in-process; returns the result with separate stdout and stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, code=4, contains=None):
    """The contract for an expected error: exit code, one `error:` line, no traceback.

    A usage error (code 2) is followed by one `try 'kdcli COMMAND --help'` line.
    """
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    if code == 2:
        assert len(lines) == 2 and re.fullmatch(r"try 'kdcli( [a-z-]+)* --help'", lines[1]), result.stderr
        lines = lines[:1]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    if contains:
        assert contains in lines[0], lines[0]


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
