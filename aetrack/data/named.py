"""The named datasets: `mnist`, `fashion_mnist` and `cifar10` through Keras' download and cache,
and `digits`, scikit-learn's bundled 8x8 digits (no download: the offline choice)."""

from __future__ import annotations

import os

import numpy as np

from aetrack.data.raw import Raw, raw_from_arrays
from aetrack.errors import DataError

# Where `keras.datasets.<name>.load_data()` downloads from (keras/src/datasets/*.py).
KERAS_ORIGINS = {
    "mnist": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
    "fashion_mnist": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
}
DIGITS_SOURCE = "sklearn.datasets.load_digits"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# scikit-learn's digits have no split of their own: the first 1,500 train, the other 297 test.
DIGITS_TRAIN = 1500
DIGITS_MAX = 16  # their values are 0..16 (counts of set pixels in 4x4 blocks)
# The Makefile's `run` and `denoise` recipes set this to their target's name: a user who typed
# `make run` has no `--dataset` to pass, so the offline advice is worded as a make command.
MAKE_TARGET_ENV = "AETRACK_MAKE_TARGET"


def read_named(name: str) -> Raw:
    if name == "digits":
        return _digits()
    arrays = _download(name)
    labels = CIFAR10_CLASSES if name == "cifar10" else ()
    return raw_from_arrays(f"invalid dataset {name!r}", name, KERAS_ORIGINS[name], *arrays, label_names=labels)


def _digits() -> Raw:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # whole numbers 0..16 stored as floats
    labels = bunch.target.astype(np.int64)
    raw = raw_from_arrays("invalid dataset 'digits'", "digits", DIGITS_SOURCE, images[:DIGITS_TRAIN],
                          labels[:DIGITS_TRAIN], images[DIGITS_TRAIN:], labels[DIGITS_TRAIN:])
    return Raw(raw.name, raw.source, raw.spec, raw.x_train, raw.y_train, raw.x_test, raw.y_test, float(DIGITS_MAX))


def _download(name: str) -> tuple[np.ndarray, ...]:
    from aetrack.quiet import load_tensorflow

    load_tensorflow()  # under the CLI its start-up lines stay off the terminal, as for training
    import keras  # heavy: only for the downloaded datasets

    loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist,
              "cifar10": keras.datasets.cifar10}[name]
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # keras raises a bare Exception("URL fetch failure ...") when offline
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"could not download dataset {name!r} ({reason}); {offline_advice(name)}") from None
    return x_train, y_train, x_test, y_test


def offline_advice(name: str) -> str:
    """What works without a download, in the terms of whatever started aetrack (make, else the CLI)."""
    target = os.environ.get(MAKE_TARGET_ENV, "").strip()
    if target:
        return (f"if offline, this works now: make {target} DATASET=digits (scikit-learn's bundled 8x8 digits, "
                f"no download), or a local copy: make {target} DATASET=/path/to/{name}.npz")
    return (f"offline? use --dataset digits (bundled with scikit-learn, no download) or pass a local copy: "
            f"--dataset /path/to/{name}.npz (or -P dataset=/path/to/{name}.npz)")
