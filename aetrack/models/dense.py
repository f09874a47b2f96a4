"""The tutorial's dense autoencoder (784 -> code_size -> 784), kept exactly as the tutorial builds it
so that it reproduces the tutorial's loss table (benchmarks/fidelity.py)."""

from __future__ import annotations

import keras

from aetrack.data import IMAGE_PIXELS


def build_dense_autoencoder(code_size: int, input_dim: int = IMAGE_PIXELS) -> keras.Model:
    """The tutorial's model: Dense input_dim -> code_size (relu) -> input_dim (sigmoid).

    For 784-64-784 this has 101,200 parameters, as the tutorial prints.
    """
    encoder_input = keras.Input(shape=(input_dim,), name="image")
    code = keras.layers.Dense(code_size, activation="relu", name="code")(encoder_input)
    encoder = keras.Model(encoder_input, code, name="encoder")

    decoder_input = keras.Input(shape=(code_size,), name="code")
    reconstruction = keras.layers.Dense(input_dim, activation="sigmoid", name="reconstruction")(decoder_input)
    decoder = keras.Model(decoder_input, reconstruction, name="decoder")

    autoencoder_input = keras.Input(shape=(input_dim,), name="image")
    autoencoder = keras.Model(autoencoder_input, decoder(encoder(autoencoder_input)), name="autoencoder")
    return autoencoder
