"""Image grids as uint8 numpy arrays: reconstructions and latent codes, cheap enough for every epoch.

Samples arrive flat, (n, spec.size) rows (see `aetrack.data.spec`): images unflatten to HxW tiles
(greyscale, or an RGB grid for 3 channels); table rows become heat-map strips (`table_rows_grid`).

Pure numpy (no matplotlib, no TensorFlow), so a grid costs well under a millisecond. Every grid is
made of equal tiles separated (and framed) by `PAD` pixels of mid-grey, so black image backgrounds
stay distinct from the separators. Tile (r, c) of a grid of h x w tiles has its top-left corner at
(PAD + r * (h + PAD), PAD + c * (w + PAD)).
"""

from __future__ import annotations

import math

import numpy as np

from aetrack.data import IMAGE_SIDE, MNIST_SPEC, SampleSpec

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
# Table heat maps: standardised values from -3 to +3 standard deviations span the colour scale;
# each feature is a cell TABLE_CELL_HEIGHT high and up to TABLE_CELL_MAX_WIDTH wide, a row about
# TABLE_ROW_WIDTH pixels at most (a cell is never narrower than one pixel).
TABLE_SCALE_STD = 3.0
TABLE_CELL_HEIGHT = 8
TABLE_CELL_MAX_WIDTH = 16
TABLE_ROW_WIDTH = 512


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
    """(rows, cols, h, w[, 3]) uint8 tiles -> one (rows*h + (rows+1)*PAD, cols*w + (cols+1)*PAD[, 3])
    image: greyscale tiles give a greyscale grid, RGB tiles an RGB one."""
    rows, cols, h, w = tiles.shape[:4]
    grid = np.full((rows * h + (rows + 1) * PAD, cols * w + (cols + 1) * PAD, *tiles.shape[4:]), PAD_VALUE, np.uint8)
    for r in range(rows):
        top = PAD + r * (h + PAD)
        for c in range(cols):
            left = PAD + c * (w + PAD)
            grid[top : top + h, left : left + w] = tiles[r, c]
    return grid


def sample_tiles(rows: np.ndarray, spec: SampleSpec = MNIST_SPEC) -> np.ndarray:
    """Flat (n, spec.size) images in [0, 1] -> (n, H, W) uint8 tiles, or (n, H, W, 3) for colour."""
    tiles = to_uint8(np.asarray(rows).reshape(-1, *spec.shape))
    return tiles[..., 0] if spec.channels == 1 else tiles


def image_rows_grid(*rows: np.ndarray, per_row: int = IMAGES_PER_ROW, spec: SampleSpec = MNIST_SPEC) -> np.ndarray:
    """Each argument is one row of flat (n, spec.size) samples; row i's tiles share column i.

    Images are HxW tiles (an RGB grid for 3 channels); a table's rows go to `table_rows_grid`.
    More than `per_row` samples wrap into further bands of the same rows (samples per_row.. in
    grid rows len(rows).. and so on), so the grid stays viewable in the MLflow UI's thumbnails;
    unused slots in the last band are left grey.
    """
    if not spec.is_image:
        return table_rows_grid(*rows, spec=spec)
    stacked = np.stack([sample_tiles(row, spec) for row in rows])
    n_rows, n = stacked.shape[:2]
    tile_shape = stacked.shape[2:]  # (h, w) or (h, w, 3)
    cols = min(per_row, n)
    bands = math.ceil(n / cols)
    tiles = np.full((n_rows, bands * cols, *tile_shape), PAD_VALUE, np.uint8)
    tiles[:, :n] = stacked
    # (rows, bands, cols) -> (bands, rows, cols): band b's row r is grid row b * n_rows + r.
    tiles = tiles.reshape(n_rows, bands, cols, *tile_shape).swapaxes(0, 1)
    return tile_grid(tiles.reshape(bands * n_rows, cols, *tile_shape))


def table_colours(values: np.ndarray, spec: SampleSpec) -> np.ndarray:
    """Table values -> RGB uint8 on a fixed diverging scale, blue (low) - white - red (high).

    Standardised tables span -TABLE_SCALE_STD..+TABLE_SCALE_STD standard deviations; bounded ones
    their value range. Fixed, not fitted to the values, so every epoch's image uses one scale.
    """
    low, high = spec.value_range if spec.bounded else (-TABLE_SCALE_STD, TABLE_SCALE_STD)
    t = np.clip(np.nan_to_num((np.asarray(values, np.float64) - low) / (high - low), nan=0.5), 0.0, 1.0)
    # Below the middle fade white towards blue (0, 0, 1); above it, towards red (1, 0, 0).
    up, down = np.clip(2 * t - 1, 0, 1), np.clip(1 - 2 * t, 0, 1)
    rgb = np.stack([1 - down, 1 - up - down, 1 - up], axis=-1)
    return np.rint(rgb * 255).astype(np.uint8)


def table_cell(spec: SampleSpec) -> tuple[int, int]:
    """(height, width) in pixels of one feature's cell: wide enough to see, at most ~512 px a row."""
    return TABLE_CELL_HEIGHT, max(1, min(TABLE_CELL_MAX_WIDTH, TABLE_ROW_WIDTH // spec.size))


def table_rows_grid(*rows: np.ndarray, spec: SampleSpec) -> np.ndarray:
    """A heat map of table samples: one band per sample (in order), holding that sample's row of
    each argument (e.g. original over reconstruction) as a strip of feature cells, features left
    to right; bands are framed by grey. The same samples give the same bands every epoch."""
    stacked = np.stack([np.asarray(row, np.float32).reshape(-1, spec.size) for row in rows], axis=1)  # (n, k, D)
    n, k = stacked.shape[:2]
    cell_h, cell_w = table_cell(spec)
    pixels = table_colours(stacked, spec).repeat(cell_h, axis=1).repeat(cell_w, axis=2)  # (n, k*h, D*w, 3)
    return tile_grid(pixels.reshape(n, 1, k * cell_h, spec.size * cell_w, 3))


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray,
                        spec: SampleSpec = MNIST_SPEC) -> np.ndarray:
    """`basic`: originals in the top row, their reconstructions below."""
    return image_rows_grid(originals, reconstructions, spec=spec)


def samples_grid(generated: np.ndarray, per_row: int = IMAGES_PER_ROW, spec: SampleSpec = MNIST_SPEC) -> np.ndarray:
    """Generated (n, spec.size) samples, `per_row` to a row (decoded prior draws, `aetrack sample`)."""
    return image_rows_grid(generated, per_row=per_row, spec=spec)


def denoise_grid(noisy: np.ndarray, denoised: np.ndarray, originals: np.ndarray,
                 spec: SampleSpec = MNIST_SPEC) -> np.ndarray:
    """`denoise`: noisy inputs, the model's denoised outputs, then the clean originals."""
    return image_rows_grid(noisy, denoised, originals, spec=spec)


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
