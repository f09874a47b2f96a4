"""Using a trained model on image files: read and check inputs, run the model, write outputs.

Reading and checking use only numpy and Pillow (which matplotlib brings), so bad inputs and
unwritable outputs fail before TensorFlow loads. Images are the model's layout: float32 (n, 784)
in [0, 1], white digits on black as in MNIST.
"""

from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

from aetrack.data import IMAGE_PIXELS, IMAGE_SIDE
GRID_COLUMNS = 16
GRID_MAX_IMAGES = 64
_INPUT_FORMS = "a .npy of shape (N, 28, 28) or (N, 784) (uint8 0..255 or float 0..1) or 28x28 PNG images"


class InferenceInputError(ValueError):
    """An input or output file that cannot be used; the message names it and what is allowed."""


# --- inputs --------------------------------------------------------------------------------------


def read_images(paths: Sequence[str]) -> np.ndarray:
    """Read .npy and/or PNG files into one float32 (n, 784) array in [0, 1], in the order given."""
    if not paths:
        raise InferenceInputError(f"invalid --input: none given; expected {_INPUT_FORMS}")
    batches = []
    for path in paths:
        if not os.path.isfile(path):
            what = "is a directory" if os.path.isdir(path) else "no such file"
            raise InferenceInputError(f"invalid --input {path!r}: {what}; expected {_INPUT_FORMS}")
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".npy":
            batches.append(_read_npy(path))
        elif suffix == ".png":
            batches.append(_read_png(path))
        else:
            raise InferenceInputError(f"invalid --input {path!r}: unknown file type {suffix or '(none)'!r}; "
                                      f"expected {_INPUT_FORMS}")
    return np.concatenate(batches)


def _read_npy(path: str) -> np.ndarray:
    try:
        # allow_pickle=False: never unpickle (run code from) an input file.
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InferenceInputError(f"invalid --input {path!r}: not a readable .npy file ({exc}); "
                                  f"expected {_INPUT_FORMS}") from None
    return to_model_images(array, f"--input {path!r}")


def to_model_images(array: np.ndarray, source: str = "images") -> np.ndarray:
    """Check an (n, 28, 28) or (n, 784) array of pixels and return float32 (n, 784) in [0, 1].

    Integer arrays are pixel values 0..255 (divided by 255, as training did); float arrays must
    already be in [0, 1].
    """
    where = f"invalid {source}"
    if array.ndim not in (2, 3) or array.shape[1:] not in ((IMAGE_SIDE, IMAGE_SIDE), (IMAGE_PIXELS,)):
        raise InferenceInputError(f"{where}: shape {array.shape}; expected (N, 28, 28) or (N, 784)")
    if len(array) == 0:
        raise InferenceInputError(f"{where}: no images (shape {array.shape}); expected at least one")
    flat = array.reshape(len(array), IMAGE_PIXELS)
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high > 255:
            raise InferenceInputError(f"{where}: {array.dtype} values {low}..{high}; expected pixel values 0..255")
        return flat.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(flat)):
            raise InferenceInputError(f"{where}: contains NaN or infinity; expected floats in [0, 1]")
        low, high = float(flat.min()), float(flat.max())
        if low < 0.0 or high > 1.0:
            raise InferenceInputError(f"{where}: float values {low:g}..{high:g}; expected floats in [0, 1] "
                                      "(or uint8 0..255)")
        return flat.astype(np.float32)
    raise InferenceInputError(f"{where}: dtype {array.dtype}; expected uint8 0..255 or float in [0, 1]")


