"""One trial: suggest its parameters, train its run nested under the parent, and say how it ended."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass

import keras
import optuna
from optuna.trial import TrialState

from aetrack.config import SweepConfig, TrainConfig
from aetrack.data import Dataset
from aetrack.errors import AetrackError, one_line
from aetrack.names import (RETRY_OF_ATTR, RUN_ID_ATTR, SWEEP_RETRY_OF_TAG, SWEEP_STUDY_TAG, SWEEP_TAG, SWEEP_TRIAL_TAG,
                           SWEEP_WORKER_TAG, TRIAL_FAILURE_ATTR)
from aetrack.search_space import SearchParam, trial_overrides
from aetrack.tracking.sweep_runs import tag_pruned
from aetrack.train import train


class TrialPruning(keras.callbacks.Callback):
    """Reports `val_loss` to the Optuna trial each epoch; when the pruner says so, stops training
    (the run then ends FINISHED, and the sweep tags it pruned) instead of raising."""

    def __init__(self, trial: optuna.Trial, maximize: bool):
        super().__init__()
        self.trial = trial
        self.sign = -1.0 if maximize else 1.0  # the pruner ranks by the study's direction
        self.pruned_at_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_loss")
        step = epoch + 1
        if value is None or step >= self.params.get("epochs", step + 1):
            return  # the last epoch: the trial completes anyway
        self.trial.report(self.sign * float(value), step)
        if self.trial.should_prune():
            self.pruned_at_epoch = step
            self.model.stop_training = True


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: its Optuna state, its metric value when COMPLETE, its run when it has one."""

    state: TrialState
    value: float | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class TrialContext:
    """What every trial of this worker shares."""

    base: TrainConfig
    sweep: SweepConfig
    space: tuple[SearchParam, ...]
    dataset: Dataset | None  # None: each trial loads its own (the space searches the data)
    parent_run_id: str
    study_name: str
    maximize: bool
    worker: str  # host:pid


def run_trial(trial: optuna.Trial, context: TrialContext) -> TrialOutcome:
    """Train one trial's run; a failure is recorded on the trial, never raised."""
    keras.backend.clear_session()  # one TensorFlow per worker; no graphs or names left from the last trial
    sweep = context.sweep
    overrides = trial_overrides({p.name: p.suggest(trial) for p in context.space})
    pruning = TrialPruning(trial, context.maximize) if sweep.pruning else None
    tags = {SWEEP_TAG: "trial", SWEEP_STUDY_TAG: context.study_name, SWEEP_TRIAL_TAG: str(trial.number),
            SWEEP_WORKER_TAG: context.worker}
    if RETRY_OF_ATTR in trial.user_attrs:
        tags[SWEEP_RETRY_OF_TAG] = str(trial.user_attrs[RETRY_OF_ATTR])
    try:
        config = dataclasses.replace(context.base, **overrides, register=False).validated()
        result = train(config, context.dataset, parent_run_id=context.parent_run_id, tags=tags,
                       callbacks=[pruning] if pruning else [])
    except Exception as exc:  # noqa: BLE001 - a failed trial is recorded; the sweep goes on
        reason = one_line(exc) if isinstance(exc, AetrackError) else one_line(f"{type(exc).__name__}: {exc}")
        print(f"aetrack: trial {trial.number} failed: {reason}", file=sys.stderr, flush=True)
        trial.set_user_attr(TRIAL_FAILURE_ATTR, reason[:1000])
        return TrialOutcome(TrialState.FAIL)
    trial.set_user_attr(RUN_ID_ATTR, result.run_id)
    if pruning is not None and pruning.pruned_at_epoch is not None:
        tag_pruned(result.run_id, pruning.pruned_at_epoch)
        print(f"aetrack: trial {trial.number} pruned at epoch {pruning.pruned_at_epoch}", flush=True)
        return TrialOutcome(TrialState.PRUNED, run_id=result.run_id)
    value = result.metrics.get(sweep.metric, result.history.get(sweep.metric, [math.nan])[-1])
    if not math.isfinite(value):
        trial.set_user_attr(TRIAL_FAILURE_ATTR, f"{sweep.metric} is {value}")
        return TrialOutcome(TrialState.FAIL, run_id=result.run_id)
    return TrialOutcome(TrialState.COMPLETE, float(value), result.run_id)
