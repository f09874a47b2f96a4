"""The life of one MLflow run: check the store, start the run (or join the one `mlflow run`
made), describe and tag it, log its final metrics, and end it FINISHED, FAILED or KILLED, even
when a signal arrives.

A run never stays RUNNING because aetrack stopped: SIGINT and SIGTERM become `Interrupted` while
the run is open (under `mlflow run`, from joining it), and every signal after the first is ignored
while the run is ended with its reason (tag `aetrack.failure`).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator
from urllib.parse import urlparse

from aetrack.errors import Interrupted, TrackingStoreError
from aetrack.names import FAILURE_TAG, SAMPLE_SPEC_ARTIFACT, VERSION_TAG
from aetrack.tracking.liveness import owner_tags
from aetrack.version import __version__

# Set by `mlflow run` for the run it made, which aetrack then trains into.
MLFLOW_RUN_ID_ENV = "MLFLOW_RUN_ID"
# How long the tracking-server probe waits for a TCP connection before giving up.
PROBE_TIMEOUT_S = 5.0


@contextmanager
def tracked_run(experiment_name: str, parent_run_id: str | None = None, system_metrics: bool = False,
                resume_run_id: str | None = None) -> Iterator["mlflow.ActiveRun"]:  # noqa: F821
    """Start (or, under `mlflow run`, join; or, given `resume_run_id`, reopen) the run; end it
    FINISHED, FAILED or KILLED.

    With `parent_run_id` (a sweep's trial) a new run is nested under that run, in its experiment.
    With `system_metrics`, MLflow samples CPU, memory (and GPU) use into `system/*` metrics while
    the run is open (every 10 s; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL changes it).
    """
    import mlflow
    from mlflow.entities import RunStatus

    outer_run_id = resume_run_id or parent_run_id or os.environ.get(MLFLOW_RUN_ID_ENV)
    # Under `mlflow run` the run exists before aetrack starts: an interrupt even while joining it
    # must end it with the reason.
    joined_run_id = None if resume_run_id or parent_run_id else os.environ.get(MLFLOW_RUN_ID_ENV)
    run = None
    previous = _set_handlers(_raise_interrupted)
    try:
        if outer_run_id:
            # Under `mlflow run` the run already exists, in the experiment that command chose.
            experiment_id = mlflow.tracking.MlflowClient().get_run(outer_run_id).info.experiment_id
            mlflow.set_experiment(experiment_id=experiment_id)
        else:
            experiment = mlflow.set_experiment(experiment_name)
            # When another process creates the experiment at the same moment, MLflow's set_experiment
            # returns it without making it the active one (mlflow/tracking/fluent.py, the
            # RESOURCE_ALREADY_EXISTS branch), and the run would start in the Default experiment.
            mlflow.set_experiment(experiment_id=experiment.experiment_id)
        # parent_run_id sets the `mlflow.parentRunId` tag that the MLflow UI nests children by;
        # log_system_metrics None lets MLflow's own environment variable decide; run_id reopens a run.
        run = mlflow.start_run(run_id=resume_run_id, parent_run_id=parent_run_id, nested=parent_run_id is not None,
                               log_system_metrics=True if system_metrics else None)
        yield run
        with _signals(_ignore_signal):
            mlflow.end_run("FINISHED")
    except BaseException as exc:
        # Still inside the handlers: the first signal switched them to _ignore_signal, so a second
        # one (`mlflow run` answers Ctrl-C with SIGTERM to this process) cannot cut this short.
        if isinstance(exc, KeyboardInterrupt):
            status = RunStatus.to_string(RunStatus.KILLED)
            reason = f"interrupted by {exc.signal_name if isinstance(exc, Interrupted) else 'SIGINT'}"
        else:
            status, reason = RunStatus.to_string(RunStatus.FAILED), f"{type(exc).__name__}: {exc}"
        if run is not None:
            _end_run(status, reason)
        elif joined_run_id:
            _end_joined_run(joined_run_id, status, reason)
        raise
    finally:
        # A signal was handled (the handlers are the no-op): this process is being stopped.
        signalled = bool(previous) and signal.getsignal(signal.SIGINT) is _ignore_signal
        _restore_handlers(previous, keep_ignoring_defaults=signalled)


def describe_run(client, run_id: str, params: dict[str, object], tags: dict[str, str],
                 sample_spec_json: str | None = None) -> None:
    """Log the run's params and tags, plus the versions of what trained it, and the data's
    SampleSpec (JSON) as `sample_spec.json`.

    `mlflow run` has already logged the MLproject parameters as it received them (with '' for
    empty values); MLflow forbids changing a param, so only the ones it did not log are added.
    """
    import keras
    import mlflow
    import tensorflow as tf
    from mlflow.entities import Param, RunTag

    tags = {
        **tags,
        **owner_tags(),
        VERSION_TAG: __version__,
        "tensorflow.version": tf.__version__,
        "keras.version": keras.__version__,
        "mlflow.version": mlflow.__version__,
    }
    texts = param_texts(params)
    already = client.get_run(run_id).data.params
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in texts.items() if k not in already],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    if sample_spec_json is not None:
        client.log_text(run_id, sample_spec_json, SAMPLE_SPEC_ARTIFACT)


def tag_run(client, run_id: str, tags: dict[str, str]) -> None:
    """Set the run's `tags` (name -> value), in one request."""
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def log_final_metrics(metrics: dict[str, float], step: int, dataset) -> None:
    """Log the end-of-run metrics of the active run at `step`, computed on the MLflow `dataset`.

    Called after the run's models are logged: MLflow then links each metric, with its dataset, to
    those models.
    """
    import mlflow

    mlflow.log_metrics(metrics, step=step, dataset=dataset)


def tracking_uri() -> str:
    """Where runs are tracked now (MLFLOW_TRACKING_URI, or MLflow's default)."""
    import mlflow

    return mlflow.get_tracking_uri()


def tracking_client():
    """An MlflowClient for the current tracking and registry URIs."""
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def param_texts(params: dict[str, object]) -> dict[str, str]:
    """Params as MLflow stores them (text; booleans lower-case)."""
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}


