"""Image grids as uint8 numpy arrays: reconstructions and latent codes, cheap enough for every epoch.

Pure numpy (no matplotlib, no TensorFlow), so a grid costs well under a millisecond. Every grid is
made of equal tiles separated (and framed) by `PAD` pixels of mid-grey, so black image backgrounds
stay distinct from the separators. Tile (r, c) of a grid of h x w tiles has its top-left corner at
(PAD + r * (h + PAD), PAD + c * (w + PAD)).
"""

from __future__ import annotations

import math

import numpy as np

from aetrack.data import IMAGE_SIDE

PAD = 2
PAD_VALUE = 128
IMAGES_PER_ROW = 8  # samples side by side before the reconstruction grid wraps
# The tutorial shows the 64-number code as a 4x16 image; other sizes use the most square shape.
TUTORIAL_CODE_SHAPES = {64: (4, 16)}
# Code tiles are enlarged to about an MNIST tile's size so a code's pixels can be seen.
CODE_TILE_HEIGHT = IMAGE_SIDE
CODE_TILE_MAX_WIDTH = 4 * IMAGE_SIDE
# White in a latent-code image is this many times the largest code value at the first logged
# epoch; codes grow during training (about 1.6x over the tutorial's 10 epochs), so this leaves room.
CODE_SCALE_HEADROOM = 2.0


def sample_indices(n_images: int, n_samples: int, seed: int) -> np.ndarray:
    """`min(n_samples, n_images)` distinct indices into the test images, sorted; same seed, same ones."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_images, size=min(n_samples, n_images), replace=False))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> 0..255 uint8, rounded to nearest (values outside [0, 1] are clipped).

    NaN (a diverging model's output, logged before the run fails) shows as black, not garbage.
    """
    return np.rint(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)


def tile_grid(tiles: np.ndarray) -> np.ndarray:
    """(rows, cols, h, w) uint8 tiles -> one (rows*h + (rows+1)*PAD, cols*w + (cols+1)*PAD) image."""
    rows, cols, h, w = tiles.shape
    grid = np.full((rows * h + (rows + 1) * PAD, cols * w + (cols + 1) * PAD), PAD_VALUE, np.uint8)
    for r in range(rows):
        top = PAD + r * (h + PAD)
        for c in range(cols):
            left = PAD + c * (w + PAD)
            grid[top : top + h, left : left + w] = tiles[r, c]
    return grid


def image_rows_grid(*rows: np.ndarray, per_row: int = IMAGES_PER_ROW) -> np.ndarray:
    """Each argument is one row of flattened (n, 784) images in [0, 1]; row i's tiles share column i.

    More than `per_row` samples wrap into further bands of the same rows (samples per_row.. in
    grid rows len(rows).. and so on), so the grid stays viewable in the MLflow UI's thumbnails;
    unused slots in the last band are left grey.
    """
    stacked = to_uint8(np.stack([np.asarray(row).reshape(-1, IMAGE_SIDE, IMAGE_SIDE) for row in rows]))
    n_rows, n = stacked.shape[:2]
    cols = min(per_row, n)
    bands = math.ceil(n / cols)
    tiles = np.full((n_rows, bands * cols, IMAGE_SIDE, IMAGE_SIDE), PAD_VALUE, np.uint8)
    tiles[:, :n] = stacked
    # (rows, bands, cols) -> (bands, rows, cols): band b's row r is grid row b * n_rows + r.
    tiles = tiles.reshape(n_rows, bands, cols, IMAGE_SIDE, IMAGE_SIDE).transpose(1, 0, 2, 3, 4)
    return tile_grid(tiles.reshape(bands * n_rows, cols, IMAGE_SIDE, IMAGE_SIDE))


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """`basic`: originals in the top row, their reconstructions below."""
    return image_rows_grid(originals, reconstructions)


def samples_grid(generated: np.ndarray, per_row: int = IMAGES_PER_ROW) -> np.ndarray:
    """Generated (n, 784) images, `per_row` to a row (decoded prior draws, `aetrack sample`)."""
    return image_rows_grid(generated, per_row=per_row)


def denoise_grid(noisy: np.ndarray, denoised: np.ndarray, originals: np.ndarray) -> np.ndarray:
    """`denoise`: noisy inputs, the model's denoised outputs, then the clean originals."""
    return image_rows_grid(noisy, denoised, originals)


def code_shape(code_size: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols == code_size and rows <= cols: 4x16 for 64 as in the tutorial,
    otherwise the most square such shape (32 -> 4x8, 12 -> 3x4, 7 -> 1x7)."""
    if code_size < 1:
        raise ValueError(f"invalid code_size {code_size!r}: expected an integer >= 1")
    if code_size in TUTORIAL_CODE_SHAPES:
        return TUTORIAL_CODE_SHAPES[code_size]
    rows = max(r for r in range(1, math.isqrt(code_size) + 1) if code_size % r == 0)
    return rows, code_size // rows


def code_zoom(rows: int, cols: int) -> int:
    """Integer enlargement of a rows x cols code: about an MNIST tile high, at most 4 tiles wide."""
    return max(1, min(CODE_TILE_HEIGHT // rows, CODE_TILE_MAX_WIDTH // cols))


def code_scale(codes: np.ndarray) -> float:
    """The fixed value shown as white: CODE_SCALE_HEADROOM x the largest code (1.0 if all are <= 0)."""
    largest = float(np.max(codes)) if codes.size else 0.0
    return CODE_SCALE_HEADROOM * largest if largest > 0 else 1.0


def codes_per_row(n_codes: int, tile_height: int, tile_width: int) -> int:
    """Codes side by side in the latent-code grid: enough to make the grid roughly square (wide
    4x16 codes stack in one column for 8 samples), so the UI's thumbnail stays legible."""
    return max(1, min(n_codes, round(math.sqrt(n_codes * (tile_height + PAD) / (tile_width + PAD)))))


def latent_codes_grid(codes: np.ndarray, scale: float) -> np.ndarray:
    """(n, code_size) codes -> one image: each code reshaped by `code_shape`, 0 -> black and
    `scale` -> white (the same `scale` every epoch, so frames compare), enlarged by `code_zoom`,
    `codes_per_row` codes to a row in sample order; unused slots in the last row are left grey."""
    codes = np.asarray(codes, dtype=np.float32)
    n, size = codes.shape
    rows, cols = code_shape(size)
    zoom = code_zoom(rows, cols)
    h, w = rows * zoom, cols * zoom
    pixels = to_uint8(codes / np.float32(scale)).reshape(n, rows, cols)
    pixels = pixels.repeat(zoom, axis=1).repeat(zoom, axis=2)
    grid_cols = codes_per_row(n, h, w)
    grid_rows = math.ceil(n / grid_cols)
    tiles = np.full((grid_rows * grid_cols, h, w), PAD_VALUE, np.uint8)
    tiles[:n] = pixels
    return tile_grid(tiles.reshape(grid_rows, grid_cols, h, w))
