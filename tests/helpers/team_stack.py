"""The shipped team stack (deploy/stack.py) for tests: start it in a temp dir, and read back what
landed in its MLflow server, PostgreSQL database and S3 bucket."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

# deploy/ is a folder of scripts without __init__.py; from the checkout's root (pytest's
# pythonpath) it imports as a namespace package.
from deploy import stack as stack_script


@contextlib.contextmanager
def running_stack() -> Iterator:
    """Start the stack in a fresh temp dir; always stop it by pid and remove the dir afterwards."""
    # Under /tmp and searchable by others: as root, PostgreSQL runs as the postgres user, which must
    # reach its data dir (pytest's own temp dirs are mode 700).
    folder = Path(tempfile.mkdtemp(prefix="aetrack-team-stack-"))
    folder.chmod(0o711)
    stack = None
    try:
        stack = stack_script.start_stack(folder / "stack")
        yield stack
    finally:
        if stack is not None:
            stack_script.stop_stack(stack)
        shutil.rmtree(folder, ignore_errors=True)


def bucket_keys(stack, prefix: str = "") -> list[str]:
    """Every object key under `prefix` in the stack's bucket (listed with boto3, paginated)."""
    client = stack.s3_client()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def run_keys(stack, experiment_id: str, run_id: str) -> list[str]:
    """The run's artifact keys in the bucket, relative to the run's artifacts folder."""
    # Proxied artifacts land at <destination>/<experiment id>/<run id>/artifacts/<path>.
    prefix = f"artifacts/{experiment_id}/{run_id}/artifacts/"
    return [key[len(prefix):] for key in bucket_keys(stack, prefix)]


def _rows(connection, sql: str, args: tuple) -> list[tuple]:
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        connection.close()


def query(stack, sql: str, *args) -> list[tuple]:
    """Rows of one SQL query against the stack's PostgreSQL backend store."""
    return _rows(stack.database(), sql, args)


def local_mlflow_files(folder: Path) -> list[str]:
    """MLflow files a client would have written to its own disk (there must be none)."""
    return [str(p) for name in ("mlruns", "mlartifacts", "mlflow.db") for p in folder.rglob(name)]


def server_process_ids(stack) -> dict[str, int]:
    return {name: process.pid for name, process in stack.processes.items()}


def optuna_query(stack, sql: str, *args) -> list[tuple]:
    """Rows of one SQL query against the stack's Optuna database (Optuna's own tables)."""
    import psycopg2

    return _rows(psycopg2.connect(stack.optuna_storage.replace("postgresql+psycopg2://", "postgresql://", 1)), sql, args)
