"""The tutorial's dense autoencoder (size -> code_size -> size), kept exactly as the tutorial builds
it for MNIST (784-64-784) so that it reproduces the tutorial's loss table (benchmarks/fidelity.py)
and registered models keep loading; any other sample is flattened to its `spec.size` values."""

from __future__ import annotations

import keras

from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.models.spec_checks import input_name, output_activation


def build_dense_autoencoder(code_size: int, input_dim: int | None = None, *,
                            spec: SampleSpec = MNIST_SPEC) -> keras.Model:
    """The tutorial's model: Dense size -> code_size (relu) -> size (sigmoid, or linear when the
    values are unbounded). `input_dim` (older callers) overrides `spec.size`.

    For 784-64-784 this has 101,200 parameters, as the tutorial prints.
    """
    size = spec.size if input_dim is None else input_dim
    name = input_name(spec)
    encoder_input = keras.Input(shape=(size,), name=name)
    code = keras.layers.Dense(code_size, activation="relu", name="code")(encoder_input)
    encoder = keras.Model(encoder_input, code, name="encoder")

    decoder_input = keras.Input(shape=(code_size,), name="code")
    reconstruction = keras.layers.Dense(size, activation=output_activation(spec), name="reconstruction")(decoder_input)
    decoder = keras.Model(decoder_input, reconstruction, name="decoder")

    autoencoder_input = keras.Input(shape=(size,), name=name)
    autoencoder = keras.Model(autoencoder_input, decoder(encoder(autoencoder_input)), name="autoencoder")
    return autoencoder
