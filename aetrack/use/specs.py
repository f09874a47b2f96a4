"""Which samples a trained model takes: its `SampleSpec`, read from the logged model's MLmodel
metadata, or (for .keras files and models logged before specs existed) guessed from its widths.
"""

from __future__ import annotations

import os

from aetrack.data import IMAGE_PIXELS, MNIST_SPEC, SampleSpec
from aetrack.names import SAMPLE_SPEC_KEY  # the MLmodel metadata key a logged model's spec is under


def fallback_spec(width: int) -> SampleSpec:
    """The spec of a model that carries none: 784 values are MNIST digits, any other width a flat
    table of that many unnamed features."""
    if width == IMAGE_PIXELS:
        return MNIST_SPEC
    return SampleSpec("table", (int(width),), None)


def sample_width(model) -> int:
    """How many values one sample has for `model`: the wider of its input and output (an
    autoencoder's are equal, an encoder narrows a sample to a code, a decoder widens one)."""
    output = model.outputs[0].shape[-1] if len(model.outputs[0].shape) > 1 else 1  # a scorer's (n,) output
    return max(int(model.inputs[0].shape[-1]), int(output))


def spec_from_metadata(metadata: dict | None) -> SampleSpec | None:
    """The spec stored in a logged model's metadata, or None when it has none."""
    stored = (metadata or {}).get(SAMPLE_SPEC_KEY)
    if not stored:
        return None
    return SampleSpec.from_json(stored) if isinstance(stored, str) else SampleSpec.from_dict(stored)


def model_spec(uri: str, model, metadata: dict | None = None) -> SampleSpec:
    """The spec of the model loaded from `uri`: its MLmodel metadata's (`metadata` when the caller
    read it already), else `fallback_spec`."""
    return spec_from_metadata(metadata if metadata is not None else model_metadata(uri)) or \
        fallback_spec(sample_width(model))


def model_metadata(uri: str) -> dict | None:
    """The MLmodel metadata of an MLflow model (None for a .keras file, or when it cannot be read:
    the model itself loaded, so its widths still say enough)."""
    if uri.endswith(".keras") and os.path.isfile(uri):
        return None
    try:
        if os.path.isdir(uri):
            from mlflow.models import Model

            return Model.load(os.path.join(uri, "MLmodel")).metadata
        from mlflow.models import get_model_info

        return get_model_info(uri).metadata
    except Exception:  # noqa: BLE001 - any failure here means "no stored spec", never a failed command
        return None
