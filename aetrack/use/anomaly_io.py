"""Anomaly scores and flags of a trained model, for `aetrack score` and `aetrack serve`: the score
of each sample (a `scorer` model's own output, or an autoencoder's per-sample MSE in the model's
space), the threshold stored with the model (MLmodel metadata `ANOMALY_KEY`, or for a registered
version its tag `anomaly_threshold`) and the 0/1 flags `score > threshold`.

numpy and the standard library at import; MLflow only inside `stored_threshold`.
"""

from __future__ import annotations

import json
import math
import re
from typing import NamedTuple

import numpy as np

from aetrack.anomaly import flags  # noqa: F401  (re-exported: the one rule, score > threshold)
from aetrack.data import SampleSpec
from aetrack.errors import ArgumentError
from aetrack.names import ANOMALY_KEY, PART_METADATA, SCORER
from aetrack.names import ANOMALY_THRESHOLD as THRESHOLD_TAG  # a registered version's tag: the scorer's threshold

MSE = "mse"

_MODELS_URI = re.compile(r"^models:/([^/@\s]+)(?:/([^/\s]+)|@([^/@\s]+))$")


class Threshold(NamedTuple):
    """A threshold and where it came from: `stored` (the model's) or `given` (--threshold)."""

    value: float
    source: str
    score: str = MSE  # the score it is a threshold on: "mse" or "elbo"
    rule: str = ""  # how training set it (quantile, mean_std); empty when given


def check_threshold(value: object) -> float | None:
    """A threshold given by the user as a float; None stays None; anything but a finite number is
    an ArgumentError naming `threshold`."""
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ArgumentError("threshold", value, "not a finite number",
                            "expected a finite number, e.g. 0.01 (samples scoring above it are flagged)")
    return number


def anomaly_metadata(metadata: dict | None) -> dict | None:
    """The `ANOMALY_KEY` entry of a logged model's metadata (a dict or its JSON), or None."""
    stored = (metadata or {}).get(ANOMALY_KEY)
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return None
    return stored if isinstance(stored, dict) and "threshold" in stored else None


def stored_threshold(uri: str, metadata: dict | None) -> Threshold | None:
    """The model's own threshold: its metadata's, else (models:/ URIs) its version's tag; None
    when it has neither (a model trained before thresholds, a .keras file)."""
    stored = anomaly_metadata(metadata)
    if stored is not None:
        try:
            value = float(stored["threshold"])
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            return Threshold(value, "stored", str(stored.get("score", MSE)), str(stored.get("rule", "")))
    tag = _version_tag(uri)
    if tag is not None:
        # The tag is the run's scorer threshold: a vae's is on its ELBO, every other on the MSE.
        score = "elbo" if (metadata or {}).get("architecture") == "vae" else MSE
        return Threshold(tag, "stored", score)
    return None


def _version_tag(uri: str) -> float | None:
    match = _MODELS_URI.match(uri)
    if not match:
        return None
    name, version, alias = match.groups()
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        if alias:
            found = client.get_model_version_by_alias(name, alias)
        elif version == "latest":
            found = max(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
        else:
            found = client.get_model_version(name, version)
        value = float(found.tags[THRESHOLD_TAG])
    except Exception:  # noqa: BLE001 - no tag, no version, a bad value: all mean "no stored threshold"
        return None
    return value if math.isfinite(value) else None


def is_scorer(model, metadata: dict | None = None) -> bool:
    """Whether `model` gives one score per sample: logged as the `scorer` part, named so, or with
    an output of one value per sample ((n,) or (n, 1) for a model that takes wider samples)."""
    if (metadata or {}).get(PART_METADATA) == SCORER or getattr(model, "name", "") == SCORER:
        return True
    output = tuple(model.outputs[0].shape)
    return len(output) == 1 or (output[-1] == 1 and model.inputs[0].shape[-1] != 1 and
                                (metadata or {}).get(PART_METADATA) not in ("encoder", "decoder"))


def as_scores(outputs: np.ndarray) -> np.ndarray:
    """A scorer's outputs, (n,) or (n, 1), as float32 (n,)."""
    outputs = np.asarray(outputs, dtype=np.float32)
    return outputs.reshape(len(outputs)) if outputs.ndim > 1 else outputs


def reconstruction_scores(rows: np.ndarray, outputs: np.ndarray, spec: SampleSpec) -> np.ndarray:
    """Per-sample MSE of an autoencoder, float32 (n,), in the model's space: a scaled table's logged
    autoencoder takes and gives raw rows, so both are standardised first (the space training's
    threshold was computed in)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if spec.scaled:
        # (x - m) / s - (y - m) / s = (x - y) / s: the mean cancels.
        outputs = (rows - outputs) / np.asarray(spec.feature_std, dtype=np.float64)
        return np.mean(outputs**2, axis=1).astype(np.float32)
    return np.mean((rows - outputs) ** 2, axis=1).astype(np.float32)


def flagged_line(count: int, total: int, threshold: Threshold) -> str:
    """`aetrack: 3 of 120 samples flagged as anomalies (score > 0.0123, the model's threshold)`."""
    whose = "the model's threshold" if threshold.source == "stored" else "the threshold given"
    return (f"{count} of {total} sample{'s' if total != 1 else ''} flagged as anomalies "
            f"(score > {threshold.value:.6g}, {whose})")
