"""Input checks and output writing (pure numpy/Pillow), and the real `aetrack encode / reconstruct /
denoise` commands on .npy and PNG files against registered models."""

import numpy as np
import pytest
from PIL import Image

from aetrack.errors import InputError
from aetrack.images import image_rows_grid
from aetrack.use import GRID_COLUMNS, check_output, read_images, to_model_images, write_grid, write_npy
from aetrack.noise import add_noise
from tests.helpers.data import synthetic_digits
from tests.helpers.errors import error_line
from tests.helpers.imports import run_with_import_probe
from tests.helpers.processes import aetrack_in_process, run_aetrack


def aetrack(*args, uri, cwd, timeout=240):
    return run_aetrack(*args, uri=uri, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def digits():
    return synthetic_digits(6, seed=3)[0]  # uint8 (6, 28, 28)


# --- reading and checking, no model --------------------------------------------------------------


def test_npy_and_png_inputs_read_to_the_same_pixels(tmp_path, digits):
    np.save(tmp_path / "u8.npy", digits)
    np.save(tmp_path / "flat.npy", digits.reshape(6, 784) / 255.0)
    for i in range(2):
        Image.fromarray(digits[i]).save(tmp_path / f"d{i}.png")
    Image.fromarray(np.stack([digits[2]] * 3, axis=-1)).save(tmp_path / "rgb.png")  # colour -> grey
    expected = digits.reshape(6, 784).astype(np.float32) / 255.0
    np.testing.assert_allclose(read_images([str(tmp_path / "u8.npy")]), expected, atol=1e-7)
    np.testing.assert_allclose(read_images([str(tmp_path / "flat.npy")]), expected, atol=1e-7)
    mixed = read_images([str(tmp_path / p) for p in ("d0.png", "d1.png", "rgb.png", "u8.npy")])
    assert mixed.shape == (9, 784) and mixed.dtype == np.float32
    np.testing.assert_allclose(mixed[:3], expected[:3], atol=1e-7)
    np.testing.assert_allclose(mixed[3:], expected, atol=1e-7)


@pytest.mark.parametrize(
    "array,expected",
    [
        (np.zeros((2, 27, 28), np.uint8), "shape (2, 27, 28); expected (N, 28, 28) or (N, 784)"),
        (np.zeros((784,), np.float32), "shape (784,)"),
        (np.zeros((0, 784), np.float32), "no images"),
        (np.full((1, 784), 1.5, np.float32), "float values 1.5..1.5; expected floats in [0, 1]"),
        (np.full((1, 784), -3, np.int16), "int16 values -3..-3; expected pixel values 0..255"),
        (np.full((1, 784), np.nan, np.float32), "NaN or infinity"),
        (np.zeros((1, 784), bool), "dtype bool"),
    ],
)
def test_bad_arrays_are_refused(array, expected):
    with pytest.raises(InputError, match="invalid images") as info:
        to_model_images(array)
    assert expected in str(info.value)


def test_bad_files_and_outputs_are_refused(tmp_path):
    (tmp_path / "corrupt.npy").write_bytes(b"not numpy")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "digit.jpg")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    cases = {
        "corrupt.npy": "not a readable .npy file",
        "corrupt.png": "not a readable PNG image",
        "big.png": "image is 32x32; expected a 28x28 PNG",
        "digit.jpg": "unknown file type '.jpg'",
        "objects.npy": "not a readable .npy file",
        "missing.npy": "no such file",
    }
    for name, expected in cases.items():
        with pytest.raises(InputError, match="invalid --input") as info:
            read_images([str(tmp_path / name)])
        assert expected in str(info.value), name
    with pytest.raises(InputError, match="expected a file ending in .npy"):
        check_output(str(tmp_path / "out.csv"), (".npy",))
    with pytest.raises(InputError, match="does not exist"):
        check_output(str(tmp_path / "no" / "out.npy"), (".npy",))
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        check_output(str(tmp_path / "dir.npy"), (".npy",))


