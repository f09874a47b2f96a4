"""`aetrack score`: per-image reconstruction error (MSE) of a trained model, as anomaly scores.

A model trained without some digits reconstructs them worse, so their error is higher; the
training run's `anomaly_auc` measures exactly this on its test images.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from aetrack import inference


class ScoreInputError(ValueError):
    """A model argument that cannot be used; the message says what is expected."""


_MODEL_FORMS = "a model URI (runs:/..., models:/...) or a .keras file"


def reconstruction_errors(model, images: np.ndarray) -> np.ndarray:
    """Per-image MSE between each image and the model's reconstruction of it, shape (n,)."""
    from aetrack.evaluation import per_image_mse

    return per_image_mse(images, inference.predict(model, images)).astype(np.float32)


def score(model_uri: str, input_paths: Sequence[str], output_path: str) -> np.ndarray:
    """Score every image of the inputs (.npy or PNG) with the model; save the scores as .npy."""
    # Inputs, output and model path first: bad arguments fail in a second, before TensorFlow.
    images = inference.read_images(input_paths)
    inference.check_output(output_path, (".npy",))
    is_uri = "://" in model_uri or model_uri.startswith(("runs:/", "models:/"))
    if not is_uri and not os.path.exists(model_uri):
        raise ScoreInputError(f"invalid --model {model_uri!r}: no such file; expected {_MODEL_FORMS}")

    from aetrack.registry import load_model

    try:
        model = load_model(model_uri)
    except Exception as exc:  # MLflow and Keras raise many types for a bad URI or file
        reason = getattr(exc, "reason", None) or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise ScoreInputError(f"invalid --model {model_uri!r}: could not load it ({reason}); expected {_MODEL_FORMS}") from None
    inference.check_image_model(model, model_uri)
    errors = reconstruction_errors(model, images)
    inference.write_npy(output_path, errors)
    return errors
