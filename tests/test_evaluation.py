"""PSNR, SSIM and ROC-AUC against hand-computed values and reference implementations."""

import numpy as np
import pytest

from aetrack.evaluation import (
    PSNR_CAP_DB,
    final_metrics,
    negative_elbo,
    per_image_psnr,
    per_image_ssim,
    psnr,
    roc_auc,
    ssim,
)


def _images(n, seed=0):
    return np.random.default_rng(seed).random((n, 784)).astype(np.float32)


def test_psnr_identical_images_is_the_cap():
    x = _images(3)
    assert psnr(x, x) == PSNR_CAP_DB == 100.0
    np.testing.assert_array_equal(per_image_psnr(x, x), [100.0] * 3)


def test_psnr_known_mse():
    x = np.full((2, 784), 0.5, dtype=np.float32)
    y = x.copy()
    y[0] += 0.1  # every pixel off by 0.1: MSE 0.01 -> 20 dB
    y[1, :392] += 0.2  # half the pixels off by 0.2: MSE 0.02 -> 10*log10(50) dB
    np.testing.assert_allclose(per_image_psnr(x, y), [20.0, 10 * np.log10(50.0)], rtol=1e-5)
    # Averaged per image, not computed from the pooled MSE (0.015).
    assert psnr(x, y) == pytest.approx((20.0 + 10 * np.log10(50.0)) / 2, rel=1e-5)
    assert psnr(x, y) != pytest.approx(10 * np.log10(1 / 0.015), rel=1e-3)


def test_ssim_identical_is_one_and_accepts_both_shapes():
    x = _images(4)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(per_image_ssim(x.reshape(4, 28, 28), x), 1.0, atol=1e-12)


def test_ssim_of_constant_images_by_hand():
    # Constant images a and b: every window has means a, b and zero variance, so
    # SSIM = (2ab + c1) / (a^2 + b^2 + c1) with c1 = (0.01 * 1)^2.
    a, b, c1 = 0.2, 0.6, 0.01**2
    x = np.full((1, 784), a)
    y = np.full((1, 784), b)
    assert ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def test_ssim_matches_tensorflow():
    import tensorflow as tf

    x = _images(5, seed=1)
    y = np.clip(x + 0.3 * np.random.default_rng(2).standard_normal(x.shape), 0, 1).astype(np.float32)
    reference = tf.image.ssim(x.reshape(5, 28, 28, 1), y.reshape(5, 28, 28, 1), max_val=1.0).numpy()
    np.testing.assert_allclose(per_image_ssim(x, y), reference, atol=1e-5)
    assert 0 < ssim(x, y) < 0.9


def test_roc_auc_by_hand_and_against_sklearn():
    from sklearn.metrics import roc_auc_score

    # Positives 0.9, 0.4 vs negatives 0.1, 0.4: pairs (0.9>0.1, 0.9>0.4, 0.4>0.1, 0.4=0.4 -> 1/2).
    assert roc_auc([0.9, 0.4, 0.1, 0.4], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 2, 3], [0, 0, 1]) == 1.0 and roc_auc([1, 2, 3], [1, 0, 0]) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores = rng.integers(0, 20, size=300).astype(float)  # many ties
        labels = rng.random(300) < 0.2
        assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="1 positives and 0 negatives"):
        roc_auc([0.3], [True])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        roc_auc([0.3, 0.1], [True, False, True])


def test_final_metrics_add_test_elbo_only_given_a_vae_s_moments():
    clean = _images(6)
    predicted = np.clip(clean * 0.8 + 0.1, 0, 1)
    labels = np.arange(6) % 3
    mean, log_var = _images(6, seed=1)[:, :4] - 0.5, np.full((6, 4), -0.5)
    seen = []

    def moments(x):
        seen.append(x)
        return mean, log_var

    plain = final_metrics(lambda x: predicted, clean, clean, labels)
    vae = final_metrics(lambda x: predicted, clean, clean, labels, moments=moments)
    assert "test_elbo" not in plain and set(vae) == set(plain) | {"test_elbo"}
    assert vae["test_elbo"] == pytest.approx(negative_elbo(clean, predicted, mean, log_var))
    assert vae["test_elbo"] > 0 and len(seen) == 1 and seen[0] is clean
