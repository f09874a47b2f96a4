"""Shared fixtures: real temporary MLflow tracking stores, small datasets, and tiny runs trained
once per session for the tests that only read them. Helpers live in tests/helpers/."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import types
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.data import shared_mnist, write_npz
from tests.helpers.stores import mlflow_pointed_at, new_store, session_store

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


# Tests that share one expensive session fixture and must run in one worker under pytest-xdist:
# the team stack (PostgreSQL, SeaweedFS, mlflow server; its restart test stops the shared server).
ONE_WORKER_FILES = ("tests/test_team_stack.py",)


# The runs trained once per session (fixtures below), most expensive first. Under xdist the quick
# tests that read one of them go to one worker, so it is trained once, not once in each worker.
SESSION_RUNS = ("registered", "basic", "one_epoch", "denoise")
# Workers collect; the scheduler, in the controller, sees only node ids. The controller names a
# file here before it starts the workers; they write {node id: session run} into it.
SESSION_RUN_GROUPS_FILE = "AETRACK_TEST_SESSION_RUN_GROUPS"


# Slow tests that share a module fixture costing more than the tests themselves: {unit: node id
# prefixes}. Each unit is one unit of work under xdist, so the fixture is made once, not once in
# each worker.
SHARED_FIXTURE_UNITS = {
    "architectures": ("tests/test_architecture_runs.py::",),  # `trained`: each architecture's run
    "bench-store": ("tests/test_benchmarks.py::test_serving_tiny", "tests/test_benchmarks.py::test_load_tiny"),
}


def _runs_in_one_worker(nodeid: str) -> bool:
    return nodeid.startswith(tuple(f"{path}::" for path in ONE_WORKER_FILES))


def _shared_fixture_unit(nodeid: str) -> str | None:
    return next((unit for unit, prefixes in SHARED_FIXTURE_UNITS.items() if nodeid.startswith(prefixes)), None)


def _session_run_of(item) -> str | None:
    """The session run a quick test reads (the first of SESSION_RUNS it uses), if any."""
    if item.get_closest_marker("slow"):
        return None
    used = set(item.fixturenames)
    return next((name for name in SESSION_RUNS if {name, f"{name}_run", f"{name}_store"} & used), None)


def pytest_configure(config):
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):
        handle, path = tempfile.mkstemp(prefix="aetrack-test-groups-", suffix=".json")
        os.close(handle)
        os.environ[SESSION_RUN_GROUPS_FILE] = path  # the workers, started later, inherit it


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and SESSION_RUN_GROUPS_FILE in os.environ:
        Path(os.environ.pop(SESSION_RUN_GROUPS_FILE)).unlink(missing_ok=True)


def pytest_collection_modifyitems(config, items):
    """Longest first: the team stack's tests (about 4 minutes on one worker), then the other slow
    ones, then the rest, each in file order. Under xdist the run then ends on short tests shared by
    both workers instead of one worker finishing the stack alone."""
    def rank(item) -> int:
        if _runs_in_one_worker(item.nodeid):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)
    groups_file = os.environ.get(SESSION_RUN_GROUPS_FILE)
    if groups_file and hasattr(config, "workerinput"):
        groups = {item.nodeid: run for item in items if (run := _session_run_of(item))}
        # Every worker collects the same tests: each writes the same content, whole (os.replace).
        partial = f"{groups_file}.{config.workerinput['workerid']}"
        Path(partial).write_text(json.dumps(groups))
        os.replace(partial, groups_file)


@cache
def _session_run_groups() -> dict[str, str]:
    """{node id: session run}, as the workers wrote it (read once, after every worker collected)."""
    groups_file = os.environ.get(SESSION_RUN_GROUPS_FILE)
    text = Path(groups_file).read_text() if groups_file else ""
    return json.loads(text) if text else {}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler, but with ONE_WORKER_FILES as one unit of work, the quick tests of
    each session run as one unit, and every other test its own unit, handed out in collection order
    (longest first). This is what `--dist loadgroup` with an `xdist_group` mark should do, but with
    pytest 9.2 it silently spreads a group over the workers (pytest-dev/pytest-xdist#1386: xdist
    3.8 marks groups in the old `_nodeid` field)."""
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerFilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if _runs_in_one_worker(nodeid):
                return "one-worker-files"
            if unit := _shared_fixture_unit(nodeid):
                return f"shared-fixture:{unit}"
            run = _session_run_groups().get(nodeid)
            return f"session-run:{run}" if run else nodeid

    config.option.loadscopereorder = False  # keep the collection order: longest first
    return OneWorkerFilesTogether(config, log)


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.fixture(scope="session")
def real_mnist_small(tmp_path_factory) -> Path:
    """The first 2,000 / 200 real MNIST digits from ../shared (tests.helpers.data.shared_mnist:
    a skip without them, a failure where they are required)."""
    with np.load(shared_mnist()) as npz:
        arrays = {k: npz[k] for k in npz.files}
    path = tmp_path_factory.mktemp("mnist") / "mnist-small.npz"
    np.savez(path, x_train=arrays["x_train"][:2000], y_train=arrays["y_train"][:2000],
             x_test=arrays["x_test"][:200], y_test=arrays["y_test"][:200])
    return path


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    """A fresh SQLite tracking store (and registry) in a temp dir, which is also the cwd."""
    import mlflow

    uri = new_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # mlflow.set_registry_uri() also exports MLFLOW_REGISTRY_URI (and never unsets it): scope it here
    # so child processes of later tests do not register into this test's store.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    with mlflow_pointed_at(uri):
        yield uri
        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture(scope="session")
