"""`aetrack promote`: moving a registered model's `champion` alias (aliases, not the deprecated
stages), optionally only when the version's test_bce beats the champion's.

Refusals are RegistryErrors naming `promote`'s own parameters; the CLI words them with its flags.
MLflow is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from aetrack.errors import RegistryError
from aetrack.names import CANDIDATE, CHAMPION, COMPARED_METRIC


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
        raise RegistryError("name", name, "no such registered model",
                            f"expected one of: {', '.join(known) or 'none yet'}") from None
    if version is None:
        if not if_better:
            raise RegistryError("", None, "", "give {version} N or {if_better} (which promotes the candidate)")
        chosen = _by_alias(client, name, CANDIDATE)
        if chosen is None:
            raise RegistryError("", None, f"{name!r} has no {CANDIDATE!r} alias", "give {version} N")
    else:
        try:
            chosen = client.get_model_version(name, str(version))
        except MlflowException:
            versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
            raise RegistryError("version", version, f"{name!r} has no version {version}",
                                f"expected one of {', '.join(map(str, versions)) or 'none'}") from None
    champion = _by_alias(client, name, CHAMPION)
    previous = champion.version if champion is not None else None
    if champion is not None and champion.version == chosen.version:
        return Promotion(name, chosen.version, previous, False, f"version {chosen.version} already is the champion")
    reason = f"version {chosen.version} promoted" + (" (no champion yet)" if champion is None else "")
    if if_better and champion is not None:
        # test_bce where the data lies in [0, 1]; standardised tables have only test_mse.
        metric = COMPARED_METRIC if _metric_value(client, chosen, COMPARED_METRIC) is not None else "test_mse"
        new, old = _compared_metric(client, chosen, metric), _compared_metric(client, champion, metric)
        if not new < old:
            return Promotion(
                name, chosen.version, previous, False,
                f"kept version {champion.version}: version {chosen.version} has {metric} "
                f"{new:.6g}, not lower than {old:.6g}",
            )
        reason = f"{metric} {new:.6g} < {old:.6g} of version {champion.version}"
    client.set_registered_model_alias(name, CHAMPION, chosen.version)
    return Promotion(name, chosen.version, previous, True, reason)


def _by_alias(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _metric_value(client, version, metric: str) -> float | None:
    """`metric` from the version's tag, else from its run (versions registered by hand); None if neither."""
    if metric in version.tags:
        return float(version.tags[metric])
    if version.run_id:
        metrics = client.get_run(version.run_id).data.metrics
        if metric in metrics:
            return float(metrics[metric])
    return None


def _compared_metric(client, version, metric: str) -> float:
    value = _metric_value(client, version, metric)
    if value is None:
        raise RegistryError(
            "if_better", None,
            f"{version.name} version {version.version} has no {metric} (neither a tag nor a metric of its run)",
            "promote it with {version} instead",
        )
    return value
