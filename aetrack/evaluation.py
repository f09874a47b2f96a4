"""Final test-set metrics, computed in numpy from the model's outputs.

Samples are flat (n, spec.size) floats in the model's space (`aetrack.data.spec`): images in
[0, 1], tables standardised. Per-image metrics (PSNR, SSIM) are computed image by image and then
averaged, so one blank image cannot dominate the mean the way it would if the MSE were pooled
first. Which metrics a run gets depends on the spec: bce only for bounded data, PSNR and SSIM only
for images, MAE and the worst features' errors only for tables (names.final_metric_names).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from aetrack import anomaly
from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.names import NOISE_LEVELS, WORST_FEATURES, digit_error_metric, feature_error_metric, noise_level_metric
from aetrack.noise import RunNoise

# Keras clips probabilities to [eps, 1 - eps] inside binary cross-entropy; do the same.
_EPSILON = 1e-7

# PSNR of a perfect reconstruction (MSE 0) is infinite; MLflow cannot plot infinity and one perfect
# image would make the mean infinite, so each image's PSNR is capped here (= MSE 1e-10 at max 1).
PSNR_CAP_DB = 100.0

# tf.image.ssim's defaults: 11x11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03, VALID padding.
_SSIM_FILTER_SIZE = 11
_SSIM_FILTER_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03

Reconstruct = Callable[[np.ndarray], np.ndarray]
# A vae's q(z|x): images -> (code means, code log-variances).
Moments = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def binary_crossentropy(target: np.ndarray, predicted: np.ndarray) -> float:
    p = np.clip(predicted.astype(np.float64), _EPSILON, 1 - _EPSILON)
    t = target.astype(np.float64)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


def negative_elbo(target: np.ndarray, predicted: np.ndarray, mean: np.ndarray, log_var: np.ndarray) -> float:
    """A vae's negative ELBO in nats per image: binary cross-entropy summed over the pixels of the
    deterministic reconstruction (the decoder at the code mean) + KL(N(mean, exp(log_var)) || N(0, I))."""
    p = np.clip(predicted.astype(np.float64), _EPSILON, 1 - _EPSILON)
    t = target.astype(np.float64)
    reconstruction = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(axis=1)
    mean, log_var = mean.astype(np.float64), log_var.astype(np.float64)
    kl = -0.5 * (1 + log_var - mean**2 - np.exp(log_var)).sum(axis=1)
    return float(np.mean(reconstruction + kl))


def mean_squared_error(target: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean((target.astype(np.float64) - predicted.astype(np.float64)) ** 2))


def per_image_mse(target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Mean squared error of each image, shape (n,): the anomaly score of `aetrack score`."""
    diff = target.reshape(len(target), -1).astype(np.float64) - predicted.reshape(len(predicted), -1)
    return np.mean(diff**2, axis=1)


def per_image_psnr(target: np.ndarray, predicted: np.ndarray, max_val: float = 1.0) -> np.ndarray:
    """PSNR in dB of each image, `10 * log10(max_val**2 / mse)`, capped at PSNR_CAP_DB."""
    mse = per_image_mse(target, predicted)
    with np.errstate(divide="ignore"):
        psnr = 10.0 * np.log10(max_val**2 / mse)
    return np.minimum(psnr, PSNR_CAP_DB)


def psnr(target: np.ndarray, predicted: np.ndarray, max_val: float = 1.0) -> float:
    """Mean over images of the per-image PSNR (dB)."""
    return float(np.mean(per_image_psnr(target, predicted, max_val)))


def per_image_ssim(target: np.ndarray, predicted: np.ndarray, max_val: float = 1.0,
                   spec: SampleSpec = MNIST_SPEC) -> np.ndarray:
    """SSIM of each HxWxC image, shape (n,): the formula and defaults of `tf.image.ssim`, per
    channel, then averaged over the channels (as tf.image.ssim does)."""
    height, width, channels = spec.shape
    n = len(np.asarray(target).reshape(-1, spec.size))
    # Channels become images of their own: (n, H, W, C) -> (n * C, H, W), sample-major.
    x = np.moveaxis(np.asarray(target).reshape(n, height, width, channels), 3, 1).reshape(-1, height, width)
    y = np.moveaxis(np.asarray(predicted).reshape(n, height, width, channels), 3, 1).reshape(-1, height, width)
    per_channel = _ssim_2d(x.astype(np.float64), y.astype(np.float64), max_val)
    return per_channel.reshape(n, channels).mean(axis=1)


def ssim_window(height: int, width: int) -> tuple[int, float]:
    """(size, sigma) of the Gaussian window: tf.image.ssim's 11 and 1.5, shrunk with the same
    sigma/size ratio for images smaller than 11 pixels a side (tf.image.ssim refuses those)."""
    size = min(_SSIM_FILTER_SIZE, height, width)
    return size, _SSIM_FILTER_SIGMA * size / _SSIM_FILTER_SIZE


