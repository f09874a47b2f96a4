"""The parent run's description, and its id shared through the study: the worker that claimed the
parent publishes it (with the options the study was started with); the others wait for it and
check their options agree."""

from __future__ import annotations

import time

import optuna

from aetrack.config import SweepConfig, TrainConfig
from aetrack.errors import RunError
from aetrack.names import (ENTRY_POINT_TAG, METRIC_ATTR, PARENT_ATTR, RUN_NAME_TAG, SAMPLE_SHAPE_ATTR, SPACE_ATTR,
                           SWEEP_STUDY_TAG, SWEEP_TAG, TRIALS_ATTR)
from aetrack.sweep.result import SweepError
from aetrack.sweep.storage import redacted

# A joining worker waits this long for the first worker to record the parent run.
PARENT_WAIT_S = 120.0
_OPTIONS = {SPACE_ATTR: "--search", METRIC_ATTR: "--metric", TRIALS_ATTR: "--trials"}


def parent_params(base: TrainConfig, sweep: SweepConfig, study_name: str, storage: str, space_text: str,
                  direction: str) -> dict[str, object]:
    params = {**base.params(), "search": space_text, "sampler": sweep.sampler, "metric": sweep.metric,
              "direction": direction, "trials": sweep.trials, "pruning": sweep.pruning,
              "storage": redacted(storage), "study_name": study_name}
    params.pop("register")  # trials never register; the sweep registers the best one
    return params


def parent_tags(base: TrainConfig, study_name: str) -> dict[str, str]:
    return {RUN_NAME_TAG: f"sweep-{base.entry_point}-{study_name}", ENTRY_POINT_TAG: base.entry_point,
            SWEEP_TAG: "parent", SWEEP_STUDY_TAG: study_name}


def publish_parent(study: optuna.Study, parent_run_id: str, sweep: SweepConfig, space_text: str,
                   sample_shape: str = "") -> None:
    """Record the study's options, its data's sample shape (empty when trials load their own data)
    and its parent run; the parent last, since joiners wait for it."""
    for key, value in ((SPACE_ATTR, space_text), (METRIC_ATTR, sweep.metric), (TRIALS_ATTR, sweep.trials),
                       (SAMPLE_SHAPE_ATTR, sample_shape), (PARENT_ATTR, parent_run_id)):
        study.set_user_attr(key, value)


def join_parent(study: optuna.Study, sweep: SweepConfig, space_text: str, sample_shape: str = "") -> str:
    """The parent run id the first worker published, once it has; its options and its data's sample
    shape must match ours."""
    deadline = time.monotonic() + PARENT_WAIT_S
    while PARENT_ATTR not in study.user_attrs:
        if time.monotonic() > deadline:
            raise RunError(f"study {study.study_name!r} has no parent run after {PARENT_WAIT_S:.0f} s: did the "
                           "worker that created it fail? Start a new study (another --study-name)")
        time.sleep(1.0)
    attrs = study.user_attrs
    expected = {SPACE_ATTR: space_text, METRIC_ATTR: sweep.metric, TRIALS_ATTR: sweep.trials}
    for key, mine in expected.items():
        if attrs.get(key) != mine:
            raise SweepError(f"invalid {_OPTIONS[key]} {mine!r}: study {study.study_name!r} was started with "
                             f"{attrs.get(key)!r}; expected the same as the study's first worker")
    theirs = attrs.get(SAMPLE_SHAPE_ATTR, "")
    if sample_shape and theirs and sample_shape != theirs:
        raise SweepError(f"invalid dataset: its samples have shape {sample_shape} but study {study.study_name!r} "
                         f"trains on samples of shape {theirs}; expected the same data as the study's first worker")
    return attrs[PARENT_ATTR]
