"""A variational autoencoder (Kingma & Welling) with dense layers, for any sample flattened to
`spec.size` values. Its decoder is Bernoulli for bounded data (images in [0, 1]: sigmoid output,
summed bce) and a unit-variance Gaussian for standardised tables (linear output, summed squared
error / 2 plus the Gaussian's constant), so the loss is the negative ELBO in nats per sample.

What gets logged and registered is plain Keras layers only, so it loads in safe mode and serves
with `mlflow models serve` without aetrack installed:
- `encoder`: sample -> mean of q(z|x) (size -> 512 relu -> code_size),
- `decoder`: code -> pixel probabilities or feature means (code_size -> 512 relu -> size),
- `autoencoder`: decoder(encoder(sample)), the deterministic reconstruction.
Training goes through `VariationalAutoencoder`, a wrapper that adds the log-variance head, the
reparameterisation trick and the KL term; it is never saved.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.models.spec_checks import input_name, likelihood, output_activation

HIDDEN_UNITS = 512
_EPSILON = 1e-7  # probabilities are clipped to [eps, 1 - eps] in the BCE, as Keras does
LIKELIHOODS = ("bernoulli", "gaussian")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class VariationalAutoencoder(keras.Model):
    """Trains `autoencoder` (and the log-variance head in `moments`) on the negative ELBO:
    the reconstruction term summed over the sample's values (binary cross-entropy for a `bernoulli`
    decoder, 0.5 * (x - mean)^2 + 0.5 * log(2 pi) for a unit-variance `gaussian` one)
    + kl_weight * KL(q(z|x) || N(0, I)), per sample.

    Keras reports `loss`, `reconstruction_loss` and `kl_loss` (and `val_` versions). Training draws
    z = mean + exp(log_var / 2) * eps; validation uses z = mean, so `val_loss` is deterministic
    and equals the run's `test_elbo` on the validation images when kl_weight is 1.
    Calling it gives the deterministic reconstruction, like a plain autoencoder.
    """

    def __init__(self, autoencoder: keras.Model, moments: keras.Model, kl_weight: float = 1.0,
                 seed: int | None = None, decoder_likelihood: str = "bernoulli", **kwargs):
        super().__init__(name="vae_trainer", **kwargs)
        if decoder_likelihood not in LIKELIHOODS:
            raise ValueError(f"decoder_likelihood {decoder_likelihood!r}; expected one of {LIKELIHOODS}")
        self.decoder_likelihood = decoder_likelihood
        self.autoencoder = autoencoder
        self.moments = moments  # image -> [z_mean, z_log_var], sharing the encoder's layers
        self.kl_weight = float(kl_weight)
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.built = True  # its parts are built Functional models

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def call(self, inputs, training=False):
        return self.autoencoder(inputs, training=training)

    def _loss_terms(self, data, sample: bool):
        x, y = data[0], data[1]
        mean, log_var = self.moments(x, training=sample)
        z = mean
        if sample:
            z = mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.noise_seed)
        decoded = self.autoencoder.get_layer("decoder")(z, training=sample)
        if self.decoder_likelihood == "gaussian":
            per_value = 0.5 * ops.square(y - decoded) + _HALF_LOG_2PI
        else:
            p = ops.clip(decoded, _EPSILON, 1.0 - _EPSILON)
            per_value = -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))
        reconstruction = ops.mean(ops.sum(per_value, axis=-1))
        kl = ops.mean(-0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1))
        return reconstruction, kl

    def _report(self, data, reconstruction, kl, loss):
        # Weighted by the batch's size, so an epoch's figure is the mean per image even when the
        # last batch is smaller (val_loss then equals test_elbo on the same images).
        images = ops.cast(ops.shape(data[0])[0], "float32")
        self.loss_tracker.update_state(loss, sample_weight=images)
        self.reconstruction_tracker.update_state(reconstruction, sample_weight=images)
        self.kl_tracker.update_state(kl, sample_weight=images)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            reconstruction, kl = self._loss_terms(data, sample=True)
            loss = reconstruction + self.kl_weight * kl
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self._report(data, reconstruction, kl, loss)

    def test_step(self, data):
        reconstruction, kl = self._loss_terms(data, sample=False)
        return self._report(data, reconstruction, kl, reconstruction + self.kl_weight * kl)


def build_vae(code_size: int, kl_weight: float = 1.0, seed: int | None = None, *,
              spec: SampleSpec = MNIST_SPEC) -> VariationalAutoencoder:
    """The training wrapper around a plain `autoencoder` made of `encoder` (mean) and `decoder`."""
    image = keras.Input(shape=(spec.size,), name=input_name(spec))
    hidden = keras.layers.Dense(HIDDEN_UNITS, activation="relu", name="encoder_hidden")(image)
    z_mean = keras.layers.Dense(code_size, name="z_mean")(hidden)
    z_log_var = keras.layers.Dense(code_size, name="z_log_var")(hidden)
    encoder = keras.Model(image, z_mean, name="encoder")
    moments = keras.Model(image, [z_mean, z_log_var], name="moments")

    code = keras.Input(shape=(code_size,), name="code")
    decoded = keras.layers.Dense(HIDDEN_UNITS, activation="relu", name="decoder_hidden")(code)
    decoded = keras.layers.Dense(spec.size, activation=output_activation(spec), name="reconstruction")(decoded)
    decoder = keras.Model(code, decoded, name="decoder")

    autoencoder_input = keras.Input(shape=(spec.size,), name=input_name(spec))
    autoencoder = keras.Model(autoencoder_input, decoder(encoder(autoencoder_input)), name="autoencoder")
    return VariationalAutoencoder(autoencoder, moments, kl_weight, seed, decoder_likelihood=likelihood(spec))
