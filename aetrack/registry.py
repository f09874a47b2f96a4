"""Loading models by MLflow URI (runs:/, models:/, local paths) or from a local .keras file."""

from __future__ import annotations

import os


def load_model(uri: str):
    """Load a Keras model from an MLflow model URI or a `.keras` file (Keras safe mode)."""
    import keras

    if uri.endswith(".keras") and os.path.isfile(uri):
        return keras.saving.load_model(uri, safe_mode=True)
    import mlflow.keras

    # Explicit safe mode: never run code (e.g. a Lambda layer's bytecode) from a model file.
    return mlflow.keras.load_model(uri, load_model_kwargs={"safe_mode": True})
