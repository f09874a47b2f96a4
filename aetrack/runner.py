"""The path every training run takes once its run is open and its model built, new (`train`) or
resumed (`resume`): record the inputs, fit, evaluate, log the models and figures, register.

Everything it writes to MLflow goes through `aetrack.tracking`; this module only orders the steps.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from aetrack.anomaly import RunThreshold, run_threshold
from aetrack.batches import shuffled_batches, streamed_batches
from aetrack.config import TrainConfig
from aetrack.data import MNIST_SPEC, Dataset, SampleSpec, anomalous_test
from aetrack.data.streams import Streamed
from aetrack.errors import DataError, TrainingDiverged
from aetrack.evaluation import Moments, Reconstruct, final_metrics, per_image_mse
from aetrack.models import (autoencoder_of, build_autoencoder, compile_autoencoder, copy_weights, decoder_of,
                            encoder_of, latent_moments)
from aetrack.models.scaling import PARTS as SCALED_PARTS
from aetrack.models.scaling import with_raw_io
from aetrack.models.scorer import MSE, score_kind, scorer_in_model_space, scores_of
from aetrack.names import ANOMALY_THRESHOLD
from aetrack.noise import RunNoise
from aetrack.tracking.anomaly_plots import log_anomaly_figures
from aetrack.tracking.background import BackgroundCalls
from aetrack.tracking.callbacks import CheckpointWriter, Heartbeat, MetricsLogger, image_loggers
from aetrack.tracking.plots import log_final_figures
from aetrack.tracking.records import describe_model, record_run_inputs
from aetrack.tracking.logged_models import describe_logged_models
from aetrack.tracking.registry import log_models, register_run_models
from aetrack.tracking.run import log_final_metrics, param_texts


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
    phase_seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per phase of the run


@dataclass(frozen=True)
class StartPoint:
    """Where fitting starts: epoch 0 for a new run; a resumed run's checkpoint epoch, the steps it
    has already logged and its loss history so far."""

    epoch: int = 0
    logged_through: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingArrays:
    """What the model is fitted on: inputs and targets (noisy and clean images when denoising).

    A streamed training split is its `Streamed` (image files or table rows) as both inputs and targets; a denoiser's
    noise is then added per batch in the pipeline (`train_noise`), keyed by sample.
    """

    x_train: np.ndarray | Streamed
    y_train: np.ndarray | Streamed
    x_val: np.ndarray
    y_val: np.ndarray
    train_noise: RunNoise | None = None  # streamed only: the noise the pipeline adds to x_train


class PhaseTimer:
    """Wall seconds of each named phase of a run, in order (benchmarks/end_to_end.py prints them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def complete_run(client, run, run_name: str, config: TrainConfig, dataset: Dataset, model: keras.Model,
                 phase: PhaseTimer, start: StartPoint = StartPoint(),
                 callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Inside the open `run`: record the inputs, fit from `start`, evaluate, log the models and
    figures, register."""
    run_id = run.info.run_id
    noise = RunNoise(config.seed, config.noise_factor, dataset.spec.value_range) if config.denoising else None
    with phase("describe run"):
        datasets = record_run_inputs(client, run_id, config, dataset, run_name)
        describe_model(client, run_id, model)
    with phase("build model"):
        arrays = training_arrays(dataset, noise)
    with phase("fit"):
        fitted = fit(model, arrays, config, client, run_id, start.epoch, start.logged_through, callbacks,
                     spec=dataset.spec)
        history = {k: start.history.get(k, [])[:start.epoch] + values for k, values in fitted.items()}
    with phase("threshold"):
        threshold = threshold_of(model, dataset, config)
    with phase("evaluate"):
        test_scores = anomaly_scores(model, dataset.x_test, dataset.spec)
        anomalous = anomalous_test(dataset)
        metrics = final_metrics(reconstruction_of(model), dataset.x_test, arrays.x_val, dataset.y_test, noise,
                                dataset.excluded_labels, moments=moments_of(model), spec=dataset.spec,
                                anomalous=anomalous, scores=test_scores, threshold=threshold.scorer)
        metrics[ANOMALY_THRESHOLD] = threshold.scorer
    with phase("log models"):
        logged = log_models(model, config, dataset, parts=raw_io_parts(model, dataset.spec), threshold=threshold)
        describe_logged_models(logged, config, dataset.spec, run_name, threshold.scorer)
        log_final_metrics(metrics, step=config.epochs, dataset=datasets.evaluation)  # after the models: linked to them
    with phase("figures"):
        log_final_figures(client, run_id, model, config, dataset, arrays.x_val, history, noise)
        log_anomaly_figures(client, run_id, model, dataset, test_scores, anomalous, threshold)
    with phase("register models"):
        versions = register_run_models(logged, config, run_id, dataset, metrics, run_name)  # last: only after success
    return TrainResult(run_id, run.info.experiment_id, run_name, history, metrics, versions, model, phase.seconds)


def build_model(config: TrainConfig, spec: SampleSpec, init_model: keras.Model | None = None, *,
                parts: tuple[keras.Model, keras.Model] | None = None) -> keras.Model:
    """The compiled model `config` trains on samples `spec`, starting from `init_model`'s weights
    when given; `parts` (the user's encoder and decoder objects) are wrapped instead of building
    `config.architecture`."""
    model = build_autoencoder(config.architecture, config.code_size, config.kl_weight, config.seed, spec=spec,
                              parts=parts)
    if init_model is not None:
        copy_weights(init_model, model, config.init_model, config.architecture, config.code_size, spec=spec)
    return compile_autoencoder(model, config.learning_rate, config.loss, config.steps_per_execution)


def raw_io_parts(model: keras.Model, spec: SampleSpec) -> dict[str, keras.Model] | None:
    """The parts to log for standardised tables: wrapped to take and give raw rows (the scaling is
    part of the logged model); None (the parts as trained) for every other kind of data."""
    if not spec.scaled:
        return None
    trained = {"autoencoder": autoencoder_of(model), "encoder": encoder_of(model), "decoder": decoder_of(model)}
    return {part: with_raw_io(part, trained[part], spec) for part in SCALED_PARTS}  # log_models adds the scorer


def anomaly_scores(model: keras.Model, samples: np.ndarray, spec: SampleSpec = MNIST_SPEC) -> np.ndarray:
    """The anomaly score of each sample (in the model's space), float64 (n,): the per-sample MSE of
    the reconstruction, or for a vae the scorer's negative ELBO (models/scorer.py)."""
    if score_kind(model) == MSE:
        return reconstruction_errors(model, samples)
    scorer = scorer_in_model_space(model, spec)
    parts = [scores_of(scorer, chunk) for chunk in _chunks(samples)]
    return np.concatenate(parts) if parts else np.zeros(0)


def reconstruction_errors(model: keras.Model, samples: np.ndarray | Streamed) -> np.ndarray:
    """Per-sample MSE of the (deterministic) reconstruction, batch by batch, float64 (n,)."""
    parts = [per_image_mse(chunk, model(chunk, training=False).numpy()) for chunk in _chunks(samples)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _chunks(samples: np.ndarray | Streamed, size: int = 1024):
    """`samples` as in-memory arrays of up to `size` rows: a streamed split reads one chunk at a time."""
    for start in range(0, len(samples), size):
        yield np.asarray(samples[start:start + size])


def threshold_of(model: keras.Model, dataset: Dataset, config: TrainConfig) -> RunThreshold:
    """The run's anomaly thresholds from its (clean, normal) training samples' scores, by
    `config.threshold_rule` and `config.contamination`."""
    errors = reconstruction_errors(model, dataset.x_train)
    kind = score_kind(model)
    scores = errors if kind == MSE else anomaly_scores(model, dataset.x_train, dataset.spec)
    return run_threshold(scores, errors, config.threshold_rule, config.contamination, kind)


def reconstruction_of(model: keras.Model) -> Reconstruct:
    return lambda x: model(x, training=False).numpy()


def moments_of(model: keras.Model) -> Moments | None:
    """A vae's q(z|x) as numpy (code means, log-variances); None for a model without one."""
    moments = latent_moments(model)
    if moments is None:
        return None
    return lambda x: tuple(t.numpy() for t in moments(x, training=False))


def training_arrays(dataset: Dataset, noise: RunNoise | None) -> TrainingArrays:
    """Clean images in and out; a denoiser sees fixed seeded noise and learns to give clean images."""
    if dataset.streamed:  # nothing decoded here: the pipeline reads (and noises) each batch
        x_val = dataset.x_test if noise is None else noise.validation(dataset.x_test)
        return TrainingArrays(dataset.x_train, dataset.x_train, x_val, dataset.x_test, train_noise=noise)
    if noise is None:
        return TrainingArrays(dataset.x_train, dataset.x_train, dataset.x_test, dataset.x_test)
    return TrainingArrays(noise.training(dataset.x_train), dataset.x_train,
                          noise.validation(dataset.x_test), dataset.x_test)


def fit(model: keras.Model, arrays: TrainingArrays, config: TrainConfig, client, run_id: str,
        initial_epoch: int = 0, logged_through: int = 0,
        extra_callbacks: Sequence[keras.callbacks.Callback] = (),
        spec: SampleSpec = MNIST_SPEC) -> dict[str, list[float]]:
    """model.fit from `initial_epoch` with aetrack's callbacks; the per-epoch history of the epochs
    fitted. Raise TrainingDiverged on NaN. Steps up to `logged_through` are not logged again.

    The callbacks queue their MLflow calls on one background thread that this fit owns: whether
    fitting ends or fails, every call queued so far is in the store before this returns or raises.
    """
    if isinstance(arrays.x_train, Streamed):
        batches, epoch_order = streamed_batches(arrays.x_train, config.batch_size, config.seed, arrays.train_noise)
    else:
        batches, epoch_order = shuffled_batches(arrays.x_train, arrays.y_train, config.batch_size, config.seed)
    with BackgroundCalls(run_id) as calls:
        # Order matters: the epoch's metrics and images are queued before its checkpoint (see
        # CheckpointWriter); TerminateOnNaN stops at the first non-finite batch loss, and
        # raise_if_diverged then fails the run.
        callbacks = [epoch_order,
                     MetricsLogger(client, run_id, calls, samples_per_epoch=len(arrays.x_train),
                                   logged_through=logged_through),
                     keras.callbacks.TerminateOnNaN(),
                     *image_loggers(client, run_id, calls, config, arrays.x_val, arrays.y_val, logged_through,
                                    spec=spec),
                     CheckpointWriter(client, run_id, calls, config.checkpoint_every, config.epochs,
                                      param_texts(config.params())),
                     Heartbeat(client, run_id, calls),
                     *extra_callbacks]
        try:
            fitted = model.fit(
                batches,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                shuffle=False,  # the batches are shuffled already, in an order fixed by (seed, epoch)
                validation_data=(arrays.x_val, arrays.y_val),
                callbacks=callbacks,
                verbose=1 if sys.stdout.isatty() else 2,
            )
        except tf.errors.OpError:
            # A streamed file that failed to decode: TensorFlow wraps the pipeline's error in its
            # own; the run fails with the one line that names the file.
            failures = getattr(arrays.x_train, "failures", None)
            if failures:
                raise DataError(failures[0]) from None
            raise
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    raise_if_diverged(history, first_epoch=initial_epoch + 1)
    return history


def raise_if_diverged(history: dict[str, list[float]], first_epoch: int = 1) -> None:
    """Raise TrainingDiverged naming the first epoch whose loss is not finite."""
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
