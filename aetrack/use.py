"""Using a trained model (loaded by `aetrack.models.loading`): reading and checking input
images, running the model, writing outputs, and the operations behind `aetrack encode`,
`reconstruct`, `denoise`, `score` and `sample`.

Checking arguments and files uses only numpy and Pillow (which matplotlib brings), so a bad URI,
input or output fails before TensorFlow loads. Images are the models' layout: float32 (n, 784)
in [0, 1], white digits on black as in MNIST.
"""

from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

from aetrack import images
from aetrack.data import IMAGE_PIXELS, IMAGE_SIDE
from aetrack.errors import InputError, ModelError
from aetrack.models.loading import check_model_spec, load_model

GRID_COLUMNS = 16
GRID_MAX_IMAGES = 64
_INPUT_FORMS = "a .npy of shape (N, 28, 28) or (N, 784) (uint8 0..255 or float 0..1) or 28x28 PNG images"


# --- inputs --------------------------------------------------------------------------------------


def read_images(paths: Sequence[str]) -> np.ndarray:
    """Read .npy and/or PNG files into one float32 (n, 784) array in [0, 1], in the order given."""
    if not paths:
        raise InputError(f"invalid --input: none given; expected {_INPUT_FORMS}")
    batches = []
    for path in paths:
        if not os.path.isfile(path):
            what = "is a directory" if os.path.isdir(path) else "no such file"
            raise InputError(f"invalid --input {path!r}: {what}; expected {_INPUT_FORMS}")
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".npy":
            batches.append(_read_npy(path))
        elif suffix == ".png":
            batches.append(_read_png(path))
        else:
            raise InputError(f"invalid --input {path!r}: unknown file type {suffix or '(none)'!r}; "
                                      f"expected {_INPUT_FORMS}")
    return np.concatenate(batches)


def _read_npy(path: str) -> np.ndarray:
    try:
        # allow_pickle=False: never unpickle (run code from) an input file.
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"invalid --input {path!r}: not a readable .npy file ({exc}); "
                                  f"expected {_INPUT_FORMS}") from None
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
                raise InputError(f"invalid --input {path!r}: a {image.format} image; expected {_INPUT_FORMS}")
            if image.size != (IMAGE_SIDE, IMAGE_SIDE):
                width, height = image.size
                raise InputError(f"invalid --input {path!r}: image is {width}x{height}; expected a 28x28 PNG "
                                          "(a white digit on black, as in MNIST)")
            # Grayscale as MNIST; colour images are converted with PIL's luminance formula.
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"invalid --input {path!r}: not a readable PNG image ({exc}); "
                                  f"expected {_INPUT_FORMS}") from None
    return pixels.reshape(1, IMAGE_PIXELS).astype(np.float32) / 255.0


# --- outputs -------------------------------------------------------------------------------------


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
    from aetrack.models import encoder_of

    names = [layer.name for layer in model.layers]
    if "encoder" in names and _output_size(model) == IMAGE_PIXELS:
        return encoder_of(model)
    _check_input(model, uri)
    if _output_size(model) == IMAGE_PIXELS:
        raise ModelError("--model", uri, "it outputs images (784 values), not codes",
                         "an encoder (models:/<prefix>-encoder/...) or an autoencoder")
    return model


def check_decoder(model, uri: str) -> int:
    """Raise unless `model` maps codes to 784-pixel images (a decoder); return its code size."""
    size = model.inputs[0].shape[-1] if model.inputs else None
    if size is None or size == IMAGE_PIXELS or _output_size(model) != IMAGE_PIXELS:
        raise ModelError("--model", uri, f"it maps {size} values to {_output_size(model)}",
                         "a decoder (models:/<prefix>-decoder/...) mapping codes to 784-pixel images")
    return int(size)


def check_image_model(model, uri: str) -> None:
    """Raise unless `model` maps 784 pixels to 784 pixels (an autoencoder or denoiser)."""
    _check_input(model, uri)
    if _output_size(model) != IMAGE_PIXELS:
        raise ModelError("--model", uri, f"it outputs {_output_size(model)} values per image",
                         "an autoencoder (models:/<prefix>-autoencoder/...) giving 784")


