"""Input checks and output writing (pure numpy/Pillow), every refusal of a model command's arguments
(one table, in this process), and the real `aetrack encode / reconstruct / denoise` commands on .npy
and PNG files against registered models."""

import numpy as np
import pytest
from PIL import Image

from aetrack.errors import ArgumentError
from aetrack.images import image_rows_grid
from aetrack.use import GRID_COLUMNS, read_images, write_grid, write_npy
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


# --- reading, checking and writing, no model -----------------------------------------------------


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


# Every file the refusal table below reads, made once; nothing else may appear beside them.
BAD_FILES = ("good.npy", "shape.npy", "flat.npy", "empty.npy", "range.npy", "int16.npy", "nan.npy", "bool.npy",
             "corrupt.npy", "corrupt.png", "big.png", "digit.txt", "objects.npy", "fake.keras", "dir.npy",
             "mnist.keras")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_files")
    for name, array in (("good.npy", np.zeros((2, 28, 28), np.uint8)), ("shape.npy", np.zeros((2, 27, 28), np.uint8)),
                        ("flat.npy", np.zeros((784,), np.float32)), ("empty.npy", np.zeros((0, 784), np.float32)),
                        ("range.npy", np.full((1, 784), 1.5, np.float32)),
                        ("int16.npy", np.full((1, 784), -3, np.int16)),
                        ("nan.npy", np.full((1, 784), np.nan, np.float32)), ("bool.npy", np.zeros((1, 784), bool)),
                        ("objects.npy", np.array([{"a": 1}], dtype=object))):
        np.save(folder / name, array, allow_pickle=name == "objects.npy")
    (folder / "corrupt.npy").write_bytes(b"not numpy")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "big.png")
    (folder / "digit.txt").write_text("0 0 0")
    (folder / "fake.keras").write_text("not a model")
    from aetrack.models.dense import build_dense_autoencoder

    build_dense_autoencoder(2).save(folder / "mnist.keras")  # a spec-less 784-wide model: read as MNIST
    (folder / "dir.npy").mkdir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(BAD_FILES)
    return folder


MODEL = "models:/x/1"  # a well-formed URI: the cases without "-m" are refused before a model loads
FITTED = ["-m", "mnist.keras"]  # the cases refused once the model (and so the sample shape) is known
REFUSED = [
    # Arrays: shape, emptiness, value range and dtype.
    (["score", "-i", "shape.npy", *FITTED],
     "invalid --input 'shape.npy': shape (2, 27, 28); expected (N, 28, 28) or (N, 784) for a 28x28x1 image model"),
    (["score", "-i", "flat.npy"], "invalid --input 'flat.npy': shape (784,)"),
    (["score", "-i", "empty.npy"], "invalid --input 'empty.npy': no samples"),
    (["score", "-i", "range.npy", *FITTED],
     "invalid --input 'range.npy': float values 1.5..1.5; expected floats in [0, 1]"),
    (["score", "-i", "int16.npy", *FITTED], "int16 values -3..-3; expected pixel values 0..255"),
    (["score", "-i", "nan.npy", *FITTED], "invalid --input 'nan.npy': contains NaN or infinity"),
    (["score", "-i", "bool.npy", *FITTED], "invalid --input 'bool.npy': dtype bool"),
    # Files that cannot be read as samples.
    (["score", "-i", "corrupt.npy"], "invalid --input 'corrupt.npy': not a readable .npy file"),
    (["score", "-i", "objects.npy"], "invalid --input 'objects.npy': not a readable .npy file"),
    (["score", "-i", "corrupt.png"], "invalid --input 'corrupt.png': not a readable image"),
    (["score", "-i", "big.png", *FITTED],
     "invalid --input 'big.png': image is 32x32; expected a 28x28 image (or --resize to fit it)"),
    (["score", "-i", "digit.txt"], "invalid --input 'digit.txt': unknown file type '.txt'"),
    (["score", "-i", "good.npy", "-i", "missing.npy"], "invalid --input 'missing.npy': no such file"),
    (["encode", "-o", "c.npy"], "invalid --input: missing; expected an input file"),
    (["reconstruct", "-i", "good.npy", "-o", "r.csv", *FITTED],
     "invalid --output 'r.csv': expected a file ending in .npy or .png"),  # tables only for table models
    # Outputs: suffix, folder, directory, grid.
    (["score", "-i", "good.npy", "-o", "scores.txt"],
     "invalid --output 'scores.txt': expected a file ending in .npy or .csv or .parquet"),
    (["encode", "-i", "good.npy", "-o", "c.png"], "invalid --output 'c.png': expected a file ending in .npy"),
    (["reconstruct", "-i", "good.npy", "-o", "no/r.npy"], "invalid --output 'no/r.npy': folder"),
    (["score", "-i", "good.npy", "-o", "dir.npy"], "invalid --output 'dir.npy': is a directory"),
    (["denoise", "-i", "good.npy", "-o", "r.npy", "--grid", "g.jpg"], "invalid --grid 'g.jpg'"),
    (["denoise", "-i", "good.npy", "-o", "r.npy", "--add-noise", "-1"], "invalid --add-noise"),
    # Models refused by their argument alone.
    (["score", "-i", "good.npy", "-m", "nope.keras"], "invalid --model 'nope.keras': no such file"),
    (["score", "-i", "good.npy", "-m", "fake.keras"],
     "invalid --model 'fake.keras': not a readable .keras (zip) file: truncated or corrupt"),
]


@pytest.mark.parametrize("args,expected", REFUSED, ids=[" ".join(args) for args, _ in REFUSED])
def test_bad_inputs_outputs_and_models_are_refused_in_one_line(bad_files, args, expected):
    # The CLI's own `main` in this process; test_checks_happen_before_anything_heavy runs the real command.
    model = [] if "-m" in args else ["-m", MODEL]
    line = error_line(aetrack_in_process(*args, *model, cwd=bad_files), 2, only_line=True)
    assert expected in line, line
    assert sorted(p.name for p in bad_files.iterdir()) == sorted(BAD_FILES)  # nothing written


def test_checks_happen_before_anything_heavy(bad_files):
    """The real command in a fresh interpreter: its one error line, and no TensorFlow, Keras or
    MLflow imported by the time it exits."""
    probed = run_with_import_probe("encode", "-m", MODEL, "-i", "empty.npy", "-o", "c.npy", cwd=bad_files)
    assert "invalid --input 'empty.npy': no samples" in error_line(probed.out, 2, only_line=True)
    assert not {"tensorflow", "keras", "mlflow"} & set(probed.heavy), probed.heavy


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
def test_models_that_do_not_fit_the_command_are_refused(registered, tmp_path, digits):
    """Found once the model is loaded; still one line, and nothing is written."""
    np.save(tmp_path / "x.npy", digits)
    for args, expected in (
        (["reconstruct", "-m", f"models:/{registered.prefix}-encoder/1", "-i", "x.npy", "-o", "r.npy"],
         "it outputs 8 values per sample; expected an autoencoder"),
        (["encode", "-m", f"models:/{registered.prefix}-decoder/1", "-i", "x.npy", "-o", "c.npy"], "it takes 8 values"),
        (["encode", "-m", "models:/no-such-model/1", "-i", "x.npy", "-o", "c.npy"],
         "invalid --model 'models:/no-such-model/1': cannot load it ("),
    ):
        line = error_line(aetrack_in_process(*args, cwd=tmp_path), 2)
        assert expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


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
    with pytest.raises(ArgumentError, match=r"invalid output .*\.jpg"):
        sample(str(decoder_path), str(tmp_path / "c.jpg"))
    assert not (tmp_path / "c.npy").exists()
