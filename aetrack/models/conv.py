"""A convolutional autoencoder in the style of the keras-io convolutional denoising example:
two Conv2D(32, 3x3) + 2x2 max-pooling blocks down to 7x7x32, a Dense `code_size` code, and back up
through Dense(7*7*32), two stride-2 Conv2DTranspose(32, 3x3) and a sigmoid Conv2D(1, 3x3).

Same outside contract as the dense model: float32 (-1, 784) images in and out (the reshapes to and
from 28x28x1 are layers inside), named `encoder` and `decoder` sub-models of plain Keras layers.
"""

from __future__ import annotations

import keras

from aetrack.data import IMAGE_PIXELS, IMAGE_SIDE

FILTERS = 32
POOLED_SIDE = IMAGE_SIDE // 4  # two 2x2 poolings: 28 -> 14 -> 7


def build_conv_encoder(code_size: int) -> keras.Model:
    image = keras.Input(shape=(IMAGE_PIXELS,), name="image")
    x = keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1), name="to_28x28x1")(image)
    x = keras.layers.Conv2D(FILTERS, 3, activation="relu", padding="same", name="conv_1")(x)
    x = keras.layers.MaxPooling2D(2, padding="same", name="pool_1")(x)
    x = keras.layers.Conv2D(FILTERS, 3, activation="relu", padding="same", name="conv_2")(x)
    x = keras.layers.MaxPooling2D(2, padding="same", name="pool_2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    code = keras.layers.Dense(code_size, activation="relu", name="code")(x)
    return keras.Model(image, code, name="encoder")


def build_conv_decoder(code_size: int) -> keras.Model:
    code = keras.Input(shape=(code_size,), name="code")
    x = keras.layers.Dense(POOLED_SIDE * POOLED_SIDE * FILTERS, activation="relu", name="expand")(code)
    x = keras.layers.Reshape((POOLED_SIDE, POOLED_SIDE, FILTERS), name="to_7x7")(x)
    x = keras.layers.Conv2DTranspose(FILTERS, 3, strides=2, activation="relu", padding="same", name="deconv_1")(x)
    x = keras.layers.Conv2DTranspose(FILTERS, 3, strides=2, activation="relu", padding="same", name="deconv_2")(x)
    x = keras.layers.Conv2D(1, 3, activation="sigmoid", padding="same", name="to_image")(x)
    image = keras.layers.Reshape((IMAGE_PIXELS,), name="reconstruction")(x)
    return keras.Model(code, image, name="decoder")


def build_conv_autoencoder(code_size: int) -> keras.Model:
    encoder, decoder = build_conv_encoder(code_size), build_conv_decoder(code_size)
    image = keras.Input(shape=(IMAGE_PIXELS,), name="image")
    return keras.Model(image, decoder(encoder(image)), name="autoencoder")
