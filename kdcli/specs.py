"""Model specs as the command line gives them (`--student`, `--arch`, `--model`), checked
before any work: this module imports no TensorFlow."""

from pathlib import Path

from kdcli.errors import UsageError

# The built-in architectures (see `kdcli.models.build_model`).
ARCHS = ("mlp", "cnn")


def parse_spec(spec, role="student"):
    """Check a model spec before any work is done, and say what kind it is.

    Args:
        spec: a `--student` value (`mlp`, `cnn`, `shrink:F`, `arch.keras`), or
            for a teacher an `--arch` value (`mlp`, `cnn`) or a `--model` path.
        role: `student` or `teacher`, which says the option to name in errors.

    Returns:
        `("shrink", factor)`, `("builtin", name)` or `("file", path)`.

    Raises:
        UsageError: the spec is none of those (exit code 2).
    """
    if role == "student" and spec.startswith("shrink:"):
        try:
            factor = float(spec.split(":", 1)[1])
        except ValueError:
            raise UsageError(f"--student {spec}: the shrink factor must be a number, like shrink:0.25") from None
        check_shrink_factor(factor)
        return "shrink", factor
    if spec in ARCHS:
        return "builtin", spec
    if spec.endswith(".keras"):
        return "file", spec
    if role == "student":
        raise UsageError(f"--student {spec!r}: unknown student; give mlp, cnn, shrink:F or a .keras architecture")
    if Path(spec).suffix or "/" in spec:
        raise UsageError(f"--model {spec}: give a .keras file saved with model.save()")
    raise UsageError(f"--arch {spec!r}: unknown architecture; give cnn or mlp, or your own with --model arch.keras")


def check_shrink_factor(factor):
    """Refuse a shrink factor that is not above 0 (exit code 2)."""
    if not factor > 0:  # NaN too
        raise UsageError(f"--student shrink:{factor:g}: the shrink factor must be above 0, like shrink:0.25")
