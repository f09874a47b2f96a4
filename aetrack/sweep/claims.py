"""How workers share one study: marker studies that exactly one worker can create, and which
trials count towards the study's `trials` (a trial beyond them lost a race between workers)."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

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


def started(study: optuna.Study) -> int:
    """Trials under way or done; enqueued ones not yet picked up wait."""
    return sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def counted(study: optuna.Study, trials: int) -> list[int]:
    """The numbers of the study's first `trials` trials that are under way or done (enqueued ones
    not yet picked up wait): a trial beyond them lost a race between workers."""
    return sorted(t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING)[:trials]


def counted_finished(study: optuna.Study, trials: int) -> list[FrozenTrial]:
    """The counted trials that have finished (complete, pruned or failed), any worker's."""
    numbers = set(counted(study, trials))
    return [t for t in study.get_trials(deepcopy=False) if t.number in numbers and t.state in FINISHED_STATES]


def all_finished(study: optuna.Study, trials: int) -> bool:
    return len(counted_finished(study, trials)) == trials
