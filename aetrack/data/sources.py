"""Loading image datasets in the Keras `mnist.npz` layout, checked and flattened to [0, 1] floats.

Only numpy is needed to read and check a local file; Keras is imported only to download the named
datasets (`mnist`, `fashion_mnist`) through its own cache.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from aetrack.config import KNOWN_DATASETS, TrainConfig
from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.errors import DataError

IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """Flat float32 samples in the model's space (see `spec`) and their integer labels, if any."""

    name: str
    x_train: np.ndarray  # (n, spec.size) float32
    y_train: np.ndarray | None  # (n,) int64; None when the data has no labels
    x_test: np.ndarray
    y_test: np.ndarray | None
    sha256: str  # of the arrays actually used, so runs on different data never look alike
    source: str = ""  # where the arrays came from: the .npz's absolute path or Keras' download URL
    train_sha256: str = ""  # of x_train and y_train as used (the MLflow `training` dataset's digest)
    test_sha256: str = ""  # of x_test and y_test as used (the `evaluation` dataset's digest)
    spec: SampleSpec = MNIST_SPEC  # what one sample is


def load_dataset(
    spec: str,
    train_samples: int,
    test_samples: int,
    exclude_digits: tuple[int, ...] = (),
) -> Dataset:
    """Load `mnist`, `fashion_mnist` or a Keras-layout .npz path; keep the first N of each split.

    `exclude_digits` drops those labels from the training split before taking the first N, so a
    model can be trained without a class (the test split keeps every label).
    """
    arrays, name = _read_arrays(spec)
    _check_layout(arrays, spec)
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    if exclude_digits:
        keep = ~np.isin(y_train, exclude_digits)
        x_train, y_train = x_train[keep], y_train[keep]
    note = f" after exclude_digits={','.join(map(str, exclude_digits))}" if exclude_digits else ""
    x_train, y_train = _first(x_train, y_train, train_samples, "train_samples", "training", spec, note)
    x_test, y_test = _first(arrays["x_test"], arrays["y_test"], test_samples, "test_samples", "test", spec)
    return Dataset(
        name=name,
        x_train=flatten(x_train),
        y_train=y_train.astype(np.int64),
        x_test=flatten(x_test),
        y_test=y_test.astype(np.int64),
        sha256=_sha256(x_train, y_train, x_test, y_test),
        source=_source(spec),
        train_sha256=_sha256(x_train, y_train),
        test_sha256=_sha256(x_test, y_test),
    )


def _sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# Where `keras.datasets.<name>.load_data()` downloads from (keras/src/datasets/*.py).
KERAS_ORIGINS = {
    "mnist": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
    "fashion_mnist": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
}


def _source(spec: str) -> str:
    return KERAS_ORIGINS[spec] if spec in KNOWN_DATASETS else os.path.abspath(spec)


def dataset_for(config: TrainConfig) -> Dataset:
    """The dataset a training config asks for."""
    return load_dataset(config.dataset, config.train_samples, config.test_samples, config.excluded_digits)


def flatten(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 784) in [0, 1], as the tutorial does (divide by 255)."""
    return images.reshape(len(images), IMAGE_PIXELS).astype(np.float32) / 255.0


def check_dataset_spec(spec: str) -> None:
    """Cheap early check of a dataset argument (no download, no TensorFlow); raise DataError."""
    if spec in KNOWN_DATASETS:
        return
    _check_path(spec)


def _read_arrays(spec: str) -> tuple[dict[str, np.ndarray], str]:
    if spec in KNOWN_DATASETS:
        return _download(spec), spec
    _check_path(spec)
    try:
        with np.load(spec, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"invalid dataset {spec!r}: missing arrays {', '.join(missing)}; expected a "
                    f"Keras-layout .npz with {', '.join(REQUIRED_KEYS)} (found: {', '.join(npz.files) or 'none'})"
                )
            arrays = {k: npz[k] for k in REQUIRED_KEYS}
    except DataError:
        raise
    except ValueError as exc:
        # allow_pickle=False refuses object arrays: never unpickle data from a file.
        raise DataError(f"invalid dataset {spec!r}: {exc}; expected numeric arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"invalid dataset {spec!r}: not a readable .npz file ({exc})") from None
    stem = os.path.splitext(os.path.basename(spec))[0]
    return arrays, stem


def _check_path(spec: str) -> None:
    allowed = f"{', '.join(KNOWN_DATASETS)} or a path to a Keras-layout .npz file"
    if not os.path.exists(spec):
        # A bare word like 'cifar10' is most likely a dataset name, not a path: say which names exist.
        looks_like_name = os.sep not in spec and not spec.endswith(".npz")
        problem = "unknown dataset name and no such file" if looks_like_name else "no such file"
        raise DataError(f"invalid dataset {spec!r}: {problem}; expected {allowed}")
    if os.path.isdir(spec):
        raise DataError(f"invalid dataset {spec!r}: is a directory; expected {allowed}")
    if not zipfile.is_zipfile(spec):
        raise DataError(f"invalid dataset {spec!r}: not an .npz (zip) file; expected {allowed}")


def _download(name: str) -> dict[str, np.ndarray]:
    import keras  # heavy: only for the named datasets

    loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[name]
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # keras raises a bare Exception("URL fetch failure ...") when offline
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"could not download dataset {name!r} ({reason}); offline? pass a local Keras-layout "
            f"file instead: --dataset /path/to/{name}.npz (or -P dataset=/path/to/{name}.npz)"
        ) from None
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _check_layout(arrays: dict[str, np.ndarray], spec: str) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        where = f"invalid dataset {spec!r}: x_{split}"
        if x.ndim != 3 or x.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataError(f"{where} has shape {x.shape}; expected (n, 28, 28) images")
        if len(x) == 0:
            raise DataError(f"{where} is empty; expected at least one image")
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(f"{where} has dtype {x.dtype}; expected uint8 pixel values 0..255")
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > 255:
            raise DataError(f"{where} has values {low}..{high}; expected pixel values 0..255")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"invalid dataset {spec!r}: y_{split} has shape {y.shape}; expected ({len(x)},) labels"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"invalid dataset {spec!r}: y_{split} has dtype {y.dtype}; expected integer labels")


def _first(x, y, n: int, param: str, split: str, spec: str, note: str = ""):
    if n > len(x):
        raise DataError(
            f"invalid {param} {n}: dataset {spec!r} has only {len(x)} {split} images{note}; "
            f"expected {param} <= {len(x)}"
        )
    return x[:n], y[:n]
