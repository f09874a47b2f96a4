"""Keras callbacks that own aetrack's per-epoch MLflow I/O and nothing else.

Step k is the state after k epochs (step 1 is the end of the first epoch), matching Keras' own
"Epoch 1/10" and the tutorial's loss table. Images are also logged at step 0, the untrained model,
because the MLflow UI's image grid opens every card at step 0. A resumed run re-trains the epochs
after its checkpoint; `logged_through` (the last step the run already has) keeps those steps from
being logged twice.

The logging callbacks submit their MLflow calls to the fit's `BackgroundCalls` queue (given to
each constructor); the fit waits for that queue when training ends or fails.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from aetrack import images
from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.models import decoder_of, encoder_of
from aetrack.models.prior import PRIOR_SAMPLES, prior_draws
from aetrack.names import CODES_WHITE_TAG
from aetrack.tracking.background import BackgroundCalls
from aetrack.tracking.checkpoints import artifact_repository, capture_checkpoint, store_checkpoint
from aetrack.tracking.liveness import heartbeat


class MetricsLogger(keras.callbacks.Callback):
    """Logs `epoch_seconds`, `samples_per_second` and every number Keras reports for the epoch
    (`loss`, `val_loss`, and what the model adds, e.g. a vae's `reconstruction_loss`, `kl_loss`
    and their `val_` versions) once per epoch."""

    def __init__(self, client: MlflowClient, run_id: str, calls: BackgroundCalls, samples_per_epoch: int,
                 logged_through: int = 0):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.calls = calls
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
        for key, value in (logs or {}).items():
            if np.ndim(value) == 0:
                values[key] = float(value)
        now = int(time.time() * 1000)
        step = epoch + 1
        if step <= self.logged_through:
            return
        self.calls.submit(
            self.client.log_batch, self.run_id, metrics=[Metric(key, value, now, step) for key, value in values.items()]
        )


class ReconstructionImageLogger(keras.callbacks.Callback):
    """Before training (step 0) and every `every` epochs, logs two step images of a fixed sample of
    test images: `reconstruction` (inputs over outputs, and the clean originals below when the
    inputs are noisy) and `latent_codes` (each sample's code as a small image, on a colour scale
    fixed at the first trained epoch). Grids are built in numpy from `model(x, training=False)`:
    no `predict` (it sets up a prediction loop on every call) and no matplotlib, so logging images
    every epoch stays small next to the epoch itself.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        calls: BackgroundCalls,
        inputs: np.ndarray,
        originals: np.ndarray,
        every: int = 1,
        noisy_inputs: bool = False,
        code_scale: float | None = None,
        logged_through: int = 0,
        spec: SampleSpec = MNIST_SPEC,
    ):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.calls = calls
        self.inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self.originals = originals
        self.every = every
        self.noisy_inputs = noisy_inputs
        self.code_scale = code_scale  # fixed at the first trained epoch (a resumed run reads it back)
        self.logged_through = logged_through
        self.spec = spec  # how a sample's row is drawn: image tiles or a table heat map
        self._untrained_codes: np.ndarray | None = None  # step 0's codes, drawn once the scale is known

    def on_train_begin(self, logs=None):
        if self.every <= 0 or self.logged_through > 0:  # a resumed run has its step 0 already
            return
        outputs, codes = self._outputs_and_codes()
        self._submit(key="reconstruction", grid=self._reconstruction_grid(outputs), step=0)
        # The code colour scale is fixed at the first trained epoch (untrained codes are far
        # smaller): step 0's codes wait until then, so every latent_codes frame shares one scale.
        self._untrained_codes = codes

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if self.every <= 0 or step % self.every or step <= self.logged_through:
            return
        outputs, codes = self._outputs_and_codes()
        self._submit(key="reconstruction", grid=self._reconstruction_grid(outputs), step=step)
        if self.code_scale is None:
            self.code_scale = images.code_scale(codes)
            # Say what white means, once, so a reader of the images can read the codes' values.
            self.calls.submit(self.client.set_tag, self.run_id, CODES_WHITE_TAG, f"{self.code_scale:.6g}")
            if self._untrained_codes is not None:
                self._submit(key="latent_codes", grid=images.latent_codes_grid(self._untrained_codes,
                                                                                self.code_scale), step=0)
        self._submit(key="latent_codes", grid=images.latent_codes_grid(codes, self.code_scale), step=step)

    def _outputs_and_codes(self) -> tuple[np.ndarray, np.ndarray]:
        outputs = self.model(self.inputs, training=False).numpy()
        codes = encoder_of(self.model)(self.inputs, training=False).numpy()
        return outputs, codes

    def _reconstruction_grid(self, outputs: np.ndarray) -> np.ndarray:
        if self.noisy_inputs:
            return images.denoise_grid(self.inputs, outputs, self.originals, spec=self.spec)
        return images.reconstruction_grid(self.originals, outputs, spec=self.spec)

    def _submit(self, key: str, grid: np.ndarray, step: int) -> None:
        # The grids are computed here, from this epoch's weights; only the uploads (PNG encoding,
        # HTTP, S3 behind a server) go to the background thread. synchronous=True inside it: each
        # upload is done when its call returns, so waiting for the queue means the images are stored.
        self.calls.submit(
            self.client.log_image, self.run_id, grid, key=key, step=step, synchronous=True)


