"""Whether a loaded model fits the command it is used for: an encoder (or autoencoder) for codes,
a decoder for samples, an image-to-image model for reconstruct, denoise and score. Each refusal is
one ModelError naming the model and what fits.
"""

from __future__ import annotations

from aetrack.data import IMAGE_PIXELS
from aetrack.errors import ModelError


def encoder_for_codes(model, uri: str):
    """The model that maps images to codes: an encoder as given, or a full autoencoder's encoder."""
    from aetrack.models import encoder_of

    names = [layer.name for layer in model.layers]
    if "encoder" in names and _output_size(model) == IMAGE_PIXELS:
        return encoder_of(model)
    _check_input(model, uri)
    if _output_size(model) == IMAGE_PIXELS:
        raise ModelError("--model", uri, "it outputs images (784 values), not codes",
                         "an encoder (models:/<prefix>-encoder/...) or an autoencoder")
    return model


def check_decoder(model, uri: str) -> int:
    """Raise unless `model` maps codes to 784-pixel images (a decoder); return its code size."""
    size = model.inputs[0].shape[-1] if model.inputs else None
    if size is None or size == IMAGE_PIXELS or _output_size(model) != IMAGE_PIXELS:
        raise ModelError("--model", uri, f"it maps {size} values to {_output_size(model)}",
                         "a decoder (models:/<prefix>-decoder/...) mapping codes to 784-pixel images")
    return int(size)


def check_image_model(model, uri: str) -> None:
    """Raise unless `model` maps 784 pixels to 784 pixels (an autoencoder or denoiser)."""
    _check_input(model, uri)
    if _output_size(model) != IMAGE_PIXELS:
        raise ModelError("--model", uri, f"it outputs {_output_size(model)} values per image",
                         "an autoencoder (models:/<prefix>-autoencoder/...) giving 784")


def _check_input(model, uri: str) -> None:
    size = model.inputs[0].shape[-1] if model.inputs else None
    if size != IMAGE_PIXELS:
        raise ModelError("--model", uri, f"it takes {size} values per input",
                         "a model taking 784-pixel images (not a decoder)")


def _output_size(model) -> int | None:
    return model.outputs[0].shape[-1] if model.outputs else None
