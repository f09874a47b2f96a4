"""Pointing this process's MLflow at a test's tracking store, and letting go of it afterwards."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def mlflow_pointed_at(uri: str) -> Iterator[str]:
    """MLflow's in-process tracking and registry URIs set to `uri`, unset again on the way out.

    Unset means None, not "": `set_tracking_uri("")` leaves an empty URI that wins over a later
    test's MLFLOW_TRACKING_URI. (None also removes the variable, which the callers' monkeypatch or
    saved environment puts back.)
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@contextlib.contextmanager
def session_store(folder: Path) -> Iterator[str]:
    """Point MLflow (this process) at a SQLite store in `folder`, cwd there, for a session or
    module fixture to fill; afterwards restore the environment and cwd as they were."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID",
                                            "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    cwd = os.getcwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(key, None)
    os.chdir(folder)  # artifacts (./mlruns) go next to the store
    try:
        with mlflow_pointed_at(uri):
            yield uri
    finally:
        os.chdir(cwd)
        for key, value in saved.items():  # after mlflow_pointed_at, which writes these variables
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
