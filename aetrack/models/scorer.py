"""The `scorer`: samples in, one anomaly score per sample out, shape (-1, 1) float32 (a column, as
every logged part answers rows: the pyfunc and `mlflow models serve` handle it like the others).

- dense, conv: the per-sample mean squared error between a sample and its reconstruction, in the
  model's space (score "mse"); equal to `evaluation.per_image_mse` of the autoencoder.
- vae: the per-sample negative ELBO in nats (score "elbo"): the reconstruction term of the
  deterministic reconstruction (z = code mean), summed over the values, plus KL(q(z|x) || N(0, I)),
  so an unlikely code counts too. A Bernoulli decoder's bce is computed from its logits
  (softplus(l) - y * l, no clipping), a Gaussian one's as 0.5 * (y - mean)^2 + 0.5 * log(2 pi).

Plain Keras layers only (the trained parts, Normalization, Subtract, Multiply, Concatenate,
Activation and Dense layers holding fixed sums), so it loads in safe mode and serves with `mlflow
models serve` without aetrack. For standardised tables it takes RAW rows (models.scaling's
Normalization in front), like the other logged parts.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.models.builders import autoencoder_of, latent_moments
from aetrack.models.scaling import normalization
from aetrack.models.spec_checks import input_name, likelihood
from aetrack.names import SCORER

MSE = "mse"
ELBO = "elbo"


def score_kind(trained_model: keras.Model) -> str:
    """"elbo" for a vae (it has q(z|x) moments), else "mse": what the scorer's score is."""
    return ELBO if latent_moments(trained_model) is not None else MSE


def build_scorer(trained_model: keras.Model, spec: SampleSpec = MNIST_SPEC) -> keras.Model:
    """The scorer of `trained_model` (what `build_autoencoder` returned, after fitting), named
    `scorer`: (-1, spec.size) samples (raw rows for scaled tables) -> (-1, 1) scores."""
    core = scorer_in_model_space(trained_model, spec)
    if not spec.scaled:
        return core
    raw = keras.Input(shape=(spec.size,), name=input_name(spec))
    return keras.Model(raw, core(normalization(spec, invert=False)(raw)), name=SCORER)


def scorer_in_model_space(trained_model: keras.Model, spec: SampleSpec = MNIST_SPEC) -> keras.Model:
    """The scorer on samples already in the model's space (standardised tables): what the
    threshold is computed with on the training split."""
    samples = keras.Input(shape=(spec.size,), name=input_name(spec))
    if score_kind(trained_model) == ELBO:
        per_sample = _negative_elbo(trained_model, samples, spec)
    else:
        difference = keras.layers.Subtract(name="difference")([samples, autoencoder_of(trained_model)(samples)])
        squared = keras.layers.Multiply(name="squared")([difference, difference])
        per_sample = _fixed_sum(squared, np.full(spec.size, 1.0 / spec.size), 0.0, "mean_squared_error")
    return keras.Model(samples, per_sample, name=SCORER if not spec.scaled else "scorer_model_space")


def _fixed_sum(values, weights: np.ndarray, bias: float, name: str):
    """sum(weights * values) + bias per sample, as a frozen Dense layer (no custom code to load)."""
    layer = keras.layers.Dense(1, use_bias=True, trainable=False, name=name)
    out = layer(values)
    layer.set_weights([np.asarray(weights, dtype=np.float32).reshape(-1, 1), np.asarray([bias], dtype=np.float32)])
    return out


def _negative_elbo(trained_model: keras.Model, samples, spec: SampleSpec):
    mean, log_var = latent_moments(trained_model)(samples)
    code_size = int(mean.shape[-1])
    decoder = autoencoder_of(trained_model).get_layer("decoder")
    if likelihood(spec) == "bernoulli":
        last = decoder.layers[-1]  # Dense(size, sigmoid), models/vae.py
        # The decoder up to its last layer, then that layer without the sigmoid: logits.
        logits_layer = keras.layers.Dense(spec.size, name="reconstruction_logits")
        hidden = mean
        for layer in decoder.layers[1:-1]:
            hidden = layer(hidden)
        logits = logits_layer(hidden)
        logits_layer.set_weights(last.get_weights())
        # bce(y, sigmoid(l)) = softplus(l) - y * l, per value.
        terms = [keras.layers.Activation("softplus", name="softplus_logits")(logits),
                 keras.layers.Multiply(name="target_times_logits")([samples, logits])]
        weights = [np.ones(spec.size), -np.ones(spec.size)]
        bias = 0.0
    else:
        difference = keras.layers.Subtract(name="difference")([samples, decoder(mean)])
        terms = [keras.layers.Multiply(name="squared")([difference, difference])]
        weights = [np.full(spec.size, 0.5)]
        bias = spec.size * 0.5 * math.log(2.0 * math.pi)
    # KL = -0.5 * sum(1 + log_var - mean^2 - exp(log_var)).
    terms += [log_var, keras.layers.Multiply(name="mean_squared")([mean, mean]),
              keras.layers.Activation("exponential", name="variance")(log_var)]
    weights += [np.full(code_size, -0.5), np.full(code_size, 0.5), np.full(code_size, 0.5)]
    bias += -0.5 * code_size
    joined = keras.layers.Concatenate(name="elbo_terms")(terms)
    return _fixed_sum(joined, np.concatenate(weights), bias, "negative_elbo")


def scores_of(scorer: keras.Model, samples: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The scorer's scores of `samples` as float64 (n,), batch by batch (no Keras progress bar)."""
    out = [np.asarray(scorer(samples[i:i + batch_size], training=False)).reshape(-1)
           for i in range(0, len(samples), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
