"""A vae's prior N(0, I), drawn with a seed: the codes decoded into a run's `samples` (images, or
table rows), every epoch and in figures/samples.png. Numpy only, so anything can draw them without
loading Keras."""

from __future__ import annotations

import numpy as np

from aetrack.data.spec import SampleSpec

PRIOR_SAMPLES = 32  # draws decoded into a vae run's `samples` images


def prior_draws(count: int, code_size: int, seed: int) -> np.ndarray:
    """`count` seeded draws from N(0, I) of `code_size` dimensions: the same seed gives the same codes."""
    return np.random.default_rng(seed).standard_normal((count, code_size)).astype(np.float32)


def as_samples(decoded: np.ndarray, spec: SampleSpec) -> np.ndarray:
    """Decoded flat rows (n, spec.size) -> (n, *spec.shape): HxWxC images, or table rows as they are."""
    return np.asarray(decoded).reshape((len(decoded), *spec.shape))
