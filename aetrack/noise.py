"""Gaussian input noise for the denoising autoencoder: a pure function of (images, factor, seed),
and the one place that says which seed each of a run's noisy image sets uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The denoiser's robustness levels: logged as `test_psnr_noise_<level>` and drawn in
# figures/denoise_levels.png, from the same noisy images.
from aetrack.names import NOISE_LEVELS


def add_noise(images: np.ndarray, factor: float, seed: int,
              value_range: tuple[float, float] | None = (0.0, 1.0)) -> np.ndarray:
    """Return `clip(images + factor * N(0, 1), *value_range)` as float32 (no clipping when
    `value_range` is None: standardised tables); `images` is left untouched.

    The same (images, factor, seed) always gives the same result, so a run's noisy inputs can be
    rebuilt from its logged params.
    """
    if factor < 0 or not np.isfinite(factor):
        raise ValueError(f"invalid noise_factor {factor!r}: expected a finite number >= 0")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    noisy = images.astype(np.float32) + np.float32(factor) * noise
    if value_range is None:
        return noisy
    return np.clip(noisy, value_range[0], value_range[1], out=noisy)


def sample_noise(rows: np.ndarray, indices: np.ndarray, factor: float, seed: int,
                 value_range: tuple[float, float] | None = (0.0, 1.0)) -> np.ndarray:
    """`rows` (k, size) with noise as `add_noise` adds it, each row's drawn from its own generator
    keyed by (seed, its sample index): a pure function of the sample, so a streamed split gives
    every sample the same noise in every epoch and in every batch it lands in."""
    if factor < 0 or not np.isfinite(factor):
        raise ValueError(f"invalid noise_factor {factor!r}: expected a finite number >= 0")
    noisy = rows.astype(np.float32, copy=True)
    for row, index in enumerate(np.asarray(indices)):
        rng = np.random.default_rng([seed, int(index)])
        noisy[row] += np.float32(factor) * rng.standard_normal(rows.shape[1], dtype=np.float32)
    if value_range is None:
        return noisy
    return np.clip(noisy, value_range[0], value_range[1], out=noisy)


@dataclass(frozen=True)
class RunNoise:
    """The noisy images of one run with seed `seed`: each set has its own seed derived from it, so
    validation and robustness noise never repeat the training noise."""

    seed: int
    factor: float
    value_range: tuple[float, float] | None = (0.0, 1.0)  # the data's SampleSpec.value_range

    def training(self, images: np.ndarray) -> np.ndarray:
        return add_noise(images, self.factor, self.seed, self.value_range)

    def training_rows(self, rows: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """A streamed training split's noisy rows: the samples at `indices` (see `sample_noise`)."""
        return sample_noise(rows, indices, self.factor, self.seed, self.value_range)

    def validation(self, images: np.ndarray) -> np.ndarray:
        return add_noise(images, self.factor, self.seed + 1, self.value_range)

    def at_level(self, images: np.ndarray, level: float) -> np.ndarray:
        """Fresh noise at one of NOISE_LEVELS (the robustness metric and figure share it)."""
        return add_noise(images, level, self.seed + 2 + NOISE_LEVELS.index(level), self.value_range)
