"""Keras callbacks that own aetrack's per-epoch MLflow I/O and nothing else.

Steps are 1-based epoch numbers (step 1 is the end of the first epoch), matching Keras' own
"Epoch 1/10" and the tutorial's loss table. A resumed run re-trains the epochs after its checkpoint;
`logged_through` (the last step the run already has) keeps those steps from being logged twice.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from aetrack import images
from aetrack.models import encoder_of
from aetrack.tracking.checkpoints import artifact_repository, write_checkpoint
from aetrack.tracking.liveness import heartbeat

CODES_WHITE_TAG = "aetrack.latent_codes_white"


class MetricsLogger(keras.callbacks.Callback):
    """Logs `loss`, `val_loss`, `epoch_seconds` and `samples_per_second` once per epoch."""

    def __init__(self, client: MlflowClient, run_id: str, samples_per_epoch: int, logged_through: int = 0):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.samples_per_epoch = samples_per_epoch
        self.logged_through = logged_through
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
        if step <= self.logged_through:
            return
        self.client.log_batch(
            self.run_id, metrics=[Metric(key, value, now, step) for key, value in values.items()]
        )


class ReconstructionImageLogger(keras.callbacks.Callback):
    """Every `every` epochs, logs two step images of a fixed sample of test images:
    `reconstruction` (inputs over outputs, and the clean originals below when the inputs are
    noisy) and `latent_codes` (each sample's code as a small image, on a colour scale fixed at the
    first logged epoch). Grids are built in numpy from `model(x, training=False)`: no `predict`,
    no matplotlib, so an epoch's images cost milliseconds.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        inputs: np.ndarray,
        originals: np.ndarray,
        every: int = 1,
        noisy_inputs: bool = False,
        code_scale: float | None = None,
        logged_through: int = 0,
    ):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self.originals = originals
        self.every = every
        self.noisy_inputs = noisy_inputs
        self.code_scale = code_scale  # fixed at the first logged epoch (a resumed run reads it back)
        self.logged_through = logged_through

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if self.every <= 0 or step % self.every or step <= self.logged_through:
            return
        outputs = self.model(self.inputs, training=False).numpy()
        codes = encoder_of(self.model)(self.inputs, training=False).numpy()
        if self.noisy_inputs:
            grid = images.denoise_grid(self.inputs, outputs, self.originals)
        else:
            grid = images.reconstruction_grid(self.originals, outputs)
        if self.code_scale is None:
            self.code_scale = images.code_scale(codes)
            # Say what white means, once, so a reader of the images can read the codes' values.
            self.client.set_tag(self.run_id, CODES_WHITE_TAG, f"{self.code_scale:.6g}")
        # synchronous: the images are in the store when the epoch ends (no background thread
        # competing with training, nothing lost if the run then fails).
        self.client.log_image(self.run_id, grid, key="reconstruction", step=step, synchronous=True)
        self.client.log_image(
            self.run_id, images.latent_codes_grid(codes, self.code_scale), key="latent_codes",
            step=step, synchronous=True,
        )


def image_loggers(client: MlflowClient, run_id: str, config, inputs: np.ndarray, originals: np.ndarray,
                  logged_through: int = 0) -> list:
    """The per-epoch image callbacks for a run: none when `config.image_every` is 0, else one
    logger on the seeded sample of `config.image_samples` test images (`inputs` are what the model
    sees, noisy when denoising; `originals` the clean images)."""
    if config.image_every == 0:
        return []
    sample = images.sample_indices(len(inputs), config.image_samples, config.seed)
    white = client.get_run(run_id).data.tags.get(CODES_WHITE_TAG) if logged_through else None
    return [
        ReconstructionImageLogger(
            client, run_id, inputs[sample], originals[sample], every=config.image_every,
            noisy_inputs=config.denoising, code_scale=float(white) if white else None,
            logged_through=logged_through,
        )
    ]


class Heartbeat(keras.callbacks.Callback):
    """Tags the run `aetrack.heartbeat` (UTC) after every epoch: `aetrack runs --stale` reads it."""

    def __init__(self, client: MlflowClient, run_id: str):
        super().__init__()
        self.client = client
        self.run_id = run_id

    def on_epoch_end(self, epoch, logs=None):
        heartbeat(self.client, self.run_id)


class CheckpointWriter(keras.callbacks.Callback):
    """Every `every` epochs (and after the last), stores a checkpoint in the run's artifacts.

    Runs after the metric and image loggers of the same epoch: a crash between them leaves the
    epoch logged but not checkpointed, and the resumed run re-trains it without logging it again.
    """

    def __init__(self, client: MlflowClient, run_id: str, every: int, epochs: int, params: dict[str, str]):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.every = every
        self.epochs = epochs
        self.run_params = params  # not `params`: Keras sets that attribute on every callback
        self.repository = artifact_repository(client, run_id)

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if self.every > 0 and (step % self.every == 0 or step == self.epochs):
            write_checkpoint(self.client, self.run_id, self.model, step, self.run_params, self.repository)
