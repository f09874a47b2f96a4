"""Reading the images a model command takes: .npy arrays and 28x28 PNGs, checked and turned into
the models' layout, float32 (n, 784) in [0, 1] (white digits on black, as in MNIST).

numpy and Pillow only, so a bad input fails before TensorFlow loads.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from aetrack.data import IMAGE_PIXELS, IMAGE_SIDE
from aetrack.errors import InputError

INPUT_FORMS = "a .npy of shape (N, 28, 28) or (N, 784) (uint8 0..255 or float 0..1) or 28x28 PNG images"


def read_images(paths: Sequence[str]) -> np.ndarray:
    """Read .npy and/or PNG files into one float32 (n, 784) array in [0, 1], in the order given."""
    if not paths:
        raise InputError(f"invalid --input: none given; expected {INPUT_FORMS}")
    batches = []
    for path in paths:
        if not os.path.isfile(path):
            what = "is a directory" if os.path.isdir(path) else "no such file"
            raise InputError(f"invalid --input {path!r}: {what}; expected {INPUT_FORMS}")
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".npy":
            batches.append(_read_npy(path))
        elif suffix == ".png":
            batches.append(_read_png(path))
        else:
            raise InputError(f"invalid --input {path!r}: unknown file type {suffix or '(none)'!r}; "
                                      f"expected {INPUT_FORMS}")
    return np.concatenate(batches)


def _read_npy(path: str) -> np.ndarray:
    try:
        # allow_pickle=False: never unpickle (run code from) an input file.
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"invalid --input {path!r}: not a readable .npy file ({exc}); "
                                  f"expected {INPUT_FORMS}") from None
    return to_model_images(array, f"--input {path!r}")


def to_model_images(array: np.ndarray, source: str = "images") -> np.ndarray:
    """Check an (n, 28, 28) or (n, 784) array of pixels and return float32 (n, 784) in [0, 1].

    Integer arrays are pixel values 0..255 (divided by 255, as training did); float arrays must
    already be in [0, 1].
    """
    where = f"invalid {source}"
    if array.ndim not in (2, 3) or array.shape[1:] not in ((IMAGE_SIDE, IMAGE_SIDE), (IMAGE_PIXELS,)):
        raise InputError(f"{where}: shape {array.shape}; expected (N, 28, 28) or (N, 784)")
    if len(array) == 0:
        raise InputError(f"{where}: no images (shape {array.shape}); expected at least one")
    flat = array.reshape(len(array), IMAGE_PIXELS)
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high > 255:
            raise InputError(f"{where}: {array.dtype} values {low}..{high}; expected pixel values 0..255")
        return flat.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(flat)):
            raise InputError(f"{where}: contains NaN or infinity; expected floats in [0, 1]")
        low, high = float(flat.min()), float(flat.max())
        if low < 0.0 or high > 1.0:
            raise InputError(f"{where}: float values {low:g}..{high:g}; expected floats in [0, 1] "
                                      "(or uint8 0..255)")
        return flat.astype(np.float32)
    raise InputError(f"{where}: dtype {array.dtype}; expected uint8 0..255 or float in [0, 1]")


def _read_png(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise InputError(f"invalid --input {path!r}: a {image.format} image; expected {INPUT_FORMS}")
            if image.size != (IMAGE_SIDE, IMAGE_SIDE):
                width, height = image.size
                raise InputError(f"invalid --input {path!r}: image is {width}x{height}; expected a 28x28 PNG "
                                          "(a white digit on black, as in MNIST)")
            # Grayscale as MNIST; colour images are converted with PIL's luminance formula.
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"invalid --input {path!r}: not a readable PNG image ({exc}); "
                                  f"expected {INPUT_FORMS}") from None
    return pixels.reshape(1, IMAGE_PIXELS).astype(np.float32) / 255.0
