"""Final test-set metrics, computed in numpy from the model's outputs."""

from __future__ import annotations

import numpy as np

# Keras clips probabilities to [eps, 1 - eps] inside binary cross-entropy; do the same.
_EPSILON = 1e-7


def binary_crossentropy(target: np.ndarray, predicted: np.ndarray) -> float:
    p = np.clip(predicted.astype(np.float64), _EPSILON, 1 - _EPSILON)
    t = target.astype(np.float64)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


def mean_squared_error(target: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean((target.astype(np.float64) - predicted.astype(np.float64)) ** 2))


def reconstruction_metrics(target: np.ndarray, predicted: np.ndarray, prefix: str = "test") -> dict[str, float]:
    """`<prefix>_bce` and `<prefix>_mse` of predicted images against the clean targets."""
    return {
        f"{prefix}_bce": binary_crossentropy(target, predicted),
        f"{prefix}_mse": mean_squared_error(target, predicted),
    }
