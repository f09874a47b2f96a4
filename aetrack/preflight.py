"""Checks that run before a training run exists, so bad setups fail fast with one clear line.

`check_init_model_spec` is pure Python (the CLI calls it while parsing options); the store checks
need only the standard library and MLflow's URI; `load_init_model` is the one that loads Keras, and
train() calls it before the run is created, so a bad init_model never leaves a FAILED run behind.
"""

from __future__ import annotations

import os
import re
import socket
import zipfile
from urllib.parse import urlparse

# runs:/<run id>/<artifact path>, models:/<name>/<version or stage>, models:/<name>@<alias>
_RUNS_URI = re.compile(r"^runs:/[0-9a-fA-F]{32}/[^\s]+$")
# models:/<name>/<version>, models:/<name>@<alias>, or an MLflow 3 logged model id models:/m-<hex>
_MODELS_URI = re.compile(r"^models:/([^/@\s]+(/[^/\s]+|@[^/@\s]+)|m-[0-9a-f]{32})$")
INIT_MODEL_ALLOWED = (
    "empty, runs:/<run id>/<path>, models:/<name>/<version>, models:/<name>@<alias>, "
    "an MLflow model directory, or a .keras file"
)
# How long the tracking-server probe waits for a TCP connection before giving up.
PROBE_TIMEOUT_S = 5.0


class InitModelError(ValueError):
    """An init_model that cannot be used; the message names it and says what is allowed."""

    def __init__(self, value: str, problem: str, allowed: str = INIT_MODEL_ALLOWED):
        super().__init__(f"invalid init_model {value!r}: {problem}; expected {allowed}")


class TrackingStoreError(RuntimeError):
    """The MLflow tracking store cannot be reached or written to."""


def check_init_model_spec(value: str) -> None:
    """Cheap check of an init_model argument (no TensorFlow, no MLflow); raise InitModelError."""
    if value == "":
        return
    if value.startswith("runs:"):
        if not _RUNS_URI.match(value):
            raise InitModelError(value, "malformed runs: URI")
        return
    if value.startswith("models:"):
        if not _MODELS_URI.match(value):
            raise InitModelError(value, "malformed models: URI")
        return
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", value):
        return  # another MLflow model URI (file://, s3://, mlflow-artifacts:/ ...): checked when loaded
    path = value
    if not os.path.exists(path):
        raise InitModelError(value, "no such file or directory")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "MLmodel")):
            raise InitModelError(value, "a directory without an MLmodel file")
        return
    if not path.endswith(".keras"):
        raise InitModelError(value, "not a .keras file")
    if not zipfile.is_zipfile(path):
        raise InitModelError(value, "not a readable .keras (zip) file: truncated or corrupt")


def load_init_model(value: str, code_size: int):
    """Load init_model (Keras safe mode) and check it fits a 784-in autoencoder of `code_size`.

    Every failure becomes one InitModelError line: a missing run or registered model, a truncated
    or tampered file, a model that needs arbitrary code (e.g. a Lambda layer), a wrong shape.
    """
    check_init_model_spec(value)
    from aetrack.models import build_dense_autoencoder, copy_weights
    from aetrack.registry import load_model

    try:
        model = load_model(value)
    except Exception as exc:  # noqa: BLE001 - MLflow and Keras raise many types; all mean "unusable"
        reason = getattr(exc, "reason", None) or _first_line(exc)
        raise InitModelError(value, f"cannot load it ({reason})") from exc
    if not hasattr(model, "get_weights"):  # e.g. an MLflow model logged as an exported SavedModel
        raise InitModelError(value, f"it loads as {type(model).__name__}, not a Keras model")
    # copy_weights onto a throwaway model of the size this run will build: same check, same message.
    copy_weights(model, build_dense_autoencoder(code_size), value)
    return model


def check_tracking_store(uri: str) -> None:
    """Fail in seconds, with one line, if the tracking store at `uri` is unreachable or unwritable.

    HTTP(S) servers get a TCP probe (MLflow itself would retry for minutes); local SQLite and file
    stores get their directory checked. Other schemes are left to MLflow.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        _probe_server(uri, parsed)
    elif parsed.scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute.db; the path is everything after 'sqlite:///'.
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            _check_writable(uri, path.split("?")[0], is_file=True)
    elif parsed.scheme in ("", "file"):
        _check_writable(uri, parsed.path if parsed.scheme == "file" else uri, is_file=False)


def _probe_server(uri: str, parsed) -> None:
    host = parsed.hostname or "localhost"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise TrackingStoreError(
            f"cannot reach the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI): {reason}; "
            "start it (mlflow server ...) or point MLFLOW_TRACKING_URI at a reachable store"
        ) from None


def _check_writable(uri: str, path: str, is_file: bool) -> None:
    target = os.path.abspath(path)
    if is_file and os.path.isdir(target):
        raise TrackingStoreError(f"tracking store {uri}: {target} is a directory; expected a database file")
    if os.path.exists(target) and not os.access(target, os.W_OK):
        raise TrackingStoreError(f"tracking store {uri}: {target} is not writable")
    directory = os.path.dirname(target) if is_file else target
    existing = directory
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise TrackingStoreError(
            f"tracking store {uri}: cannot create {directory} because {existing} is not a directory"
        )
    if not os.access(existing, os.W_OK):
        raise TrackingStoreError(f"tracking store {uri}: directory {existing} is not writable")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