def test_writes_are_atomic_and_grid_pairs_inputs_with_outputs(tmp_path, digits):
    images = digits.reshape(6, 784).astype(np.float32) / 255.0
    write_npy(str(tmp_path / "out.npy"), images)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), images)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]  # no temporary left behind
    grid = image_rows_grid(images, 1.0 - images, per_row=4)
    assert grid.shape == (2 * 2 * 30 + 2, 4 * 30 + 2) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[2:30, 2:30], digits[0])  # top-left: first input
    np.testing.assert_array_equal(grid[32:60, 2:30], 255 - digits[0])  # below it: its output
    np.testing.assert_array_equal(grid[62:90, 2:30], digits[4])  # second band starts with image 5


def test_grid_png_shows_nan_outputs_as_black(tmp_path, digits):
    # A diverged model's NaN outputs: black tiles, as in the run's images, not garbage from a cast.
    images = digits[:2].reshape(2, 784).astype(np.float32) / 255.0
    write_grid(str(tmp_path / "grid.png"), images, np.full_like(images, np.nan))
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    np.testing.assert_array_equal(grid[2:30, 2:30], digits[0])
    assert grid[32:60, 2:30].max() == 0 and grid[32:60, 32:60].max() == 0


# --- the real commands -----------------------------------------------------------------------------


@pytest.mark.slow
def test_encode_npy_and_png_like_the_trained_encoder(registered, tmp_path, digits):
    np.save(tmp_path / "x.npy", digits)
    Image.fromarray(digits[0]).save(tmp_path / "one.png")
    out = aetrack("encode", "--model", f"models:/{registered.prefix}-encoder@candidate", "--input", "x.npy",
                  "--input", "one.png", "--output", "codes.npy", uri=registered.uri, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wrote 7 codes of size 8 to codes.npy" in out.stdout
    codes = np.load(tmp_path / "codes.npy")
    images = digits.reshape(6, 784).astype(np.float32) / 255.0
    expected = registered.results[1].model.get_layer("encoder")(images, training=False).numpy()
    assert codes.shape == (7, 8) and codes.dtype == np.float32
    np.testing.assert_allclose(codes[:6], expected, atol=1e-6)
    np.testing.assert_allclose(codes[6], expected[0], atol=1e-6)


@pytest.mark.slow
def test_reconstruct_to_png_grid(registered, tmp_path, digits):
    for i in range(3):
        Image.fromarray(digits[i]).save(tmp_path / f"d{i}.png")
    # A full autoencoder, loaded by version, straight to a grid image.
    out = aetrack("reconstruct", "-m", f"models:/{registered.prefix}-autoencoder/1", "-i", "d0.png", "-i", "d1.png",
                  "-i", "d2.png", "-o", "grid.png", uri=registered.uri, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    images = digits[:3].reshape(3, 784).astype(np.float32) / 255.0
    expected = registered.results[0].model(images, training=False).numpy()
    np.testing.assert_array_equal(grid, image_rows_grid(images, expected, per_row=GRID_COLUMNS))
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)


@pytest.mark.slow
def test_denoise_with_added_noise_npy_and_grid(registered, tmp_path, digits):
    np.save(tmp_path / "x.npy", digits.astype(np.float32) / 255.0)
    out = aetrack("denoise", "-m", f"models:/{registered.prefix}-autoencoder/latest", "-i", "x.npy", "-o", "clean.npy",
                  "--grid", "grid.png", "--add-noise", "0.3", "--seed", "4", uri=registered.uri, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    noisy = add_noise(digits.reshape(6, 784).astype(np.float32) / 255.0, 0.3, 4)
    expected = registered.results[1].model(noisy, training=False).numpy()
    cleaned = np.load(tmp_path / "clean.npy")
    assert cleaned.shape == (6, 28, 28)
    np.testing.assert_allclose(cleaned.reshape(6, 784), expected, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "grid.png")), image_rows_grid(noisy, expected, per_row=GRID_COLUMNS))


