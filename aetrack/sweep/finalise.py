"""The end of a study, done once by the worker that claimed it: trial counts, the best trial and
the figures on the parent run, the best trial's models registered, the parent run ended."""

from __future__ import annotations

import dataclasses

import optuna
from optuna.trial import TrialState

from aetrack.config import SweepConfig, TrainConfig
from aetrack.errors import one_line
from aetrack.names import RUN_ID_ATTR
from aetrack.search_space import trial_overrides
from aetrack.sweep.claims import FINISHED_STATES, counted_finished, lost_count
from aetrack.sweep.plots import optimization_history_figure, param_importances_figure
from aetrack.sweep.result import SweepResult
from aetrack.tracking.sweep_runs import ParentRun, register_trial_models


def finalise(parent: ParentRun, study: optuna.Study, base: TrainConfig, sweep: SweepConfig,
             result: SweepResult) -> None:
    """Log the study's outcome to the parent run and end it: FINISHED when a trial completed."""
    result.finalized = True
    finished = counted_finished(study, sweep.trials)
    # Lost trials (their worker stopped) are not among the `trials`: their retries are.
    parent.log_trial_counts({**{s.name.lower(): sum(t.state == s for t in finished) for s in FINISHED_STATES},
                             "lost": lost_count(study)})
    complete = any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if complete:
        best = study.best_trial
        run_id = best.user_attrs[RUN_ID_ATTR]
        result.best_value, result.best_run_id = best.value, run_id
        parent.log_best_trial(sweep.metric, best.value, sweep.trials, best.number, run_id, best.params)
        log_figures(parent, study, sweep.metric)
        if base.register:
            config = dataclasses.replace(base, **trial_overrides(best.params)).validated()
            result.registered_versions = register_trial_models(run_id, config, study.study_name)
            for name, version in result.registered_versions.items():
                print(f"aetrack: registered models:/{name}/{version} (best trial {best.number})", flush=True)
        parent.end()
    else:
        parent.end(failure="no trial completed")
    best_text = (f"best {sweep.metric} = {result.best_value:.4f} (run {result.best_run_id})" if complete
                 else "no trial completed")
    print(f"aetrack: sweep {study.study_name!r} finished: {best_text}", flush=True)


def log_figures(parent: ParentRun, study: optuna.Study, metric: str) -> None:
    """Both study figures under the parent's figures/; one that cannot be drawn is a tag saying why."""
    drawings = {"optimization_history": lambda: optimization_history_figure(study, metric),
                "param_importances": lambda: param_importances_figure(study)}
    for name, draw in drawings.items():
        try:
            figure = draw()
        except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ complete trials
            parent.tag_no_figure(name, one_line(exc))
            continue
        parent.log_figure(figure, name)
