"""What MLflow holds about a run being resumed: is it resumable, what has it logged, and the tags
that say who resumed it from where (on the run, and on the `mlflow run` run that resumed it).

The claim that lets one of two simultaneous resumes win is `tracking.liveness.claim`.
"""

from __future__ import annotations

import os

from aetrack.errors import ResumeError
from aetrack.names import DEVICES_TAG, FAILURE_TAG, RESUMED_BY_TAG, RESUMED_FROM_TAG, RESUMES_TAG
from aetrack.tracking.liveness import is_stale, owner_tags
from aetrack.tracking.run import MLFLOW_RUN_ID_ENV, tag_run, tracking_uri


def resumable_run(client, run_id: str, timeout_s: float):
    """The run, if it can be resumed; else ResumeError saying why."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ResumeError(f"cannot resume run {run_id}: no such run in {tracking_uri()}") from None
    status = run.info.status
    if run.info.lifecycle_stage == "deleted":
        raise ResumeError(f"cannot resume run {run_id}: it is deleted")
    if status == "FINISHED":
        raise ResumeError(f"cannot resume run {run_id}: it is FINISHED; only KILLED, FAILED or stale RUNNING "
                          "runs can be resumed")
    if status == "RUNNING" and not is_stale(run, timeout_s):
        raise ResumeError(f"cannot resume run {run_id}: it is RUNNING and its process is alive (or its heartbeat "
                          f"is under {timeout_s:g} s old); stop it first, or see `aetrack runs --stale`")
    if status not in ("KILLED", "FAILED", "RUNNING"):
        raise ResumeError(f"cannot resume run {run_id}: it is {status}; only KILLED, FAILED or stale RUNNING "
                          "runs can be resumed")
    return run


def experiment_name_of(client, run) -> str:
    return client.get_experiment(run.info.experiment_id).name


def logged_history(client, run_id: str) -> tuple[int, dict[str, list[float]]]:
    """(the last step with a logged loss, {loss, val_loss: values by step from 1})."""
    by_key = {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in ("loss", "val_loss")}
    history = {key: [values[s] for s in sorted(values)] for key, values in by_key.items()}
    return max(by_key["loss"], default=0), history


def leave_outer_run(client, run_id: str) -> str | None:
    """Under `mlflow run`: forget the run it made (this process reopens `run_id` instead), tag that
    run with the one it resumes, and return its id; None when not under `mlflow run`."""
    outer_run_id = os.environ.pop(MLFLOW_RUN_ID_ENV, None)
    if outer_run_id:
        tag_run(client, outer_run_id, {RESUMES_TAG: run_id})
    return outer_run_id


def mark_resumed(client, run, from_epoch: int, devices: list[str], outer_run_id: str | None) -> None:
    """Tag the reopened run: who trains it now, the epoch it continues from, its devices, and the
    `mlflow run` run that resumed it; drop the failure reason of the attempt that stopped."""
    run_id = run.info.run_id
    tags = {**owner_tags(), RESUMED_FROM_TAG: str(from_epoch), DEVICES_TAG: ",".join(devices)}
    if outer_run_id:
        tags[RESUMED_BY_TAG] = outer_run_id
    tag_run(client, run_id, tags)
    if FAILURE_TAG in run.data.tags:  # the old reason no longer applies; the tags above say what happened
        client.delete_tag(run_id, FAILURE_TAG)
