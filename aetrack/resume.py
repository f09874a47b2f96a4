"""`resume(run_id)`: continue a run that stopped early from its last checkpoint, as the same run.

Checks first, changing nothing until all pass: the run exists, it is KILLED, FAILED or RUNNING with
its process gone; its params make a valid TrainConfig; it has a whole checkpoint that was written
for exactly those params. Then it claims the run (one of two simultaneous resumes wins, see
`tracking.liveness.claim`), reopens it, restores weights, optimizer and random state, and continues
with `runner.complete_run` from the checkpoint's epoch: the same fit, evaluation, figures and
registration as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses

import keras

from aetrack.config import CUSTOM_OBJECTS, PARAMS_ADDED_LATER, TrainConfig, is_custom_architecture, parse_value
from aetrack.data import dataset_for
from aetrack.devices import distribution_scope, for_strategy
from aetrack.errors import ConfigError, ResumeError
from aetrack.models.custom import file_sha256, source_file
from aetrack.names import DATASET_SHA256_TAG, ENTRY_POINT_TAG, RUN_NAME_TAG, SAMPLE_SHAPE_TAG, SOURCE_SHA256_TAG
from aetrack.runner import PhaseTimer, StartPoint, TrainResult, build_model, complete_run, summary
from aetrack.tracking.checkpoints import Checkpoint, read_checkpoint, restore
from aetrack.tracking.liveness import DEFAULT_STALE_TIMEOUT_S, claim
from aetrack.tracking.resumption import (experiment_name_of, leave_outer_run, logged_history, mark_resumed,
                                         resumable_run)
from aetrack.tracking.run import check_tracking_store, param_texts, tracked_run, tracking_client, tracking_uri


def resume(run_id: str, timeout_s: float = DEFAULT_STALE_TIMEOUT_S) -> TrainResult:
    """Continue run `run_id` from its last checkpoint to the end; return what `train` returns."""
    check_tracking_store(tracking_uri())
    client = tracking_client()
    run = resumable_run(client, run_id, timeout_s)
    if run.data.params.get("architecture") == CUSTOM_OBJECTS:
        raise ResumeError(f"cannot resume run {run_id}: it trained encoder and decoder objects given to "
                          "aetrack.train, which nothing can rebuild; resume needs runs trained with "
                          "architecture=package.module:function")
    # A mirrored run resumes mirrored, with its steps_per_execution.
    config = for_strategy(config_of(run, experiment_name_of(client, run)))
    check_custom_source(run, config.architecture)
    dataset = dataset_for(config)
    config = config.for_data(dataset.spec.bounded)  # as train() resolved it; `mlflow run` logged loss ''
    checkpoint = checkpoint_for(client, run_id, config)
    trained_shape = run.data.tags.get(SAMPLE_SHAPE_TAG, dataset.spec.shape_text())
    if trained_shape != dataset.spec.shape_text():
        raise ResumeError(f"cannot resume run {run_id}: it trained on samples of shape {trained_shape} but dataset "
                          f"{config.dataset!r} now gives {dataset.spec.describe()}s")
    if dataset.sha256 != run.data.tags.get(DATASET_SHA256_TAG, dataset.sha256):
        raise ResumeError(f"cannot resume run {run_id}: dataset {config.dataset!r} has changed since the run "
                          "started (its SHA-256 differs from the run's tag aetrack.dataset_sha256)")

    keras.utils.set_random_seed(config.seed)
    with distribution_scope(config) as devices:  # the optimizer's variables too: restore builds them
        model = build_model(config, dataset.spec)
        restore(model, checkpoint, run_id)  # raises ResumeError before anything is changed

    claim(client, run_id, timeout_s)
    outer_run_id = leave_outer_run(client, run_id)  # under `mlflow run`: its own new run
    phase = PhaseTimer()
    start = StartPoint(checkpoint.epoch, *logged_history(client, run_id))
    with tracked_run(config.experiment_name, resume_run_id=run_id) as reopened:
        mark_resumed(client, run, checkpoint.epoch, devices, outer_run_id)
        print(f"aetrack: resuming run {run_id} from epoch {checkpoint.epoch} of {config.epochs}", flush=True)
        result = complete_run(client, reopened, run.data.tags.get(RUN_NAME_TAG, run_id), config, dataset,
                              model, phase, start)
    print(summary(result, tracking_uri()), flush=True)
    return result


def check_custom_source(run, architecture: str) -> None:
    """A custom architecture resumes only from the source it trained with (its SHA-256 tag): other
    code would build other layers for the checkpoint's weights."""
    if not is_custom_architecture(architecture) or SOURCE_SHA256_TAG not in run.data.tags:
        return
    path = source_file(architecture)  # imports it: a callable that is gone fails in one line
    if path is None or file_sha256(path) != run.data.tags[SOURCE_SHA256_TAG]:
        raise ResumeError(f"cannot resume run {run.info.run_id}: the source of {architecture} ({path}) has "
                          f"changed since the run started (its SHA-256 differs from the run's tag {SOURCE_SHA256_TAG})")


def checkpoint_for(client, run_id: str, config: TrainConfig) -> Checkpoint:
    """The run's last whole checkpoint, if it was written for exactly `config`'s params; else
    ResumeError saying what differs."""
    checkpoint = read_checkpoint(client, run_id)
    if checkpoint is None:
        raise ResumeError(f"cannot resume run {run_id}: it has no checkpoint (checkpoint_every="
                          f"{config.checkpoint_every}; it may have stopped before its first one)")
    expected = param_texts(config.params())
    saved = checkpoint.state.get("params") or {}
    defaults = param_texts(TrainConfig(entry_point=config.entry_point).params())
    # A checkpoint from before a param existed was written with that param's default.
    saved = {**{k: defaults[k] for k in PARAMS_ADDED_LATER if k not in saved and k in defaults}, **saved}
    if saved != expected:
        differ = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
        name = differ[0] if differ else "params"
        raise ResumeError(f"cannot resume run {run_id}: its checkpoint ({checkpoint.folder}) was written for "
                          f"{name}={saved.get(name)!r} but the run has {name}={expected.get(name)!r}")
    return checkpoint


def config_of(run, experiment_name: str) -> TrainConfig:
    """The TrainConfig the run was trained with, rebuilt from its params and entry point tag, in
    `experiment_name`."""
    entry_point = run.data.tags.get(ENTRY_POINT_TAG)
    if entry_point not in ("basic", "denoise"):
        raise ResumeError(f"cannot resume run {run.info.run_id}: it was not made by aetrack train "
                          "(no aetrack.entry_point tag)")
    probe = TrainConfig(entry_point=entry_point)
    values = {}
    for name in probe.params():
        if name in ("entry_point", "experiment_name"):
            continue
        if name not in run.data.params and name in PARAMS_ADDED_LATER:
            continue  # a run from before the param existed trained with its default
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
    return dataclasses.replace(probe, experiment_name=experiment_name, **values).validated()
