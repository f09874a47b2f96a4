"""aetrack: train Keras autoencoders and track every run with MLflow.

Importing this package is cheap: TensorFlow loads only when a model is built or loaded.
"""

import sys
import types

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


class _Package(types.ModuleType):
    """Importing the submodule `aetrack.train` binds it as this package's attribute `train`, which
    would shadow the lazy `aetrack.train` function above; the binding is left out (the submodule
    stays in sys.modules, where `from aetrack.train import ...` finds it)."""

    def __setattr__(self, name: str, value) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
