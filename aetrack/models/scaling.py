"""A table model's standardisation as part of the saved model, so a logged or registered model
takes and gives RAW table rows while training stays in the standardised space:

- autoencoder: raw -> standardise -> encoder -> decoder -> unstandardise -> raw,
- encoder: raw -> standardise -> encoder -> code,
- decoder: code -> decoder -> unstandardise -> raw.

The scaling is Keras' own `Normalization` layer with fixed mean and variance (stored in the layer's
config, nothing trainable), so the wrapped model loads in safe mode and serves without aetrack.
Images (and unscaled tables) are returned unchanged.
"""

from __future__ import annotations

import keras
import numpy as np

from aetrack.data.spec import SampleSpec
from aetrack.models.spec_checks import input_name

PARTS = ("autoencoder", "encoder", "decoder")
STANDARDISE = "standardise"
UNSTANDARDISE = "unstandardise"


def normalization(spec: SampleSpec, invert: bool) -> keras.layers.Layer:
    """Keras Normalization with the spec's fixed mean and variance: standardise, or undo it (`invert`)."""
    std = np.asarray(spec.feature_std, dtype=np.float64)
    return keras.layers.Normalization(
        axis=-1, mean=np.asarray(spec.feature_mean, dtype=np.float64).tolist(), variance=(std * std).tolist(),
        invert=invert, name=UNSTANDARDISE if invert else STANDARDISE,
    )


def with_raw_io(part_name: str, part_model: keras.Model, spec: SampleSpec) -> keras.Model:
    """`part_model` (one of PARTS, trained on standardised rows) wrapped to take and give raw rows.

    The result keeps the part's name; a wrapped autoencoder is made of the wrapped `encoder` and
    `decoder`, so its named parts take and give raw rows too. Identity when `spec` is not scaled.
    """
    if part_name not in PARTS:
        raise ValueError(f"part {part_name!r}; expected one of {PARTS}")
    if not spec.scaled:
        return part_model
    if part_name == "encoder":
        raw = keras.Input(shape=(spec.size,), name=input_name(spec))
        return keras.Model(raw, part_model(normalization(spec, invert=False)(raw)), name="encoder")
    if part_name == "decoder":
        code = keras.Input(shape=(int(part_model.inputs[0].shape[-1]),), name="code")
        return keras.Model(code, normalization(spec, invert=True)(part_model(code)), name="decoder")
    encoder = with_raw_io("encoder", part_model.get_layer("encoder"), spec)
    decoder = with_raw_io("decoder", part_model.get_layer("decoder"), spec)
    raw = keras.Input(shape=(spec.size,), name=input_name(spec))
    return keras.Model(raw, decoder(encoder(raw)), name="autoencoder")

