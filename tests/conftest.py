"""Shared fixtures: a real temporary MLflow tracking store and small datasets."""

from __future__ import annotations

import os
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
    # mlflow.set_experiment() in an in-process test leaves MLFLOW_EXPERIMENT_ID in os.environ.
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env
