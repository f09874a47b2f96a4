"""`run_sweep`: one worker's loop over the shared study, from claiming or joining the parent run to
finalising the study when this worker sees its last trial finish (after failing and rerunning any
trial whose worker stopped beating)."""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
import zlib

import optuna
from optuna.trial import TrialState

from aetrack.config import SweepConfig, TrainConfig
from aetrack.data import Dataset, dataset_for
from aetrack.errors import RunError
from aetrack.names import FAILURE_TAG, SKIPPED_ATTR, higher_is_better
from aetrack.search_space import SearchParam, searches_data
from aetrack.sweep.claims import all_finished, claim_finalisation, claim_parent, counted, counted_finished, started
from aetrack.sweep.finalise import finalise
from aetrack.sweep.heartbeat import Heartbeat, fail_stale, heartbeat_storage, retry
from aetrack.sweep.parent import join_parent, parent_params, parent_tags, publish_parent
from aetrack.sweep.result import SweepError, SweepResult
from aetrack.sweep.storage import create_study, default_storage, redacted
from aetrack.sweep.trial import TrialContext, run_trial
from aetrack.tracking.sweep_runs import ParentRun, adopt_outer_run, checked_tracking_uri

# The median pruner compares a trial with the trials before it once this many have finished.
PRUNER_STARTUP_TRIALS = 2
# A worker waiting for others' trials looks this often: it stops soon after the last one ends.
WAIT_POLL_S = 1.0


def run_sweep(base: TrainConfig, sweep: SweepConfig, space: tuple[SearchParam, ...],
              dataset: Dataset | None = None) -> SweepResult:
    """Work on the study until it holds `sweep.trials` trials; finalise it if this worker ends it."""
    base = base.validated()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tracking_uri = checked_tracking_uri()
    if searches_data(space):
        dataset = None  # each trial loads its own
    else:
        dataset = dataset if dataset is not None else dataset_for(base)
    sample_shape = dataset.spec.shape_text() if dataset is not None else ""
    storage = sweep.storage or default_storage(tracking_uri)
    study_name = sweep.study_name or f"sweep-{base.entry_point}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    direction = "maximize" if higher_is_better(sweep.metric) else "minimize"
    outer_run_id = adopt_outer_run()
    space_text = " ".join(p.spec() for p in space)

    create_study(storage, study_name, direction)
    # The one worker that claims the parent creates it; the study itself may have been made before
    # (by a user enqueueing trials, or by another worker a moment ago).
    created = claim_parent(storage, study_name)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    study = optuna.load_study(study_name=study_name,
                              storage=heartbeat_storage(storage, sweep.heartbeat_interval, sweep.grace_period),
                              sampler=_sampler(sweep, base.seed if created else base.seed + zlib.crc32(worker.encode())),
                              pruner=_pruner(sweep))
    if study.direction.name.lower() != direction:
        raise SweepError(f"invalid --metric {sweep.metric!r}: study {study_name!r} is set to "
                         f"{study.direction.name.lower()}; expected a metric that study can rank")
    if created:
        parent = ParentRun.start(base.experiment_name, outer_run_id,
                                 parent_params(base, sweep, study_name, storage, space_text, direction),
                                 parent_tags(base, study_name))
        publish_parent(study, parent.run_id, sweep, space_text, sample_shape)
    else:
        # MLflow is touched only once the parent exists (see ParentRun).
        parent = ParentRun(join_parent(study, sweep, space_text, sample_shape))
    print(f"aetrack: sweep study {study_name!r} in {redacted(storage)}; parent run {parent.run_id}", flush=True)

    result = SweepResult(study_name, storage, parent.run_id)
    context = TrialContext(base, sweep, space, dataset, parent.run_id, study_name, direction == "maximize", worker)
    try:
        _work(study, context, parent, result)
    except KeyboardInterrupt as exc:
        # The last worker standing does not leave the parent RUNNING; others may still finish the study.
        if not any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
            parent.end_killed(f"sweep interrupted by {getattr(exc, 'signal_name', 'SIGINT')}")
        raise
    if claim_finalisation(storage, study_name):
        finalise(parent, study, base, sweep, result)
        if result.best_run_id is None:
            raise RunError(f"no trial of study {study_name!r} completed: see the {FAILURE_TAG} tags of its "
                           f"trial runs under parent run {parent.run_id}")
    return result


def _work(study: optuna.Study, context: TrialContext, parent: ParentRun, result: SweepResult) -> None:
    """Run trials until the study holds `trials` counted ones, then wait until they have all
    finished: a trial still RUNNING may belong to a worker that is gone, and failing it once its
    grace period has passed (its retry then runs here) is what lets the study end."""
    sweep = context.sweep
    waiting_for: list[int] = []
    while True:
        fail_stale(study)
        if started(study) >= sweep.trials:
            if all_finished(study, sweep.trials):
                return
            running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
            if running != waiting_for:
                waiting_for = running
                print(f"aetrack: waiting for trial(s) {', '.join(map(str, running))} of other workers (one whose "
                      f"worker stops beating for {sweep.grace_period} s is run again here)", flush=True)
            time.sleep(min(WAIT_POLL_S, sweep.heartbeat_interval))
            continue
        with warnings.catch_warnings():
            # Optuna warns that heartbeats go with study.optimize; this loop beats itself (Heartbeat).
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = study.ask()
        with Heartbeat(study._storage, trial, sweep.heartbeat_interval):
            try:
                if trial.number not in counted(study, sweep.trials):  # another worker took the last one
                    trial.set_user_attr(SKIPPED_ATTR, f"the study already has {sweep.trials} trials")
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                outcome = run_trial(trial, context)
            except KeyboardInterrupt as exc:
                # Never left RUNNING in the storage; lost like a worker that stopped beating, so it runs again.
                study.tell(trial, state=TrialState.FAIL)
                try:
                    retry(study, next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number),
                          f"interrupted by {getattr(exc, 'signal_name', 'SIGINT')}", context.worker)
                except Exception as error:  # noqa: BLE001 - stopping anyway; the interrupt is what to report
                    print(f"aetrack: trial {trial.number} not enqueued again: {error}", file=sys.stderr, flush=True)
                raise
        try:
            study.tell(trial, outcome.value if outcome.state == TrialState.COMPLETE else None, state=outcome.state)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker took it for lost (no heartbeat within the grace period) and retries it.
            print(f"aetrack: trial {trial.number} was failed as lost by another worker (heartbeats late: raise "
                  "--grace-period); its retry counts instead", file=sys.stderr, flush=True)
            continue
        if outcome.run_id:
            result.trial_run_ids[trial.number] = outcome.run_id
        result.states[trial.number] = outcome.state.name
        _log_progress(parent, study, sweep)


def _sampler(sweep: SweepConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The first worker samples with the run's seed; a joining one with a seed of its own, so two
    workers do not draw the same sequence of parameters."""
    if sweep.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(sweep: SweepConfig) -> optuna.pruners.BasePruner:
    if not sweep.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=0)


def _log_progress(parent: ParentRun, study: optuna.Study, sweep: SweepConfig) -> None:
    """`best_<metric>` on the parent, step = trials finished so far (any worker's)."""
    finished = counted_finished(study, sweep.trials)
    values = [t.value for t in finished if t.state == TrialState.COMPLETE]
    if values:
        best = max(values) if study.direction == optuna.study.StudyDirection.MAXIMIZE else min(values)
        parent.log_best_so_far(sweep.metric, best, len(finished))
