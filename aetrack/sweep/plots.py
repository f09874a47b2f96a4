"""The study's figures, drawn on `aetrack.figures.new_figure` (no pyplot): the optimisation
history and the parameter importances. A figure that cannot be drawn raises ValueError saying why."""

from __future__ import annotations

import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState

from aetrack.figures import new_figure

# Importances rank the searched parameters against each other from the complete trials: with one
# trial Optuna reports them all equal, and one parameter is trivially the whole importance.
MIN_IMPORTANCE_TRIALS = 2
MIN_IMPORTANCE_PARAMS = 2


def optimization_history_figure(study: optuna.Study, metric: str) -> Figure:
    """Each complete trial's `metric` by trial number, with the best value so far as a step line."""
    complete = sorted((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
                      key=lambda t: t.number)
    if not complete:
        raise ValueError("no trial completed")
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    numbers = [t.number for t in complete]
    values = [t.value for t in complete]
    best_so_far = []
    for value in values:
        best_so_far.append(value if not best_so_far else (max if maximize else min)(best_so_far[-1], value))
    figure = new_figure(6.0, 4.0)
    ax = figure.subplots()
    ax.plot(numbers, values, linestyle="none", marker="o", label=metric)
    ax.plot(numbers, best_so_far, drawstyle="steps-post", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{metric} ({'higher' if maximize else 'lower'} is better)")
    ax.set_title("Optimization history")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return figure


def param_importances_figure(study: optuna.Study) -> Figure:
    """Horizontal bars of `optuna.importance.get_param_importances`, the most important on top."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        raise ValueError(f"parameter importances need {MIN_IMPORTANCE_TRIALS} or more complete trials; "
                         f"{len(complete)} completed")
    searched = {name for t in complete for name in t.params}
    if len(searched) < MIN_IMPORTANCE_PARAMS:
        raise ValueError(f"parameter importances need {MIN_IMPORTANCE_PARAMS} or more searched parameters; "
                         f"the study searched {', '.join(sorted(searched)) or 'none'}")
    importances = optuna.importance.get_param_importances(study)
    names = list(importances)[::-1]  # barh draws the first bar at the bottom
    figure = new_figure(6.0, 1.5 + 0.4 * len(names))
    ax = figure.subplots()
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance")
    ax.set_title("Parameter importances")
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure
