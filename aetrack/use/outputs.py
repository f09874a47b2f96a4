"""Writing what a model command produces: checked paths, atomic .npy files, PNG grids (grayscale
or colour, any image size) and CSV/Parquet tables with the training columns.

numpy, Pillow and pandas only, so a bad output path fails before TensorFlow loads. Refusals are
ArgumentErrors naming the argument (`output`, `grid`); the CLI spells them as flags.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Callable, IO, Sequence

import numpy as np

from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.errors import ArgumentError
from aetrack.images import PAD, PAD_VALUE, to_uint8

SCORE_SUFFIXES = (".npy", ".csv", ".parquet")  # score tables, or today's scores-only array
SCORE_COLUMN = "score"
FLAG_COLUMN = "is_anomaly"
GRID_COLUMNS = 16
GRID_MAX_IMAGES = 64


def check_output(path: str, suffixes: Sequence[str], parameter: str = "output") -> str:
    """Check that `path` has an allowed suffix and can be created; return its lower-case suffix."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in suffixes:
        raise ArgumentError(parameter, path, f"expected a file ending in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise ArgumentError(parameter, path, "is a directory", "expected a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ArgumentError(parameter, path, f"folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ArgumentError(parameter, path, "not writable")
    return suffix


def sample_suffixes(spec: SampleSpec) -> tuple[str, ...]:
    """The files whole samples can be written to: .npy, and .png grids of images or CSV/Parquet tables."""
    return (".npy", ".png") if spec.is_image else (".npy", ".csv", ".parquet")


def check_sample_output(path: str, spec: SampleSpec, parameter: str = "output") -> str:
    """`check_output` for samples of `spec` (a .png grid only for images, a table only for tables)."""
    return check_output(path, sample_suffixes(spec), parameter)


def sample_shaped(rows: np.ndarray, spec: SampleSpec = MNIST_SPEC) -> np.ndarray:
    """Flat (n, spec.size) rows in the sample's shape: (n, H, W) for 1-channel images (MNIST's
    (n, 28, 28)), (n, H, W, C) for colour, (n, D) for tables."""
    shape = spec.shape[:2] if spec.is_image and spec.channels == 1 else spec.shape
    return rows.reshape(len(rows), *shape)


def write_samples(path: str, suffix: str, rows: np.ndarray, spec: SampleSpec = MNIST_SPEC) -> None:
    """Write flat rows as a .npy in the sample shape, or a CSV/Parquet table with the feature columns."""
    if suffix == ".npy":
        write_npy(path, sample_shaped(rows, spec))
    else:
        write_table(path, rows, spec)


def write_npy(path: str, array: np.ndarray) -> None:
    """Write atomically: a reader never sees a half-written file, a failure leaves none."""
    _write_atomically(path, lambda f: np.save(f, array, allow_pickle=False))


def write_scores_table(path: str, scores: np.ndarray, flagged: np.ndarray | None) -> None:
    """A CSV or Parquet table, one row per sample: `score`, and `is_anomaly` (0/1) when flagged."""
    import pandas as pd

    columns = {SCORE_COLUMN: np.asarray(scores, dtype=np.float32)}
    if flagged is not None:
        columns[FLAG_COLUMN] = np.asarray(flagged, dtype=np.uint8)
    _write_frame(path, pd.DataFrame(columns))


def feature_columns(spec: SampleSpec) -> list[str]:
    """The table's column names: the training columns, or `feature_0`.. when the model names none."""
    return list(spec.feature_names) or [f"feature_{i}" for i in range(spec.size)]


def write_table(path: str, rows: np.ndarray, spec: SampleSpec) -> None:
    """A CSV or Parquet table, one row per sample, one column per feature."""
    import pandas as pd

    _write_frame(path, pd.DataFrame(np.asarray(rows, dtype=np.float32), columns=feature_columns(spec)))


def _write_frame(path: str, frame) -> None:
    if path.lower().endswith(".parquet"):
        _write_atomically(path, lambda f: frame.to_parquet(f, index=False))
    else:
        _write_atomically(path, lambda f: f.write(frame.to_csv(index=False).encode()))


def rows_grid(*rows: np.ndarray, spec: SampleSpec = MNIST_SPEC, per_row: int = GRID_COLUMNS) -> np.ndarray:
    """uint8 grid of flat images in [0, 1]: argument i is grid row i, wrapping into further bands of
    the same rows after `per_row` images; (H, W) for grayscale, (H, W, 3) for colour. The layout of
    `aetrack.images.image_rows_grid` (PAD-pixel grey frames), for any image size."""
    height, width, channels = spec.height, spec.width, spec.channels
    stacked = to_uint8(np.stack([np.asarray(r).reshape(-1, height, width, channels) for r in rows]))
    n_rows, n = stacked.shape[:2]
    cols = min(per_row, n)
    bands = math.ceil(n / cols)
    grid = np.full((bands * n_rows * (height + PAD) + PAD, cols * (width + PAD) + PAD, channels), PAD_VALUE, np.uint8)
    for i in range(n):
        band, col = divmod(i, cols)
        left = PAD + col * (width + PAD)
        for r in range(n_rows):
            top = PAD + (band * n_rows + r) * (height + PAD)
            grid[top : top + height, left : left + width] = stacked[r, i]
    return grid[..., 0] if channels == 1 else grid


def write_grid(path: str, inputs: np.ndarray, outputs: np.ndarray, spec: SampleSpec = MNIST_SPEC) -> None:
    """A PNG of up to 64 images: rows of inputs, each followed by the row of their outputs."""
    pixels = rows_grid(inputs[:GRID_MAX_IMAGES], outputs[:GRID_MAX_IMAGES], spec=spec, per_row=GRID_COLUMNS)
    _write_png(path, pixels)


def write_samples_grid(path: str, generated: np.ndarray, spec: SampleSpec = MNIST_SPEC) -> None:
    """A PNG of up to 64 generated images, GRID_COLUMNS / 2 to a row."""
    _write_png(path, rows_grid(generated[:GRID_MAX_IMAGES], spec=spec, per_row=GRID_COLUMNS // 2))


def _write_png(path: str, pixels: np.ndarray) -> None:
    from PIL import Image

    # (H, W) uint8 is read as grayscale, (H, W, 3) as RGB.
    _write_atomically(path, lambda f: Image.fromarray(pixels).save(f, format="PNG"))


def _write_atomically(path: str, write: Callable[[IO[bytes]], None]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".aetrack-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