def _read_png(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise InferenceInputError(f"invalid --input {path!r}: a {image.format} image; expected {_INPUT_FORMS}")
            if image.size != (IMAGE_SIDE, IMAGE_SIDE):
                width, height = image.size
                raise InferenceInputError(f"invalid --input {path!r}: image is {width}x{height}; expected a 28x28 PNG "
                                          "(a white digit on black, as in MNIST)")
            # Grayscale as MNIST; colour images are converted with PIL's luminance formula.
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InferenceInputError(f"invalid --input {path!r}: not a readable PNG image ({exc}); "
                                  f"expected {_INPUT_FORMS}") from None
    return pixels.reshape(1, IMAGE_PIXELS).astype(np.float32) / 255.0


# --- outputs -------------------------------------------------------------------------------------


def check_output(path: str, suffixes: Sequence[str], option: str = "--output") -> str:
    """Check that `path` has an allowed suffix and can be created; return its lower-case suffix."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in suffixes:
        raise InferenceInputError(f"invalid {option} {path!r}: expected a file ending in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise InferenceInputError(f"invalid {option} {path!r}: is a directory; expected a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InferenceInputError(f"invalid {option} {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise InferenceInputError(f"invalid {option} {path!r}: not writable")
    return suffix


def write_npy(path: str, array: np.ndarray) -> None:
    """Write atomically: a reader never sees a half-written file, a failure leaves none."""
    _write_atomically(path, lambda f: np.save(f, array, allow_pickle=False))


def write_grid(path: str, inputs: np.ndarray, outputs: np.ndarray) -> None:
    """A PNG of up to 64 images: rows of inputs, each followed by the row of their outputs."""
    from PIL import Image

    pixels = image_grid(inputs[:GRID_MAX_IMAGES], outputs[:GRID_MAX_IMAGES])
    _write_atomically(path, lambda f: Image.fromarray(pixels, mode="L").save(f, format="PNG"))


def image_grid(inputs: np.ndarray, outputs: np.ndarray, columns: int = GRID_COLUMNS, gap: int = 2) -> np.ndarray:
    """uint8 grid: for every `columns` images, a row of inputs then a row of outputs, grey gaps."""
    n = len(inputs)
    columns = min(columns, n)
    bands = -(-n // columns)
    cell = IMAGE_SIDE + gap
    grid = np.full((2 * bands * cell + gap, columns * cell + gap), 96, dtype=np.uint8)
    for i in range(n):
        band, column = divmod(i, columns)
        for offset, images in enumerate((inputs, outputs)):
            top = (2 * band + offset) * cell + gap
            left = column * cell + gap
            tile = np.clip(images[i].reshape(IMAGE_SIDE, IMAGE_SIDE), 0.0, 1.0)
            grid[top:top + IMAGE_SIDE, left:left + IMAGE_SIDE] = np.round(tile * 255).astype(np.uint8)
    return grid


def _write_atomically(path: str, write) -> None:
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


# --- running the model ---------------------------------------------------------------------------


def encoder_for_codes(model, uri: str):
    """The model that maps images to codes: an encoder as given, or a full autoencoder's encoder."""
    names = [layer.name for layer in model.layers]
    if "encoder" in names and _output_size(model) == IMAGE_PIXELS:
        return model.get_layer("encoder")
    _check_input(model, uri)
    if _output_size(model) == IMAGE_PIXELS:
        raise InferenceInputError(f"invalid --model {uri!r}: it outputs images (784 values), not codes; "
                                  "expected an encoder (models:/<prefix>-encoder/...) or an autoencoder")
    return model


def check_image_model(model, uri: str) -> None:
    """Raise unless `model` maps 784 pixels to 784 pixels (an autoencoder or denoiser)."""
    _check_input(model, uri)
    if _output_size(model) != IMAGE_PIXELS:
        raise InferenceInputError(f"invalid --model {uri!r}: it outputs {_output_size(model)} values per image; "
                                  "expected an autoencoder (models:/<prefix>-autoencoder/...) giving 784")


def predict(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run the model in inference mode, in batches; float32 numpy out."""
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def _check_input(model, uri: str) -> None:
    size = model.inputs[0].shape[-1] if model.inputs else None
    if size != IMAGE_PIXELS:
        raise InferenceInputError(f"invalid --model {uri!r}: it takes {size} values per input; "
                                  "expected a model taking 784-pixel images (not a decoder)")


def _output_size(model) -> int | None:
    return model.outputs[0].shape[-1] if model.outputs else None
