"""Pointing this process's MLflow at a test's tracking store, and letting go of it afterwards; new
stores made from one migrated template instead of MLflow's schema migrations each time."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Iterator


@functools.cache
def _template_store() -> Path:
    """An empty SQLite store with MLflow's whole schema, made once per process."""
    from mlflow.tracking import MlflowClient

    path = Path(tempfile.mkdtemp(prefix="aetrack-template-store-")) / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables, runs the migrations
    return path


def new_store(folder: Path, name: str = "mlflow.db") -> str:
    """A new empty SQLite store at folder/name, as MLflow would create it there; its URI.

    Copying a migrated file takes milliseconds where creating a store runs every migration (about a
    second). The Default experiment's artifact location is set to the new folder, as MLflow would.
    """
    path = folder / name
    shutil.copyfile(_template_store(), path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                    (str(folder / "mlruns" / "0"),))
    return f"sqlite:///{path}"


@contextlib.contextmanager
def mlflow_pointed_at(uri: str) -> Iterator[str]:
    """MLflow's in-process tracking and registry URIs set to `uri`; on the way out unset again, and
    the MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI variables (which `set_*_uri` export and never
    remove) put back as they were, so no later test or child process reaches this store.

    Unset means None, not "": `set_tracking_uri("")` leaves an empty URI that wins over a later
    test's MLFLOW_TRACKING_URI.
    """
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def session_store(folder: Path) -> Iterator[str]:
    """Point MLflow (this process) at a SQLite store in `folder`, cwd there, for a session or
    module fixture to fill; afterwards restore the environment and cwd as they were."""
    uri = new_store(folder)
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
