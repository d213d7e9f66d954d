"""A Sphinx directive that writes the command-line reference of a Typer app when the docs are built.

    .. typer-reference:: kdcli.cli:app
       :prog: kdcli

sphinx-click reads `click.Command` objects, and Typer (0.26 and later) carries
its own copy of Click (`typer._click`), whose commands are not `click`'s: so
this module walks the command tree itself. Each command becomes a section with
its help text, its usage line and its parameters, grouped by their Rich help
panel, each parameter a Sphinx `option` (so `{option}` roles link to it), with
the help text, default, range and `required` that `--help` shows.

`render` needs no Sphinx: the tests call it to check that every option of every
command is in the reference.
"""

import importlib
import inspect
import re

ARGUMENTS, OPTIONS = "Arguments", "Options"  # Typer's default panel titles
TITLE_MARKS = "=-~^\"'"  # section underlines by depth: the program, its commands, their subcommands...


def load_command(target):
    """The Click-like command of `module:attribute`: a Typer app, or a command already."""
    module, _, attribute = target.partition(":")
    obj = getattr(importlib.import_module(module), attribute or "app")
    try:
        import typer

        if isinstance(obj, typer.Typer):
            return typer.main.get_command(obj)
    except ImportError:
        pass
    return obj


def package_sources(target):
    """The Python files of the top-level package of `module:attribute`, on which the reference depends."""
    from pathlib import Path

    package = importlib.import_module(target.partition(":")[0].split(".")[0])
    return sorted(Path(package.__file__).parent.rglob("*.py"))


