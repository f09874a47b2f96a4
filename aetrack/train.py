"""`train(config)`: check the input, start the run, build the model, then `runner.complete_run`
(fit -> evaluate -> log -> register)."""

from __future__ import annotations

from typing import Sequence

import keras

from aetrack import names
from aetrack.config import TrainConfig
from aetrack.data import Dataset, dataset_for
from aetrack.devices import distribution_scope, for_strategy
from aetrack.models import build_autoencoder, copy_weights
from aetrack.models.custom import custom_tags, is_custom, with_objects
from aetrack.models.loading import load_init_model, load_model
from aetrack.models.spec_checks import check_loss_for
from aetrack.runner import PhaseTimer, TrainResult, build_model, complete_run, summary
from aetrack.tracking.run import (check_tracking_store, describe_run, tag_run, tracked_run, tracking_client,
                                  tracking_uri)

__all__ = ["TrainResult", "run_name_for", "run_tags", "train"]


def train(config: TrainConfig, dataset: Dataset | None = None, *, encoder: keras.Model | None = None,
          decoder: keras.Model | None = None, parent_run_id: str | None = None,
          tags: dict[str, str] | None = None, callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Train one autoencoder as `config` says and track it as one MLflow run.

    `dataset` is `dataset_for(config)` when the caller has loaded it already (the CLI does, before
    TensorFlow loads, so a bad file fails in a second). `encoder` and `decoder` (Keras models,
    sample shape -> code_size -> sample shape) are trained in place of `config.architecture`,
    logged as architecture `custom`; resuming such a run needs architecture=package.module:function.
    A sweep's trial passes `parent_run_id` (the run is nested under it), extra `tags`, and
    `callbacks` added to fit (pruning).
    """
    config, parts = with_objects(for_strategy(config.validated()), encoder, decoder)
    phase = PhaseTimer()
    # Everything that can be wrong with the input fails here, before a run exists.
    with phase("load data"):
        dataset = dataset if dataset is not None else dataset_for(config)
        config = config.for_data(dataset.spec.bounded)
        check_loss_for(dataset.spec, config.loss, config.architecture)
    with phase("check store, init_model"):
        check_tracking_store(tracking_uri())
        # A custom architecture is imported, called and its shapes checked once here (one line each).
        checked = (build_autoencoder(config.architecture, config.code_size, spec=dataset.spec, parts=parts)
                   if is_custom(config.architecture) else None)
        if config.init_model and parts is not None:  # its weights must fit the objects: checked by copying
            init_model = load_model(config.init_model, option="init_model")
            copy_weights(init_model, checked, config.init_model, config.architecture, config.code_size,
                         spec=dataset.spec)
        elif config.init_model:
            init_model = load_init_model(config.init_model, config.code_size, config.architecture, spec=dataset.spec)
        else:
            init_model = None
        extra_tags = custom_tags(config.architecture)

    client = tracking_client()
    with tracked_run(config.experiment_name, parent_run_id, config.system_metrics) as run:
        run_id = run.info.run_id
        run_name = run_name_for(config, dataset)
        with phase("describe run"):
            describe_run(client, run_id, config.params(),
                         {**run_tags(config, dataset, run_name), **extra_tags, **(tags or {})}, dataset.spec.to_json())
        with phase("build model"):
            # Seed after the run starts: MLflow draws a random run name from Python's `random` when
            # not under `mlflow run`, which would otherwise change the weights for the same seed.
            keras.utils.set_random_seed(config.seed)
            with distribution_scope(config) as devices:
                model = build_model(config, dataset.spec, init_model, parts=parts)
            tag_run(client, run_id, {names.DEVICES_TAG: ",".join(devices)})
        result = complete_run(client, run, run_name, config, dataset, model, phase, callbacks=callbacks)
    print(summary(result, tracking_uri()), flush=True)
    return result


def run_name_for(config: TrainConfig, dataset: Dataset) -> str:
    """A readable name that tells runs apart in the MLflow UI, what usually differs first.

    The runs table shows about the first 22 characters, so the name opens with the entry point,
    the architecture (unless `dense`), code size, epochs and seed, then whatever else differs
    from the defaults (learning rate, batch size, KL weight, noise, init model, left-out labels),
    and ends with the loss and the dataset, e.g. `basic-c64-e10-s0-lr3e-3-bce-mnist`.
    """
    defaults = TrainConfig()
    parts = [config.entry_point]
    if config.architecture != "dense":  # a custom package.module:function by its function's name
        parts.append(config.architecture.rsplit(":", 1)[-1])
    parts += [f"c{config.code_size}", f"e{config.epochs}", f"s{config.seed}"]
    if config.learning_rate != defaults.learning_rate:
        parts.append(f"lr{_short_number(config.learning_rate)}")
    if config.batch_size != defaults.batch_size:
        parts.append(f"b{config.batch_size}")
    if config.architecture == "vae" and config.kl_weight != 1.0:
        parts.append(f"kl{config.kl_weight:g}")
    if config.denoising:
        parts.append(f"n{config.noise_factor:g}")
        if config.init_model:
            parts.append("init")
    excluded = config.exclude_labels or config.exclude_digits
    if excluded:
        parts.append("no" + excluded.replace(",", "").replace(" ", ""))
    # The loss the run trains with: an empty one is chosen by the data (train() has resolved it).
    parts += [config.for_data(dataset.spec.bounded).loss, dataset.name]
    return "-".join(parts)


def _short_number(value: float) -> str:
    """The shorter of `0.003` and `3e-3` (the plain form on a tie): names stay within what shows."""
    plain = f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    scientific = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return scientific if len(scientific) < len(plain) else plain


def run_tags(config: TrainConfig, dataset: Dataset, run_name: str) -> dict[str, str]:
    """The tags a new run starts with: what was trained, on which data, how."""
    return {
        names.RUN_NAME_TAG: run_name,
        names.ENTRY_POINT_TAG: config.entry_point,
        names.ARCHITECTURE_TAG: config.architecture,
        names.DATASET_TAG: dataset.name,
        names.DATASET_SHA256_TAG: dataset.sha256,
        names.TRAIN_IMAGES_TAG: str(dataset.train_count),
        names.TEST_IMAGES_TAG: str(len(dataset.x_test)),
        names.DATA_KIND_TAG: dataset.spec.kind,
        names.SAMPLE_SHAPE_TAG: dataset.spec.shape_text(),
        names.STRATEGY_TAG: config.strategy,
        names.STEPS_PER_EXECUTION_TAG: str(config.steps_per_execution),
    }
