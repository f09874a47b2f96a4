import numpy as np
import pytest

from aetrack.noise import add_noise


def test_seeded_clipped_and_pure():
    images = np.random.default_rng(1).random((50, 784), dtype=np.float32)
    before = images.copy()
    a = add_noise(images, 0.4, seed=3)
    b = add_noise(images, 0.4, seed=3)
    c = add_noise(images, 0.4, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(images, before)


def test_factor_is_respected():
    images = np.full((200, 784), 0.5, dtype=np.float32)
    assert np.array_equal(add_noise(images, 0.0, seed=0), images)
    small = add_noise(images, 0.05, seed=0)  # no clipping at 0.5 +- 0.05 * few sigma
    large = add_noise(images, 0.1, seed=0)
    np.testing.assert_allclose(large - 0.5, 2 * (small - 0.5), atol=1e-6)
    assert abs(float(np.std(small - 0.5)) - 0.05) < 0.002


def test_rejects_negative_factor():
    with pytest.raises(ValueError, match="noise_factor"):
        add_noise(np.zeros((1, 784), np.float32), -1.0, seed=0)
