import hashlib
import re

import numpy as np
import pytest

from aetrack.data import check_dataset_spec, load_dataset
from aetrack.errors import DataError
from tests.helpers.data import REQUIRE_SHARED_DATA, offline, shared_mnist, synthetic_digits, write_npz


def test_loads_keras_layout_and_flattens(tiny_npz):
    data = load_dataset(str(tiny_npz), train_samples=100, test_samples=10)
    assert data.x_train.shape == (100, 784) and data.x_test.shape == (10, 784)
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    with np.load(tiny_npz) as npz:
        np.testing.assert_allclose(data.x_train[0], npz["x_train"][0].reshape(784) / 255.0)
        np.testing.assert_array_equal(data.y_test, npz["y_test"][:10])
    assert data.name == "tiny"


def test_hash_covers_the_arrays_used(tiny_npz):
    a = load_dataset(str(tiny_npz), 100, 10)
    assert a.sha256 == load_dataset(str(tiny_npz), 100, 10).sha256
    assert a.sha256 != load_dataset(str(tiny_npz), 101, 10).sha256
    assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), a.sha256  # lower-case hex SHA-256, as MLflow tags show it
    with np.load(tiny_npz) as npz:
        h = hashlib.sha256()
        for k, n in (("x_train", 100), ("y_train", 100), ("x_test", 10), ("y_test", 10)):
            h.update(np.ascontiguousarray(npz[k][:n]).tobytes())
    assert a.sha256 == h.hexdigest()


def test_exclude_digits_removes_them_from_training_only(tiny_npz):
    data = load_dataset(str(tiny_npz), 100, 64, exclude_digits=(3, 7))
    assert not np.isin(data.y_train, [3, 7]).any()
    assert np.isin(data.y_test, [3, 7]).any()


def _bad(tmp_path, **overrides):
    return str(write_npz(tmp_path / "bad.npz", n_train=20, n_test=5, **overrides))


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"x_train": None}, "missing arrays x_train"),
        ({"x_train": np.zeros((20, 784), np.uint8)}, "x_test has samples of shape (28, 28) but x_train (784,); "
                                                     "expected the same shape"),
        ({"x_train": np.zeros((20, 28, 28, 2), np.uint8)}, "shape (20, 28, 28, 2); expected (n, height, width)"),
        ({"x_train": np.full((20, 28, 28), 2.0), "x_test": np.zeros((5, 28, 28))},
         "values 0..2; expected floats in [0, 1]"),
        ({"x_train": np.zeros((20, 28, 28), np.float32)}, "x_test has dtype uint8 but x_train float32"),
        ({"x_test": np.full((5, 28, 28), 300, np.int32)}, "integer values 300..300; expected 0..255"),
        ({"x_test": np.full((5, 28, 28), -1, np.int16)}, "values -1..-1"),
        ({"x_test": None}, "has y_test but no x_test"),
        ({"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros(0, np.uint8)}, "empty"),
        ({"y_train": np.zeros(7, np.uint8)}, "y_train has shape (7,); expected (20,)"),
        ({"y_test": np.zeros(5, np.float64)}, "expected integer labels"),
    ],
)
def test_rejects_bad_layouts(tmp_path, overrides, message):
    with pytest.raises(DataError) as info:
        load_dataset(_bad(tmp_path, **overrides), 10, 5)
    assert message in str(info.value)


def test_rejects_bad_paths(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        check_dataset_spec(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="folder holds no images"):
        check_dataset_spec(str(tmp_path))
    text = tmp_path / "x.npz"
    text.write_text("not a zip")
    with pytest.raises(DataError, match="not an .npz"):
        load_dataset(str(text), 1, 1)
    check_dataset_spec("mnist")  # named datasets pass the cheap check


def test_rejects_pickled_object_arrays(tmp_path):
    path = tmp_path / "obj.npz"
    x, y = synthetic_digits(4, 0)
    np.savez(path, x_train=np.array([object()] * 4, dtype=object), y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match="numeric arrays"):
        load_dataset(str(path), 1, 1)


def test_more_samples_than_exist(tiny_npz):
    with pytest.raises(DataError, match="train_samples 5000: .* has only 256 training images"):
        load_dataset(str(tiny_npz), 5000, 5)
    with pytest.raises(DataError, match="test_samples 65"):
        load_dataset(str(tiny_npz), 5, 65)
    with pytest.raises(DataError, match="after exclude_labels=1"):
        load_dataset(str(tiny_npz), 256, 5, exclude_digits=(1,))


def test_offline_download_error_is_one_clear_line(monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", 10, 10)
    text = str(info.value)
    assert "could not download dataset 'mnist'" in text and "--dataset /path/to/mnist.npz" in text
    assert "--dataset digits" in text  # the offline choice
    with pytest.raises(DataError, match=r"could not download dataset 'cifar10' .*--dataset digits"):
        load_dataset("cifar10")
    assert "\n" not in text


def test_missing_shared_data_skips_for_a_developer_and_fails_where_required(tmp_path, monkeypatch):
    present, missing = write_npz(tmp_path / "mnist.npz"), tmp_path / "absent" / "mnist.npz"
    monkeypatch.delenv(REQUIRE_SHARED_DATA, raising=False)
    assert shared_mnist(present) == present
    with pytest.raises(pytest.skip.Exception, match="real MNIST not found at"):
        shared_mnist(missing)
    monkeypatch.setenv(REQUIRE_SHARED_DATA, "1")
    assert shared_mnist(present) == present
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_SHARED_DATA}=1 says it must be there"):
        shared_mnist(missing)
