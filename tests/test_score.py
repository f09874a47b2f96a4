"""`aetrack score` as a real subprocess: per-image reconstruction errors of a trained model."""


import numpy as np
import pytest

from tests.helpers.data import synthetic_digits
from tests.helpers.errors import error_line
from tests.helpers.processes import run_aetrack

pytestmark = pytest.mark.slow  # `aetrack score` loads TensorFlow in a child process


def aetrack(*args, cwd):
    return run_aetrack(*args, cwd=cwd, timeout=120)


@pytest.fixture
def saved_model(basic_store, tmp_path):
    """The shared tiny basic run's model, saved as a .keras file."""
    model = basic_store.result.model
    path = tmp_path / "m.keras"
    model.save(path)
    return model, path


def test_score_writes_per_image_mse(saved_model, tmp_path):
    model, path = saved_model
    images, _ = synthetic_digits(10, seed=7)
    np.save(tmp_path / "digits.npy", images)  # uint8 (10, 28, 28)
    out = aetrack("score", "--model", str(path), "--input", "digits.npy", "--output", "scores.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "wrote 10 scores to scores.npy" in out.stdout

    scores = np.load(tmp_path / "scores.npy")
    x = images.reshape(10, 784).astype(np.float32) / 255.0
    expected = np.mean((model(x, training=False).numpy() - x) ** 2, axis=1)
    assert scores.shape == (10,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert len(np.unique(scores)) == 10 and np.all(scores > 0)

    # The same images as (n, 784) floats in [0, 1] give the same scores.
    np.save(tmp_path / "floats.npy", x)
    out = aetrack("score", "--model", str(path), "--input", "floats.npy", "--output", "f.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), scores, rtol=1e-5)


def test_score_errors_are_one_line(tmp_path):
    from aetrack.models import build_dense_autoencoder

    path = tmp_path / "untrained.keras"  # bad input is refused before the model is even loaded
    build_dense_autoencoder(8).save(path)
    np.save(tmp_path / "good.npy", np.zeros((2, 28, 28), np.uint8))
    np.save(tmp_path / "shape.npy", np.zeros((2, 27, 27), np.uint8))
    np.save(tmp_path / "range.npy", np.full((2, 784), 1.5, np.float32))
    (tmp_path / "fake.keras").write_text("not a model")
    cases = [
        (["--input", "missing.npy"], "invalid --input 'missing.npy': no such file"),
        (["--input", "shape.npy"], "invalid --input 'shape.npy': shape (2, 27, 27); expected (N, 28, 28) or (N, 784)"),
        (["--input", "range.npy"], "invalid --input 'range.npy': float values 1.5..1.5; expected floats in [0, 1]"),
        (["--input", "good.npy", "--model", "nope.keras"], "invalid --model 'nope.keras': no such file"),
        (["--input", "good.npy", "--model", "fake.keras"], "invalid --model 'fake.keras': not a readable .keras (zip) file: truncated or corrupt"),
        (["--input", "good.npy", "--output", "scores.txt"], "invalid --output 'scores.txt': expected a file ending in .npy"),
    ]
    for args, expected in cases:
        model_args = [] if "--model" in args else ["--model", str(path)]
        out = aetrack("score", *model_args, *args, cwd=tmp_path)
        # Once TensorFlow is imported it may log start-up lines of its own; aetrack's is one line, the last.
        line = error_line(out, 2)
        assert expected in line and out.stderr.strip().splitlines()[-1] == line, out.stderr
        assert not list(tmp_path.glob("scores*"))  # nothing written
