"""The pyfunc loader shipped inside every model aetrack logs (as `code/aetrack_keras_pyfunc.py`).

MLflow's Keras pyfunc answers each request with `model.predict`, whose per-call set-up costs tens
of milliseconds and which prints progress bars on stdout (into `mlflow models predict`'s JSON).
This loader serves the same `.keras` file through one compiled call instead. It is copied into
the model directory and imported by MLflow as a top-level module, so it imports nothing from
aetrack: a model served in a fresh environment needs only its own requirements.

Inputs may be flat rows (n, width) or samples in their own shape (n, *shape), which are flattened
(and answered in that shape); a DataFrame holding the training columns of a table model (the
logged sample spec's `feature_names`) is read by column name.
"""

import os

import numpy as np

# aetrack.names.SAMPLE_SPEC_KEY, said again: this module imports nothing from aetrack.
_SAMPLE_SPEC_KEY = "aetrack.sample_spec"


class DirectKerasModel:
    """A pyfunc model that calls the Keras model directly (inference mode, no progress output)."""

    def __init__(self, model, feature_names=()):
        import tensorflow as tf

        self.model = model
        self.feature_names = tuple(feature_names)
        self.width = int(model.inputs[0].shape[-1])
        self._gives_samples = int(model.outputs[0].shape[-1]) == self.width
        # One trace for every batch size: a fixed signature with a free batch dimension.
        self._call = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, self.width), tf.float32)],
        )

    def get_raw_model(self):
        """The keras.Model, as MLflow's own Keras pyfunc offers it."""
        return self.model

    def predict(self, data, params=None):
        columns = getattr(data, "columns", None)
        if columns is not None and self.feature_names and all(name in columns for name in self.feature_names):
            data = data[list(self.feature_names)]  # a table's columns by name, in training order
        values = np.asarray(data.values if hasattr(data, "values") else data)  # a DataFrame from CSV/JSON records
        if values.dtype == object:  # one column holding each sample as a list (MLflow's tensor-in-a-cell)
            values = np.stack([np.asarray(cell, dtype=np.float32).reshape(-1) for cell in values.reshape(-1)])
        shape = values.shape
        inputs = np.ascontiguousarray(values, dtype=np.float32)
        if inputs.ndim > 2:  # samples in their own shape, e.g. (n, 28, 28) or (n, 32, 32, 3)
            inputs = inputs.reshape(len(inputs), -1)
        outputs = self._call(inputs).numpy()
        if len(shape) > 2 and self._gives_samples:
            return outputs.reshape(shape)
        return outputs


def _feature_names(path):
    """The training columns the logged model's MLmodel metadata names (none: not a table model)."""
    import json

    import yaml

    try:
        with open(os.path.join(path, "MLmodel")) as f:
            spec = (yaml.safe_load(f).get("metadata") or {}).get(_SAMPLE_SPEC_KEY) or {}
        if isinstance(spec, str):
            spec = json.loads(spec)
        return tuple(spec.get("feature_names", ()))
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return ()


def _load_pyfunc(path):
    """MLflow's pyfunc entry point: `path` is the model directory (Keras flavor layout)."""
    from mlflow.keras.load import _load_pyfunc as load_keras_pyfunc

    return DirectKerasModel(load_keras_pyfunc(path).get_raw_model(), _feature_names(path))
