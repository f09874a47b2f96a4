"""Registering a run's logged models: each part a new version of `<prefix>-autoencoder`,
`<prefix>-encoder`, `<prefix>-decoder` and `<prefix>-scorer`, tagged with where it came from (and
its test metrics, `anomaly_threshold` among them: the scorer's threshold) and aliased `candidate`;
retried when another run wrote at the same time (`conflicts`), and rolled back if registering
fails part-way. Each logged model records its versions as `mlflow.register_model` does (the
`mlflow.modelVersions` tag), so its page in the MLflow UI lists them instead of "Not registered".

Logging the parts is `aetrack.tracking.logged_models`, moving `champion` is
`aetrack.tracking.promotion`; their names are importable from here too. MLflow is imported inside
the functions: `aetrack --help` imports this module's callers without it.
"""

from __future__ import annotations

import sys

from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.names import CANDIDATE, DATA_KIND, MODEL_VERSIONS_TAG, PARTS, SAMPLE_SHAPE, compared_metric
from aetrack.tracking.conflicts import retry_conflicts
# Importable from here as before: train, the sweep, tests and benchmarks use these names.
from aetrack.tracking.logged_models import layer_widths, log_models, pip_requirements, signature_for
from aetrack.tracking.promotion import Promotion, promote

__all__ = ["PARTS", "Promotion", "layer_widths", "link_version", "log_models", "logged_model_versions",
           "pip_requirements", "promote", "register_models", "register_run_models", "signature_for",
           "unlink_version", "version_description", "version_tags"]


def register_run_models(logged: dict, config, run_id: str, dataset, metrics: dict[str, float],
                        run_name: str = "") -> dict[str, str]:
    """Register the run's logged models (`log_models`) unless `config.register` is false.

    Returns {registered model name: version}; empty when registration is off. If registering fails
    or is interrupted, the versions this call created are deleted before the error propagates, so
    a failed run never leaves a half-registered model behind.
    """
    if not config.register:
        return {}
    tags = version_tags(config, run_id, dataset.sha256, metrics, spec=dataset.spec)
    description = version_description(run_name or run_id, dataset, metrics)
    return register_models(logged, config.model_prefix, run_id, tags, description)


def version_tags(config, run_id: str, dataset_sha256: str, metrics: dict[str, float],
                 spec: SampleSpec = MNIST_SPEC) -> dict[str, str]:
    """The tags every registered version carries: where it came from, what a sample is (data kind,
    sample shape) and its test metrics."""
    return {
        "run_id": run_id,
        "entry_point": config.entry_point,
        "dataset_sha256": dataset_sha256,
        "code_size": str(config.code_size),
        "architecture": config.architecture,
        DATA_KIND: spec.kind,
        SAMPLE_SHAPE: spec.shape_text(),
        **{k: repr(float(v)) for k, v in sorted(metrics.items())},
    }


def version_description(run_name: str, dataset, metrics: dict[str, float]) -> str:
    """A registered version's description: the run, the data and the headline metric (`test_bce`,
    or `test_mse` for unbounded data)."""
    spec = dataset.spec
    things = "images" if spec.is_image else "samples"
    kind = "" if spec.is_image else f", {spec.describe()}"
    line = f"Trained by run {run_name} on {dataset.name} ({dataset.train_count} training {things}{kind})."
    headline = compared_metric(spec.bounded)
    if headline in metrics:
        line += f" {headline} {metrics[headline]:.4f} on {len(dataset.x_test)} test {things}."
    return line


def register_models(logged: dict, prefix: str, run_id: str, tags: dict[str, str],
                    description: str | None = None) -> dict[str, str]:
    """Create one new version per logged part under `<prefix>-<part>`, tag it, link it to its
    logged model (`link_version`) and alias it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    created: list[tuple[str, str, str]] = []  # (registered name, version, logged model id)
    try:
        for part, info in logged.items():
            name = f"{prefix}-{part}"
            _ensure_registered_model(client, name)
            version = retry_conflicts(
                lambda: client.create_model_version(
                    name, source=info.model_uri, run_id=run_id, model_id=info.model_id,
                    tags={**tags, "part": part}, description=description,
                )
            ).version
            created.append((name, str(version), info.model_id))
            link_version(client, info.model_id, name, str(version))
        for name, version, _ in created:
            retry_conflicts(lambda: client.set_registered_model_alias(name, CANDIDATE, version))
    except BaseException:
        _delete_versions(client, created)
        raise
    return {name: version for name, version, _ in created}


def logged_model_versions(client, model_id: str) -> list[dict[str, str]]:
    """The registered versions a logged model records, [{"name": ..., "version": ...}] in the order
    they were made: what the MLflow UI's logged model page lists."""
    import json

    text = client.get_logged_model(model_id).tags.get(MODEL_VERSIONS_TAG)
    return json.loads(text) if text else []


def link_version(client, model_id: str | None, name: str, version: str) -> None:
    """Record version `version` of `name` on logged model `model_id`, as `mlflow.register_model`
    does (the UI reads this tag, not the registry). `create_model_version(model_id=...)` records it
    only through a tracking server, not on a local store: appended once, so both cases agree."""
    if not model_id:
        return
    entry = {"name": name, "version": str(version)}
    versions = logged_model_versions(client, model_id)
    if entry not in versions:
        _set_versions(client, model_id, [*versions, entry])


def unlink_version(client, model_id: str | None, name: str, version: str) -> None:
    """Remove version `version` of `name` from logged model `model_id`'s registered versions
    (the version was deleted); the tag goes when none is left."""
    if not model_id:
        return
    versions = logged_model_versions(client, model_id)
    kept = [v for v in versions if v != {"name": name, "version": str(version)}]
    if kept != versions:
        if kept:
            _set_versions(client, model_id, kept)
        else:
            retry_conflicts(lambda: client.delete_logged_model_tag(model_id, MODEL_VERSIONS_TAG))


def _set_versions(client, model_id: str, versions: list[dict[str, str]]) -> None:
    import json

    retry_conflicts(lambda: client.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: json.dumps(versions)}))


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        retry_conflicts(lambda: client.create_registered_model(
            name, description="Registered by aetrack; versions are tagged with run_id and test metrics."
        ))
    except MlflowException as exc:
        # Another run (perhaps a concurrent one) created it first: that is fine.
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def _delete_versions(client, created: list[tuple[str, str, str]]) -> None:
    for name, version, model_id in reversed(created):
        try:
            retry_conflicts(lambda: client.delete_model_version(name, version))
            unlink_version(client, model_id, name, version)
        except Exception as exc:  # noqa: BLE001 - keep cleaning up, then re-raise the original
            print(f"aetrack: could not delete {name} version {version}: {exc}", file=sys.stderr)
