"""Writing what a model command produces: checked paths, atomic .npy files and PNG grids.

numpy and Pillow only, so a bad output path fails before TensorFlow loads.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, IO, Sequence

import numpy as np

from aetrack import images
from aetrack.errors import InputError

GRID_COLUMNS = 16
GRID_MAX_IMAGES = 64


def check_output(path: str, suffixes: Sequence[str], option: str = "--output") -> str:
    """Check that `path` has an allowed suffix and can be created; return its lower-case suffix."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in suffixes:
        raise InputError(f"invalid {option} {path!r}: expected a file ending in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise InputError(f"invalid {option} {path!r}: is a directory; expected a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"invalid {option} {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise InputError(f"invalid {option} {path!r}: not writable")
    return suffix


def write_npy(path: str, array: np.ndarray) -> None:
    """Write atomically: a reader never sees a half-written file, a failure leaves none."""
    _write_atomically(path, lambda f: np.save(f, array, allow_pickle=False))


def write_samples_grid(path: str, generated: np.ndarray) -> None:
    """A PNG of up to 64 generated images, GRID_COLUMNS / 2 to a row."""
    from PIL import Image

    pixels = images.samples_grid(generated[:GRID_MAX_IMAGES], per_row=GRID_COLUMNS // 2)
    _write_atomically(path, lambda f: Image.fromarray(pixels, mode="L").save(f, format="PNG"))


def write_grid(path: str, inputs: np.ndarray, outputs: np.ndarray) -> None:
    """A PNG of up to 64 images: rows of inputs, each followed by the row of their outputs."""
    from PIL import Image

    pixels = images.image_rows_grid(inputs[:GRID_MAX_IMAGES], outputs[:GRID_MAX_IMAGES], per_row=GRID_COLUMNS)
    _write_atomically(path, lambda f: Image.fromarray(pixels, mode="L").save(f, format="PNG"))


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
