"""Shared fixtures: a real temporary MLflow tracking store and small datasets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist" / "mnist.npz"


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 uint8 'digits': label k is a bright bar at a k-dependent place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        row = 3 + 2 * int(k)
        images[i, row : row + 3, 4:24] = 230
        images[i, 4:24, row : row + 2] = 200
    return images, labels


def write_npz(path: Path, n_train: int = 256, n_test: int = 64, seed: int = 0, **overrides) -> Path:
    x_train, y_train = synthetic_digits(n_train, seed)
    x_test, y_test = synthetic_digits(n_test, seed + 1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.fixture(scope="session")
def real_mnist_small(tmp_path_factory) -> Path:
    """The first 2,000 / 200 real MNIST digits from ../shared, or a clean skip without it."""
    if not SHARED_MNIST.exists():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}")
    with np.load(SHARED_MNIST) as npz:
        arrays = {k: npz[k] for k in npz.files}
    path = tmp_path_factory.mktemp("mnist") / "mnist-small.npz"
    np.savez(path, x_train=arrays["x_train"][:2000], y_train=arrays["y_train"][:2000],
             x_test=arrays["x_test"][:200], y_test=arrays["y_test"][:200])
    return path


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    """A fresh SQLite tracking store (and registry) in a temp dir, which is also the cwd."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # mlflow.set_registry_uri() also exports MLFLOW_REGISTRY_URI (and never unsets it): scope it here
    # so child processes of later tests do not register into this test's store.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri("")
    mlflow.set_registry_uri("")


@pytest.fixture
def tiny_config(tiny_npz):
    """A TrainConfig that trains in a couple of seconds on the tiny synthetic dataset."""
    from aetrack.config import TrainConfig

    def make(**overrides):
        values = dict(epochs=2, batch_size=32, code_size=16, train_samples=256, test_samples=32,
                      dataset=str(tiny_npz), image_samples=4, register=False)
        values.update(overrides)
        return TrainConfig(**values)

    return make


def subprocess_env(tracking_uri: str | None = None) -> dict[str, str]:
    """Environment for child processes: this interpreter's bin dir first, quiet TensorFlow."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["MPLBACKEND"] = "Agg"
    env.pop("MLFLOW_RUN_ID", None)
    # mlflow.set_experiment() in an earlier in-process test exports this; `mlflow run` children
    # then refuse --experiment-name ("Specify only one of ...").
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


@pytest.fixture(scope="session")
def registered_store(tmp_path_factory, tiny_npz):
    """One SQLite store holding two finished, registered `basic` runs (code size 8), shared by the
    registry, inference and serving tests so they train once. Tests enter it with `registered`.

    Run 1 trains 1 epoch, run 2 trains 4 (lower test_bce); run 2's versions are the `candidate`s.
    Returns a namespace: uri, folder, prefix, results (TrainResult of run 1 and 2), dataset.
    """
    import types

    import mlflow

    from aetrack.config import TrainConfig
    from aetrack.train import train

    folder = tmp_path_factory.mktemp("registered")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID")}
    cwd = os.getcwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    os.chdir(folder)  # artifacts (./mlruns) go next to the store
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        common = dict(batch_size=32, code_size=8, train_samples=256, test_samples=32, dataset=str(tiny_npz),
                      image_samples=4, register=True, model_prefix="aetrack-test")
        results = [train(TrainConfig(epochs=1, **common)), train(TrainConfig(epochs=4, **common))]
    finally:
        os.chdir(cwd)
        mlflow.set_tracking_uri("")
        mlflow.set_registry_uri("")
        for key, value in saved.items():  # after set_*_uri(""), which write these variables
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return types.SimpleNamespace(uri=uri, folder=folder, prefix="aetrack-test", results=results, dataset=tiny_npz)


@pytest.fixture
def registered(registered_store, monkeypatch):
    """Enter `registered_store`: its tracking URI for this process and children, cwd its folder."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_store.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registered_store.uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(registered_store.folder)
    mlflow.set_tracking_uri(registered_store.uri)
    mlflow.set_registry_uri(registered_store.uri)
    yield registered_store
    mlflow.set_tracking_uri("")
    mlflow.set_registry_uri("")


def run_aetrack(*args, uri: str | None = None, cwd=None, timeout: float = 240) -> subprocess.CompletedProcess:
    """The real `aetrack` command in a child process (`python -m aetrack ...`), output captured."""
    return subprocess.run([sys.executable, "-m", "aetrack", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(uri), cwd=cwd)