class PriorSamplesLogger(keras.callbacks.Callback):
    """Before training (step 0) and every `every` epochs, logs the step image `samples`: the
    decoder's images for a fixed set of draws from the prior N(0, I) (the same draws every epoch,
    so the step slider shows generation improving)."""

    def __init__(self, client: MlflowClient, run_id: str, calls: BackgroundCalls, codes: np.ndarray,
                 every: int = 1, logged_through: int = 0, spec: SampleSpec = MNIST_SPEC):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.calls = calls
        self.codes = np.ascontiguousarray(codes, dtype=np.float32)
        self.every = every
        self.logged_through = logged_through
        self.spec = spec

    def on_train_begin(self, logs=None):
        if self.every > 0 and self.logged_through == 0:
            self._log(step=0)

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if self.every > 0 and step % self.every == 0 and step > self.logged_through:
            self._log(step)

    def _log(self, step: int) -> None:
        generated = decoder_of(self.model)(self.codes, training=False).numpy()
        self.calls.submit(self.client.log_image, self.run_id, images.samples_grid(generated, spec=self.spec),
                          key="samples", step=step, synchronous=True)


def image_loggers(client: MlflowClient, run_id: str, calls: BackgroundCalls, config, inputs: np.ndarray,
                  originals: np.ndarray, logged_through: int = 0,
                  spec: SampleSpec = MNIST_SPEC) -> list[keras.callbacks.Callback]:
    """The per-epoch image callbacks for a run: none when `config.image_every` is 0, else one
    logger on the seeded sample of `config.image_samples` test samples (`inputs` are what the model
    sees, noisy when denoising; `originals` the clean samples), and for a vae the prior samples.
    `spec` says how a sample is drawn (image tiles, or a table heat map)."""
    if config.image_every == 0:
        return []
    sample = images.sample_indices(len(inputs), config.image_samples, config.seed)
    white = client.get_run(run_id).data.tags.get(CODES_WHITE_TAG) if logged_through else None
    loggers: list[keras.callbacks.Callback] = [
        ReconstructionImageLogger(
            client, run_id, calls, inputs[sample], originals[sample], every=config.image_every,
            noisy_inputs=config.denoising, code_scale=float(white) if white else None,
            logged_through=logged_through, spec=spec,
        )
    ]
    if config.architecture == "vae":
        codes = prior_draws(PRIOR_SAMPLES, config.code_size, config.seed)
        loggers.append(PriorSamplesLogger(client, run_id, calls, codes, every=config.image_every,
                                          logged_through=logged_through, spec=spec))
    return loggers


class Heartbeat(keras.callbacks.Callback):
    """Tags the run `aetrack.heartbeat` (UTC) after every epoch: `aetrack runs --stale` reads it.

    Queued behind the epoch's other calls: two threads writing one SQLite store at once can
    deadlock, and SQLite then fails one of them at once instead of waiting."""

    def __init__(self, client: MlflowClient, run_id: str, calls: BackgroundCalls):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.calls = calls

    def on_epoch_end(self, epoch, logs=None):
        self.calls.submit(heartbeat, self.client, self.run_id)


class CheckpointWriter(keras.callbacks.Callback):
    """Every `every` epochs (and after the last), stores a checkpoint in the run's artifacts.

    The state is captured here, at the end of the epoch; storing it is queued on the fit's
    background thread behind the same epoch's metrics and images, so a checkpoint never lands
    before its epoch's logs: a crash between them leaves the epoch logged but not checkpointed, and
    the resumed run re-trains it without logging it again.
    """

    def __init__(self, client: MlflowClient, run_id: str, calls: BackgroundCalls, every: int, epochs: int,
                 params: dict[str, str]):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.calls = calls
        self.every = every
        self.epochs = epochs
        self.run_params = params  # not `params`: Keras sets that attribute on every callback
        self.repository = artifact_repository(client, run_id)

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if self.every > 0 and (step % self.every == 0 or step == self.epochs):
            snapshot = capture_checkpoint(self.model, step, self.run_params)
            self.calls.submit(store_checkpoint, self.repository, snapshot)
