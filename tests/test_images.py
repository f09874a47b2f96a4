"""Image grids (pure numpy) and the per-epoch images read back from a real MLflow store."""

from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from aetrack import images
from aetrack.data import load_dataset
from aetrack.noise import add_noise
from aetrack.runner import build_model
from aetrack.train import train
from tests.helpers.artifacts import step_images

PAD = images.PAD
SIDE = 28


def tile(grid: np.ndarray, r: int, c: int, h: int, w: int) -> np.ndarray:
    """Tile (r, c) of a grid of h x w tiles, by the documented layout (written out here on purpose)."""
    top, left = PAD + r * (h + PAD), PAD + c * (w + PAD)
    return grid[top : top + h, left : left + w]


# --- pure grid geometry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, shape",
    [(64, (4, 16)), (32, (4, 8)), (12, (3, 4)), (7, (1, 7)), (16, (4, 4)), (1, (1, 1)), (128, (8, 16))],
)
def test_code_shape_is_the_seed_shape_or_the_most_square(size, shape):
    assert images.code_shape(size) == shape


def test_code_shape_rejects_zero():
    with pytest.raises(ValueError, match="code_size 0"):
        images.code_shape(0)


def test_reconstruction_grid_geometry_and_pixels():
    rng = np.random.default_rng(0)
    originals, outputs = rng.random((5, 784), dtype=np.float32), rng.random((5, 784), dtype=np.float32)
    grid = images.reconstruction_grid(originals, outputs)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * SIDE + 3 * PAD, 5 * SIDE + 6 * PAD)
    for c in range(5):
        np.testing.assert_array_equal(tile(grid, 0, c, SIDE, SIDE), np.rint(originals[c].reshape(28, 28) * 255))
        np.testing.assert_array_equal(tile(grid, 1, c, SIDE, SIDE), np.rint(outputs[c].reshape(28, 28) * 255))
    # Separators are mid-grey, so a black background never merges with its neighbour.
    assert (grid[:PAD] == images.PAD_VALUE).all() and (grid[:, SIDE + PAD : SIDE + 2 * PAD] == images.PAD_VALUE).all()

    three = images.denoise_grid(outputs, originals, outputs)
    assert three.shape == (3 * SIDE + 4 * PAD, 5 * SIDE + 6 * PAD)


def test_many_samples_wrap_into_bands_of_eight():
    rng = np.random.default_rng(1)
    noisy, denoised, clean = (rng.random((10, 784), dtype=np.float32) for _ in range(3))
    grid = images.denoise_grid(noisy, denoised, clean)
    # Samples 0-7 in grid rows 0-2, samples 8-9 in rows 3-5 (columns 0-1), the rest grey.
    assert grid.shape == (6 * SIDE + 7 * PAD, 8 * SIDE + 9 * PAD)
    for r, row in enumerate((noisy, denoised, clean)):
        np.testing.assert_array_equal(tile(grid, r, 7, SIDE, SIDE), np.rint(row[7].reshape(28, 28) * 255))
        np.testing.assert_array_equal(tile(grid, 3 + r, 1, SIDE, SIDE), np.rint(row[9].reshape(28, 28) * 255))
        assert (tile(grid, 3 + r, 2, SIDE, SIDE) == images.PAD_VALUE).all()


