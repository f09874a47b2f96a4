"""Keras model builders, one module per architecture: `dense` (the tutorial's), `conv` and `vae`.

Every architecture keeps one outside contract: Functional models made of named `encoder` and
`decoder` sub-models, float32 (-1, 784) images in [0, 1] in, images or codes out (reshapes to
28x28x1 happen inside), so each part can be saved, logged, registered and served on its own.
`build_autoencoder` returns what is trained: the Functional autoencoder itself, or for `vae` a
training wrapper whose `autoencoder_of` is that Functional autoencoder.
"""

from __future__ import annotations

from typing import Any

# Re-exported lazily: `aetrack.models.loading` is imported by the CLI to check a model argument,
# and must not load TensorFlow on the way.
_BUILDERS = ("ARCHITECTURES", "LOSS_FUNCTIONS", "VariationalAutoencoder", "architecture_of", "autoencoder_of", "build_autoencoder", "build_conv_autoencoder", "build_dense_autoencoder", "build_vae", "compile_autoencoder", "copy_weights", "decoder_of", "encoder_of", "latent_moments")

__all__ = list(_BUILDERS)


def __getattr__(name: str) -> Any:
    if name in _BUILDERS:
        from aetrack.models import builders

        return getattr(builders, name)
    raise AttributeError(f"module 'aetrack.models' has no attribute {name!r}")
