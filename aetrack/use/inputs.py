"""Reading what a model command takes, in two steps: `open_inputs` reads and checks the files
(numpy, Pillow and pandas only, so a missing, corrupt or empty file fails before TensorFlow loads);
`to_model_inputs` then fits them to the model's `SampleSpec` and returns the flat layout,
float32 (n, spec.size): images in [0, 1], table rows as they come (a logged table model scales
its own inputs).

Accepted: `.npy` arrays of shape (N, *spec.shape), (N, H, W) for 1-channel images or (N, spec.size)
(images as uint8 0..255 or floats in [0, 1]); image files (.png, .jpg, .jpeg, .bmp, .gif) of the
model's size, converted to its channels (or resized when asked); CSV or Parquet files for table
models, their columns matched to the training columns by name (others are ignored).

Refusals are ArgumentErrors naming the argument (`input`, `resize`); the CLI spells them as flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.errors import ArgumentError

NPY_SUFFIXES = (".npy",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TABLE_SUFFIXES = (".csv", ".parquet")
_ANY_FORM = (".npy arrays, image files (" + ", ".join(IMAGE_SUFFIXES) + ") or tables ("
             + ", ".join(TABLE_SUFFIXES) + ")")


def expected_shapes(spec: SampleSpec) -> str:
    """`(N, 28, 28) or (N, 784)`, `(N, 32, 32, 3) or (N, 3072)`, `(N, 4)`: the array shapes `spec` takes."""
    if not spec.is_image:
        return f"(N, {spec.size})"
    shape = spec.shape[:2] if spec.channels == 1 else spec.shape
    return f"(N, {', '.join(map(str, shape))}) or (N, {spec.size})"


def input_forms(spec: SampleSpec = MNIST_SPEC) -> str:
    """The inputs a model of `spec` takes, in words for messages and help."""
    if spec.is_image:
        colour = "grayscale" if spec.channels == 1 else "RGB"
        return (f"a .npy of shape {expected_shapes(spec)} (uint8 0..255 or float 0..1) or "
                f"{spec.height}x{spec.width} {colour} images ({', '.join(IMAGE_SUFFIXES)})")
    columns = f"columns {', '.join(spec.feature_names)}" if spec.feature_names else f"{spec.size} numeric columns"
    return f"a .npy of shape {expected_shapes(spec)} or CSV/Parquet files with {columns}"


INPUT_FORMS = input_forms(MNIST_SPEC)


@dataclass(frozen=True)
class InputFile:
    """One input file, read and checked but not yet fitted to a model."""

    path: str
    kind: str  # "array", "image" or "table"
    data: Any = None  # the array (array), the pandas DataFrame (table); images are read when fitted


def _bad(path: str | None, reason: str, remedy: str) -> ArgumentError:
    return ArgumentError("input", path, reason, remedy)


def open_inputs(paths: Sequence[str]) -> list[InputFile]:
    """Read and check each input file (no model needed); refuse the first unusable one."""
    if not paths:
        raise _bad(None, "none given", f"expected {_ANY_FORM}")
    files = []
    for path in paths:
        if not os.path.isfile(path):
            what = "is a directory" if os.path.isdir(path) else "no such file"
            raise _bad(path, what, f"expected {_ANY_FORM}")
        suffix = os.path.splitext(path)[1].lower()
        if suffix in NPY_SUFFIXES:
            files.append(InputFile(path, "array", _load_npy(path)))
        elif suffix in IMAGE_SUFFIXES:
            _check_image_file(path)
            files.append(InputFile(path, "image"))
        elif suffix in TABLE_SUFFIXES:
            files.append(InputFile(path, "table", _load_table(path, suffix)))
        else:
            raise _bad(path, f"unknown file type {suffix or '(none)'!r}", f"expected {_ANY_FORM}")
    return files


def to_model_inputs(files: Sequence[InputFile], spec: SampleSpec = MNIST_SPEC, resize: bool = False) -> np.ndarray:
    """The files' samples, in order, as one float32 (n, spec.size) array in the model's space.
    `resize`: image files of another size are resized to the model's instead of refused."""
    batches = []
    for file in files:
        if file.kind == "array":
            batches.append(to_model_rows(file.data, spec, file.path))
        elif file.kind == "image":
            batches.append(_read_image(file.path, spec, resize))
        else:
            batches.append(_table_rows(file, spec))
    return np.concatenate(batches)


def read_inputs(paths: Sequence[str], spec: SampleSpec = MNIST_SPEC, resize: bool = False) -> np.ndarray:
    """`open_inputs` then `to_model_inputs`: the files as float32 (n, spec.size) rows."""
    return to_model_inputs(open_inputs(paths), spec, resize)


read_images = read_inputs  # the name before specs existed


