"""The operations behind `aetrack encode`, `reconstruct`, `denoise`, `score` and `sample`.

Each checks its arguments and files first (numpy and Pillow only), then loads the model (TensorFlow)
and writes its output atomically.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aetrack.data import IMAGE_SIDE
from aetrack.errors import InputError
from aetrack.models.loading import check_model_spec, load_model
from aetrack.models.prior import prior_draws
from aetrack.use.checks import check_decoder, check_image_model, encoder_for_codes
from aetrack.use.inputs import read_images
from aetrack.use.outputs import check_output, write_grid, write_npy, write_samples_grid


def predict(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run the model in inference mode, in batches; float32 numpy out."""
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def reconstruction_errors(model, images: np.ndarray) -> np.ndarray:
    """Per-image MSE between each image and the model's reconstruction of it, shape (n,)."""
    from aetrack.evaluation import per_image_mse

    return per_image_mse(images, predict(model, images)).astype(np.float32)


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
    generated = predict(model, prior_draws(count, code_size, seed))
    if suffix == ".npy":
        write_npy(output_path, generated.reshape(-1, IMAGE_SIDE, IMAGE_SIDE))
    else:
        write_samples_grid(output_path, generated)
    return generated