def _ssim_2d(x: np.ndarray, y: np.ndarray, max_val: float) -> np.ndarray:
    """SSIM of each of the (m, H, W) greyscale images, shape (m,)."""
    kernel = _gaussian_kernel(*ssim_window(*x.shape[1:]))

    def local_mean(images: np.ndarray) -> np.ndarray:
        windows = np.lib.stride_tricks.sliding_window_view(images, kernel.shape, axis=(1, 2))
        return np.einsum("nijkl,kl->nij", windows, kernel)

    c1 = (_SSIM_K1 * max_val) ** 2
    c2 = (_SSIM_K2 * max_val) ** 2
    mean_x, mean_y = local_mean(x), local_mean(y)
    num0 = 2.0 * mean_x * mean_y
    den0 = mean_x**2 + mean_y**2
    luminance = (num0 + c1) / (den0 + c1)
    contrast_structure = (2.0 * local_mean(x * y) - num0 + c2) / (local_mean(x**2 + y**2) - den0 + c2)
    return np.mean(luminance * contrast_structure, axis=(1, 2))


def ssim(target: np.ndarray, predicted: np.ndarray, max_val: float = 1.0, spec: SampleSpec = MNIST_SPEC) -> float:
    """Mean over images of the per-image SSIM (1.0 for identical images)."""
    return float(np.mean(per_image_ssim(target, predicted, max_val, spec=spec)))


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """tf.image.ssim's window: a normalised 2-D Gaussian, the outer product of two 1-D ones."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * coords**2 / sigma**2)
    g /= g.sum()
    return np.outer(g, g)


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """ROC-AUC of `scores` for the boolean `positives` (Mann-Whitney U; ties count one half)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = np.asarray(positives, dtype=bool).ravel()
    if scores.shape != positives.shape:
        raise ValueError(f"roc_auc: {len(scores)} scores but {len(positives)} labels; expected as many")
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc: {n_pos} positives and {n_neg} negatives; expected at least one of each")
    # 1-based ranks, tied scores sharing the average of the ranks they span.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def to_unit_range(values: np.ndarray, spec: SampleSpec) -> np.ndarray:
    """Bounded values mapped onto [0, 1] (unchanged for images, whose range is (0, 1))."""
    low, high = spec.value_range
    return values if (low, high) == (0.0, 1.0) else (values.astype(np.float64) - low) / (high - low)


def reconstruction_metrics(target: np.ndarray, predicted: np.ndarray, prefix: str = "test",
                           spec: SampleSpec = MNIST_SPEC) -> dict[str, float]:
    """`<prefix>_bce` (bounded data only) and `<prefix>_mse` of predictions against the clean targets;
    tables add `<prefix>_mae`."""
    metrics = {}
    if spec.bounded:
        metrics[f"{prefix}_bce"] = binary_crossentropy(to_unit_range(target, spec), to_unit_range(predicted, spec))
    metrics[f"{prefix}_mse"] = mean_squared_error(target, predicted)
    if not spec.is_image:
        metrics[f"{prefix}_mae"] = float(np.mean(np.abs(target.astype(np.float64) - predicted.astype(np.float64))))
    return metrics


def image_quality_metrics(target: np.ndarray, predicted: np.ndarray, prefix: str = "test",
                          spec: SampleSpec = MNIST_SPEC) -> dict[str, float]:
    """`<prefix>_psnr` (dB) and `<prefix>_ssim` of predicted images against the clean targets."""
    max_val = spec.value_range[1] - spec.value_range[0]
    return {f"{prefix}_psnr": psnr(target, predicted, max_val),
            f"{prefix}_ssim": ssim(target, predicted, max_val, spec)}


