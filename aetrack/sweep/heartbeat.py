"""Lost workers: Optuna's RDB heartbeats around each trial, and the retry of a trial whose worker
stopped beating.

aetrack drives trials with `study.ask()`/`study.tell()`, and Optuna beats and fails stale trials
only inside `study.optimize`; so a worker beats for its trial itself (`Heartbeat`) and fails
stale trials before each ask and while it waits for others (`fail_stale`). The worker that fails
a stale trial (one does: the state change is a conditional update in the storage) runs
`RetryLostTrial`: the trial comes back WAITING with the same parameters (Optuna's `retry_history`
system attribute, as `RetryHeartbeatStaleTrialCallback` keeps it) and its MLflow run ends FAILED
saying what happened.
"""

from __future__ import annotations

import copy
import sys
import threading
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from aetrack.errors import one_line
from aetrack.names import OUTCOME_ATTRS, PARENT_ATTR, RETRY_OF_ATTR
from aetrack.tracking.sweep_runs import fail_lost_trial_runs

# A lost trial runs again at most this many times (its parameters may be what kills workers);
# after that a new trial takes its place in the count.
MAX_RETRIES = 2
FAILED_TRIAL_KEY, RETRY_HISTORY_KEY = "failed_trial", "retry_history"  # Optuna's retry system attributes


def heartbeat_storage(url: str, heartbeat_interval: int, grace_period: int) -> optuna.storages.RDBStorage:
    """The study's RDB storage with heartbeats on and lost trials retried."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                          heartbeat_stale_trial_callback=RetryLostTrial())


def fail_stale(study: optuna.Study) -> None:
    """Fail the study's trials whose worker stopped beating (each is then retried)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The numbers of the lost trials this one retries, the original first (Optuna's attribute)."""
    return list(trial.system_attrs.get(RETRY_HISTORY_KEY, []))


class Heartbeat:
    """A thread recording the trial's heartbeat every `interval` s while the trial runs."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial: optuna.Trial, interval: float):
        # Trial has no public id; the storage's heartbeat API takes the id, as Optuna's own thread does.
        self._storage, self._trial_id, self._interval = storage, trial._trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial.number}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._storage.record_heartbeat(self._trial_id)  # before any other worker could find it stale
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as exc:  # noqa: BLE001 - a busy database for a moment: the next beat may pass
                print(f"aetrack: heartbeat not recorded: {one_line(exc)[:200]}", file=sys.stderr, flush=True)


class RetryLostTrial:
    """Optuna's heartbeat-stale callback: retry the lost trial and end its MLflow run FAILED."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        retry(study, trial, "stopped beating")


def retry(study: optuna.Study, trial: FrozenTrial, what: str, worker: str | None = None) -> int | None:
    """Enqueue a FAILED trial again with its parameters (unless retried MAX_RETRIES times already)
    and end its MLflow run FAILED with a tag saying so; the retry's number, or None."""
    history = [*retry_history(trial), trial.number]
    retried_as = None
    if len(history) <= MAX_RETRIES:
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in OUTCOME_ATTRS}
        system_attrs = {**copy.deepcopy(trial.system_attrs), FAILED_TRIAL_KEY: history[0], RETRY_HISTORY_KEY: history}
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs={**user_attrs, RETRY_OF_ATTR: trial.number}, system_attrs=system_attrs))
        # Any state: another worker may have picked the retry up already.
        retried_as = max(t.number for t in study.get_trials(deepcopy=False) if retry_history(t) == history)
    outcome = (f"retried as trial {retried_as}" if retried_as is not None
               else f"not retried (lost {len(history)} times); a new trial takes its place")
    parent_run_id, workers = study.user_attrs.get(PARENT_ATTR), []
    try:
        if parent_run_id:
            workers = fail_lost_trial_runs(parent_run_id, study.study_name, trial.number,
                                           lambda who: f"worker {who} {what}; trial {trial.number} {outcome}")
    except Exception as exc:  # noqa: BLE001 - the study goes on; only the lost run's record is incomplete
        print(f"aetrack: the MLflow run of lost trial {trial.number} not ended: {one_line(exc)[:300]}",
              file=sys.stderr, flush=True)
    print(f"aetrack: trial {trial.number} lost (worker {', '.join(workers) or worker or 'unknown'} {what}); {outcome}",
          file=sys.stderr, flush=True)
    return retried_as
