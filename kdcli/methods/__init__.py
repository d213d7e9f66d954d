"""Distillation methods, found by name.

Each method is one module holding one `Method` dataclass (see
`kdcli.methods.base`); `REGISTRY` names them. Adding a method is a module and
a line here: the training loop, the checkpoints, provenance and the command
line (`distill --method NAME`, its parameters' options) take it from there.

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


def method_from_options(name, options):
    """A method from command-line options: `{"--temperature": 2.0, "--dkd-beta": None, ...}`.

    Options left out (None) take the method's defaults; a given option that
    belongs to another method is refused, naming the methods it applies to.
    """
    cls = method_class(name)
    fields = {f.metadata["option"]: f.name for f in dataclasses.fields(cls)}
    for option, value in options.items():
        if value is not None and option not in fields:
            owners = [n for n in distill_methods() if option in _options(method_class(n))]
            raise UsageError(f"{option} applies to --method {' or '.join(owners)}, not {name}")
    return cls(**{fields[o]: v for o, v in options.items() if v is not None})


def _options(cls):
    return {f.metadata["option"] for f in dataclasses.fields(cls)}


def option_help(option):
    """The help text of a method parameter's option, with the methods that take it and their defaults."""
    parts, text = [], ""
    for name in distill_methods():
        for f in dataclasses.fields(method_class(name)):
            if f.metadata["option"] == option:
                text = f.metadata["help"]
                default = f.default if isinstance(f.default, str) else f"{f.default:g}"
                parts.append(name if isinstance(f.default, bool) else f"{name}: {default}")
    return f"{text[:1].upper()}{text[1:]} ({', '.join(parts)})."


__all__ = ["REGISTRY", "DEFAULT_METHOD", "Method", "make_method", "method_from_options", "method_class",
           "distill_methods", "option_help"]
