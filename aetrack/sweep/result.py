"""What a sweep worker returns, and the error for a sweep that cannot start as asked."""

from __future__ import annotations

from dataclasses import dataclass, field

from aetrack.errors import UsageError


class SweepError(UsageError):
    """A sweep that cannot start as asked (storage, a study that disagrees with the options)."""


@dataclass
class SweepResult:
    """What this worker did, and (if it finalised the study) the best trial and its versions."""

    study_name: str
    storage: str
    parent_run_id: str
    trial_run_ids: dict[int, str] = field(default_factory=dict)  # this worker's trials: number -> run id
    states: dict[int, str] = field(default_factory=dict)  # this worker's trials: number -> Optuna state
    finalized: bool = False
    best_value: float | None = None
    best_run_id: str | None = None
    registered_versions: dict[str, str] = field(default_factory=dict)
