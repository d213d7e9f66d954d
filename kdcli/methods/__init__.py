"""Distillation methods, found by name.

Each method is one module holding one `Method` dataclass (see
`kdcli.methods.base`); `REGISTRY` names them. Adding a method is a module and
a line here: the training loop, the checkpoints, provenance and the command
line (`distill --method NAME:key=value,...`, its help) take it from there.

    >>> from kdcli.methods import make_method
    >>> make_method("dkd", beta=4.0)
    DKD(temperature=4.0, alpha=1.0, beta=4.0, warmup=20, standardize=False)
"""

import dataclasses
import importlib

from kdcli.errors import UsageError
from kdcli.methods.base import Method

# name -> "module:class". Imported on first use.
REGISTRY = {
    "hard": "kdcli.methods.hard:HardLabels",
    "kd": "kdcli.methods.kd:KD",
    "dkd": "kdcli.methods.dkd:DKD",
    "dist": "kdcli.methods.dist:DIST",
    "hints": "kdcli.methods.hints:Hints",
}
# The method of `distill` when none is given.
DEFAULT_METHOD = "kd"


def method_class(name):
    """The `Method` class registered under `name`."""
    if name not in REGISTRY:
        raise UsageError(f"--method {name!r}: unknown method; give one of {', '.join(distill_methods())}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def distill_methods():
    """The names of the methods that learn from a teacher, in registry order."""
    return tuple(name for name in REGISTRY if method_class(name).uses_teacher)


def make_method(name=DEFAULT_METHOD, **params):
    """A method from its name and parameters; parameters left out or None take the method's defaults.

    Args:
        name: a name in `REGISTRY`.
        **params: the method's fields (see its class).

    Raises:
        UsageError: an unknown name, a parameter the method does not have, or a bad value.
    """
    cls = method_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise UsageError(f"method {name} has no parameter {', '.join(unknown)}; it has {', '.join(sorted(fields))}")
    return cls(**{k: v for k, v in params.items() if v is not None})


def parse_method(text):
    """A method from its command-line spelling, `NAME[:key=value,...]` (`dkd:beta=2,warmup=10`).

    The keys are the method's parameters (its dataclass fields, `-` and `_`
    alike); values are read as the field's default is typed (numbers, `true`
    or `false`, names). Parameters left out take the method's defaults.

    Raises:
        UsageError: an unknown method or parameter, a pair without `=`, or a bad value.
    """
    name, _, pairs = text.partition(":")
    name = name.strip()
    if name not in distill_methods():
        raise UsageError(f"--method {name!r}: unknown method; give one of {', '.join(distill_methods())}")
    defaults = {f.name: f.default for f in dataclasses.fields(method_class(name))}
    params = {}
    for pair in filter(None, (p.strip() for p in pairs.split(","))):
        key, equals, value = (part.strip() for part in pair.partition("="))
        key = key.replace("-", "_")
        if not equals:
            raise UsageError(f"--method {text}: give the parameters as key=value pairs, like dkd:beta=2,warmup=10")
        if key not in defaults:
            raise UsageError(f"--method {name} has no parameter {key!r}; it has {', '.join(defaults)}")
        params[key] = _typed(value, defaults[key], f"--method {name}:{key}")
    return make_method(name, **params)


def _typed(value, default, option):
    """`value` read as `default`'s type is read (bool before int: a bool is an int)."""
    try:
        if isinstance(default, bool):
            return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}[value.lower()]
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (KeyError, ValueError):
        kind = "true or false" if isinstance(default, bool) else \
            "a whole number" if isinstance(default, int) else "a number"
        raise UsageError(f"{option} must be {kind}, got {value!r}") from None
    return value


def method_help():
    """Each method's name, what it is, and its parameters with their defaults, for `--help`."""
    parts = []
    for name in distill_methods():
        cls = method_class(name)
        params = ", ".join(f"{f.name}={_shown(f.default)}" for f in dataclasses.fields(cls))
        parts.append(f"{name}{f' ({cls.summary})' if cls.summary else ''}: {params}")
    return "; ".join(parts)


def _shown(value):
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


__all__ = ["REGISTRY", "DEFAULT_METHOD", "Method", "make_method", "parse_method", "method_class",
           "distill_methods", "method_help"]