def test_latent_codes_grid_geometry_and_fixed_scale():
    codes = np.arange(10 * 64, dtype=np.float32).reshape(10, 64) / 640.0  # 0 .. ~1
    grid = images.latent_codes_grid(codes, scale=2.0)
    zoom = images.code_zoom(4, 16)
    assert zoom == 7
    h, w = 4 * zoom, 16 * zoom
    # Wide 4x16 codes stack in a roughly square grid: 10 codes -> 2 per row, 5 rows.
    assert images.codes_per_row(10, h, w) == 2 and images.codes_per_row(8, h, w) == 1
    assert images.codes_per_row(64, h, w) == 4 and images.codes_per_row(5, 28, 28) == 2
    assert grid.shape == (5 * h + 6 * PAD, 2 * w + 3 * PAD)
    first = tile(grid, 0, 0, h, w)[::zoom, ::zoom]
    np.testing.assert_array_equal(first, np.rint(codes[0].reshape(4, 16) / 2.0 * 255))
    tenth = tile(grid, 4, 1, h, w)[::zoom, ::zoom]
    np.testing.assert_array_equal(tenth, np.rint(codes[9].reshape(4, 16) / 2.0 * 255))
    odd = images.latent_codes_grid(codes[:9], scale=2.0)
    assert (tile(odd, 4, 1, h, w) == images.PAD_VALUE).all()  # 9 codes: the last slot is grey
    # The scale, not the codes' own range, sets the brightness: halving it doubles the pixels.
    brighter = tile(images.latent_codes_grid(codes, scale=1.0), 0, 0, h, w)[::zoom, ::zoom]
    np.testing.assert_array_equal(brighter, np.rint(codes[0].reshape(4, 16) * 255))
    # Values above the scale saturate instead of rescaling the image.
    assert tile(images.latent_codes_grid(codes * 10, scale=1.0), 4, 1, h, w).max() == 255


def test_code_scale_and_sample_indices():
    assert images.code_scale(np.array([[0.0, 3.0]])) == pytest.approx(3.0 * images.CODE_SCALE_HEADROOM)
    assert images.code_scale(np.zeros((2, 4))) == 1.0  # dead codes: any positive scale will do
    a = images.sample_indices(100, 8, seed=3)
    assert a.tolist() == images.sample_indices(100, 8, seed=3).tolist()
    assert len(set(a.tolist())) == 8 and a.tolist() == sorted(a.tolist()) and a.max() < 100
    assert a.tolist() != images.sample_indices(100, 8, seed=4).tolist()
    assert images.sample_indices(5, 8, seed=0).tolist() == [0, 1, 2, 3, 4]


# --- per-epoch images in a real store -------------------------------------------------------------


