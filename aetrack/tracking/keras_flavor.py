"""The flavor module aetrack hands to MLflow's `Model.log`: MLflow's Keras flavor, with the pyfunc
pointed at `aetrack_keras_pyfunc` (shipped in the model's `code/` folder) instead of `mlflow.keras`.

The MLmodel keeps the `keras` flavor, so `mlflow.keras.load_model`, `aetrack.load_model` and the
registry see an ordinary Keras model; only `mlflow.pyfunc.load_model` (what `mlflow models serve`
and `mlflow models predict` use) goes through the direct-call loader.
"""

from __future__ import annotations

import os
import shutil

LOADER_MODULE = "aetrack_keras_pyfunc"
CODE_DIR = "code"
_LOADER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), LOADER_MODULE + ".py")


def save_model(model, path: str, mlflow_model, **kwargs) -> None:
    """`mlflow.keras.save_model`, then ship the loader and name it the pyfunc's loader module."""
    import mlflow.keras
    from mlflow import pyfunc
    from mlflow.models.model import MLMODEL_FILE_NAME

    mlflow.keras.save_model(model, path, mlflow_model=mlflow_model, **kwargs)
    os.makedirs(os.path.join(path, CODE_DIR), exist_ok=True)
    shutil.copyfile(_LOADER_FILE, os.path.join(path, CODE_DIR, LOADER_MODULE + ".py"))
    conf = mlflow_model.flavors[pyfunc.FLAVOR_NAME]
    conf[pyfunc.MAIN] = LOADER_MODULE
    conf[pyfunc.CODE] = CODE_DIR
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))
