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


def offline(monkeypatch, keras_home: Path) -> None:
    """No network for this test: Keras downloads to $KERAS_HOME (an empty dir here) and every
    download fails at once."""
    import urllib.request

    monkeypatch.setenv("KERAS_HOME", str(keras_home))

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", unreachable)
    monkeypatch.setattr(urllib.request, "urlopen", unreachable)


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


# Makers of tiny datasets of other shapes: each writes real files and returns what a loader should
# read back, so tests assert on values.

def pixels(n: int, height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """Seeded uint8 images (n, height, width, channels)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, height, width, channels), dtype=np.uint8)


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3,
                       size: tuple[int, int] = (6, 5), channels: int = 3, seed: int = 0,
                       extension: str = "png") -> dict[str, np.ndarray]:
    """PNG (or `extension`) images under `root`: one subfolder per class, or loose files when
    `classes` is empty. Returns {path relative to root: uint8 (height, width, channels)}, in the
    sorted order a loader reads them (classes sorted, files 000, 001, ... within each)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, np.ndarray] = {}
    for k, name in enumerate(sorted(classes) or [""]):
        folder = root / name if name else root
        folder.mkdir(exist_ok=True)
        images = pixels(per_class, *size, channels, seed=seed + k)
        for i, image in enumerate(images):
            relative = f"{name}/{i:03d}.{extension}" if name else f"{i:03d}.{extension}"
            mode = "RGB" if channels == 3 else "L"
            Image.fromarray(image if channels == 3 else image[:, :, 0], mode).save(root / relative)
            written[relative] = image
    return written


def table_frame(n: int, seed: int = 0, labels: tuple[str, ...] = ("ham", "spam"), label_column: str = "kind"):
    """A pandas DataFrame: float columns a, b, c (c constant), and a string label column."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(5.0, 2.0, n), "b": rng.uniform(-3.0, 3.0, n), "c": np.full(n, 7.0)})
    if labels:
        frame[label_column] = [labels[i % len(labels)] for i in range(n)]
    return frame


def write_table(path: Path, frame) -> Path:
    """`frame` as .csv (no index) or .parquet, by the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path