def read_png(run_id: str, path: str, tmp_path: Path) -> np.ndarray:
    local = MlflowClient().download_artifacts(run_id, path, str(tmp_path))
    with Image.open(local) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def test_basic_images_every_epoch_show_inputs_and_model_outputs(basic_run, tmp_path):
    config, result = basic_run.config, basic_run.result
    assert (config.epochs, config.image_samples, config.image_every) == (3, 5, 1)
    logged = step_images(result.run_id)
    assert set(logged) == {"reconstruction", "latent_codes"}
    # Step 0 is the untrained model (the UI's image grid opens at step 0), then one per epoch.
    assert sorted(logged["reconstruction"]) == [0, 1, 2, 3] and sorted(logged["latent_codes"]) == [0, 1, 2, 3]

    data = load_dataset(config.dataset, config.train_samples, config.test_samples)
    sample = images.sample_indices(config.test_samples, 5, config.seed)
    last = read_png(result.run_id, logged["reconstruction"][3], tmp_path)
    assert last.dtype == np.uint8 and last.shape == (2 * SIDE + 3 * PAD, 5 * SIDE + 6 * PAD)  # greyscale
    outputs = result.model(data.x_test[sample], training=False).numpy()
    for c, i in enumerate(sample):
        # Originals: the test images, to the pixel (they are k/255 values, so exact).
        np.testing.assert_array_equal(tile(last, 0, c, SIDE, SIDE), np.rint(data.x_test[i].reshape(28, 28) * 255))
        # Reconstructions: the final model's output for the same images (the last epoch's weights).
        diff = tile(last, 1, c, SIDE, SIDE).astype(int) - np.rint(outputs[c].reshape(28, 28) * 255)
        assert np.abs(diff).max() <= 1
    # The same sample every epoch: the originals row never changes; the reconstructions do.
    first = read_png(result.run_id, logged["reconstruction"][1], tmp_path)
    originals_band = slice(0, SIDE + 2 * PAD)
    np.testing.assert_array_equal(first[originals_band], last[originals_band])
    assert not np.array_equal(first, last)

    # Latent codes: 5 codes of 16 (-> 4x4, 28x28 tiles, 2 to a row) on the scale fixed at epoch 1
    # (logged as a tag).
    codes = result.model.get_layer("encoder")(data.x_test[sample], training=False).numpy()
    zoom = images.code_zoom(4, 4)
    h = w = 4 * zoom
    latent = read_png(result.run_id, logged["latent_codes"][3], tmp_path)
    assert latent.shape == (3 * h + 4 * PAD, 2 * w + 3 * PAD)
    scale = float(MlflowClient().get_run(result.run_id).data.tags["aetrack.latent_codes_white"])
    assert scale > 0
    for i in range(5):
        expected = np.rint(np.clip(codes[i].reshape(4, 4) / scale, 0, 1) * 255)
        assert np.abs(tile(latent, i // 2, i % 2, h, w)[::zoom, ::zoom] - expected).max() <= 1

    # Step 0: the untrained model (same seed, same initial weights), codes on the same fixed scale.
    keras.utils.set_random_seed(config.seed)
    untrained = build_model(config.for_data(bounded=True), data.spec)
    before = read_png(result.run_id, logged["reconstruction"][0], tmp_path)
    untrained_outputs = untrained(data.x_test[sample], training=False).numpy()
    untrained_codes = untrained.get_layer("encoder")(data.x_test[sample], training=False).numpy()
    latent0 = read_png(result.run_id, logged["latent_codes"][0], tmp_path)
    for c in range(5):
        diff = tile(before, 1, c, SIDE, SIDE).astype(int) - np.rint(untrained_outputs[c].reshape(28, 28) * 255)
        assert np.abs(diff).max() <= 1
        expected = np.rint(np.clip(untrained_codes[c].reshape(4, 4) / scale, 0, 1) * 255)
        assert np.abs(tile(latent0, c // 2, c % 2, h, w)[::zoom, ::zoom] - expected).max() <= 1


def test_denoise_images_show_noisy_denoised_and_clean(denoise_run, tmp_path):
    config, result = denoise_run.config, denoise_run.result
    assert (config.epochs, config.image_samples, config.noise_factor, config.seed) == (3, 3, 0.5, 2)
    logged = step_images(result.run_id)
    assert sorted(logged["reconstruction"]) == [0, 1, 2, 3] and sorted(logged["latent_codes"]) == [0, 1, 2, 3]
    # The last epoch's image shows the final model's outputs.
    grid = read_png(result.run_id, logged["reconstruction"][3], tmp_path)
    assert grid.shape == (3 * SIDE + 4 * PAD, 3 * SIDE + 4 * PAD)

    data = load_dataset(config.dataset, config.train_samples, config.test_samples)
    sample = images.sample_indices(config.test_samples, 3, config.seed)
    # The same noisy validation inputs that training used (seed + 1), rebuilt from the params.
    noisy = add_noise(data.x_test, 0.5, config.seed + 1)[sample]
    denoised = result.model(noisy, training=False).numpy()
    for c, i in enumerate(sample):
        assert np.abs(tile(grid, 0, c, SIDE, SIDE) - np.rint(noisy[c].reshape(28, 28) * 255)).max() <= 1
        assert np.abs(tile(grid, 1, c, SIDE, SIDE) - np.rint(denoised[c].reshape(28, 28) * 255)).max() <= 1
        np.testing.assert_array_equal(tile(grid, 2, c, SIDE, SIDE), np.rint(data.x_test[i].reshape(28, 28) * 255))


def test_image_every_sets_the_steps(tracking, tiny_config):
    every_other = train(tiny_config(epochs=5, image_every=2))
    logged = step_images(every_other.run_id)
    assert sorted(logged["reconstruction"]) == [0, 2, 4] and sorted(logged["latent_codes"]) == [0, 2, 4]


def test_image_every_zero_logs_no_step_images(one_epoch_run):
    off = one_epoch_run.result
    assert one_epoch_run.config.image_every == 0
    assert step_images(off.run_id) == {}
    assert MlflowClient().list_artifacts(off.run_id, "images") == []
    # Per-epoch images off does not turn off the end-of-run figures.
    assert {a.path for a in MlflowClient().list_artifacts(off.run_id, "figures")} >= {"figures/loss_curves.png"}
