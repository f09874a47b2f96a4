"""Whether a loaded model fits the command it is used for, by its widths against the samples'
(`spec.size`): an encoder (or autoencoder) for codes, a decoder for samples, a sample-to-sample
model for reconstruct, denoise and score. Each refusal is one ModelError naming the model (as `model`) and what fits.
"""

from __future__ import annotations

from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.errors import ModelError

MODEL = "model"  # the argument a ModelError here names; the CLI spells it `--model`


def _what(spec: SampleSpec) -> str:
    return f"{spec.describe()}s ({spec.size} values)" if spec.is_image else f"{spec.describe()} rows"


def encoder_for_codes(model, uri: str, spec: SampleSpec = MNIST_SPEC):
    """The model that maps samples to codes: an encoder as given, or a full autoencoder's encoder."""
    from aetrack.models import encoder_of

    names = [layer.name for layer in model.layers]
    if "encoder" in names and _output_size(model) == spec.size:
        return encoder_of(model)
    _check_input(model, uri, spec)
    if _output_size(model) == spec.size:
        raise ModelError(MODEL, uri, f"it outputs samples ({spec.size} values), not codes",
                         "an encoder (models:/<prefix>-encoder/...) or an autoencoder")
    return model


def check_decoder(model, uri: str, spec: SampleSpec = MNIST_SPEC) -> int:
    """Raise unless `model` maps codes to samples of `spec` (a decoder); return its code size."""
    size = model.inputs[0].shape[-1] if model.inputs else None
    if size is None or size == spec.size or _output_size(model) != spec.size:
        raise ModelError(MODEL, uri, f"it maps {size} values to {_output_size(model)}",
                         f"a decoder (models:/<prefix>-decoder/...) mapping codes to {_what(spec)}")
    return int(size)


def check_sample_model(model, uri: str, spec: SampleSpec = MNIST_SPEC) -> None:
    """Raise unless `model` maps samples of `spec` to samples of `spec` (an autoencoder or denoiser)."""
    _check_input(model, uri, spec)
    if _output_size(model) != spec.size:
        raise ModelError(MODEL, uri, f"it outputs {_output_size(model)} values per sample",
                         f"an autoencoder (models:/<prefix>-autoencoder/...) giving {spec.size}")


check_image_model = check_sample_model  # the name before specs existed


def check_input_width(model, uri: str, spec: SampleSpec = MNIST_SPEC) -> None:
    """Raise unless `model` takes samples of `spec` (an encoder, autoencoder or scorer)."""
    _check_input(model, uri, spec)


def _check_input(model, uri: str, spec: SampleSpec) -> None:
    size = model.inputs[0].shape[-1] if model.inputs else None
    if size != spec.size:
        raise ModelError(MODEL, uri, f"it takes {size} values per input",
                         f"a model taking {_what(spec)} (not a decoder)")


def _output_size(model) -> int | None:
    return model.outputs[0].shape[-1] if model.outputs else None
