"""The MLflow side of trained models: log them to the run, register them, move aliases.

After a run trains, `log_models` logs the autoencoder, its encoder and its decoder with the
Keras flavor (native `.keras` files) and `register_run_models` registers each as a new version of
`<prefix>-autoencoder`, `<prefix>-encoder` and `<prefix>-decoder`, aliased `candidate`.
`promote` moves the `champion` alias (aliases, not the deprecated stages). Loading them back is
`aetrack.models.loading.load_model`.

TensorFlow and MLflow are imported inside the functions: `aetrack --help` imports this module's
callers without them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from aetrack.data import IMAGE_PIXELS
from aetrack.errors import RegistryError

from aetrack.names import CANDIDATE, CHAMPION, COMPARED_METRIC, PART_METADATA, PARTS

T = TypeVar("T")


# --- logging and registering ---------------------------------------------------------------------


def register_run_models(logged: dict, config, run_id: str, dataset, metrics: dict[str, float],
                        run_name: str = "") -> dict[str, str]:
    """Register the run's logged models (`log_models`) unless `config.register` is false.

    Returns {registered model name: version}; empty when registration is off. If registering fails
    or is interrupted, the versions this call created are deleted before the error propagates, so
    a failed run never leaves a half-registered model behind.
    """
    if not config.register:
        return {}
    tags = version_tags(config, run_id, dataset.sha256, metrics)
    description = version_description(run_name or run_id, dataset, metrics)
    return register_models(logged, config.model_prefix, run_id, tags, description)


def version_tags(config, run_id: str, dataset_sha256: str, metrics: dict[str, float]) -> dict[str, str]:
    """The tags every registered version carries: where it came from and its test metrics."""
    return {
        "run_id": run_id,
        "entry_point": config.entry_point,
        "dataset_sha256": dataset_sha256,
        "code_size": str(config.code_size),
        "architecture": config.architecture,
        **{k: repr(float(v)) for k, v in sorted(metrics.items())},
    }


def log_models(model, config, dataset) -> dict[str, "mlflow.models.model.ModelInfo"]:  # noqa: F821
    """Log autoencoder, encoder and decoder to the active run as `runs:/<run id>/<part>`: plain
    Functional models for every architecture (a vae's training wrapper is never logged).

    Each is an MLflow LoggedModel at step = `config.epochs`: MLflow links the run's metrics at that
    step (the last epoch's, and the final test metrics logged after this) to every model. The
    models keep the Keras flavor (`mlflow.keras.load_model` works); their pyfunc serves through
    `aetrack_keras_pyfunc` (a direct call: fast, no progress bars).
    """
    from mlflow.models import Model

    from aetrack.models import autoencoder_of, decoder_of, encoder_of
    from aetrack.tracking import keras_flavor
    from aetrack.tracking.records import DIGEST_LENGTH

    parts = {"autoencoder": autoencoder_of(model), "encoder": encoder_of(model), "decoder": decoder_of(model)}
    requirements = pip_requirements()
    infos = {}
    for part, keras_model in parts.items():
        # No input_example: in MLflow 3.17 the Keras flavor writes it before creating the model
        # directory and fails (mlflow/mlflow#16183). The signature carries the schema instead.
        infos[part] = Model.log(
            artifact_path=None,
            name=part,
            flavor=keras_flavor,
            flavor_name="keras",
            model=keras_model,
            signature=signature_for(part, config.code_size),
            pip_requirements=requirements,
            metadata={PART_METADATA: part, "code_size": config.code_size, "architecture": config.architecture},
            model_type=part,
            params={
                "part": part,
                "architecture": config.architecture,
                "layers": layer_widths(keras_model),
                "code_size": config.code_size,
                "entry_point": config.entry_point,
                "dataset_name": dataset.name,
                "dataset_digest": dataset.train_sha256[:DIGEST_LENGTH],
            },
            step=config.epochs,
        )
    return infos


def layer_widths(model) -> str:
    """The input width and each Dense layer's units, e.g. `784-64-784` for the tutorial's model."""
    import keras

    dense = [layer for layer in _leaf_layers(model) if isinstance(layer, keras.layers.Dense)]
    return "-".join(map(str, [int(model.inputs[0].shape[-1]), *(int(layer.units) for layer in dense)]))


def _leaf_layers(model) -> list:
    leaves = []
    for layer in model.layers:
        leaves.extend(_leaf_layers(layer) if hasattr(layer, "layers") else [layer])
    return leaves


def version_description(run_name: str, dataset, metrics: dict[str, float]) -> str:
    """A registered version's description: the run, the data and the headline metric."""
    line = f"Trained by run {run_name} on {dataset.name} ({len(dataset.x_train)} training images)."
    if COMPARED_METRIC in metrics:
        line += f" {COMPARED_METRIC} {metrics[COMPARED_METRIC]:.4f} on {len(dataset.x_test)} test images."
    return line


def signature_for(part: str, code_size: int) -> "mlflow.models.ModelSignature":  # noqa: F821
    """float32 tensors with a free batch dimension: images (784) in or out, codes (code_size)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    sizes = {"autoencoder": (IMAGE_PIXELS, IMAGE_PIXELS), "encoder": (IMAGE_PIXELS, code_size),
             "decoder": (code_size, IMAGE_PIXELS)}[part]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, sizes[0]))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, sizes[1]))]),
    )


def pip_requirements() -> list[str]:
    """The packages a logged model needs, pinned to what trained it.

    Given explicitly because MLflow otherwise infers them by loading the model in a subprocess,
    about 10 s per model.
    """
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "tensorflow", "keras", "numpy")]


def register_models(logged: dict, prefix: str, run_id: str, tags: dict[str, str],
                    description: str | None = None) -> dict[str, str]:
    """Create one new version per logged part under `<prefix>-<part>`, tag it and alias it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    created: list[tuple[str, str]] = []
    try:
        for part, info in logged.items():
            name = f"{prefix}-{part}"
            _ensure_registered_model(client, name)
            version = _retry_locked(
                lambda: client.create_model_version(
                    name, source=info.model_uri, run_id=run_id, model_id=info.model_id,
                    tags={**tags, "part": part}, description=description,
                )
            ).version
            created.append((name, str(version)))
        for name, version in created:
            _retry_locked(lambda: client.set_registered_model_alias(name, CANDIDATE, version))
    except BaseException:
        _delete_versions(client, created)
        raise
    return dict(created)


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        _retry_locked(lambda: client.create_registered_model(
            name, description="Registered by aetrack; versions are tagged with run_id and test metrics."
        ))
    except MlflowException as exc:
        # Another run (perhaps a concurrent one) created it first: that is fine.
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def _delete_versions(client, created: list[tuple[str, str]]) -> None:
    for name, version in reversed(created):
        try:
            _retry_locked(lambda: client.delete_model_version(name, version))
        except Exception as exc:  # noqa: BLE001 - keep cleaning up, then re-raise the original
            print(f"aetrack: could not delete {name} version {version}: {exc}", file=sys.stderr)


_RETRYABLE = ("database is locked", 'unique constraint "registered_model_alias_pk"')


def _retry_locked(call: Callable[[], T], attempts: int = 8) -> T:
    """Retry a registry call that SQLite refused because another process held the lock.

    MLflow sets a busy timeout, but SQLite can still answer "database is locked" at once when two
    writers upgrade their locks together (two runs registering at the same time). On a server with
    a SQL database (PostgreSQL), two runs setting the same alias at once race in MLflow's
    insert-or-update of the alias row; the loser's retry finds the row and updates it.
    """
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - only lock errors are retried
            if not any(m in str(exc) for m in _RETRYABLE) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


# --- promoting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: `moved` says whether `champion` now points at `version`."""

    name: str
    version: str
    previous: str | None  # the champion before, if any
    moved: bool
    reason: str


def promote(name: str, version: int | None = None, if_better: bool = False) -> Promotion:
    """Point `name@champion` at `version` (default with `if_better`: the `candidate`).

    With `if_better`, move it only if that version's test_bce is lower than the current champion's
    (or there is no champion yet).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models())
        raise RegistryError(
            f"invalid name {name!r}: no such registered model; expected one of: {', '.join(known) or 'none yet'}"
        ) from None
    if version is None:
        if not if_better:
            raise RegistryError("invalid promote: give --version N or --if-better (which promotes the candidate)")
        chosen = _by_alias(client, name, CANDIDATE)
        if chosen is None:
            raise RegistryError(f"invalid promote: {name!r} has no {CANDIDATE!r} alias; give --version N")
    else:
        try:
            chosen = client.get_model_version(name, str(version))
        except MlflowException:
            versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
            raise RegistryError(
                f"invalid --version {version}: {name!r} has no version {version}; expected one of "
                f"{', '.join(map(str, versions)) or 'none'}"
            ) from None
    champion = _by_alias(client, name, CHAMPION)
    previous = champion.version if champion is not None else None
    if champion is not None and champion.version == chosen.version:
        return Promotion(name, chosen.version, previous, False, f"version {chosen.version} already is the champion")
    reason = f"version {chosen.version} promoted" + (" (no champion yet)" if champion is None else "")
    if if_better and champion is not None:
        new, old = _compared_metric(client, chosen), _compared_metric(client, champion)
        if not new < old:
            return Promotion(
                name, chosen.version, previous, False,
                f"kept version {champion.version}: version {chosen.version} has {COMPARED_METRIC} "
                f"{new:.6g}, not lower than {old:.6g}",
            )
        reason = f"{COMPARED_METRIC} {new:.6g} < {old:.6g} of version {champion.version}"
    client.set_registered_model_alias(name, CHAMPION, chosen.version)
    return Promotion(name, chosen.version, previous, True, reason)


def _by_alias(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _compared_metric(client, version) -> float:
    """test_bce from the version's tag, else from its run (versions registered by hand)."""
    if COMPARED_METRIC in version.tags:
        return float(version.tags[COMPARED_METRIC])
    if version.run_id:
        metrics = client.get_run(version.run_id).data.metrics
        if COMPARED_METRIC in metrics:
            return float(metrics[COMPARED_METRIC])
    raise RegistryError(
        f"invalid --if-better: {version.name} version {version.version} has no {COMPARED_METRIC} "
        f"(neither a tag nor a metric of its run); promote it with --version instead"
    )