def predict(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run the model in inference mode, in batches; float32 numpy out."""
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def reconstruction_errors(model, images: np.ndarray) -> np.ndarray:
    """Per-image MSE between each image and the model's reconstruction of it, shape (n,)."""
    from aetrack.evaluation import per_image_mse

    return per_image_mse(images, predict(model, images)).astype(np.float32)


def _check_input(model, uri: str) -> None:
    size = model.inputs[0].shape[-1] if model.inputs else None
    if size != IMAGE_PIXELS:
        raise ModelError("--model", uri, f"it takes {size} values per input",
                         "a model taking 784-pixel images (not a decoder)")


def _output_size(model) -> int | None:
    return model.outputs[0].shape[-1] if model.outputs else None


# --- the commands' operations --------------------------------------------------------------------
# Each checks its arguments and files first (no TensorFlow), then loads the model and writes.


def encode(model_uri: str, input_paths: Sequence[str], output_path: str) -> np.ndarray:
    """Write the codes of the input images to a .npy; return them, float32 (n, code_size)."""
    images_in = read_images(input_paths)
    check_output(output_path, (".npy",))
    check_model_spec(model_uri)
    model = load_model(model_uri)
    codes = predict(encoder_for_codes(model, model_uri), images_in)
    write_npy(output_path, codes)
    return codes


def transform(model_uri: str, input_paths: Sequence[str], output_path: str, grid_path: str | None = None,
              noise_factor: float | None = None, seed: int = 0) -> np.ndarray:
    """Run an image-to-image model (reconstruct or denoise) on the inputs, optionally noised first
    with `clip(x + noise_factor * N(0, 1), 0, 1)`; write .npy images or a .png grid (and `grid_path`)."""
    images_in = read_images(input_paths)
    suffix = check_output(output_path, (".npy", ".png"))
    if grid_path is not None:
        check_output(grid_path, (".png",), "--grid")
    check_model_spec(model_uri)
    if noise_factor is not None:
        from aetrack.noise import add_noise

        images_in = add_noise(images_in, noise_factor, seed)
    model = load_model(model_uri)
    check_image_model(model, model_uri)
    outputs = predict(model, images_in)
    if suffix == ".npy":
        write_npy(output_path, outputs.reshape(-1, IMAGE_SIDE, IMAGE_SIDE))
    else:
        write_grid(output_path, images_in, outputs)
    if grid_path is not None:
        write_grid(grid_path, images_in, outputs)
    return outputs


def score(model_uri: str, input_paths: Sequence[str], output_path: str) -> np.ndarray:
    """Write each input image's reconstruction error (anomaly score) to a .npy; return them."""
    images_in = read_images(input_paths)
    check_output(output_path, (".npy",))
    check_model_spec(model_uri)
    model = load_model(model_uri)
    check_image_model(model, model_uri)
    errors = reconstruction_errors(model, images_in)
    write_npy(output_path, errors)
    return errors


def sample(model_uri: str, output_path: str, count: int = 64, seed: int = 0) -> np.ndarray:
    """Decode `count` codes drawn from N(0, I) (seeded) and write the images to a .npy
    (float32 (count, 28, 28)) or a .png grid (up to 64); return them, float32 (count, 784).

    Meant for a vae's decoder, whose codes follow the prior; a plain autoencoder's decoder also
    works, but its codes were never pulled towards N(0, I), so most draws decode to blur.
    """
    if count < 1:
        raise InputError(f"invalid --count {count}: expected an integer >= 1")
    suffix = check_output(output_path, (".npy", ".png"))
    check_model_spec(model_uri)
    model = load_model(model_uri)
    code_size = check_decoder(model, model_uri)
    codes = np.random.default_rng(seed).standard_normal((count, code_size)).astype(np.float32)
    generated = predict(model, codes)
    if suffix == ".npy":
        write_npy(output_path, generated.reshape(-1, IMAGE_SIDE, IMAGE_SIDE))
    else:
        write_samples_grid(output_path, generated)
    return generated
