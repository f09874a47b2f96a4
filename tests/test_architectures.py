"""The three architectures (dense, conv, vae): one outside contract, the vae's training wrapper and
its ELBO, compiling, copying weights and init_model's architecture check, the parameter's rules.
In-process, tiny data."""

import math

import numpy as np
import pytest

from aetrack.config import ARCHITECTURES, TrainConfig
from aetrack.errors import ConfigError, ModelError
from aetrack.evaluation import negative_elbo
from aetrack.models import (
    VariationalAutoencoder, architecture_of, autoencoder_of, build_autoencoder, compile_autoencoder, copy_weights,
    decoder_of, encoder_of, latent_moments,
)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_keeps_the_contract(architecture):
    model = build_autoencoder(architecture, 6)
    whole = autoencoder_of(model)
    encoder, decoder = encoder_of(model), decoder_of(model)
    assert (whole.name, encoder.name, decoder.name) == ("autoencoder", "encoder", "decoder")
    assert tuple(whole.input_shape) == (None, 784) and tuple(whole.output_shape) == (None, 784)
    assert tuple(encoder.input_shape) == (None, 784) and tuple(encoder.output_shape) == (None, 6)
    assert tuple(decoder.input_shape) == (None, 6) and tuple(decoder.output_shape) == (None, 784)
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    out = model(x, training=False).numpy()
    np.testing.assert_allclose(out, decoder(encoder(x)).numpy(), atol=1e-6)
    np.testing.assert_allclose(out, whole(x).numpy(), atol=1e-6)
    assert out.shape == (5, 784) and out.min() >= 0 and out.max() <= 1
    assert architecture_of(model, 6) == architecture
    assert (latent_moments(model) is not None) == (architecture == "vae")


def test_dense_is_still_the_tutorials_model():
    model = build_autoencoder("dense", 64)
    assert model.count_params() == 101_200
    assert encoder_of(model).count_params() == 784 * 64 + 64
    assert decoder_of(model).count_params() == 64 * 784 + 784
    assert [layer.name for layer in model.layers] == ["image", "encoder", "decoder"]
    assert [w.path for w in model.weights] == ["code/kernel", "code/bias", "reconstruction/kernel",
                                               "reconstruction/bias"]


def test_conv_is_convolutional_and_the_vae_has_a_log_variance_head():
    conv = build_autoencoder("conv", 64)
    kinds = {type(layer).__name__ for layer in encoder_of(conv).layers + decoder_of(conv).layers}
    assert {"Conv2D", "MaxPooling2D", "Conv2DTranspose", "Reshape"} <= kinds
    vae = build_autoencoder("vae", 4, kl_weight=0.5)
    assert isinstance(vae, VariationalAutoencoder) and vae.kl_weight == 0.5
    mean, log_var = latent_moments(vae)(np.zeros((3, 784), np.float32))
    assert mean.shape == (3, 4) and log_var.shape == (3, 4)
    # The wrapper trains the autoencoder and the log-variance head, each weight once.
    names = [w.path for w in vae.trainable_weights]
    assert len(names) == len(set(names)) == len(autoencoder_of(vae).trainable_weights) + 2
    assert "z_log_var/kernel" in names


def test_compile_uses_the_chosen_loss():
    model = compile_autoencoder(build_autoencoder("dense", 4), 0.01, "mse")
    assert model.loss == "mean_squared_error"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)


def test_vae_reports_its_loss_terms_and_learns(tiny_npz):
    import keras

    from aetrack.data import load_dataset

    data = load_dataset(str(tiny_npz), 256, 32)
    keras.utils.set_random_seed(0)
    vae = compile_autoencoder(build_autoencoder("vae", 4, seed=0), 0.001, "bce", steps_per_execution=4)
    # batch 24: the 32 validation images come in uneven batches (24 + 8), still one mean per image.
    history = vae.fit(data.x_train, data.x_train, epochs=2, batch_size=24, verbose=0,
                      validation_data=(data.x_test, data.x_test)).history
    assert set(history) == {"loss", "reconstruction_loss", "kl_loss", "val_loss", "val_reconstruction_loss",
                            "val_kl_loss"}
    assert history["loss"][1] < history["loss"][0]
    assert all(v > 0 for v in history["kl_loss"] + history["val_kl_loss"])
    # Summed over 784 pixels, not averaged: the loss is in nats per image.
    assert history["reconstruction_loss"][0] > 20
    # val_loss is the negative ELBO at the code mean: the same number evaluation.negative_elbo gives.
    mean, log_var = (t.numpy() for t in latent_moments(vae)(data.x_test))
    elbo = negative_elbo(data.x_test, vae(data.x_test).numpy(), mean, log_var)
    assert elbo == pytest.approx(history["val_loss"][-1], rel=1e-5)


def test_negative_elbo_by_hand():
    target = np.zeros((2, 784), np.float32)
    target[:, :392] = 1.0
    predicted = np.full((2, 784), 0.5, np.float32)
    # Posterior = prior: KL 0, BCE 784 * log 2 per image.
    assert negative_elbo(target, predicted, np.zeros((2, 3)), np.zeros((2, 3))) == pytest.approx(784 * math.log(2))
    # KL of N(1, e^0) vs N(0, 1) is 1/2 per dimension.
    assert negative_elbo(target, predicted, np.ones((2, 3)), np.zeros((2, 3))) == pytest.approx(
        784 * math.log(2) + 1.5)


def test_architecture_and_kl_weight_rules():
    assert TrainConfig(architecture="conv").validated().architecture == "conv"
    with pytest.raises(ConfigError, match=r"invalid architecture 'cnn': expected one of dense, conv, vae"):
        TrainConfig(architecture="cnn").validated()
    with pytest.raises(ConfigError, match=r"invalid kl_weight -1.0"):
        TrainConfig(architecture="vae", kl_weight=-1.0).validated()
    # A vae's loss depends on the data (models.check_loss_for: tests/test_model_shapes.py).
    TrainConfig(architecture="vae", loss="mse").validated()


def test_init_model_of_another_architecture_is_refused_in_one_line(tmp_path):
    from aetrack.models.loading import load_init_model

    path = tmp_path / "dense.keras"
    build_autoencoder("dense", 8).save(path)
    assert architecture_of(load_init_model(str(path), 8, "dense"), 8) == "dense"
    for architecture in ("conv", "vae"):
        with pytest.raises(ModelError) as refused:
            load_init_model(str(path), 8, architecture)
        message = str(refused.value)
        assert "\n" not in message
        assert f"it is a dense autoencoder, this run's architecture is {architecture}" in message
        assert "dense, conv, vae" in message


def test_copy_weights_copies_the_same_shapes_and_refuses_others():
    source, target = build_autoencoder("dense", 8), build_autoencoder("dense", 8)
    assert not np.array_equal(source.get_weights()[0], target.get_weights()[0])  # two random starts
    copy_weights(source, target, "src")
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelError, match="init_model .other.: its weights have shapes"):
        copy_weights(build_autoencoder("dense", 16), target, "other")


def test_vae_continues_from_a_logged_vae_autoencoder(tmp_path):
    source = build_autoencoder("vae", 8, seed=1)
    path = tmp_path / "vae.keras"
    autoencoder_of(source).save(path)
    from aetrack.models.loading import load_init_model

    target = build_autoencoder("vae", 8, seed=2)
    copy_weights(load_init_model(str(path), 8, "vae"), target, str(path), "vae", 8)
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    np.testing.assert_allclose(target(x).numpy(), source(x).numpy(), atol=1e-6)
