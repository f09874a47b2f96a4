"""What fits a sample (`check_loss_for`), table models that take raw rows once logged
(`with_raw_io`, through a safe-mode .keras round trip), and loading: the init_model width check,
messages naming the sample. In-process."""

import numpy as np
import pytest

from aetrack.data.spec import MNIST_SPEC, TABLE, SampleSpec, image_spec
from aetrack.errors import ConfigError, ModelError
from aetrack.models import (
    autoencoder_of, build_autoencoder, check_loss_for, copy_weights, decoder_of, encoder_of, with_raw_io,
)
from aetrack.models.loading import load_init_model, load_model

TABLE_5 = SampleSpec(TABLE, (5,), None, feature_names=("a", "b", "c", "d", "e"),
                     feature_mean=(1.0, -2.0, 0.0, 10.0, 3.0), feature_std=(1.0, 0.5, 2.0, 4.0, 1.5))
MEAN, STD = np.array(TABLE_5.feature_mean), np.array(TABLE_5.feature_std)


def test_losses_and_architectures_that_fit_the_sample():
    for spec, loss, architecture in [(MNIST_SPEC, "bce", "dense"), (MNIST_SPEC, "mse", "conv"),
                                     (MNIST_SPEC, "bce", "vae"), (TABLE_5, "mse", "dense"), (TABLE_5, "mse", "vae")]:
        check_loss_for(spec, loss, architecture)  # allowed: no error
    refusals = {
        (TABLE_5, "bce", "dense"): "invalid loss 'bce': expected mse for a 5-feature table (its values are "
                                   "standardised, not in [0, 1], which bce needs)",
        (TABLE_5, "mse", "conv"): "invalid architecture 'conv': expected dense or vae for a 5-feature table "
                                  "(conv needs images)",
        (image_spec(8, 8), "mse", "vae"): "invalid loss 'mse': expected bce with architecture vae for a 8x8x1 "
                                          "image (its decoder is Bernoulli: the ELBO's reconstruction term is a "
                                          "summed bce)",
    }
    for (spec, loss, architecture), message in refusals.items():
        with pytest.raises(ConfigError) as refused:
            check_loss_for(spec, loss, architecture)
        assert str(refused.value) == message


@pytest.mark.parametrize("architecture", ["dense", "vae"])
def test_raw_io_parts_take_raw_rows_and_survive_a_safe_mode_round_trip(tmp_path, architecture):
    model = build_autoencoder(architecture, 2, seed=0, spec=TABLE_5)
    parts = {"autoencoder": autoencoder_of(model), "encoder": encoder_of(model), "decoder": decoder_of(model)}
    raw = np.random.default_rng(0).normal(MEAN, STD * 3, size=(6, 5)).astype(np.float32)
    scaled = ((raw - MEAN) / STD).astype(np.float32)
    codes = parts["encoder"](scaled).numpy()
    # What each logged part must give on raw rows, computed outside Keras.
    expected = {"autoencoder": parts["decoder"](codes).numpy() * STD + MEAN, "encoder": codes,
                "decoder": parts["decoder"](codes).numpy() * STD + MEAN}
    inputs = {"autoencoder": raw, "encoder": raw, "decoder": codes}
    for name, part in parts.items():
        wrapped = with_raw_io(name, part, TABLE_5)
        # The scaling adds no weights: a logged raw-io model's weights still fit copy_weights.
        assert wrapped.name == name and [w.shape for w in wrapped.get_weights()] == [
            w.shape for w in part.get_weights()]
        in_memory = wrapped(inputs[name]).numpy()
        np.testing.assert_allclose(in_memory, expected[name], rtol=1e-5, atol=1e-5)
        path = tmp_path / f"{name}.keras"
        wrapped.save(path)
        loaded = load_model(str(path))  # Keras safe mode
        np.testing.assert_array_equal(loaded(inputs[name]).numpy(), in_memory)
        if name == "autoencoder":  # its named parts take and give raw rows too
            np.testing.assert_allclose(encoder_of(loaded)(raw).numpy(), codes, rtol=1e-5, atol=1e-5)
    image_encoder = encoder_of(build_autoencoder("dense", 2, spec=image_spec(8, 8)))
    assert with_raw_io("encoder", image_encoder, image_spec(8, 8)) is image_encoder  # nothing to undo


def test_init_model_of_another_sample_is_refused_in_one_line(tmp_path):
    path = tmp_path / "table.keras"
    build_autoencoder("dense", 4, spec=TABLE_5).save(path)
    assert load_init_model(str(path), 4, "dense", spec=TABLE_5).input_shape == (None, 5)
    with pytest.raises(ModelError) as refused:
        load_init_model(str(path), 4, "dense")
    assert str(refused.value) == (f"invalid init_model {str(path)!r}: it takes 5 values per sample, this run's "
                                  "samples are 784 (28x28x1 image); expected an init_model trained on 28x28x1 "
                                  "image samples")
    with pytest.raises(ModelError, match=r"its weights have shapes .* \(a dense autoencoder for 5-feature table "
                                         r"samples with the same code_size\)"):
        copy_weights(build_autoencoder("dense", 3, spec=TABLE_5), build_autoencoder("dense", 4, spec=TABLE_5),
                     "other", "dense", 4, spec=TABLE_5)
