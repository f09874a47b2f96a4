"""`train(config)`: config -> data -> model -> fit -> evaluate -> register, top to bottom."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from aetrack import __version__
from aetrack.config import TrainConfig
from aetrack.data import Dataset, load_dataset
from aetrack.plots import log_final_figures
from aetrack.registry import log_and_register


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM; `signal_number` says which."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


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


def train(config: TrainConfig) -> TrainResult:
    """Train one autoencoder as `config` says and track it as one MLflow run."""
    config = config.validated()
    # Data first: a bad dataset fails in a second, before TensorFlow or a run exists.
    dataset = load_dataset(config.dataset, config.train_samples, config.test_samples, config.excluded_digits)
    # Then the store and init_model, still before any run exists (see aetrack/preflight.py).
    init_model = _preflight(config)

    import keras
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    with _tracked_run(config) as run:
        run_id = run.info.run_id
        run_name = run_name_for(config, dataset)
        _log_run_description(client, run_id, run_name, config, dataset)

        # Seed after the run starts: MLflow draws a random run name from Python's `random` when
        # not under `mlflow run`, which would otherwise change the weights for the same seed.
        keras.utils.set_random_seed(config.seed)
        model = _build_model(config, init_model)
        x_train, y_train, x_val, y_val = _training_arrays(config, dataset)
        history = _fit(model, client, run_id, config, dataset, x_train, y_train, x_val, y_val)

        metrics = _evaluate(model, config, dataset, x_val)
        mlflow.log_metrics(metrics, step=config.epochs)
        log_final_figures(client, run_id, model, config, dataset, x_val, history)
        versions = log_and_register(model, config, run_id, dataset.sha256, metrics)  # last: only after success
    result = TrainResult(
        run_id=run_id,
        experiment_id=run.info.experiment_id,
        run_name=run_name,
        history=history,
        metrics=metrics,
        registered_versions=versions,
        model=model,
    )
    _print_summary(result)
    return result


def run_name_for(config: TrainConfig, dataset: Dataset) -> str:
    """A readable name that tells runs apart in the MLflow UI's compare view."""
    parts = [config.entry_point, dataset.name, f"c{config.code_size}", config.loss, f"e{config.epochs}",
             f"b{config.batch_size}", f"lr{config.learning_rate:g}"]
    if config.entry_point == "denoise":
        parts.append(f"n{config.noise_factor:g}")
        if config.init_model:
            parts.append("init")
    if config.exclude_digits:
        parts.append("no" + config.exclude_digits.replace(",", ""))
    parts.append(f"s{config.seed}")
    return "-".join(parts)


# --- run lifecycle -----------------------------------------------------------------------------


@contextmanager
def _tracked_run(config: TrainConfig) -> Iterator["mlflow.ActiveRun"]:  # noqa: F821
    """Start (or, under `mlflow run`, resume) the run; end it FINISHED, FAILED or KILLED."""
    import mlflow
    from mlflow.entities import RunStatus

    outer_run_id = os.environ.get("MLFLOW_RUN_ID")
    if outer_run_id:
        # Under `mlflow run` the run already exists, in the experiment that command chose.
        experiment_id = mlflow.tracking.MlflowClient().get_run(outer_run_id).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
    else:
        mlflow.set_experiment(config.experiment_name)
    run = mlflow.start_run()
    try:
        with _signals_raise_interrupted():
            yield run
    except KeyboardInterrupt as exc:
        reason = f"interrupted by {exc}" if isinstance(exc, Interrupted) else "interrupted by SIGINT"
        _end_run(run.info.run_id, RunStatus.to_string(RunStatus.KILLED), reason)
        raise
    except BaseException as exc:
        _end_run(run.info.run_id, RunStatus.to_string(RunStatus.FAILED), f"{type(exc).__name__}: {exc}")
        raise
    else:
        with _signals_ignored():
            mlflow.end_run("FINISHED")


