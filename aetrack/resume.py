"""`resume(run_id)`: continue a run that stopped early from its last checkpoint, as the same run.

Checks first, changing nothing until all pass: the run exists, it is KILLED, FAILED or RUNNING with
its process gone; its params make a valid TrainConfig; it has a whole checkpoint that was written
for exactly those params. Then it claims the run (one of two simultaneous resumes wins, see
`tracking.liveness.claim`), reopens it, restores weights, optimizer and random state, and continues
with `train.complete_run` from the checkpoint's epoch: the same fit, evaluation, figures and
registration as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from aetrack.config import TrainConfig, parse_value
from aetrack.data import dataset_for
from aetrack.devices import DEVICES_TAG, distribution_scope, for_strategy
from aetrack.errors import ConfigError, ResumeError
from aetrack.names import (DATASET_SHA256_TAG, ENTRY_POINT_TAG, RESUMED_BY_TAG, RESUMED_FROM_TAG, RESUMES_TAG,
                           RUN_NAME_TAG)
from aetrack.tracking.checkpoints import read_checkpoint, restore
from aetrack.tracking.liveness import DEFAULT_STALE_TIMEOUT_S, claim, is_stale, owner_tags
from aetrack.tracking.run import FAILURE_TAG, check_tracking_store, param_texts, tracked_run
from aetrack.train import PhaseTimer, StartPoint, TrainResult, build_model, complete_run, summary



def resume(run_id: str, timeout_s: float = DEFAULT_STALE_TIMEOUT_S) -> TrainResult:
    """Continue run `run_id` from its last checkpoint to the end; return what `train` returns."""
    check_tracking_store(mlflow.get_tracking_uri())
    client = MlflowClient()
    run = resumable_run(client, run_id, timeout_s)
    config = for_strategy(config_of(run))  # a mirrored run resumes mirrored, with its steps_per_execution
    checkpoint = read_checkpoint(client, run_id)
    if checkpoint is None:
        raise ResumeError(f"cannot resume run {run_id}: it has no checkpoint (checkpoint_every="
                          f"{config.checkpoint_every}; it may have stopped before its first one)")
    expected = param_texts(config.params())
    if checkpoint.state.get("params") != expected:
        saved = checkpoint.state.get("params") or {}
        differ = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
        name = differ[0] if differ else "params"
        raise ResumeError(f"cannot resume run {run_id}: its checkpoint ({checkpoint.folder}) was written for "
                          f"{name}={saved.get(name)!r} but the run has {name}={expected.get(name)!r}")
    dataset = dataset_for(config)
    if dataset.sha256 != run.data.tags.get(DATASET_SHA256_TAG, dataset.sha256):
        raise ResumeError(f"cannot resume run {run_id}: dataset {config.dataset!r} has changed since the run "
                          "started (its SHA-256 differs from the run's tag aetrack.dataset_sha256)")

    import keras

    keras.utils.set_random_seed(config.seed)
    with distribution_scope(config) as devices:  # the optimizer's variables too: restore builds them
        model = build_model(config)
        restore(model, checkpoint, run_id)  # raises ResumeError before anything is changed

    claim(client, run_id, timeout_s)
    outer_run_id = os.environ.pop("MLFLOW_RUN_ID", None)  # under `mlflow run`: its own new run
    if outer_run_id:
        client.set_tag(outer_run_id, RESUMES_TAG, run_id)
    phase = PhaseTimer()
    start = StartPoint(checkpoint.epoch, *logged_history(client, run_id))
    with tracked_run(config.experiment_name, resume_run_id=run_id) as reopened:
        tags = {**owner_tags(), RESUMED_FROM_TAG: str(checkpoint.epoch), DEVICES_TAG: ",".join(devices)}
        if outer_run_id:
            tags[RESUMED_BY_TAG] = outer_run_id
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        if FAILURE_TAG in run.data.tags:  # the old reason no longer applies; the tag above says what happened
            client.delete_tag(run_id, FAILURE_TAG)
        print(f"aetrack: resuming run {run_id} from epoch {checkpoint.epoch} of {config.epochs}", flush=True)
        result = complete_run(client, reopened, run.data.tags.get(RUN_NAME_TAG, run_id), config, dataset,
                              model, phase, start)
    print(summary(result, mlflow.get_tracking_uri()), flush=True)
    return result


def resumable_run(client: MlflowClient, run_id: str, timeout_s: float):
    """The run, if it can be resumed; else ResumeError saying why."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ResumeError(f"cannot resume run {run_id}: no such run in {mlflow.get_tracking_uri()}") from None
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


def config_of(run) -> TrainConfig:
    """The TrainConfig the run was trained with, rebuilt from its params and entry point tag."""
    entry_point = run.data.tags.get(ENTRY_POINT_TAG)
    if entry_point not in ("basic", "denoise"):
        raise ResumeError(f"cannot resume run {run.info.run_id}: it was not made by aetrack train "
                          "(no aetrack.entry_point tag)")
    probe = TrainConfig(entry_point=entry_point)
    values = {}
    for name in probe.params():
        if name in ("entry_point", "experiment_name"):
            continue
        if name not in run.data.params:
            raise ResumeError(f"cannot resume run {run.info.run_id}: it has no param {name!r} "
                              "(made by an older aetrack without checkpoints?)")
        raw = run.data.params[name]
        # `mlflow run` logs an empty -P value as the shell's quoted empty string.
        raw = "" if raw == "''" else raw
        try:
            values[name] = parse_value(name, raw)
        except ConfigError as exc:
            raise ResumeError(f"cannot resume run {run.info.run_id}: its param {exc}") from None
    experiment = mlflow.get_experiment(run.info.experiment_id).name
    return dataclasses.replace(probe, experiment_name=experiment, **values).validated()


def logged_history(client: MlflowClient, run_id: str) -> tuple[int, dict[str, list[float]]]:
    """(the last step with a logged loss, {loss, val_loss: values by step from 1})."""
    by_key = {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in ("loss", "val_loss")}
    history = {key: [values[s] for s in sorted(values)] for key, values in by_key.items()}
    return max(by_key["loss"], default=0), history
