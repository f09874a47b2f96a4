"""Architecture -> builder (the built-in dense, conv and vae, or the user's own encoder and decoder,
models/custom.py), compiling, the parts of a trained model (autoencoder, encoder, decoder) and the
init_model weight check."""

from __future__ import annotations

import keras

from aetrack.config import ARCHITECTURE_TEXT, ARCHITECTURES, CUSTOM_OBJECTS, is_custom_architecture
from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.errors import ModelError
from aetrack.models.conv import build_conv_autoencoder
from aetrack.models.custom import autoencoder_from_parts, build_custom_autoencoder
from aetrack.models.dense import build_dense_autoencoder
from aetrack.models.vae import VariationalAutoencoder, build_vae

LOSS_FUNCTIONS = {"bce": "binary_crossentropy", "mse": "mean_squared_error"}


def build_autoencoder(architecture: str, code_size: int, kl_weight: float = 1.0,
                      seed: int | None = None, *, spec: SampleSpec = MNIST_SPEC,
                      parts: tuple[keras.Model, keras.Model] | None = None) -> keras.Model:
    """The model to train for `architecture` (one of ARCHITECTURES, or package.module:function, the
    user's own, models/custom.py) on `spec`'s samples: float32 (-1, spec.size) in and out. `parts`
    (the user's encoder and decoder objects) wraps those instead. A conv for a table raises
    ConfigError (conv needs images); a bad custom architecture raises ModelError."""
    if parts is not None:
        return autoencoder_from_parts(parts[0], parts[1], spec, code_size)
    if is_custom_architecture(architecture):
        return build_custom_autoencoder(architecture, code_size, spec)
    if architecture == CUSTOM_OBJECTS:
        raise ModelError("architecture", architecture, "it names encoder and decoder objects given to "
                         "aetrack.train in Python, which nothing here can rebuild", ARCHITECTURE_TEXT)
    if architecture == "dense":
        return build_dense_autoencoder(code_size, spec=spec)
    if architecture == "conv":
        return build_conv_autoencoder(code_size, spec=spec)
    if architecture == "vae":
        return build_vae(code_size, kl_weight, seed, spec=spec)
    raise ValueError(f"invalid architecture {architecture!r}: expected {ARCHITECTURE_TEXT}")


def compile_autoencoder(
    model: keras.Model, learning_rate: float, loss: str, steps_per_execution: int = 1
) -> keras.Model:
    """Compile with Adam and the chosen loss (bce or mse); a vae brings its own loss (the ELBO)."""
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if isinstance(model, VariationalAutoencoder):
        model.compile(optimizer=optimizer, steps_per_execution=steps_per_execution)
    else:
        model.compile(optimizer=optimizer, loss=LOSS_FUNCTIONS[loss], steps_per_execution=steps_per_execution)
    return model


def autoencoder_of(model: keras.Model) -> keras.Model:
    """The plain Functional autoencoder (samples -> samples) of a trained model: what gets logged."""
    return model.autoencoder if isinstance(model, VariationalAutoencoder) else model


def encoder_of(model: keras.Model) -> keras.Model:
    """The autoencoder's named `encoder` sub-model (samples -> codes; the mean for vae)."""
    return autoencoder_of(model).get_layer("encoder")


def decoder_of(model: keras.Model) -> keras.Model:
    """The autoencoder's named `decoder` sub-model (codes -> samples)."""
    return autoencoder_of(model).get_layer("decoder")


def latent_moments(model: keras.Model) -> keras.Model | None:
    """samples -> [mean, log-variance] of a vae being trained; None for other architectures."""
    return model.moments if isinstance(model, VariationalAutoencoder) else None


def _weight_shapes(model: keras.Model) -> list[tuple[int, ...]]:
    return [tuple(w.shape) for w in autoencoder_of(model).get_weights()]


def architecture_of(model: keras.Model, code_size: int, *, spec: SampleSpec = MNIST_SPEC) -> str | None:
    """Which architecture (with this code_size, for `spec`'s samples) `model`'s weights fit, or None."""
    shapes = _weight_shapes(model)
    for architecture in ARCHITECTURES:
        if architecture == "conv" and not spec.is_image:
            continue  # conv models only images
        if shapes == _weight_shapes(build_autoencoder(architecture, code_size, spec=spec)):
            return architecture
    return None


def copy_weights(source: keras.Model, target: keras.Model, source_name: str, architecture: str = "dense",
                 code_size: int | None = None, *, spec: SampleSpec = MNIST_SPEC) -> None:
    """Start `target` from `source`'s autoencoder weights; raise ModelError if they do not fit.

    For a vae target only the logged autoencoder's weights are copied (encoder mean path and
    decoder); the log-variance head, which is not part of a logged model, starts fresh.
    """
    source_shapes, target_shapes = _weight_shapes(source), _weight_shapes(target)
    if source_shapes != target_shapes:
        found = architecture_of(source, code_size, spec=spec) if code_size else None
        if found is not None and found != architecture:
            raise ModelError("init_model", source_name, f"it is a {found} autoencoder, this run's architecture is "
                             f"{architecture}", f"an init_model of the same architecture (one of "
                             f"{', '.join(ARCHITECTURES)}), or architecture={found}")
        raise ModelError(
            "init_model", source_name, f"its weights have shapes {source_shapes}",
            f"{target_shapes} (a {architecture} autoencoder for {spec.describe()} samples with the same code_size)",
        )
    autoencoder_of(target).set_weights(autoencoder_of(source).get_weights())