def _end_run(status: str, reason: str) -> None:
    import mlflow

    # A second Ctrl-C or SIGTERM while the run is being ended must not leave it RUNNING.
    with _signals(_ignore_signal):
        try:
            _retried(lambda: mlflow.set_tag(FAILURE_TAG, reason[:5000]))
        finally:
            mlflow.end_run(status)


def _end_joined_run(run_id: str, status: str, reason: str) -> None:
    """End `mlflow run`'s run when aetrack stopped before joining it. Best effort: the error or
    interrupt that got here is what to report, not a store that cannot take the tag."""
    from mlflow.tracking import MlflowClient

    with _signals(_ignore_signal):
        try:
            client = MlflowClient()
            client.set_tag(run_id, FAILURE_TAG, reason[:5000])
            client.set_terminated(run_id, status)
        except Exception:  # noqa: BLE001 - see above
            pass


def _retried(write: Callable[[], object], attempts: int = 3, pause_s: float = 0.5) -> None:
    """`write`, tried again after a pause if it fails: an interrupt can land mid-write and leave
    SQLite locked for a moment, and the failure tag is the one write that must not be lost."""
    for attempt in range(attempts):
        try:
            write()
            return
        except Exception:  # noqa: BLE001 - the last attempt's error propagates
            if attempt == attempts - 1:
                raise
            time.sleep(pause_s)


def _raise_interrupted(signal_number, frame):
    # Ignore further signals first: one still pending (SIGTERM right after Ctrl-C) would otherwise
    # raise again while the run is being ended, anywhere on the way out of training.
    _set_handlers(_ignore_signal)
    raise Interrupted(signal_number)


def _ignore_signal(signal_number, frame):
    """A Python handler that does nothing. Unlike SIG_IGN, CPython runs it for a signal that was
    already pending when it was installed, without a 'Signal ignored due to race condition' line."""


def _set_handlers(handler: Callable | int) -> dict[int, object]:
    """Handle SIGINT and SIGTERM with `handler`; the handlers that were there (none off the main
    thread: Python allows signal handlers nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_handlers(previous: dict[int, object], keep_ignoring_defaults: bool = False) -> None:
    """Put `previous` back. With `keep_ignoring_defaults` (after a real signal), one whose previous
    action was the default (SIGTERM: die on the spot) stays ignored: the process is stopping, and
    must live to say why (`mlflow run` sends SIGTERM up to seconds after Ctrl-C)."""
    for s, h in previous.items():
        if not (keep_ignoring_defaults and h == signal.SIG_DFL):
            signal.signal(s, h)


@contextmanager
def _signals(handler: Callable | int) -> Iterator[None]:
    """Handle SIGINT and SIGTERM with `handler` inside the block, then restore what was there."""
    previous = _set_handlers(handler)
    try:
        yield
    finally:
        _restore_handlers(previous)


# --- the store, checked before a run exists ------------------------------------------------------


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


