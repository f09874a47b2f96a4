"""`run_sweep`: an Optuna study whose trials are aetrack runs nested under one parent MLflow run.

Any number of worker processes, on any machines, given the same Optuna storage and study name,
work on one study:
- the parent: the worker that claims it (creates the marker study `<study>.parent`, a unique row
  in the storage, so exactly one does) creates the parent run (or adopts the run `mlflow run` made) and stores its id as a study
  user attribute; the others wait for that attribute and nest their trials under it;
- the count: together the workers run `trials` trials; a worker that loses a race for the last
  ones gives its extra trial back (told FAIL, attribute `aetrack.skipped`) and stops;
- the end: whichever worker sees all `trials` trials finished claims the study's finalisation by
  creating the marker study `<study>.finalized` (again a unique row: one worker wins), then logs
  the best trial to the parent, draws the figures, registers the best trial's models once and
  ends the parent run.
Trials run in the worker's own process with `train()`; Keras state is cleared between them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlparse, urlunparse

import keras
import mlflow
import optuna
import sqlalchemy.exc
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from aetrack.config import SweepConfig, TrainConfig
from aetrack.data import Dataset, dataset_for
from aetrack.errors import AetrackError, RunError, UsageError, one_line
from aetrack.names import (DATASET_SHA256_TAG, ENTRY_POINT_TAG, FAILURE_TAG, METRIC_ATTR, PARENT_ATTR, PARTS,
                           PRUNED_EPOCH_TAG, PRUNED_TAG, RUN_ID_ATTR, RUN_NAME_TAG, SKIPPED_ATTR, SPACE_ATTR,
                           SWEEP_BEST_RUN_TAG, SWEEP_BEST_TRIAL_TAG, SWEEP_NO_FIGURE_PREFIX, SWEEP_STUDY_TAG,
                           SWEEP_TAG, SWEEP_TRIAL_TAG, SWEEP_WORKER_TAG, TRIAL_FAILURE_ATTR, TRIALS_ATTR,
                           epoch_metric_names, higher_is_better)
from aetrack.search_space import SearchParam, searches_data, trial_overrides
from aetrack.tracking.registry import register_models, version_tags
from aetrack.tracking.run import check_tracking_store, describe_run

PARENT_SUFFIX = ".parent"  # marker studies: see _claim
FINALIZED_SUFFIX = ".finalized"
# A joining worker waits this long for the first worker to record the parent run.
PARENT_WAIT_S = 120.0
# The median pruner compares a trial with the trials before it once this many have finished.
PRUNER_STARTUP_TRIALS = 2
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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


def default_storage(tracking_uri: str) -> str:
    """An SQLite file `optuna.db` beside a local MLflow store; in the working directory otherwise."""
    parsed = urlparse(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        directory = os.path.dirname(os.path.abspath(tracking_uri[len("sqlite:///"):].split("?")[0]))
    elif parsed.scheme in ("", "file"):
        directory = os.path.abspath(parsed.path if parsed.scheme == "file" else tracking_uri)
    else:
        directory = os.getcwd()
    return "sqlite:///" + os.path.join(directory, "optuna.db")


def redacted(url: str) -> str:
    """The storage URL without its password, for params and messages."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return urlunparse(parsed._replace(netloc=netloc))


