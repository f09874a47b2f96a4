"""Shared pieces of the benchmark scripts: data path, a throwaway tracking store, fit timing,
machine description. Benchmarks call aetrack's real code; nothing here trains a model itself."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing
from deploy.stack import free_port  # noqa: E402,F401  (the one definition; benchmarks import it from here)
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist" / "mnist.npz"

# The tutorial's printed per-epoch training loss (30,000 images, batch 64, Adam, BCE).
PUBLISHED_LOSS = {
    "basic": [0.2034, 0.1229, 0.1013, 0.0900, 0.0836, 0.0801, 0.0780, 0.0767, 0.0758, 0.0752],
    "denoise": [0.1071, 0.1015, 0.1003, 0.0997, 0.0994, 0.0991, 0.0989, 0.0988, 0.0986, 0.0985],
}


def child_env(tracking_uri: str | None = None) -> dict[str, str]:
    """Environment for `mlflow run` / `python -m aetrack` children: this interpreter first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    # mlflow.set_experiment() in this process exports MLFLOW_EXPERIMENT_ID, which would clash
    # with the child's own --experiment-name.
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(key, None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


@contextlib.contextmanager
def tracking_store(workdir: str | None = None) -> Iterator[tuple[str, Path]]:
    """A fresh SQLite tracking store (runs, artifacts, registry) in `workdir` or a temp dir."""
    import mlflow

    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aetrack-bench-")))
        root.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        previous_cwd = os.getcwd()
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ.pop("MLFLOW_RUN_ID", None)
        os.chdir(root)  # default artifact location ./mlruns lands inside the store's directory
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield uri, root
        finally:
            while mlflow.active_run():
                mlflow.end_run()
            os.chdir(previous_cwd)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def registered(name: str) -> bool:
    """Whether the current registry (tracking_store's) has a version of model `name`."""
    from mlflow.tracking import MlflowClient

    return bool(MlflowClient().search_model_versions(f"name = '{name}'"))


class FitTimer:
    """Times every `keras.Model.fit` call made inside the block (aetrack's own fit included).

    With `drop_callbacks=True` the calls run without their callbacks: the same fit path, data and
    arguments as aetrack's, minus tracking, which is what "tracking overhead" compares against.
    """

    def __init__(self, drop_callbacks: bool = False):
        self.drop_callbacks = drop_callbacks
        self.seconds: list[float] = []
        self.callback_seconds: list[float] = []  # per fit: time spent inside aetrack's callbacks
        self.seconds_by_callback: list[dict[str, float]] = []  # per fit: the same, by callback class
        self.histories: list[dict[str, list[float]]] = []

    def __enter__(self) -> "FitTimer":
        import keras

        self._original = original = keras.Model.fit
        timer = self

        def timed_fit(model, *args, **kwargs):
            if timer.drop_callbacks:
                # EpochOrder is the data pipeline (each epoch's batch order), not tracking: it stays.
                kwargs["callbacks"] = [c for c in kwargs.get("callbacks") or [] if type(c).__name__ == "EpochOrder"]
            spent = [0.0]
            by_callback: dict[str, float] = {}
            for callback in kwargs.get("callbacks") or []:
                _time_hooks(callback, spent, by_callback)
            started = time.perf_counter()
            history = original(model, *args, **kwargs)
            timer.seconds.append(time.perf_counter() - started)
            timer.callback_seconds.append(spent[0])
            timer.seconds_by_callback.append(by_callback)
            timer.histories.append({k: [float(v) for v in vs] for k, vs in history.history.items()})
            return history

        keras.Model.fit = timed_fit
        return self

    def __exit__(self, *exc) -> None:
        import keras

        keras.Model.fit = self._original


def _time_hooks(callback, spent: list[float], by_callback: dict[str, float] | None = None) -> None:
    """Wrap the hooks this callback overrides so their time adds up in spent[0] (and, by callback
    class name, in `by_callback`)."""
    import keras

    for name in dir(keras.callbacks.Callback):
        if not name.startswith("on_") or getattr(type(callback), name) is getattr(keras.callbacks.Callback, name):
            continue
        hook = getattr(callback, name)

        def timed(*args, _hook=hook, **kwargs):
            started = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - started
                spent[0] += seconds
                if by_callback is not None:
                    name = type(callback).__name__
                    by_callback[name] = by_callback.get(name, 0.0) + seconds

        setattr(callback, name, timed)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    """One-line facts about the machine and versions, printed at the top of every benchmark."""
    import importlib.metadata as md

    versions = []
    for package in ("tensorflow", "keras", "mlflow", "numpy"):
        try:
            versions.append(f"{package} {md.version(package)}")
        except md.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return [
        f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load:.2f}",
        f"python {platform.python_version()}, " + ", ".join(versions),
    ]


def stop_group(process: subprocess.Popen, grace: float = 30) -> None:
    """Stop a server started with start_new_session=True (it and its workers) by its pid."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
