"""The README and the docs site: the generated CLI reference holds every option, the README stays
short, the pages describe what is (no changelog words), and what they spell on the command line is
what the command line takes."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from rich.text import Text

from kdcli.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PROG = "kdcli"
# Whole words (any case) that describe the project by its history rather than by what it is.
CHANGELOG_WORDS = re.compile(r"\b(now|new|no\s+longer|as\s+before|since\s+version)\b", re.IGNORECASE)
# Options in the docs that belong to other tools: sbatch and tensorboard.
FOREIGN_OPTIONS = {"--array", "--dependency", "--logdir"}


def _extension(name):
    spec = importlib.util.spec_from_file_location(name, DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages():
    """README.md and the docs' own pages (not the build, nor the files they include)."""
    pages = [README, *DOCS.rglob("*.md"), *DOCS.rglob("*.rst")]
    return [p for p in pages if "_build" not in p.relative_to(ROOT).parts]


def _parameters():
    """`{"kdcli distill": [(names, param), ...], ...}`: every visible parameter of every command, read
    from the Typer app on its own (not through the extension), with the names the command line takes."""
    found = {}

    def visit(command, path):
        found[path] = [([param.name.upper()] if param.param_type_name == "argument" else
                        [*param.opts, *param.secondary_opts], param)
                       for param in command.params if not getattr(param, "hidden", False)]
        for name, sub in getattr(command, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                visit(sub, f"{path} {name}")

    visit(typer.main.get_command(app), PROG)
    return found


def _reference_options(lines):
    """`{program: [option signature, ...]}` of the reference's reStructuredText."""
    options, program = {}, None
    for line in lines:
        if line.startswith(".. program:: "):
            program = line.removeprefix(".. program:: ").strip()
            options.setdefault(program, [])
        elif line.startswith(".. option:: "):
            options[program].append(line.removeprefix(".. option:: ").strip())
    return options


def _names(signature):
    """The names of an option signature: `-q, --quiet` -> {-q, --quiet}; `MODELS...` -> {MODELS}."""
    names = set()
    for part in signature.split(", "):
        names.add(part.split(" ", 1)[0].removesuffix("..."))
    return names


def test_every_option_of_every_subcommand_is_in_the_generated_reference():
    reference = _extension("typer_reference")
    lines = reference.render(reference.load_command("kdcli.cli:app"), PROG)
    options = _reference_options(lines)
    parameters = _parameters()
    assert set(options) == set(parameters), "every command has its section"
    missing, seen = [], 0
    for path, params in parameters.items():
        documented = set().union(*map(_names, options[path])) if options[path] else set()
        for names, _ in params:
            for name in names:
                seen += 1
                if name not in documented:
                    missing.append(f"{path} {name}")
        assert {"-h", "--help"} <= documented, path
    assert seen > 50  # every command's options were visited
    assert not missing, missing


def test_the_reference_builds_with_sphinx_and_shows_every_option(tmp_path):
    """The directive as Sphinx runs it (a one-page project, text output), warnings as errors."""
    pytest.importorskip("sphinx")
    source = tmp_path / "src"
    source.mkdir()
    (source / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        "extensions = ['typer_reference']\nsmartquotes = False\n")
    (source / "index.rst").write_text("Reference\n=========\n\n.. typer-reference:: kdcli.cli:app\n   :prog: kdcli\n")
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "-q", "-b", "text", source, tmp_path / "out"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "out" / "index.txt").read_text()
    for path, params in _parameters().items():
        assert path in text
        for names, param in params:
            for name in names:
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{path} {name}"
            if param.help:  # the help text too, as `--help` shows it (Rich markup rendered)
                words = " ".join(Text.from_markup(param.help).plain.split()[:4])
                assert words in " ".join(text.split()), f"{path} {names[0]}: {words!r}"


def test_the_readme_is_at_most_200_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move reference material to docs/"


def test_the_readme_and_the_docs_describe_what_is_not_what_changed():
    found = []
    for page in _pages():
        text = page.read_text()
        found += [f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
                  for m in CHANGELOG_WORDS.finditer(text)]  # phrases split across lines too
    assert not found, found


def test_the_options_the_docs_spell_are_options_of_kdcli():
    known = {"-h", "--help"} | {name for params in _parameters().values() for names, _ in params for name in names}
    unknown = []
    for page in _pages():
        for option in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", page.read_text())):
            if option not in known | FOREIGN_OPTIONS:
                unknown.append(f"{page.relative_to(ROOT)}: {option}")
    assert not unknown, unknown


def test_every_method_the_docs_spell_parses():
    from kdcli.methods import parse_method

    spelled = {m for page in _pages() for m in re.findall(r"--method[ =]([a-z]+(?::[\w.=,-]+)?)", page.read_text())}
    assert {"kd:temperature=2,alpha=0.5", "dkd:beta=2,warmup=10"} <= spelled  # the pages were really read
    for text in spelled:
        parse_method(text.rstrip(".,"))  # a UsageError names what is wrong


def test_the_readme_links_to_pages_that_exist():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text())
    assert any(link.startswith("docs/") for link in links)
    assert [link for link in links if not (ROOT / link).exists()] == []
