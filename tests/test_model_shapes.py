"""Every architecture follows the sample (SampleSpec): small images of odd sizes and colour, and a
standardised table; the flat (-1, spec.size) contract, one epoch of fitting, MNIST's models
unchanged. In-process, tens of samples, tiny codes."""

import math

import numpy as np
import pytest

from aetrack.data.spec import MNIST_SPEC, TABLE, SampleSpec, image_spec
from aetrack.errors import ConfigError
from aetrack.models import (
    architecture_of, autoencoder_of, build_autoencoder, compile_autoencoder, decoder_of, encoder_of,
)
from aetrack.models.prior import as_samples, prior_draws

SMALL_GREY = image_spec(8, 8, 1)
ODD_COLOUR = image_spec(12, 10, 3)  # 10 is not a multiple of 4: conv pads to 12 and crops back
TABLE_5 = SampleSpec(TABLE, (5,), None, feature_names=("a", "b", "c", "d", "e"),
                     feature_mean=(1.0, -2.0, 0.0, 10.0, 3.0), feature_std=(1.0, 0.5, 2.0, 4.0, 1.5))
CASES = [(SMALL_GREY, "dense"), (SMALL_GREY, "conv"), (SMALL_GREY, "vae"), (ODD_COLOUR, "dense"),
         (ODD_COLOUR, "conv"), (ODD_COLOUR, "vae"), (TABLE_5, "dense"), (TABLE_5, "vae")]


def rows_for(spec: SampleSpec, n: int, seed: int = 0) -> np.ndarray:
    """Flat rows in the model's space: [0, 1] pixels, or standardised (unbounded) features."""
    rng = np.random.default_rng(seed)
    if spec.bounded:
        return rng.random((n, spec.size), dtype=np.float32)
    return rng.standard_normal((n, spec.size)).astype(np.float32)


@pytest.mark.parametrize(("spec", "architecture"), CASES, ids=[f"{s.shape_text()}-{a}" for s, a in CASES])
def test_each_architecture_fits_the_sample(spec, architecture):
    import keras

    keras.utils.set_random_seed(0)
    model = build_autoencoder(architecture, 3, seed=0, spec=spec)
    whole, encoder, decoder = autoencoder_of(model), encoder_of(model), decoder_of(model)
    assert tuple(whole.input_shape) == (None, spec.size) and tuple(whole.output_shape) == (None, spec.size)
    assert tuple(encoder.input_shape) == (None, spec.size) and tuple(encoder.output_shape) == (None, 3)
    assert tuple(decoder.input_shape) == (None, 3) and tuple(decoder.output_shape) == (None, spec.size)
    last = [layer for layer in decoder.layers if hasattr(layer, "activation")][-1]
    assert last.activation.__name__ == ("sigmoid" if spec.bounded else "linear")

    x = rows_for(spec, 24)
    compile_autoencoder(model, 0.01, "bce" if spec.bounded else "mse")
    history = model.fit(x, x, epochs=1, batch_size=8, verbose=0).history
    assert math.isfinite(history["loss"][0])
    out = whole(x[:4]).numpy()
    assert out.shape == (4, spec.size) and out.dtype == np.float32
    if spec.bounded:
        assert out.min() >= 0 and out.max() <= 1
    assert architecture_of(model, 3, spec=spec) == architecture
    # Prior draws decode into samples of the spec's shape (a vae's `samples`).
    decoded = decoder(prior_draws(2, 3, seed=0)).numpy()
    assert as_samples(decoded, spec).shape == (2, *spec.shape)


def test_mnist_models_are_unchanged():
    dense = build_autoencoder("dense", 64)
    assert dense.count_params() == 101_200
    assert build_autoencoder("dense", 64, spec=MNIST_SPEC).get_config() == dense.get_config()
    conv = build_autoencoder("conv", 64)
    assert conv.count_params() == 230_689
    names = [layer.name for layer in encoder_of(conv).layers + decoder_of(conv).layers]
    assert "pad" not in names and "crop" not in names and "to_28x28x1" in names and "to_7x7" in names
    assert autoencoder_of(build_autoencoder("vae", 64)).count_params() == 870_224


def test_conv_pads_odd_sides_to_the_pooling_multiple_and_crops_back():
    conv = build_autoencoder("conv", 3, spec=ODD_COLOUR)
    pad, crop = encoder_of(conv).get_layer("pad"), decoder_of(conv).get_layer("crop")
    assert pad.padding == ((0, 0), (1, 1)) and crop.cropping == ((0, 0), (1, 1))
    assert tuple(pad.output.shape) == (None, 12, 12, 3)
    assert tuple(decoder_of(conv).get_layer("to_image").output.shape) == (None, 12, 12, 3)
    assert tuple(crop.output.shape) == (None, 12, 10, 3)


def test_conv_refuses_a_table_in_one_line():
    with pytest.raises(ConfigError) as refused:
        build_autoencoder("conv", 3, spec=TABLE_5)
    assert str(refused.value) == ("invalid architecture 'conv': expected dense or vae for a 5-feature table "
                                  "(conv needs images)")


def test_table_vae_loss_is_the_gaussian_negative_elbo():
    vae = compile_autoencoder(build_autoencoder("vae", 2, seed=0, spec=TABLE_5), 0.001, "mse")
    x = rows_for(TABLE_5, 16, seed=1)
    logs = vae.evaluate(x, x, batch_size=16, verbose=0, return_dict=True)
    mean, log_var = (t.numpy() for t in vae.moments(x))
    decoded = vae(x).numpy()
    # Unit-variance Gaussian decoder, summed over the 5 features: nats per row, constant included.
    reconstruction = np.mean(np.sum(0.5 * (x - decoded) ** 2 + 0.5 * math.log(2 * math.pi), axis=1))
    kl = np.mean(-0.5 * np.sum(1 + log_var - mean ** 2 - np.exp(log_var), axis=1))
    assert logs["reconstruction_loss"] == pytest.approx(reconstruction, rel=1e-5)
    assert logs["loss"] == pytest.approx(reconstruction + kl, rel=1e-5)
