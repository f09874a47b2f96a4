"""Keras model builders: Functional autoencoders made of named `encoder` and `decoder` sub-models,
so each part can be saved, logged and registered on its own."""

from __future__ import annotations

import keras

from aetrack.data import IMAGE_PIXELS
from aetrack.errors import ModelError

LOSS_FUNCTIONS = {"bce": "binary_crossentropy", "mse": "mean_squared_error"}


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


def compile_autoencoder(
    model: keras.Model, learning_rate: float, loss: str, steps_per_execution: int = 1
) -> keras.Model:
    """Compile with Adam and the chosen loss (bce or mse)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=LOSS_FUNCTIONS[loss],
        steps_per_execution=steps_per_execution,
    )
    return model


def encoder_of(model: keras.Model) -> keras.Model:
    """The autoencoder's named `encoder` sub-model (images -> codes)."""
    return model.get_layer("encoder")


def decoder_of(model: keras.Model) -> keras.Model:
    """The autoencoder's named `decoder` sub-model (codes -> images)."""
    return model.get_layer("decoder")


def copy_weights(source: keras.Model, target: keras.Model, source_name: str) -> None:
    """Start `target` from `source`'s weights; raise ModelError if their architectures differ."""
    source_shapes = [tuple(w.shape) for w in source.get_weights()]
    target_shapes = [tuple(w.shape) for w in target.get_weights()]
    if source_shapes != target_shapes:
        raise ModelError(
            "init_model", source_name, f"its weights have shapes {source_shapes}",
            f"{target_shapes} (a 784-in autoencoder with the same code_size)",
        )
    target.set_weights(source.get_weights())
