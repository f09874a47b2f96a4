"""A convolutional autoencoder in the style of the keras-io convolutional denoising example:
two Conv2D(32, 3x3) + 2x2 max-pooling blocks (28x28 -> 7x7x32 for MNIST), a Dense `code_size`
code, and back up through Dense, two stride-2 Conv2DTranspose(32, 3x3) and a sigmoid Conv2D with
the image's channels.

Same outside contract as the dense model: float32 (-1, spec.size) images in and out (the reshapes
to and from HxWxC are layers inside), named `encoder` and `decoder` sub-models of plain Keras
layers. Images whose sides are not multiples of 4 are zero-padded up to one (ZeroPadding2D) and
cropped back at the end (Cropping2D), so the two poolings and upsamplings meet exactly; MNIST
(28x28) needs neither and its model is unchanged.
"""

from __future__ import annotations

import keras

from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.models.spec_checks import check_architecture_for, input_name, output_activation

FILTERS = 32
POOLING = 4  # two 2x2 poolings


def _padding(side: int) -> tuple[int, int]:
    """(before, after) zeros that bring `side` up to a multiple of POOLING."""
    extra = -side % POOLING
    return extra // 2, extra - extra // 2


def _pooled(spec: SampleSpec) -> tuple[int, int]:
    return (spec.height + sum(_padding(spec.height))) // POOLING, (spec.width + sum(_padding(spec.width))) // POOLING


def _cropping(spec: SampleSpec) -> tuple[tuple[int, int], tuple[int, int]]:
    return _padding(spec.height), _padding(spec.width)


def build_conv_encoder(code_size: int, spec: SampleSpec = MNIST_SPEC) -> keras.Model:
    check_architecture_for(spec, "conv")
    image = keras.Input(shape=(spec.size,), name=input_name(spec))
    x = keras.layers.Reshape(spec.shape, name=f"to_{spec.shape_text()}")(image)
    if any(sum(side) for side in _cropping(spec)):
        x = keras.layers.ZeroPadding2D(_cropping(spec), name="pad")(x)
    x = keras.layers.Conv2D(FILTERS, 3, activation="relu", padding="same", name="conv_1")(x)
    x = keras.layers.MaxPooling2D(2, padding="same", name="pool_1")(x)
    x = keras.layers.Conv2D(FILTERS, 3, activation="relu", padding="same", name="conv_2")(x)
    x = keras.layers.MaxPooling2D(2, padding="same", name="pool_2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    code = keras.layers.Dense(code_size, activation="relu", name="code")(x)
    return keras.Model(image, code, name="encoder")


def build_conv_decoder(code_size: int, spec: SampleSpec = MNIST_SPEC) -> keras.Model:
    check_architecture_for(spec, "conv")
    rows, columns = _pooled(spec)
    code = keras.Input(shape=(code_size,), name="code")
    x = keras.layers.Dense(rows * columns * FILTERS, activation="relu", name="expand")(code)
    x = keras.layers.Reshape((rows, columns, FILTERS), name=f"to_{rows}x{columns}")(x)
    x = keras.layers.Conv2DTranspose(FILTERS, 3, strides=2, activation="relu", padding="same", name="deconv_1")(x)
    x = keras.layers.Conv2DTranspose(FILTERS, 3, strides=2, activation="relu", padding="same", name="deconv_2")(x)
    x = keras.layers.Conv2D(spec.channels, 3, activation=output_activation(spec), padding="same", name="to_image")(x)
    if any(sum(side) for side in _cropping(spec)):
        x = keras.layers.Cropping2D(_cropping(spec), name="crop")(x)
    image = keras.layers.Reshape((spec.size,), name="reconstruction")(x)
    return keras.Model(code, image, name="decoder")


def build_conv_autoencoder(code_size: int, *, spec: SampleSpec = MNIST_SPEC) -> keras.Model:
    encoder, decoder = build_conv_encoder(code_size, spec), build_conv_decoder(code_size, spec)
    image = keras.Input(shape=(spec.size,), name=input_name(spec))
    return keras.Model(image, decoder(encoder(image)), name="autoencoder")