def run_sweep(base: TrainConfig, sweep: SweepConfig, space: tuple[SearchParam, ...],
              dataset: Dataset | None = None) -> SweepResult:
    """Work on the study until it holds `sweep.trials` trials; finalise it if this worker ends it."""
    base = base.validated()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tracking_uri = mlflow.get_tracking_uri()
    check_tracking_store(tracking_uri)
    if searches_data(space):
        dataset = None  # each trial loads its own
    else:
        dataset = dataset if dataset is not None else dataset_for(base)
    storage = sweep.storage or default_storage(tracking_uri)
    study_name = sweep.study_name or f"sweep-{base.entry_point}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    direction = "maximize" if higher_is_better(sweep.metric) else "minimize"
    # Under `mlflow run -e sweep` the run mlflow made becomes the parent; trials must not join it.
    outer_run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    space_text = " ".join(p.spec() for p in space)

    _create_study(storage, study_name, direction)
    # The one worker that claims the parent creates it; the study itself may have been made before
    # (by a user enqueueing trials, or by another worker a moment ago).
    created = _claim(storage, study_name + PARENT_SUFFIX)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    sampler_seed = base.seed if created else base.seed + zlib.crc32(worker.encode())
    sampler = (optuna.samplers.TPESampler(seed=sampler_seed) if sweep.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=sampler_seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=0)
              if sweep.pruning else optuna.pruners.NopPruner())
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    if study.direction.name.lower() != direction:
        raise SweepError(f"invalid --metric {sweep.metric!r}: study {study_name!r} is set to "
                         f"{study.direction.name.lower()}; expected a metric that study can rank")
    if created:
        client = MlflowClient()
        parent_run_id = _start_parent(client, base, sweep, study_name, storage, space_text, direction, outer_run_id)
        for key, value in ((SPACE_ATTR, space_text), (METRIC_ATTR, sweep.metric), (TRIALS_ATTR, sweep.trials),
                           (PARENT_ATTR, parent_run_id)):  # the parent last: joiners wait for it
            study.set_user_attr(key, value)
    else:
        # Touch MLflow only once the parent exists: two processes creating a fresh SQLite store
        # at once collide in MLflow's schema migrations.
        parent_run_id = _join_parent(study, sweep, space_text, direction)
        client = MlflowClient()
    print(f"aetrack: sweep study {study_name!r} in {redacted(storage)}; parent run {parent_run_id}", flush=True)

    result = SweepResult(study_name, storage, parent_run_id)
    try:
        while _started(study) < sweep.trials:
            trial = study.ask()
            try:
                if trial.number not in _counted(study, sweep.trials):  # another worker took the last one
                    trial.set_user_attr(SKIPPED_ATTR, f"the study already has {sweep.trials} trials")
                    study.tell(trial, state=TrialState.FAIL)
                    break
                state, value, run_id = _run_trial(trial, base, sweep, space, dataset, parent_run_id, study_name,
                                                  direction, worker)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)  # never leave a trial RUNNING in the storage
                raise
            study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
            if run_id:
                result.trial_run_ids[trial.number] = run_id
            result.states[trial.number] = state.name
            _log_progress(client, study, parent_run_id, sweep)
    except KeyboardInterrupt as exc:
        # The last worker standing does not leave the parent RUNNING; others may still finish the study.
        if not any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
            client.set_tag(parent_run_id, FAILURE_TAG, f"sweep interrupted by {getattr(exc, 'signal_name', 'SIGINT')}")
            client.set_terminated(parent_run_id, "KILLED")
        raise
    if _all_finished(study, sweep.trials) and _claim(storage, study_name + FINALIZED_SUFFIX):
        _finalise(client, study, base, sweep, parent_run_id, result)
        if result.best_run_id is None:
            raise RunError(f"no trial of study {study_name!r} completed: see the {FAILURE_TAG} tags of its "
                           f"trial runs under parent run {parent_run_id}")
    return result


# --- the study and its parent run ----------------------------------------------------------------


def _create_study(storage: str, study_name: str, direction: str) -> None:
    """Create the study unless it exists; a storage that cannot be used is one clear line."""
    for attempt in range(3):
        try:
            optuna.create_study(storage=storage, study_name=study_name, direction=direction, load_if_exists=True)
            return
        except (ImportError, ValueError, sqlalchemy.exc.ArgumentError) as exc:  # not a URL Optuna can use
            raise SweepError(f"invalid --storage {redacted(storage)!r}: {one_line(exc)[:300]}; expected an Optuna "
                             "RDB URL such as sqlite:///optuna.db or postgresql://user:password@host/db") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's many errors; two workers creating a new file race
            if attempt == 2:
                raise SweepError(f"invalid --storage {redacted(storage)!r}: cannot open it: {one_line(exc)[:300]}") from None
            time.sleep(1.0 + attempt)


def _start_parent(client: MlflowClient, base: TrainConfig, sweep: SweepConfig, study_name: str, storage: str,
                  space_text: str, direction: str, outer_run_id: str | None) -> str:
    if outer_run_id:
        run_id = outer_run_id
    else:
        experiment = mlflow.set_experiment(base.experiment_name)
        run_id = client.create_run(experiment.experiment_id).info.run_id
    params = {**base.params(), "search": space_text, "sampler": sweep.sampler, "metric": sweep.metric,
              "direction": direction, "trials": sweep.trials, "pruning": sweep.pruning,
              "storage": redacted(storage), "study_name": study_name}
    params.pop("register")  # trials never register; the sweep registers the best one
    tags = {RUN_NAME_TAG: f"sweep-{base.entry_point}-{study_name}", ENTRY_POINT_TAG: base.entry_point,
            SWEEP_TAG: "parent", SWEEP_STUDY_TAG: study_name}
    describe_run(client, run_id, params, tags)
    return run_id


