"""Sphinx configuration of aetrack's documentation site: MyST Markdown pages, the tutorial notebook
executed by myst-nb, the CLI reference from click (sphinx-click) and the Python API (autodoc).

Build it with `make docs` (`sphinx-build -W --keep-going -b html docs docs/_build/html`): any
warning, a broken internal link or a failing notebook cell, fails the build.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# autodoc and sphinx-click import aetrack from this checkout, installed or not.
sys.path.insert(0, str(ROOT))
# The notebook's kernel is a separate process: it finds aetrack the same way.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
# Nothing in a build should phone home (MLflow 3's usage telemetry), the notebook's kernel included.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from aetrack.version import __version__  # noqa: E402

project = "aetrack"
author = "aetrack contributors"
release = version = __version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and notebooks; it loads myst_parser itself
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
]

exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
# Pages are Markdown; the tutorial is a notebook (docs/tutorial.ipynb links to examples/).
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# MyST: heading anchors for `[text](page.md#heading)` links, checked at build time.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# The tutorial runs on every build, so it can never go stale; a failing cell fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 600
nb_execution_show_tb = True
# TensorFlow's C++ start-up notices and library warnings are noise on the page, not the tutorial.
nb_output_stderr = "remove"

# autodoc: the public API as its docstrings say; TrainConfig's fields in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Signatures and docstrings are all the API page needs: importing TensorFlow, Keras and MLflow for
# real would add seconds to every build (the notebook's kernel imports them for real).
autodoc_mock_imports = ["tensorflow", "keras", "mlflow"]

html_theme = "furo"
html_title = f"aetrack {release}"
html_static_path = []


def _literal_stars(app, ctx, lines: list[str]) -> None:
    """Escape `*` in click help text: it is plain text there (`(N, *shape)`, `F * N(0, 1)`), but
    sphinx-click hands it to reStructuredText, which reads a lone `*` as unclosed emphasis."""
    for i, line in enumerate(lines):
        if not line.lstrip().startswith(".. "):
            lines[i] = line.replace("*", r"\*")


def _config_fields(app, what, name, obj, options, lines: list[str]) -> None:
    """TrainConfig's fields carry their help and rule in dataclass metadata (the CLI and MLproject
    are generated from it), not in docstrings: list the same text under the class on the API page."""
    if what != "class" or name != "aetrack.TrainConfig":
        return
    import dataclasses

    def plain(text: str) -> str:  # reStructuredText reads * and ` as markup
        return text.replace("\\", "\\\\").replace("*", r"\*").replace("`", r"\`")

    lines.extend(["", "Fields: the training parameters (``--name`` in the CLI, ``-P name`` in MLproject), "
                  "then the entry point and the experiment:", ""])
    for found in dataclasses.fields(obj):
        head = f"- ``{found.name}`` (``{found.type}``, default ``{found.default!r}``)"
        help_text = found.metadata.get("help", "")
        rule = found.metadata.get("rule")
        allowed = f" Allowed: {rule.allowed}." if rule else ""
        lines.append(f"{head}: {plain(help_text)}{plain(allowed)}" if help_text or allowed else head)
    lines.append("")


def setup(app):
    app.connect("autodoc-process-docstring", _config_fields)
    for event in ("sphinx-click-process-description", "sphinx-click-process-options",
                  "sphinx-click-process-arguments", "sphinx-click-process-epilog"):
        app.connect(event, _literal_stars)
