"""aetrack's layers, read from its source (no module is imported, so no TensorFlow): every
`import` and `from ... import`, at module level or inside a function, counts.

Data flows downward: cli -> commands -> runner -> tracking -> models -> base. `LAYERS` and
`ALLOWED` are data so they are easy to keep in step with the layout in docs/development.md; a new module needs
a layer in `LAYERS` before this passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "aetrack"

# Module or package (with everything under it) -> its layer. The longest matching name wins, so
# `aetrack.sweep` covers sweep.py as well as a package aetrack/sweep/ and its modules.
LAYERS = {
    "aetrack.cli": "cli",
    "aetrack.__main__": "cli",
    "aetrack": "package",  # the package itself: __version__ and lazy re-exports of train, TrainConfig, load_model
    "aetrack.train": "commands",
    "aetrack.resume": "commands",
    "aetrack.sweep": "commands",
    "aetrack.use": "commands",
    "aetrack.serve": "commands",
    "aetrack.compare": "commands",
    "aetrack.runs": "commands",
    "aetrack.runner": "runner",
    "aetrack.tracking": "tracking",
    "aetrack.models": "models",
    **{f"aetrack.{name}": "base" for name in (
        "data", "config", "rules", "names", "errors", "noise", "batches", "images", "figures", "quiet", "version",
        "devices", "evaluation", "search_space", "anomaly")},
}
_BELOW_RUNNER = {"tracking", "models", "base"}
# Layer -> the layers its modules may import (its own included where listed).
ALLOWED = {
    "cli": {"cli", "package", "commands", "runner", "tracking", "models", "base"},
    "package": {"commands", "models", "base"},
    "commands": {"package", "commands", "runner", *_BELOW_RUNNER},
    "runner": _BELOW_RUNNER,
    "tracking": _BELOW_RUNNER,
    "models": {"models", "base"},
    "base": {"base"},
}
# Modules that must not import each other in either direction (each has its own job; a mutual
# import, e.g. tracking/run.py and liveness.py, is a cycle and fails test_no_import_cycle).
INDEPENDENT = [
    ("aetrack.tracking.plots", "aetrack.tracking.callbacks"),
    ("aetrack.train", "aetrack.resume"),
]
# They orchestrate; every MLflow call they need is a function of aetrack.tracking.
NO_MLFLOW = ("aetrack.train", "aetrack.resume", "aetrack.runner")


def module_files(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package at `root`."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that `source` (module `module`) imports, anywhere in the file.

    `from X import Y` counts as importing X.Y when that is a module, else X; relative imports are
    resolved against the module's package. A module's import of itself is left out.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def nearest_known(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(filter(None, (nearest_known(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else nearest_known(base)
                if target:
                    found.add(target)
    found.discard(module)
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    files = module_files(root)
    known = set(files)
    return {name: imports_of(name, path.read_text(), path.name == "__init__.py", known) for name, path in files.items()}


def layer_of(module: str) -> str | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or (prefix != "aetrack" and module.startswith(prefix + ".")):
            return LAYERS[prefix]
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph has none."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return path[path.index(target):] + [target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
            for module, targets in sorted(graph.items()) for target in sorted(targets)
            if layer_of(target) not in ALLOWED[layer_of(module)]]


GRAPH = import_graph()


def test_the_graph_is_read_from_every_module():
    assert {"aetrack", "aetrack.cli", "aetrack.train", "aetrack.runner", "aetrack.tracking.run"} <= set(GRAPH)
    assert "aetrack.runner" in GRAPH["aetrack.train"] and "aetrack.runner" in GRAPH["aetrack.resume"]
    # A function-level import counts: the package re-exports train lazily.
    assert "aetrack.train" in GRAPH["aetrack"]


def test_every_module_has_a_layer():
    assert [m for m in GRAPH if layer_of(m) is None] == []
    assert set(LAYERS.values()) == set(ALLOWED)


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None


def test_each_layer_imports_only_the_layers_below_it():
    assert layer_violations(GRAPH) == []


@pytest.mark.parametrize("a,b", INDEPENDENT, ids=[f"{a.rpartition('.')[2]}-{b.rpartition('.')[2]}"
                                                   for a, b in INDEPENDENT])
def test_independent_modules_do_not_import_each_other(a, b):
    assert a in GRAPH and b in GRAPH
    assert (b in GRAPH[a], a in GRAPH[b]) == (False, False)


@pytest.mark.parametrize("module", NO_MLFLOW)
def test_orchestrators_leave_mlflow_to_tracking(module):
    source = module_files()[module].read_text()
    tree = ast.parse(source)
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    assert [name for name in imported if name.split(".")[0] == "mlflow"] == []
    assert "MLFLOW_RUN_ID" not in source  # joining or leaving `mlflow run`'s run is tracking's too


# --- the checks themselves, on made-up packages -------------------------------------------------


def test_imports_are_read_everywhere_and_resolved_to_modules():
    known = {"aetrack", "aetrack.sweep", "aetrack.sweep.trials", "aetrack.sweep.space", "aetrack.train",
             "aetrack.names"}
    source = (
        "import os\n"
        "from aetrack import names\n"
        "from . import space\n"
        "from .trials import run_trial\n"
        "def later():\n"
        "    from aetrack.train import train\n"
        "    import aetrack.sweep.space\n"
    )
    assert imports_of("aetrack.sweep", source, True, known) == {
        "aetrack.names", "aetrack.sweep.space", "aetrack.sweep.trials", "aetrack.train"}
    # In a module (not a package) `..` is the package above its own; a name that is no module
    # counts as its module.
    assert imports_of("aetrack.sweep.trials", "from .. import __version__\nfrom ..train import train\n",
                      False, known) == {"aetrack", "aetrack.train"}


def test_sweep_and_use_are_commands_as_modules_or_packages():
    assert {layer_of(m) for m in ("aetrack.sweep", "aetrack.sweep.trials", "aetrack.use", "aetrack.use.outputs")} == {
        "commands"}
    assert layer_of("aetrack.sweeps") is None and layer_of("aetrack") == "package"
    assert layer_of("aetrack.tracking.resumption") == "tracking" and layer_of("aetrack.models.prior") == "models"


def test_a_cycle_and_an_upward_import_are_found():
    graph = {"aetrack.tracking.run": {"aetrack.tracking.liveness"}, "aetrack.tracking.liveness": {"aetrack.names"},
             "aetrack.names": set()}
    assert find_cycle(graph) is None and layer_violations(graph) == []
    graph["aetrack.tracking.liveness"].add("aetrack.tracking.run")
    assert find_cycle(graph) == ["aetrack.tracking.liveness", "aetrack.tracking.run", "aetrack.tracking.liveness"]
    graph["aetrack.names"].add("aetrack.runner")
    assert layer_violations(graph) == ["aetrack.names (base) imports aetrack.runner (runner)"]
