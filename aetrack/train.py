"""`train(config)`: config -> data -> model -> fit -> evaluate -> register, top to bottom."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import keras
import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from aetrack import names
from aetrack.batches import shuffled_batches
from aetrack.config import TrainConfig
from aetrack.data import Dataset, dataset_for
from aetrack.devices import DEVICES_TAG, distribution_scope, for_strategy
from aetrack.errors import TrainingDiverged
from aetrack.evaluation import final_metrics, negative_elbo
from aetrack.models import build_autoencoder, compile_autoencoder, copy_weights, latent_moments
from aetrack.noise import RunNoise
from aetrack.tracking.callbacks import CheckpointWriter, Heartbeat, MetricsLogger, image_loggers
from aetrack.tracking.plots import log_final_figures
from aetrack.tracking.records import describe_model, record_run_inputs
from aetrack.tracking.registry import log_models, register_run_models
from aetrack.tracking.run import check_tracking_store, describe_run, param_texts, tracked_run
from aetrack.models.loading import load_init_model


@dataclass
class TrainResult:
    """What a finished run produced; tests and callers read these instead of re-querying MLflow."""

    run_id: str
    experiment_id: str
    run_name: str
    history: dict[str, list[float]]
    metrics: dict[str, float]
    registered_versions: dict[str, str] = field(default_factory=dict)  # model name -> version
    model: object = field(default=None, repr=False)  # the trained keras.Model
    phase_seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per phase of train()


@dataclass(frozen=True)
class TrainingArrays:
    """What the model is fitted on: inputs and targets (noisy and clean images when denoising)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def train(config: TrainConfig, dataset: Dataset | None = None, *, parent_run_id: str | None = None,
          tags: dict[str, str] | None = None, callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Train one autoencoder as `config` says and track it as one MLflow run.

    `dataset` is `dataset_for(config)` when the caller has loaded it already (the CLI does, before
    TensorFlow loads, so a bad file fails in a second). A sweep's trial passes `parent_run_id` (the
    run is nested under it), extra `tags`, and `callbacks` added to fit (pruning).
    """
    config = for_strategy(config.validated())
    phase = PhaseTimer()
    # Everything that can be wrong with the input fails here, before a run exists.
    with phase("load data"):
        dataset = dataset if dataset is not None else dataset_for(config)
    with phase("check store, init_model"):
        check_tracking_store(mlflow.get_tracking_uri())
        init_model = (load_init_model(config.init_model, config.code_size, config.architecture)
                      if config.init_model else None)

    client = MlflowClient()
    with tracked_run(config.experiment_name, parent_run_id, config.system_metrics) as run:
        run_id = run.info.run_id
        run_name = run_name_for(config, dataset)
        with phase("describe run"):
            describe_run(client, run_id, config.params(), {**run_tags(config, dataset, run_name), **(tags or {})})
        with phase("build model"):
            # Seed after the run starts: MLflow draws a random run name from Python's `random` when
            # not under `mlflow run`, which would otherwise change the weights for the same seed.
            keras.utils.set_random_seed(config.seed)
            with distribution_scope(config) as devices:
                model = build_model(config, init_model)
            client.set_tag(run_id, DEVICES_TAG, ",".join(devices))
        result = complete_run(client, run, run_name, config, dataset, model, phase, callbacks=callbacks)
    print(summary(result, mlflow.get_tracking_uri()), flush=True)
    return result


@dataclass(frozen=True)
class StartPoint:
    """Where fitting starts: epoch 0 for a new run; a resumed run's checkpoint epoch, the steps it
    has already logged and its loss history so far."""

    epoch: int = 0
    logged_through: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)


def complete_run(client: MlflowClient, run, run_name: str, config: TrainConfig, dataset: Dataset,
                 model: keras.Model, phase: "PhaseTimer", start: StartPoint = StartPoint(),
                 callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """The shared path of train and resume, inside the open run: record the inputs, fit from
    `start`, evaluate, log the models, figures, register."""
    run_id = run.info.run_id
    noise = RunNoise(config.seed, config.noise_factor) if config.denoising else None
    with phase("describe run"):
        datasets = record_run_inputs(client, run_id, config, dataset, run_name)
        describe_model(client, run_id, model)
    with phase("build model"):
        arrays = training_arrays(dataset, noise)
    with phase("fit"):
        fitted = fit(model, arrays, config, client, run_id, start.epoch, start.logged_through, callbacks)
        history = {k: start.history.get(k, [])[:start.epoch] + values for k, values in fitted.items()}
    with phase("evaluate"):
        metrics = final_metrics(lambda x: model(x, training=False).numpy(), dataset.x_test, arrays.x_val,
                                dataset.y_test, noise, config.excluded_digits)
        metrics.update(elbo_metrics(model, arrays))
    with phase("log models"):
        logged = log_models(model, config, dataset)
        # After the models, at their step: MLflow then links each metric, with its dataset, to them.
        mlflow.log_metrics(metrics, step=config.epochs, dataset=datasets.evaluation)
    with phase("figures"):
        log_final_figures(client, run_id, model, config, dataset, arrays.x_val, history, noise)
    with phase("register models"):
        versions = register_run_models(logged, config, run_id, dataset, metrics, run_name)  # last: only after success
    return TrainResult(run_id, run.info.experiment_id, run_name, history, metrics, versions, model, phase.seconds)


class PhaseTimer:
    """Wall seconds of each named phase of train(), in order (benchmarks/end_to_end.py prints them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def run_name_for(config: TrainConfig, dataset: Dataset) -> str:
    """A readable name that tells runs apart in the MLflow UI's compare view."""
    parts = [config.entry_point, config.architecture, dataset.name, f"c{config.code_size}", config.loss, f"e{config.epochs}",
             f"b{config.batch_size}", f"lr{config.learning_rate:g}"]
    if config.architecture == "vae" and config.kl_weight != 1.0:
        parts.append(f"kl{config.kl_weight:g}")
    if config.denoising:
        parts.append(f"n{config.noise_factor:g}")
        if config.init_model:
            parts.append("init")
    if config.exclude_digits:
        parts.append("no" + config.exclude_digits.replace(",", ""))
    parts.append(f"s{config.seed}")
    return "-".join(parts)


def run_tags(config: TrainConfig, dataset: Dataset, run_name: str) -> dict[str, str]:
    return {
        names.RUN_NAME_TAG: run_name,
        names.ENTRY_POINT_TAG: config.entry_point,
        names.ARCHITECTURE_TAG: config.architecture,
        names.DATASET_TAG: dataset.name,
        names.DATASET_SHA256_TAG: dataset.sha256,
        names.TRAIN_IMAGES_TAG: str(len(dataset.x_train)),
        names.TEST_IMAGES_TAG: str(len(dataset.x_test)),
        names.STRATEGY_TAG: config.strategy,
        names.STEPS_PER_EXECUTION_TAG: str(config.steps_per_execution),
    }


def build_model(config: TrainConfig, init_model: keras.Model | None = None) -> keras.Model:
    model = build_autoencoder(config.architecture, config.code_size, config.kl_weight, config.seed)
    if init_model is not None:
        copy_weights(init_model, model, config.init_model, config.architecture, config.code_size)
    return compile_autoencoder(model, config.learning_rate, config.loss, config.steps_per_execution)


def elbo_metrics(model: keras.Model, arrays: TrainingArrays) -> dict[str, float]:
    """`test_elbo` for a vae (negative ELBO, nats per image, on the validation images); else none."""
    moments = latent_moments(model)
    if moments is None:
        return {}
    mean, log_var = (t.numpy() for t in moments(arrays.x_val, training=False))
    return {"test_elbo": negative_elbo(arrays.y_val, model(arrays.x_val, training=False).numpy(), mean, log_var)}


def training_arrays(dataset: Dataset, noise: RunNoise | None) -> TrainingArrays:
    """Clean images in and out; a denoiser sees fixed seeded noise and learns to give clean images."""
    if noise is None:
        return TrainingArrays(dataset.x_train, dataset.x_train, dataset.x_test, dataset.x_test)
    return TrainingArrays(noise.training(dataset.x_train), dataset.x_train,
                          noise.validation(dataset.x_test), dataset.x_test)


def fit(model: keras.Model, arrays: TrainingArrays, config: TrainConfig, client: MlflowClient,
        run_id: str, initial_epoch: int = 0, logged_through: int = 0,
        extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict[str, list[float]]:
    """model.fit from `initial_epoch` with aetrack's callbacks; the per-epoch history of the epochs
    fitted. Raise TrainingDiverged on NaN. Steps up to `logged_through` are not logged again."""
    batches, epoch_order = shuffled_batches(arrays.x_train, arrays.y_train, config.batch_size, config.seed)
    # Order matters: the epoch's metrics and images are logged before its checkpoint (see
    # CheckpointWriter); TerminateOnNaN stops at the first non-finite batch loss, and
    # raise_if_diverged then fails the run.
    callbacks = [epoch_order,
                 MetricsLogger(client, run_id, samples_per_epoch=len(arrays.x_train), logged_through=logged_through),
                 keras.callbacks.TerminateOnNaN(),
                 *image_loggers(client, run_id, config, arrays.x_val, arrays.y_val, logged_through),
                 CheckpointWriter(client, run_id, config.checkpoint_every, config.epochs,
                                  param_texts(config.params())),
                 Heartbeat(client, run_id),
                 *extra_callbacks]
    fitted = model.fit(
        batches,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # the batches are shuffled already, in an order fixed by (seed, epoch)
        validation_data=(arrays.x_val, arrays.y_val),
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    raise_if_diverged(history, first_epoch=initial_epoch + 1)
    return history


def raise_if_diverged(history: dict[str, list[float]], first_epoch: int = 1) -> None:
    for epoch, value in enumerate(history.get("loss", []), start=first_epoch):
        if not np.isfinite(value):
            raise TrainingDiverged(
                f"training diverged: loss became {value} in epoch {epoch}; lower learning_rate "
                "or check init_model and the dataset"
            )


def summary(result: TrainResult, tracking_uri: str) -> str:
    """The console summary printed when a run finishes."""
    lines = [
        "",
        "aetrack: run finished",
        f"  run:        {result.run_name} ({result.run_id})",
        f"  experiment: {result.experiment_id}",
    ]
    for key in ("loss", "val_loss"):
        if result.history.get(key):
            lines.append(f"  {key + ':':<11} {result.history[key][-1]:.4f} (epoch {len(result.history[key])})")
    for key, value in sorted(result.metrics.items()):
        lines.append(f"  {key + ':':<11} {value:.4f}")
    for name, version in result.registered_versions.items():
        lines.append(f"  registered: models:/{name}/{version}")
    lines.append(f"  open it:    mlflow ui --backend-store-uri {tracking_uri}")
    lines.append(f"              then http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.run_id}")
    return "\n".join(lines)
