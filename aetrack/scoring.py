"""`aetrack score`: per-image reconstruction error (MSE) of a trained model, as anomaly scores.

A model trained without some digits reconstructs them worse, so their error is higher; the
training run's `anomaly_auc` measures exactly this on its test images.
"""

from __future__ import annotations

import os

import numpy as np

from aetrack.data import IMAGE_PIXELS, IMAGE_SIDE

_BATCH = 4096


class ScoreInputError(ValueError):
    """An input or output file that cannot be used; the message says what is expected."""


def read_images_npy(path: str) -> np.ndarray:
    """Read a .npy of images, (n, 28, 28) or (n, 784), uint8 0..255 or floats in [0, 1].

    Returns float32 (n, 784) in [0, 1], scaled the way training data is (uint8 / 255).
    """
    where = f"invalid --input {path!r}"
    if not os.path.isfile(path):
        raise ScoreInputError(f"{where}: no such file; expected a .npy file of images")
    try:
        images = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ScoreInputError(f"{where}: not a readable .npy array ({exc})") from None
    if not isinstance(images, np.ndarray):
        raise ScoreInputError(f"{where}: holds several arrays (.npz); expected one .npy array of images")
    if images.ndim == 3 and images.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE):
        images = images.reshape(len(images), IMAGE_PIXELS)
    if images.ndim != 2 or images.shape[1] != IMAGE_PIXELS or len(images) == 0:
        raise ScoreInputError(f"{where}: shape {images.shape}; expected (n, 28, 28) or (n, 784) with n >= 1")
    if np.issubdtype(images.dtype, np.integer):
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise ScoreInputError(f"{where}: integer values {low}..{high}; expected uint8 pixel values 0..255")
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ScoreInputError(f"{where}: dtype {images.dtype}; expected uint8 0..255 or floats in [0, 1]")
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        raise ScoreInputError(
            f"{where}: float values {float(np.nanmin(images)):g}..{float(np.nanmax(images)):g}; "
            "expected finite floats in [0, 1] (or uint8 0..255)"
        )
    return images.astype(np.float32)


def reconstruction_errors(model, images: np.ndarray) -> np.ndarray:
    """Per-image MSE between each image and the model's reconstruction of it, shape (n,)."""
    from aetrack.evaluation import per_image_mse

    parts = [model(images[i : i + _BATCH], training=False).numpy() for i in range(0, len(images), _BATCH)]
    return per_image_mse(images, np.concatenate(parts)).astype(np.float32)


def score(model_uri: str, input_path: str, output_path: str) -> np.ndarray:
    """Score every image of `input_path` with the model at `model_uri`; save the scores as .npy."""
    if not output_path.endswith(".npy"):
        raise ScoreInputError(f"invalid --output {output_path!r}: expected a path ending in .npy")
    out_dir = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(out_dir):
        raise ScoreInputError(f"invalid --output {output_path!r}: directory {out_dir!r} does not exist")
    is_uri = "://" in model_uri or model_uri.startswith(("runs:/", "models:/"))
    if not is_uri and not os.path.exists(model_uri):
        raise ScoreInputError(
            f"invalid --model {model_uri!r}: no such file; expected a model URI (runs:/..., models:/...) "
            "or a .keras file"
        )
    images = read_images_npy(input_path)  # before loading the model: bad input fails in a second

    from aetrack.registry import load_model

    try:
        model = load_model(model_uri)
    except Exception as exc:  # MLflow and Keras raise many types for a bad URI or file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ScoreInputError(
            f"invalid --model {model_uri!r}: could not load it ({reason}); expected a model URI "
            "(runs:/..., models:/...) or a .keras file"
        ) from None
    errors = reconstruction_errors(model, images)
    # Write beside the target, then rename: an interrupted run never leaves a half-written file.
    partial = output_path[: -len(".npy")] + ".partial.npy"
    try:
        np.save(partial, errors)
        os.replace(partial, output_path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return errors