def _join_parent(study: optuna.Study, sweep: SweepConfig, space_text: str, direction: str) -> str:
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
            option = {SPACE_ATTR: "--search", METRIC_ATTR: "--metric", TRIALS_ATTR: "--trials"}[key]
            raise SweepError(f"invalid {option} {mine!r}: study {study.study_name!r} was started with "
                             f"{attrs.get(key)!r}; expected the same as the study's first worker")
    return attrs[PARENT_ATTR]


def _started(study: optuna.Study) -> int:
    return sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def _counted(study: optuna.Study, trials: int) -> list[int]:
    """The numbers of the study's first `trials` trials that are under way or done (enqueued ones
    not yet picked up wait): a trial beyond them lost a race between workers."""
    return sorted(t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING)[:trials]


def _all_finished(study: optuna.Study, trials: int) -> bool:
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    counted = _counted(study, trials)
    return len(counted) == trials and all(by_number[n].state in FINISHED_STATES for n in counted)


def _claim(storage: str, marker: str) -> bool:
    """True for exactly one caller per marker, across processes and machines: creating a study is a
    unique insert in the storage (this works the same in SQLite and PostgreSQL)."""
    try:
        optuna.create_study(storage=storage, study_name=marker)
        return True
    except optuna.exceptions.DuplicatedStudyError:
        return False


# --- one trial -----------------------------------------------------------------------------------


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


def _run_trial(trial: optuna.Trial, base: TrainConfig, sweep: SweepConfig, space: tuple[SearchParam, ...],
               dataset: Dataset | None, parent_run_id: str, study_name: str, direction: str, worker: str):
    """Train one trial's run; (Optuna state, metric value or None, MLflow run id or None)."""
    from aetrack.train import train

    keras.backend.clear_session()  # one TensorFlow per worker; no graphs or names left from the last trial
    overrides = trial_overrides({p.name: p.suggest(trial) for p in space})
    pruning = TrialPruning(trial, direction == "maximize") if sweep.pruning else None
    tags = {SWEEP_TAG: "trial", SWEEP_STUDY_TAG: study_name, SWEEP_TRIAL_TAG: str(trial.number),
            SWEEP_WORKER_TAG: worker}
    try:
        config = dataclasses.replace(base, **overrides, register=False).validated()
        result = train(config, dataset, parent_run_id=parent_run_id, tags=tags,
                       callbacks=[pruning] if pruning else [])
    except Exception as exc:  # noqa: BLE001 - a failed trial is recorded; the sweep goes on
        reason = one_line(exc) if isinstance(exc, AetrackError) else one_line(f"{type(exc).__name__}: {exc}")
        print(f"aetrack: trial {trial.number} failed: {reason}", file=sys.stderr, flush=True)
        trial.set_user_attr(TRIAL_FAILURE_ATTR, reason[:1000])
        return TrialState.FAIL, None, None
    trial.set_user_attr(RUN_ID_ATTR, result.run_id)
    if pruning is not None and pruning.pruned_at_epoch is not None:
        client = MlflowClient()
        client.set_tag(result.run_id, PRUNED_TAG, "true")
        client.set_tag(result.run_id, PRUNED_EPOCH_TAG, str(pruning.pruned_at_epoch))
        print(f"aetrack: trial {trial.number} pruned at epoch {pruning.pruned_at_epoch}", flush=True)
        return TrialState.PRUNED, None, result.run_id
    value = result.metrics.get(sweep.metric, result.history.get(sweep.metric, [math.nan])[-1])
    if not math.isfinite(value):
        trial.set_user_attr(TRIAL_FAILURE_ATTR, f"{sweep.metric} is {value}")
        return TrialState.FAIL, None, result.run_id
    return TrialState.COMPLETE, float(value), result.run_id


# --- the parent: progress and the end ------------------------------------------------------------


