"""Keras callbacks that own aetrack's per-epoch MLflow I/O and nothing else.

Steps are 1-based epoch numbers (step 1 is the end of the first epoch), matching Keras' own
"Epoch 1/10" and the seed's loss table.
"""

from __future__ import annotations

import time

import keras
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient


class MetricsLogger(keras.callbacks.Callback):
    """Logs `loss`, `val_loss`, `epoch_seconds` and `samples_per_second` once per epoch."""

    def __init__(self, client: MlflowClient, run_id: str, samples_per_epoch: int):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.samples_per_epoch = samples_per_epoch
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._epoch_started
        values = {
            "epoch_seconds": seconds,
            "samples_per_second": self.samples_per_epoch / seconds if seconds > 0 else 0.0,
        }
        for key in ("loss", "val_loss"):
            if logs and key in logs:
                values[key] = float(logs[key])
        now = int(time.time() * 1000)
        step = epoch + 1
        self.client.log_batch(
            self.run_id, metrics=[Metric(key, value, now, step) for key, value in values.items()]
        )
