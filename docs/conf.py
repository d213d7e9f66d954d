"""Sphinx configuration of kdcli's documentation (`make docs` builds it into docs/_build/html)."""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS.parent)]  # the reference extension, and kdcli itself

from kdcli import __version__  # noqa: E402

project = "kdcli"
author = "the kdcli authors"
copyright = "the kdcli authors, Apache-2.0"
version = release = __version__

extensions = ["myst_parser", "sphinx.ext.mathjax", "typer_reference", "kdcli_methods"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
root_doc = "index"
# Command lines are text: `--teacher` keeps its two hyphens, quotes stay straight.
smartquotes = False

# MyST: $...$ and $$...$$ math, ::: fences, and anchors for headings down to ### (links like page.md#heading).
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"kdcli {release}"
html_static_path = []
