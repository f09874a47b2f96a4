"""Small synthetic datasets in the Keras layout, and where the real MNIST copy lives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.processes import REPO

SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist" / "mnist.npz"
# Set to 1 where the shared data is always provided (.ci/run): there a missing copy is a broken
# checkout, and the tests that need it must fail rather than skip.
REQUIRE_SHARED_DATA = "AETRACK_REQUIRE_SHARED_DATA"


def shared_mnist(path: Path = SHARED_MNIST) -> Path:
    """`path` if the real MNIST copy is there; otherwise skip the test, or fail it under
    AETRACK_REQUIRE_SHARED_DATA=1."""
    if path.exists():
        return path
    missing = f"real MNIST not found at {path}"
    if os.environ.get(REQUIRE_SHARED_DATA) == "1":
        pytest.fail(f"{missing}, and {REQUIRE_SHARED_DATA}=1 says it must be there", pytrace=False)
    pytest.skip(missing)


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 uint8 'digits': label k is a bright bar at a k-dependent place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        row = 3 + 2 * int(k)
        images[i, row : row + 3, 4:24] = 230
        images[i, 4:24, row : row + 2] = 200
    return images, labels


def write_npz(path: Path, n_train: int = 256, n_test: int = 64, seed: int = 0, **overrides) -> Path:
    """A Keras-layout .npz of synthetic digits; `name=None` leaves an array out, `name=array` replaces it."""
    x_train, y_train = synthetic_digits(n_train, seed)
    x_test, y_test = synthetic_digits(n_test, seed + 1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path
