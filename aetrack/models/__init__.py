"""Keras model builders, one module per architecture: `dense` (the tutorial's), `conv` and `vae`.

Every architecture keeps one outside contract, whatever the sample (`SampleSpec`): Functional
models made of named `encoder` and `decoder` sub-models, float32 (-1, spec.size) flat rows in
(images in [0, 1], tables standardised), rows or codes out (reshapes to HxWxC happen inside), so
each part can be saved, logged, registered and served on its own; MNIST's is (-1, 784).
`build_autoencoder` returns what is trained: the Functional autoencoder itself, or for `vae` a
training wrapper whose `autoencoder_of` is that Functional autoencoder. `with_raw_io` wraps a
trained table part so the logged model takes raw rows.
"""

from __future__ import annotations

from typing import Any

# Re-exported lazily: `aetrack.models.loading` is imported by the CLI to check a model argument,
# and must not load TensorFlow on the way.
_BUILDERS = ("ARCHITECTURES", "LOSS_FUNCTIONS", "VariationalAutoencoder", "architecture_of", "autoencoder_of", "build_autoencoder", "build_conv_autoencoder", "build_dense_autoencoder", "build_vae", "compile_autoencoder", "copy_weights", "decoder_of", "encoder_of", "latent_moments")
_SCALING = ("with_raw_io",)
# Standard library only: safe to import before TensorFlow.
_SPEC_CHECKS = ("check_architecture_for", "check_loss_for")

__all__ = [*_BUILDERS, *_SCALING, *_SPEC_CHECKS]


def __getattr__(name: str) -> Any:
    if name in _BUILDERS:
        from aetrack.models import builders

        return getattr(builders, name)
    if name in _SCALING:
        from aetrack.models import scaling

        return scaling.with_raw_io
    if name in _SPEC_CHECKS:
        from aetrack.models import spec_checks

        return getattr(spec_checks, name)
    raise AttributeError(f"module 'aetrack.models' has no attribute {name!r}")
