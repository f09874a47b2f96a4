"""A convolutional encoder and decoder of your own for 64x64 RGB images, trained and tracked by
aetrack: `mlflow run examples/custom_conv -P data=photos/` (or `aetrack train basic --architecture
models:conv_autoencoder ...` from this directory).

aetrack calls `conv_autoencoder(sample_shape, code_size)` with the data's sample shape, here
(64, 64, 3), and the run's code_size; the encoder takes images of that shape, the decoder gives
them back. aetrack adds the flat (-1, 12288) input and output around them, so the registered models
serve like the built-in ones. Plain Keras layers only: the logged models load anywhere without this
file (Keras safe mode stays on, so no Lambda layers).
"""

from __future__ import annotations

import keras

FILTERS = (16, 32)  # two stride-2 blocks: 64x64 -> 32x32 -> 16x16


def conv_autoencoder(sample_shape: tuple[int, ...], code_size: int) -> tuple[keras.Model, keras.Model]:
    """(encoder, decoder): images (H, W, C) -> code (code_size,) -> images (H, W, C), sigmoid output
    for pixel values in [0, 1]."""
    height, width, channels = sample_shape
    if height % 4 or width % 4:
        raise ValueError(f"image sides must be multiples of 4 (got {height}x{width}); use --image-size 64x64")

    image = keras.Input(shape=sample_shape, name="image")
    x = image
    for i, filters in enumerate(FILTERS, start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    code = keras.layers.Dense(code_size, activation="relu", name="code")(x)
    encoder = keras.Model(image, code, name="conv_encoder")

    rows, columns = height // 4, width // 4
    code_in = keras.Input(shape=(code_size,), name="code")
    y = keras.layers.Dense(rows * columns * FILTERS[-1], activation="relu", name="expand")(code_in)
    y = keras.layers.Reshape((rows, columns, FILTERS[-1]), name="grid")(y)
    y = keras.layers.Conv2DTranspose(FILTERS[0], 3, strides=2, padding="same", activation="relu", name="deconv_1")(y)
    y = keras.layers.Conv2DTranspose(channels, 3, strides=2, padding="same", activation="sigmoid", name="deconv_2")(y)
    decoder = keras.Model(code_in, y, name="conv_decoder")
    return encoder, decoder