@pytest.mark.slow
def test_command_errors_are_one_line_and_fast(registered, tmp_path, digits):
    np.save(tmp_path / "x.npy", digits)
    np.save(tmp_path / "wide.npy", np.zeros((2, 30, 30), np.uint8))
    encoder = f"models:/{registered.prefix}-encoder/1"
    cases = [
        (["encode", "-m", encoder, "-i", "wide.npy", "-o", "c.npy"], "invalid --input 'wide.npy': shape (2, 30, 30)"),
        (["encode", "-m", encoder, "-i", "x.npy", "-o", "c.png"], "invalid --output 'c.png': expected a file ending in .npy"),
        (["reconstruct", "-m", encoder, "-i", "x.npy", "-o", "no/r.npy"], "invalid --output 'no/r.npy': folder"),
        (["denoise", "-m", encoder, "-i", "x.npy", "-o", "r.npy", "--grid", "g.jpg"], "invalid --grid 'g.jpg'"),
        (["denoise", "-m", encoder, "-i", "x.npy", "-o", "r.npy", "--add-noise", "-1"], "invalid --add-noise"),
        (["encode", "-m", encoder, "-o", "c.npy"], "invalid --input: missing; expected an input file"),
    ]
    # The real command in a child process for the first case, the CLI's `main` in this process after.
    line = error_line(aetrack(*cases[0][0], uri=registered.uri, cwd=tmp_path), 2)
    assert cases[0][1] in line, line
    for args, expected in cases[1:]:
        line = error_line(aetrack_in_process(*args, cwd=tmp_path), 2)
        assert expected in line, line
    # These checks happen before TensorFlow, Keras or MLflow are imported.
    probed = run_with_import_probe("encode", "-m", "models:/x/1", "-i", "wide.npy", "-o", "c.npy",
                                   uri=registered.uri, cwd=tmp_path)
    assert "invalid --input 'wide.npy'" in error_line(probed.out, 2)
    assert not {"tensorflow", "keras", "mlflow"} & set(probed.heavy), probed.heavy
    # Model problems are found after loading it; still one line, and nothing is written.
    for args, expected in (
        (["reconstruct", "-m", encoder, "-i", "x.npy", "-o", "r.npy"], "it outputs 8 values per image; expected an autoencoder"),
        (["encode", "-m", f"models:/{registered.prefix}-decoder/1", "-i", "x.npy", "-o", "c.npy"], "it takes 8 values"),
        (["encode", "-m", "models:/no-such-model/1", "-i", "x.npy", "-o", "c.npy"], "invalid --model 'models:/no-such-model/1': cannot load it ("),
    ):
        line = error_line(aetrack_in_process(*args, cwd=tmp_path), 2)
        assert expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.npy", "x.npy"]


def test_sample_decodes_seeded_prior_draws_and_refuses_non_decoders(tmp_path):
    from aetrack.errors import ModelError
    from aetrack.models import build_autoencoder, decoder_of
    from aetrack.use import sample

    vae = build_autoencoder("vae", 3, seed=0)
    decoder_path = tmp_path / "decoder.keras"
    decoder_of(vae).save(decoder_path)
    first = sample(str(decoder_path), str(tmp_path / "a.npy"), count=5, seed=7)
    codes = np.random.default_rng(7).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(first, decoder_of(vae)(codes).numpy(), atol=1e-6)
    assert np.load(tmp_path / "a.npy").shape == (5, 28, 28)
    other_seed = sample(str(decoder_path), str(tmp_path / "b.png"), count=5, seed=8)
    assert not np.allclose(first, other_seed)
    with Image.open(tmp_path / "b.png") as grid:
        assert grid.size == (5 * 30 + 2, 30 + 2)  # 5 tiles in one row (up to 8 to a row)
    autoencoder_path = tmp_path / "autoencoder.keras"
    vae.autoencoder.save(autoencoder_path)
    with pytest.raises(ModelError, match=r"it maps 784 values to 784; expected a decoder"):
        sample(str(autoencoder_path), str(tmp_path / "c.npy"))
    with pytest.raises(InputError, match=r"invalid --output .*\.jpg"):
        sample(str(decoder_path), str(tmp_path / "c.jpg"))
    assert not (tmp_path / "c.npy").exists()