def _end_run(run_id: str, status: str, reason: str) -> None:
    import mlflow

    with _signals_ignored():
        try:
            mlflow.set_tag("aetrack.failure", reason[:5000])
        finally:
            mlflow.end_run(status)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """While the run is being ended, a second Ctrl-C or SIGTERM must not leave it RUNNING."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def _signals_raise_interrupted() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted`, so the run is ended KILLED, not left RUNNING."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signal_number, frame):
        raise Interrupted(signal_number)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _log_run_description(client, run_id: str, run_name: str, config: TrainConfig, dataset: Dataset) -> None:
    import keras
    import mlflow
    import tensorflow as tf
    from mlflow.entities import Param, RunTag

    params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.params().items()}
    params["registered_model_prefix"] = config.registered_prefix
    tags = {
        "mlflow.runName": run_name,
        "aetrack.entry_point": config.entry_point,
        "aetrack.version": __version__,
        "aetrack.dataset": dataset.name,
        "aetrack.dataset_sha256": dataset.sha256,
        "aetrack.train_images": str(len(dataset.x_train)),
        "aetrack.test_images": str(len(dataset.x_test)),
        "tensorflow.version": tf.__version__,
        "keras.version": keras.__version__,
        "mlflow.version": mlflow.__version__,
    }
    # `mlflow run` has already logged the MLproject parameters as it received them (with '' for
    # empty values); MLflow forbids changing a param, so only add the ones it did not log.
    already = client.get_run(run_id).data.params
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in params.items() if k not in already],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )


# --- model and data ----------------------------------------------------------------------------


def _preflight(config: TrainConfig):
    """Check the tracking store, then load init_model (if any); return it or None."""
    import mlflow

    from aetrack.preflight import check_tracking_store, load_init_model

    check_tracking_store(mlflow.get_tracking_uri())
    return load_init_model(config.init_model, config.code_size) if config.init_model else None


def _build_model(config: TrainConfig, init_model=None):
    from aetrack.models import build_dense_autoencoder, compile_autoencoder, copy_weights

    model = build_dense_autoencoder(config.code_size)
    if init_model is not None:
        copy_weights(init_model, model, config.init_model)
    return compile_autoencoder(model, config.learning_rate, config.loss, config.steps_per_execution)


def _training_arrays(config: TrainConfig, dataset: Dataset):
    """Inputs and targets; the denoiser sees fixed seeded noise and learns to give clean images."""
    if config.entry_point == "denoise":
        from aetrack.noise import add_noise

        # Distinct seeds so test noise never repeats training noise.
        x_train = add_noise(dataset.x_train, config.noise_factor, config.seed)
        x_val = add_noise(dataset.x_test, config.noise_factor, config.seed + 1)
        return x_train, dataset.x_train, x_val, dataset.x_test
    return dataset.x_train, dataset.x_train, dataset.x_test, dataset.x_test


def _fit(model, client, run_id, config, dataset, x_train, y_train, x_val, y_val) -> dict[str, list[float]]:
    import keras

    from aetrack.callbacks import MetricsLogger, image_loggers

    # TerminateOnNaN stops at the first non-finite batch loss; _raise_if_diverged fails the run.
    callbacks = [MetricsLogger(client, run_id, samples_per_epoch=len(x_train)), keras.callbacks.TerminateOnNaN()]
    callbacks += image_loggers(client, run_id, config, x_val, y_val)
    history = model.fit(
        x_train,
        y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        validation_data=(x_val, y_val),
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    result = {k: [float(v) for v in values] for k, values in history.history.items()}
    _raise_if_diverged(result)
    return result


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run must fail, not finish or register."""


def _raise_if_diverged(history: dict[str, list[float]]) -> None:
    for epoch, value in enumerate(history.get("loss", []), start=1):
        if not np.isfinite(value):
            raise TrainingDiverged(
                f"training diverged: loss became {value} in epoch {epoch}; lower learning_rate "
                "or check init_model and the dataset"
            )


def _evaluate(model, config: TrainConfig, dataset: Dataset, x_val: np.ndarray) -> dict[str, float]:
    from aetrack.evaluation import final_metrics

    def reconstruct(images: np.ndarray) -> np.ndarray:
        return model(images, training=False).numpy()

    return final_metrics(reconstruct, dataset.x_test, x_val, dataset.y_test, config.entry_point,
                         config.seed, config.excluded_digits)


# --- console -----------------------------------------------------------------------------------


def _print_summary(result: TrainResult) -> None:
    import mlflow

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
    uri = mlflow.get_tracking_uri()
    lines.append(f"  open it:    mlflow ui --backend-store-uri {uri}")
    lines.append(
        f"              then http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.run_id}"
    )
    print("\n".join(lines), flush=True)
