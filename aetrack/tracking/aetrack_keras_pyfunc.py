"""The pyfunc loader shipped inside every model aetrack logs (as `code/aetrack_keras_pyfunc.py`).

MLflow's Keras pyfunc answers each request with `model.predict`, whose per-call set-up costs tens
of milliseconds and which prints progress bars on stdout (into `mlflow models predict`'s JSON).
This loader serves the same `.keras` file through one compiled call instead. It is copied into
the model directory and imported by MLflow as a top-level module, so it imports nothing from
aetrack: a model served in a fresh environment needs only its own requirements.
"""

import numpy as np


class DirectKerasModel:
    """A pyfunc model that calls the Keras model directly (inference mode, no progress output)."""

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        width = int(model.inputs[0].shape[-1])
        # One trace for every batch size: a fixed signature with a free batch dimension.
        self._call = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, width), tf.float32)],
        )

    def get_raw_model(self):
        """The keras.Model, as MLflow's own Keras pyfunc offers it."""
        return self.model

    def predict(self, data, params=None):
        values = data.values if hasattr(data, "values") else data  # a DataFrame from CSV/JSON records
        inputs = np.ascontiguousarray(values, dtype=np.float32)
        return self._call(inputs).numpy()


def _load_pyfunc(path):
    """MLflow's pyfunc entry point: `path` is the model directory (Keras flavor layout)."""
    from mlflow.keras.load import _load_pyfunc as load_keras_pyfunc

    return DirectKerasModel(load_keras_pyfunc(path).get_raw_model())
