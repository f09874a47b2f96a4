"""How workers share one study: marker studies that exactly one worker can create, and which
trials count towards the study's `trials`: neither a trial beyond them (it lost a race between
workers) nor a lost one (its worker stopped; its retry or a new trial takes its place)."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from aetrack.names import SKIPPED_ATTR, TRIAL_FAILURE_ATTR

PARENT_SUFFIX = ".parent"  # `<study>.parent`: its creator starts the parent run
FINALIZED_SUFFIX = ".finalized"  # `<study>.finalized`: its creator ends the study
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def claim(storage: str, marker: str) -> bool:
    """True for exactly one caller per marker, across processes and machines: creating a study is a
    unique insert in the storage (this works the same in SQLite and PostgreSQL)."""
    try:
        optuna.create_study(storage=storage, study_name=marker)
        return True
    except optuna.exceptions.DuplicatedStudyError:
        return False


def claim_parent(storage: str, study_name: str) -> bool:
    return claim(storage, study_name + PARENT_SUFFIX)


def claim_finalisation(storage: str, study_name: str) -> bool:
    return claim(storage, study_name + FINALIZED_SUFFIX)


def lost(trial: FrozenTrial) -> bool:
    """FAIL without an outcome of its own: failed for a worker that stopped beating (or was
    interrupted), not for its parameters. aetrack records a reason on every trial it fails itself."""
    return trial.state == TrialState.FAIL and TRIAL_FAILURE_ATTR not in trial.user_attrs \
        and SKIPPED_ATTR not in trial.user_attrs


def _candidates(study: optuna.Study) -> list[FrozenTrial]:
    """Trials under way or done that may count: enqueued ones not yet picked up wait; lost ones are replaced."""
    return [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING and not lost(t)]


def started(study: optuna.Study) -> int:
    """Trials under way or done, lost ones aside."""
    return len(_candidates(study))


def counted(study: optuna.Study, trials: int) -> list[int]:
    """The numbers of the study's first `trials` trials under way or done, lost ones aside: a
    trial beyond them lost a race between workers."""
    return sorted(t.number for t in _candidates(study))[:trials]


def counted_finished(study: optuna.Study, trials: int) -> list[FrozenTrial]:
    """The counted trials that have finished (complete, pruned or failed), any worker's."""
    numbers = set(counted(study, trials))
    return [t for t in study.get_trials(deepcopy=False) if t.number in numbers and t.state in FINISHED_STATES]


def lost_count(study: optuna.Study) -> int:
    return sum(lost(t) for t in study.get_trials(deepcopy=False))


def all_finished(study: optuna.Study, trials: int) -> bool:
    return len(counted_finished(study, trials)) == trials