def _log_progress(client: MlflowClient, study: optuna.Study, parent_run_id: str, sweep: SweepConfig) -> None:
    """`best_<metric>` on the parent, step = trials finished so far (any worker's)."""
    counted = set(_counted(study, sweep.trials))
    finished = [t for t in study.get_trials(deepcopy=False) if t.number in counted and t.state in FINISHED_STATES]
    values = [t.value for t in finished if t.state == TrialState.COMPLETE]
    if values:
        best = max(values) if study.direction == optuna.study.StudyDirection.MAXIMIZE else min(values)
        client.log_metric(parent_run_id, f"best_{sweep.metric}", best, step=len(finished))


def _finalise(client: MlflowClient, study: optuna.Study, base: TrainConfig, sweep: SweepConfig,
              parent_run_id: str, result: SweepResult) -> None:
    result.finalized = True
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    counted = set(_counted(study, sweep.trials))
    counts = {s.name.lower(): sum(t.state == s and t.number in counted for t in study.get_trials(deepcopy=False))
              for s in FINISHED_STATES}
    for state, count in counts.items():
        client.log_metric(parent_run_id, f"trials_{state}", count)
    if complete:
        best = study.best_trial
        run_id = best.user_attrs[RUN_ID_ATTR]
        result.best_value, result.best_run_id = best.value, run_id
        client.log_batch(parent_run_id, params=_params({f"best.{k}": v for k, v in best.params.items()}))
        client.set_tag(parent_run_id, SWEEP_BEST_RUN_TAG, run_id)
        client.set_tag(parent_run_id, SWEEP_BEST_TRIAL_TAG, str(best.number))
        client.log_metric(parent_run_id, f"best_{sweep.metric}", best.value, step=sweep.trials)
        _log_figures(client, study, parent_run_id)
        if base.register:
            config = dataclasses.replace(base, **trial_overrides(best.params)).validated()
            result.registered_versions = register_trial_models(client, run_id, config, study.study_name)
            for name, version in result.registered_versions.items():
                print(f"aetrack: registered models:/{name}/{version} (best trial {best.number})", flush=True)
    if complete:
        client.set_terminated(parent_run_id, "FINISHED")
    else:
        client.set_tag(parent_run_id, FAILURE_TAG, "no trial completed")
        client.set_terminated(parent_run_id, "FAILED")
    best_text = f"best {sweep.metric} = {result.best_value:.4f} (run {result.best_run_id})" if complete else "no trial completed"
    print(f"aetrack: sweep {study.study_name!r} finished: {best_text}", flush=True)


def _params(values: dict[str, object]) -> list:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in values.items()]


def register_trial_models(client: MlflowClient, run_id: str, config: TrainConfig, study_name: str) -> dict[str, str]:
    """Register the models a finished trial logged (autoencoder, encoder, decoder), as
    `log_and_register` would have at the end of that run."""
    run = client.get_run(run_id)
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run_id}'")
    logged = {m.name: _LoggedModel(model_uri=m.model_uri, model_id=m.model_id) for m in models}
    missing = [part for part in PARTS if part not in logged]
    if missing:
        raise RunError(f"best trial run {run_id} has no logged {', '.join(missing)} model; nothing registered")
    epoch_metrics = epoch_metric_names(config.architecture)
    metrics = {k: v for k, v in run.data.metrics.items() if k not in epoch_metrics}
    tags = {**version_tags(config, run_id, run.data.tags.get(DATASET_SHA256_TAG, ""), metrics),
            "sweep_study": study_name}
    return register_models({p: logged[p] for p in PARTS},
                           config.model_prefix, run_id, tags)


@dataclass(frozen=True)
class _LoggedModel:
    """What register_models reads of a logged model (an mlflow ModelInfo has the same two fields)."""

    model_uri: str
    model_id: str


def _log_figures(client: MlflowClient, study: optuna.Study, parent_run_id: str) -> None:
    """Optimisation history and parameter importances (Optuna's matplotlib plots) under figures/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import warnings

    from optuna.visualization import matplotlib as optuna_plots

    drawings = {"optimization_history": optuna_plots.plot_optimization_history,
                "param_importances": optuna_plots.plot_param_importances}
    for name, draw in drawings.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks these plots experimental
                axes = draw(study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            client.log_figure(parent_run_id, figure, f"figures/{name}.png")
            plt.close(figure)
        except (ValueError, RuntimeError, ImportError) as exc:  # e.g. importances need 2+ complete trials
            client.set_tag(parent_run_id, f"{SWEEP_NO_FIGURE_PREFIX}{name}", one_line(exc)[:500])
