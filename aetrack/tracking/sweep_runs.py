"""A sweep's MLflow I/O: its parent run, the tags on pruned trial runs, ending lost trials' runs, and
registering the best trial's models. The sweep package (aetrack/sweep/) orchestrates Optuna and writes to MLflow only
through this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import mlflow
from matplotlib.figure import Figure
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from aetrack.config import TrainConfig
from aetrack.errors import RunError
from aetrack.names import (DATA_KIND, DATA_KIND_TAG, DATASET_SHA256_TAG, FAILURE_TAG, PARTS, SAMPLE_SHAPE, SAMPLE_SHAPE_TAG, PRUNED_EPOCH_TAG, PRUNED_TAG, SWEEP_BEST_RUN_TAG,
                           SWEEP_BEST_TRIAL_TAG, SWEEP_NO_FIGURE_PREFIX, SWEEP_STUDY_TAG, SWEEP_STUDY_VERSION_TAG,
                           SWEEP_TRIAL_TAG, SWEEP_WORKER_TAG, epoch_metric_names)
from aetrack.tracking.plots import FIGURE_DIR
from aetrack.tracking.registry import register_models, version_tags
from aetrack.tracking.run import check_tracking_store, describe_run


def checked_tracking_uri() -> str:
    """The tracking URI this process writes to, once the store behind it is known to be usable."""
    uri = mlflow.get_tracking_uri()
    check_tracking_store(uri)
    return uri


def adopt_outer_run() -> str | None:
    """The run `mlflow run -e sweep` made, if any, taken out of the environment: it becomes the
    parent, and trials (which would otherwise resume it through MLFLOW_RUN_ID) must not join it."""
    return os.environ.pop("MLFLOW_RUN_ID", None)


class ParentRun:
    """The sweep's parent run: progress, the best trial, figures and how the sweep ended."""

    def __init__(self, run_id: str, client: MlflowClient | None = None):
        # A client opens the store: a joining worker makes one only once the parent exists, since
        # two processes creating a fresh SQLite store at once collide in MLflow's schema migrations.
        self.run_id = run_id
        self._client = client or MlflowClient()

    @classmethod
    def start(cls, experiment_name: str, outer_run_id: str | None, params: dict[str, object],
              tags: dict[str, str]) -> ParentRun:
        """Create the parent run (or adopt `outer_run_id`) and describe it."""
        if outer_run_id:
            parent = cls(outer_run_id)
        else:
            experiment = mlflow.set_experiment(experiment_name)
            client = MlflowClient()
            parent = cls(client.create_run(experiment.experiment_id).info.run_id, client)
        describe_run(parent._client, parent.run_id, params, tags)
        return parent

    def log_best_so_far(self, metric: str, value: float, step: int) -> None:
        self._client.log_metric(self.run_id, f"best_{metric}", value, step=step)

    def log_trial_counts(self, counts: dict[str, int]) -> None:
        """`trials_<state>` per finished state (complete, pruned, fail) and `trials_lost`."""
        for state, count in counts.items():
            self._client.log_metric(self.run_id, f"trials_{state}", count)

    def log_best_trial(self, metric: str, value: float, step: int, number: int, run_id: str,
                       params: dict[str, object]) -> None:
        """The best trial's params (as `best.<name>`), run id, number and `best_<metric>`."""
        self._client.log_batch(self.run_id, params=[Param(f"best.{k}", str(v)) for k, v in params.items()])
        self._client.set_tag(self.run_id, SWEEP_BEST_RUN_TAG, run_id)
        self._client.set_tag(self.run_id, SWEEP_BEST_TRIAL_TAG, str(number))
        self.log_best_so_far(metric, value, step)

    def log_figure(self, figure: Figure, name: str) -> None:
        self._client.log_figure(self.run_id, figure, f"{FIGURE_DIR}/{name}.png")

    def tag_no_figure(self, name: str, reason: str) -> None:
        self._client.set_tag(self.run_id, f"{SWEEP_NO_FIGURE_PREFIX}{name}", reason[:500])

    def end(self, failure: str | None = None) -> None:
        """FINISHED, or FAILED with `failure` as the reason."""
        if failure is not None:
            self._client.set_tag(self.run_id, FAILURE_TAG, failure)
        self._client.set_terminated(self.run_id, "FAILED" if failure is not None else "FINISHED")

    def end_killed(self, reason: str) -> None:
        self._client.set_tag(self.run_id, FAILURE_TAG, reason)
        self._client.set_terminated(self.run_id, "KILLED")


def tag_pruned(run_id: str, epoch: int) -> None:
    """Mark a trial run the pruner stopped (the run itself ended FINISHED) and after which epoch."""
    client = MlflowClient()
    client.set_tag(run_id, PRUNED_TAG, "true")
    client.set_tag(run_id, PRUNED_EPOCH_TAG, str(epoch))


def register_trial_models(run_id: str, config: TrainConfig, study_name: str) -> dict[str, str]:
    """Register the models a finished trial logged (autoencoder, encoder, decoder, scorer), as
    `register_run_models` would have at the end of that run; {registered name: version}."""
    client = MlflowClient()
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
            SWEEP_STUDY_VERSION_TAG: study_name}
    # What a sample is, as the trial's run recorded it (its dataset is not loaded here).
    for version_tag, run_tag in ((DATA_KIND, DATA_KIND_TAG), (SAMPLE_SHAPE, SAMPLE_SHAPE_TAG)):
        if run_tag in run.data.tags:
            tags[version_tag] = run.data.tags[run_tag]
    return register_models({p: logged[p] for p in PARTS}, config.model_prefix, run_id, tags)


@dataclass(frozen=True)
class _LoggedModel:
    """What register_models reads of a logged model (an mlflow ModelInfo has the same two fields)."""

    model_uri: str
    model_id: str


def fail_lost_trial_runs(parent_run_id: str, study_name: str, number: int, reason) -> list[str]:
    """End FAILED the still-RUNNING runs of trial `number` under the parent (a worker that stopped
    beating left them so), tagged with `reason(worker)`; the workers (host:pid) they name."""
    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                              f"tags.`{SWEEP_STUDY_TAG}` = '{study_name}' and tags.`{SWEEP_TRIAL_TAG}` = '{number}' "
                              "and attributes.status = 'RUNNING'")
    workers = []
    for run in runs:
        worker = run.data.tags.get(SWEEP_WORKER_TAG, "unknown")
        client.set_tag(run.info.run_id, FAILURE_TAG, reason(worker)[:5000])
        client.set_terminated(run.info.run_id, "FAILED")
        workers.append(worker)
    return workers
