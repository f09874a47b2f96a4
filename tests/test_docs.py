"""The documentation site: `sphinx-build -W` of docs/ as `make docs` runs it, with the tutorial
notebook executed in the build; a broken internal link failing the build, naming the link; and the
docs requirements pinned where the `docs` extra allows."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.helpers.processes import REPO, subprocess_env

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# requirements-docs.txt installs Sphinx only there (Sphinx 9 and myst-parser 5 need it).
needs_sphinx = pytest.mark.skipif(sys.version_info < (3, 11), reason="the docs build needs Python 3.11+")


def _sphinx_build(source: Path, out: Path, *options: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = subprocess_env()
    env.pop("MLFLOW_TRACKING_URI", None)  # the notebook makes its own store; no test's store leaks in
    env.pop("MLFLOW_REGISTRY_URI", None)
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", *options,
                           str(source), str(out)], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _warnings(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (out.stdout + out.stderr).splitlines() if "WARNING:" in line and "absl" not in line]


@needs_sphinx
@pytest.mark.slow  # sphinx-build in a child process, the notebook's two runs in its kernel
def test_site_builds_with_the_tutorial_executed_and_the_cli_reference(tmp_path):
    before = sorted(p.name for p in (REPO / "docs").iterdir())
    stores_before = set(Path(tempfile.gettempdir()).glob("aetrack-tutorial-*"))
    out = _sphinx_build(REPO / "docs", tmp_path / "html")
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert _warnings(out) == []

    # The tutorial page carries the executed notebook's figures: <img> tags whose files are PNGs.
    tutorial = (tmp_path / "html" / "tutorial.html").read_text()
    images = re.findall(r'<img[^>]+src="(_images/[^"]+\.png)"', tutorial)
    assert len(images) >= 3, "reconstructions, codes and denoised digits"
    for src in images:
        data = (tmp_path / "html" / src).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, src
    # ... and its printed results: both runs, and the encoder read back from the registry.
    assert "basic-c64-e2-" in tutorial and "denoise-c64-e2-" in tutorial  # the search_runs table
    assert "the registered encoder gives the same codes: True" in tutorial

    # The CLI page lists `aetrack train basic`'s options, generated from click.
    cli = (tmp_path / "html" / "cli.html").read_text()
    assert 'id="aetrack-train-basic"' in cli
    for option in ("epochs", "code-size", "dataset", "architecture", "init-model"):
        owner = "denoise" if option == "init-model" else "basic"
        assert f'id="cmdoption-aetrack-train-{owner}-{option}"' in cli, option
    # The API page documents the package's exports from their docstrings.
    api = (tmp_path / "html" / "api.html").read_text()
    assert 'id="aetrack.train.train"' in api and 'id="aetrack.TrainConfig"' in api and 'id="aetrack.load_model"' in api

    # The notebook's runs went to its own temporary store: nothing new in docs/ (no mlruns/, mlflow.db),
    # and the store itself is gone.
    assert sorted(p.name for p in (REPO / "docs").iterdir()) == before
    assert set(Path(tempfile.gettempdir()).glob("aetrack-tutorial-*")) == stores_before  # its last cell removed it


@needs_sphinx
@pytest.mark.slow  # sphinx-build in a child process
def test_a_broken_internal_link_fails_the_build_naming_it(tmp_path):
    # A copy of the site (and the notebook its tutorial links to), one page's link broken.
    shutil.copytree(REPO / "docs", tmp_path / "docs", symlinks=True, ignore=shutil.ignore_patterns("_build"))
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    page = tmp_path / "docs" / "resume.md"
    text = page.read_text()
    page.write_text(text + "\nSee [the exit codes](troubleshooting.md#no-such-heading).\n")

    # Links are what is checked: the notebook is not run.
    out = _sphinx_build(tmp_path / "docs", tmp_path / "html", "-D", "nb_execution_mode=off")
    assert out.returncode != 0
    warnings = _warnings(out)
    assert len(warnings) == 1 and "resume.md" in warnings[0], warnings
    assert "'troubleshooting'" in warnings[0] and "'no-such-heading'" in warnings[0]


def test_docs_requirements_pin_what_the_docs_extra_allows():
    pins = [Requirement(line) for line in (REPO / "requirements-docs.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    # pyproject's `docs = [...]` (tomllib would need Python 3.11; the project supports 3.10).
    (listed,) = re.findall(r"^docs = \[(.*?)\]$", (REPO / "pyproject.toml").read_text(), re.M | re.S)
    extra = {Requirement(r).name: Requirement(r) for r in re.findall(r'"([^"]+)"', listed)}
    assert sorted(p.name for p in pins) == sorted(extra) == ["furo", "myst-nb", "myst-parser", "sphinx", "sphinx-click"]
    for pin in pins:
        (version,) = [s.version for s in pin.specifier if s.operator == "=="]
        assert extra[pin.name].specifier.contains(version), (pin, extra[pin.name])
        assert pin.marker == extra[pin.name].marker, pin  # both skip the same Pythons
        if pin.marker.evaluate():
            assert importlib.metadata.version(pin.name) == version, pin  # what make setup installed
    # make setup installs them (and reinstalls when the file changes).
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^\$\(VENV\)/\.installed:.*requirements-docs\.txt", makefile, re.M)
    assert "-r requirements-docs.txt" in makefile