def walk(command, prog):
    """Every visible command of the tree, depth first, as `(context, depth)`; the root first."""
    def visit(command, name, parent, depth):
        ctx = command.context_class(command, info_name=name, parent=parent, **(command.context_settings or {}))
        yield ctx, depth
        for sub_name in getattr(command, "list_commands", lambda ctx: [])(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not getattr(sub, "hidden", False):
                yield from visit(sub, sub_name, ctx, depth + 1)

    yield from visit(command, prog, None, 0)


def plain(text, command):
    """Help text as plain paragraphs: Rich markup (Typer's default) rendered to text, lines joined;
    a paragraph that starts with Click's `\\b` keeps its lines."""
    text = inspect.cleandoc(text or "")
    if getattr(command, "rich_markup_mode", None) == "rich":
        from rich.text import Text

        text = Text.from_markup(text).plain
    paragraphs = []
    for paragraph in text.split("\n\n"):
        if paragraph.startswith("\b"):
            paragraphs.append(("lines", paragraph.strip("\b\n")))
        elif paragraph.strip():
            paragraphs.append(("text", " ".join(paragraph.split())))
    return paragraphs


def escape(text):
    """Text that reStructuredText shows as it is: no emphasis, roles, references or list markers."""
    text = re.sub(r"([\\`*_|])", r"\\\1", text)
    return "\\" + text if re.match(r"[-+#.>]|\d+[.)]\s", text) else text


def _paragraphs(paragraphs, indent=""):
    lines = []
    for kind, text in paragraphs:
        if kind == "lines":
            lines += [f"{indent}| {escape(line)}" if line.strip() else f"{indent}|" for line in text.splitlines()]
        else:
            lines.append(indent + escape(text))
        lines.append("")
    return lines


def parameter_names(param):
    """The names a parameter answers to on the command line (`--quiet`, `-q`), or an argument's metavar."""
    if param.param_type_name == "argument":
        return [param.name.upper() + ("..." if param.nargs == -1 else "")]
    return [*param.opts, *param.secondary_opts]


def describe(param, ctx):
    """`(signature, help paragraphs, facts)` of a parameter as its `--help` shows it; None when hidden."""
    record = param.get_help_record(ctx)
    if record is None or getattr(param, "hidden", False):
        return None
    shown, text = record
    names = parameter_names(param)
    if param.param_type_name == "argument":
        signature = names[0]
    else:  # `-q, --quiet` or `--teacher <path>`: the names, then what the option takes
        metavar = re.sub(r"^(?:[-+/]{1,2}[^\s,/]+(?:,\s*|\s*/\s*)?)+", "", shown).strip()
        signature = ", ".join(names) + (f" {metavar}" if metavar else "")
    raw = param.help or ""
    extra = text[len(raw):].strip() if text.startswith(raw) else ""
    facts = extra[1:-1] if extra.startswith("[") and extra.endswith("]") else extra
    return signature, plain(raw, ctx.command), facts


def panels(ctx):
    """The command's parameters by Rich help panel, in the order `--help` shows them:
    arguments, then options; the default panel of each first."""
    groups = {}
    for param in ctx.command.get_params(ctx):
        argument = param.param_type_name == "argument"
        default = ARGUMENTS if argument else OPTIONS
        panel = getattr(param, "rich_help_panel", None) or default
        groups.setdefault((argument, panel != default, panel), []).append(param)
    order = sorted(groups, key=lambda key: (not key[0], key[1]))  # stable: first appearance within a kind
    return [(key[2], groups[key]) for key in order]


def render(command, prog):
    """The reference of `command` and its subcommands, as reStructuredText lines."""
    lines = []
    for ctx, depth in walk(command, prog):
        cmd = ctx.command
        title = ctx.command_path
        lines += [f".. _{label(title)}:", "", title, TITLE_MARKS[min(depth, len(TITLE_MARKS) - 1)] * len(title), ""]
        lines += _paragraphs(plain(cmd.help or cmd.short_help, cmd))
        usage = " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])
        lines += [".. code-block:: text", "", f"   {usage}", "", f".. program:: {ctx.command_path}", ""]
        for panel, params in panels(ctx):
            described = [d for d in (describe(p, ctx) for p in params) if d is not None]
            if not described:
                continue
            lines += [f".. rubric:: {escape(panel)}", ""]
            for signature, paragraphs, facts in described:
                lines += [f".. option:: {signature}", ""]
                lines += _paragraphs(paragraphs, "   ")
                if facts:
                    lines += [f"   *{escape(facts)}*", ""]
        subcommands = [(name, cmd.get_command(ctx, name)) for name in getattr(cmd, "list_commands", lambda c: [])(ctx)]
        subcommands = [(name, sub) for name, sub in subcommands if sub is not None and not getattr(sub, "hidden", False)]
        if subcommands:
            lines += [".. rubric:: Commands", ""]
            for name, sub in subcommands:
                summary = one_line(sub.get_short_help_str(limit=120) if hasattr(sub, "get_short_help_str") else "", sub)
                path = f"{ctx.command_path} {name}"
                lines += [f":ref:`{path} <{label(path)}>`", f"   {escape(summary)}" if summary else "   ", ""]
        epilog = getattr(cmd, "epilog", None)
        if epilog:
            lines += _paragraphs(plain(epilog, cmd))
    return lines


def label(command_path):
    """The reference label of a command's section: `cli-kdcli-soft-labels-merge`, for `{ref}` links."""
    return "cli-" + re.sub(r"[^a-z0-9]+", "-", command_path.lower()).strip("-")


def one_line(text, command):
    """A line of help, plain."""
    return " ".join(t for _, t in plain(text, command))


def setup(app):
    from docutils.parsers.rst import directives
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class TyperReference(SphinxDirective):
        """`.. typer-reference:: module:app` with `:prog: NAME`."""

        required_arguments = 1
        option_spec = {"prog": directives.unchanged_required}

        def run(self):
            from docutils import nodes

            command = load_command(self.arguments[0])
            for path in package_sources(self.arguments[0]):  # an edited help text rebuilds the page
                self.env.note_dependency(str(path))
            prog = self.options.get("prog") or command.name
            source = self.get_source_info()[0]
            node = nodes.section()
            content = StringList()
            for line in render(command, prog):
                content.append(line, source)
            nested_parse_with_titles(self.state, content, node)
            return node.children

    app.add_directive("typer-reference", TyperReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
