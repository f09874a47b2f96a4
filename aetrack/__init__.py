"""aetrack: train Keras autoencoders and track every run with MLflow.

Importing this package is cheap: TensorFlow loads only when a model is built or loaded.
"""

from aetrack.version import __version__

__all__ = ["__version__", "train", "TrainConfig", "load_model"]


def __getattr__(name: str):
    # Lazy re-exports keep `import aetrack` (and `aetrack --help`) free of TensorFlow.
    if name == "train":
        from aetrack.train import train

        return train
    if name == "TrainConfig":
        from aetrack.config import TrainConfig

        return TrainConfig
    if name == "load_model":
        from aetrack.models.loading import load_model

        return load_model
    raise AttributeError(f"module 'aetrack' has no attribute {name!r}")