def to_model_rows(array: np.ndarray, spec: SampleSpec = MNIST_SPEC, path: str | None = None) -> np.ndarray:
    """Check an array of samples against `spec` and return float32 (n, spec.size) rows.

    Image arrays: integers are pixel values 0..255 (divided by 255, as training did), floats must
    lie in [0, 1]. Table arrays: any finite numbers, passed on as they are.
    """
    shapes = [spec.shape, (spec.size,)] + ([spec.shape[:2]] if spec.is_image and spec.channels == 1 else [])
    if array.ndim < 2 or tuple(array.shape[1:]) not in shapes:
        raise _bad(path, f"shape {array.shape}", f"expected {expected_shapes(spec)} for a {spec.describe()} model")
    if len(array) == 0:
        raise _bad(path, f"no samples (shape {array.shape})", "expected at least one")
    flat = array.reshape(len(array), spec.size)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise _bad(path, f"dtype {array.dtype}", "expected uint8 0..255 or float in [0, 1]" if spec.is_image
                   else "expected numbers")
    if not spec.is_image:
        rows = flat.astype(np.float32)
        if not np.all(np.isfinite(rows)):
            raise _bad(path, "contains NaN or infinity", "expected finite numbers")
        return rows
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high > 255:
            raise _bad(path, f"{array.dtype} values {low}..{high}", "expected pixel values 0..255")
        return flat.astype(np.float32) / 255.0
    if not np.all(np.isfinite(flat)):
        raise _bad(path, "contains NaN or infinity", "expected floats in [0, 1]")
    low, high = float(flat.min()), float(flat.max())
    if low < 0.0 or high > 1.0:
        raise _bad(path, f"float values {low:g}..{high:g}", "expected floats in [0, 1] (or uint8 0..255)")
    return flat.astype(np.float32)


def _load_npy(path: str) -> np.ndarray:
    try:
        # allow_pickle=False: never unpickle (run code from) an input file.
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _bad(path, f"not a readable .npy file ({exc})", f"expected {_ANY_FORM}") from None
    if array.ndim < 2 or len(array) == 0:
        raise _bad(path, f"shape {array.shape}" if array.ndim < 2 else f"no samples (shape {array.shape})",
                   "expected (N, ...) with N >= 1 samples")
    return array


def _check_image_file(path: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise _bad(path, f"not a readable image ({exc})", f"expected {_ANY_FORM}") from None


def _read_image(path: str, spec: SampleSpec, resize: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not spec.is_image:
        raise _bad(path, "an image", f"expected {input_forms(spec)} for a {spec.describe()} model")
    try:
        with Image.open(path) as image:
            if image.size != (spec.width, spec.height):
                if not resize:
                    width, height = image.size
                    raise _bad(path, f"image is {width}x{height}",
                               f"expected a {spec.width}x{spec.height} image (or {{resize}} to fit it)")
            # Colour images are made grayscale with PIL's luminance formula, grayscale ones RGB.
            converted = image.convert("L" if spec.channels == 1 else "RGB")
            if converted.size != (spec.width, spec.height):
                converted = converted.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise _bad(path, f"not a readable image ({exc})", f"expected {_ANY_FORM}") from None
    return pixels.reshape(1, spec.size).astype(np.float32) / 255.0


def _load_table(path: str, suffix: str):
    import pandas as pd

    try:
        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pandas and pyarrow raise many types; all mean "unreadable"
        reason = " ".join(str(exc).split())[:200]
        raise _bad(path, f"not a readable {suffix[1:].upper() if suffix == '.csv' else 'Parquet'} file "
                   f"({reason})", "expected a header row of column names, then one row per sample") from None
    if len(frame) == 0:
        raise _bad(path, "no rows", "expected at least one row after the header")
    return frame


def _table_rows(file: InputFile, spec: SampleSpec) -> np.ndarray:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    frame = file.data
    if spec.is_image:
        raise _bad(file.path, "a table", f"expected {input_forms(spec)} for a {spec.describe()} model")
    if spec.feature_names:
        columns = [str(c) for c in frame.columns]
        missing = [name for name in spec.feature_names if name not in columns]
        if missing:
            raise _bad(file.path, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                       f"expected the training columns {', '.join(spec.feature_names)} (others are ignored)")
        frame = frame[list(spec.feature_names)]
    elif frame.shape[1] != spec.size:
        raise _bad(file.path, f"{frame.shape[1]} columns", f"expected {spec.size} numeric columns")
    text = [str(c) for c, dtype in frame.dtypes.items() if is_bool_dtype(dtype) or not is_numeric_dtype(dtype)]
    if text:
        raise _bad(file.path, f"non-numeric column{'s' if len(text) > 1 else ''} {', '.join(text)}",
                   "expected numbers in every feature column")
    rows = frame.to_numpy(dtype=np.float32)
    if not np.all(np.isfinite(rows)):
        raise _bad(file.path, "contains empty cells, NaN or infinity", "expected a finite number in every cell")
    return rows