def per_feature_mse(target: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Mean squared error of each feature (column) over the samples, shape (features,)."""
    return np.mean((target.astype(np.float64) - predicted.astype(np.float64)) ** 2, axis=0)


def feature_names(spec: SampleSpec) -> tuple[str, ...]:
    """A table's feature names, or `feature_<i>` where the data named none."""
    return spec.feature_names or tuple(f"feature_{i}" for i in range(spec.size))


def worst_feature_metrics(target: np.ndarray, predicted: np.ndarray, spec: SampleSpec,
                          count: int = WORST_FEATURES) -> dict[str, float]:
    """`test_mse.<feature>` of the `count` features reconstructed worst (in the model's space, so
    standardised features compare), worst first."""
    errors = per_feature_mse(target.reshape(-1, spec.size), predicted.reshape(-1, spec.size))
    names = feature_names(spec)
    worst = np.argsort(-errors, kind="stable")[:count]
    return {feature_error_metric(names[i]): float(errors[i]) for i in worst}


def quality_metrics(target: np.ndarray, predicted: np.ndarray, prefix: str, spec: SampleSpec) -> dict[str, float]:
    """PSNR and SSIM for images; the MSE for tables (a noisy input's baseline)."""
    if spec.is_image:
        return image_quality_metrics(target, predicted, prefix, spec)
    return {f"{prefix}_mse": mean_squared_error(target, predicted)}


def final_metrics(
    reconstruct: Reconstruct,
    clean: np.ndarray,
    inputs: np.ndarray,
    labels: np.ndarray | None,
    noise: RunNoise | None = None,
    excluded_digits: tuple[int, ...] = (),
    moments: Moments | None = None,
    spec: SampleSpec = MNIST_SPEC,
    *,
    anomalous: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    threshold: float | None = None,
) -> dict[str, float]:
    """Every end-of-run metric of one model on the test samples (names: names.final_metric_names).

    `inputs` are what the model saw during validation (the noisy samples when `noise` is given),
    `clean` the targets. Names are the same for every entry point; a denoising run adds the noisy
    input's own PSNR/SSIM, `psnr_gain_db` and `test_psnr_noise_<level>` (tables: `noisy_mse` and
    `test_mse_noise_<level>`); a run that excluded labels adds `anomaly_auc` (excluded vs the
    rest, scored by the per-sample error on the clean samples) and `test_mse_digit_<d>` for each
    label in the test samples. Given a vae's `moments` and bounded data, it adds `test_elbo`
    (negative ELBO, nats per sample, on `inputs`). Tables add `test_mae` and the worst features'
    `test_mse.<feature>`.

    Given `anomalous` (which test samples are anomalies: data.anomalous_test) and the test samples'
    anomaly `scores` (the scorer's), the detection metrics (names.ANOMALY_METRICS; precision,
    recall and F1 at the stored `threshold`) replace the excluded-labels AUC, and every label in the
    test samples gets its `test_mse_digit_<d>`.
    """
    predicted = reconstruct(inputs)
    metrics = reconstruction_metrics(clean, predicted, spec=spec)
    if spec.is_image:
        metrics.update(image_quality_metrics(clean, predicted, spec=spec))
    else:
        metrics.update(worst_feature_metrics(clean, predicted, spec))
    if noise is not None:
        metrics.update(quality_metrics(clean, inputs, "noisy", spec))
        if spec.is_image:
            metrics["psnr_gain_db"] = metrics["test_psnr"] - metrics["noisy_psnr"]
        for level in NOISE_LEVELS:
            denoised = reconstruct(noise.at_level(clean, level))
            if spec.is_image:
                metrics[noise_level_metric(level)] = psnr(clean, denoised, spec.value_range[1] - spec.value_range[0])
            else:
                metrics[noise_level_metric(level, "mse")] = mean_squared_error(clean, denoised)
    if anomalous is not None and scores is not None:
        metrics.update(detection_metrics(reconstruct, clean, labels, anomalous, scores, threshold))
    elif excluded_digits and labels is not None:
        metrics.update(anomaly_metrics(reconstruct, clean, labels, excluded_digits))
    if moments is not None and spec.bounded:
        mean, log_var = moments(inputs)
        metrics["test_elbo"] = negative_elbo(to_unit_range(clean, spec), to_unit_range(predicted, spec), mean, log_var)
    return metrics


def anomaly_metrics(
    reconstruct: Reconstruct, clean: np.ndarray, labels: np.ndarray, excluded_digits: tuple[int, ...]
) -> dict[str, float]:
    """`anomaly_auc` and `test_mse_digit_<d>` from the per-image error on clean test images.

    The score is what `aetrack score` writes: MSE between an image and its reconstruction. The
    AUC is left out when the test images hold only excluded digits or none of them.
    """
    errors = per_image_mse(clean, reconstruct(clean))
    metrics = {digit_error_metric(int(d)): float(errors[labels == d].mean()) for d in np.unique(labels)}
    positives = np.isin(labels, excluded_digits)
    if 0 < positives.sum() < len(positives):
        metrics["anomaly_auc"] = roc_auc(errors, positives)
    return metrics


def detection_metrics(reconstruct: Reconstruct, clean: np.ndarray, labels: np.ndarray | None, anomalous: np.ndarray,
                      scores: np.ndarray, threshold: float | None) -> dict[str, float]:
    """The detection metrics of `scores` against `anomalous` (anomaly.anomaly_metrics) and each
    test label's `test_mse_digit_<d>`."""
    metrics = {}
    if labels is not None:
        errors = per_image_mse(clean, reconstruct(clean))
        metrics = {digit_error_metric(int(d)): float(errors[labels == d].mean()) for d in np.unique(labels)}
    metrics.update(anomaly.anomaly_metrics(scores, anomalous, threshold))
    return metrics
