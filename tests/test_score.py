"""`aetrack score`, the real command in a child process: per-image reconstruction errors of a trained
model. (Its refusals of bad inputs, outputs and models: test_use.py.)"""


import numpy as np
import pytest

from tests.helpers.data import synthetic_digits
from tests.helpers.processes import aetrack_in_process, run_aetrack

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

    # The same images as (n, 784) floats in [0, 1] give the same scores (this process's CLI `main`:
    # the child above already ran the whole command; refusals are in test_use.py's table).
    np.save(tmp_path / "floats.npy", x)
    out = aetrack_in_process("score", "--model", str(path), "--input", "floats.npy", "--output", "f.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), scores, rtol=1e-5)