def tiny_config(tiny_npz):
    """A TrainConfig that trains in a couple of seconds on the tiny synthetic dataset."""
    from aetrack.config import TrainConfig

    def make(**overrides):
        values = dict(epochs=2, batch_size=32, code_size=16, train_samples=256, test_samples=32,
                      dataset=str(tiny_npz), image_samples=4, register=False)
        values.update(overrides)
        return TrainConfig(**values)

    return make


def _enter_store(store, monkeypatch):
    """Make a session store this test's tracking store: URI for this process and children, cwd."""

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(store.folder)
    with mlflow_pointed_at(store.uri):
        yield store


def _trained_store(tmp_path_factory, name: str, config) -> types.SimpleNamespace:
    from aetrack.train import train

    folder = tmp_path_factory.mktemp(name)
    with session_store(folder) as uri:
        result = train(config)
    return types.SimpleNamespace(uri=uri, folder=folder, config=config, result=result)


def _shared_run(name: str, **overrides):
    """Fixtures `<name>_store` (session: the run trained once, in its own store; a namespace with
    uri, folder, config, result) and `<name>_run` (per test: that store entered, as `registered`)."""

    def store(tmp_path_factory, tiny_config):
        return _trained_store(tmp_path_factory, f"{name}-run", tiny_config(**overrides))

    def entered(request, monkeypatch):
        yield from _enter_store(request.getfixturevalue(f"{name}_store"), monkeypatch)

    settings = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    store.__doc__ = f"A finished tiny run ({settings}) trained once per session in its own store."
    entered.__doc__ = f"Enter `{name}_store`: its tracking URI for this process and children, cwd its folder."
    return (pytest.fixture(scope="session", name=f"{name}_store")(store),
            pytest.fixture(name=f"{name}_run")(entered))


# Tiny runs that several tests only read, trained once per session. A test that adds runs or
# aliases uses `tracking` instead.
# basic: 3 epochs, code size 16, step images of 5 samples every epoch, not registered.
basic_store, basic_run = _shared_run("basic", epochs=3, image_samples=5)
# one_epoch: 1 epoch, seed 0, per-epoch images off.
one_epoch_store, one_epoch_run = _shared_run("one_epoch", epochs=1, image_every=0)
# denoise: 3 epochs, mse, noise 0.5, seed 2, step images of 3 samples.
denoise_store, denoise_run = _shared_run("denoise", entry_point="denoise", epochs=3, loss="mse", noise_factor=0.5,
                                         seed=2, image_samples=3)


@pytest.fixture(scope="session")
def registered_store(tmp_path_factory, tiny_npz):
    """One SQLite store holding two finished, registered `basic` runs (code size 8), shared by the
    registry, inference and serving tests so they train once. Tests enter it with `registered`.

    Run 1 trains 1 epoch, run 2 trains 4 (lower test_bce); run 2's versions are the `candidate`s.
    Returns a namespace: uri, folder, prefix, results (TrainResult of run 1 and 2), dataset.
    """
    from aetrack.config import TrainConfig
    from aetrack.train import train

    folder = tmp_path_factory.mktemp("registered")
    with session_store(folder) as uri:
        common = dict(batch_size=32, code_size=8, train_samples=256, test_samples=32, dataset=str(tiny_npz),
                      image_samples=4, register=True, model_prefix="aetrack-test")
        results = [train(TrainConfig(epochs=1, **common)), train(TrainConfig(epochs=4, **common))]
    return types.SimpleNamespace(uri=uri, folder=folder, prefix="aetrack-test", results=results, dataset=tiny_npz)


@pytest.fixture
def registered(registered_store, monkeypatch):
    """Enter `registered_store`: its tracking URI for this process and children, cwd its folder."""
    yield from _enter_store(registered_store, monkeypatch)


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """Each test starts with the SIGINT/SIGTERM handlers the worker had: an in-process interrupt
    leaves SIGTERM ignored on purpose (a stopping aetrack lives to say why), which processes this
    worker later forks would otherwise inherit."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in previous.items():
        if signal.getsignal(number) is not handler and handler is not None:
            signal.signal(number, handler)
