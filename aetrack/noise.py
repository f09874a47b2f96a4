"""Gaussian input noise for the denoising autoencoder: a pure function of (images, factor, seed)."""

from __future__ import annotations

import numpy as np


def add_noise(images: np.ndarray, factor: float, seed: int) -> np.ndarray:
    """Return `clip(images + factor * N(0, 1), 0, 1)` as float32; `images` is left untouched.

    The same (images, factor, seed) always gives the same result, so a run's noisy inputs can be
    rebuilt from its logged params.
    """
    if factor < 0 or not np.isfinite(factor):
        raise ValueError(f"invalid noise_factor {factor!r}: expected a finite number >= 0")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    noisy = images.astype(np.float32) + np.float32(factor) * noise
    return np.clip(noisy, 0.0, 1.0, out=noisy)
