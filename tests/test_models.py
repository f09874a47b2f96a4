import numpy as np
import pytest

from aetrack.errors import ModelError
from aetrack.models import build_dense_autoencoder, compile_autoencoder, copy_weights, decoder_of, encoder_of


def test_tutorial_architecture_and_parameter_count():
    model = build_dense_autoencoder(64)
    assert model.count_params() == 101_200
    encoder, decoder = encoder_of(model), decoder_of(model)
    assert encoder.name == "encoder" and decoder.name == "decoder"
    assert tuple(encoder.input_shape) == (None, 784) and tuple(encoder.output_shape) == (None, 64)
    assert tuple(decoder.input_shape) == (None, 64) and tuple(decoder.output_shape) == (None, 784)
    assert encoder.count_params() == 784 * 64 + 64
    assert decoder.count_params() == 64 * 784 + 784


def test_parts_compose_to_the_whole():
    model = build_dense_autoencoder(8)
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    whole = model(x, training=False).numpy()
    parts = decoder_of(model)(encoder_of(model)(x, training=False), training=False).numpy()
    np.testing.assert_allclose(whole, parts, atol=1e-6)
    assert whole.min() >= 0 and whole.max() <= 1


def test_copy_weights_checks_architecture():


    source, target = build_dense_autoencoder(8), build_dense_autoencoder(8)
    copy_weights(source, target, "src")
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelError, match="init_model .other."):
        copy_weights(build_dense_autoencoder(16), target, "other")


def test_compile_uses_the_chosen_loss():
    model = compile_autoencoder(build_dense_autoencoder(4), 0.01, "mse")
    assert model.loss == "mean_squared_error"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
