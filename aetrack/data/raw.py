"""Arrays as a source gives them (`Raw`), before the splits are cut and values scaled, and the
checks that infer a `SampleSpec` from them.

Every reader (named, arrays, folders, tables) returns a Raw, so the split rules, digests and
scaling live once, in aetrack/data/sources.py. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aetrack.data.spec import TABLE, SampleSpec, image_spec
from aetrack.errors import DataError


@dataclass(frozen=True)
class Raw:
    """One dataset as read: samples (n, *spec.shape) in their stored values, labels if any."""

    name: str
    source: str  # the file's or folder's absolute path, or the download URL
    spec: SampleSpec  # kind, shape, value_range, names; feature scaling is added once the split is cut
    x_train: np.ndarray  # an image folder: its StreamedImages (aetrack/data/streams.py), nothing decoded
    y_train: np.ndarray | None
    x_test: np.ndarray | None  # None: the source has no test split (sources hold one out)
    y_test: np.ndarray | None
    scale: float = 1.0  # model space = stored / scale (255 for uint8 pixels, 16 for scikit-learn's digits)
    standardise: bool = False  # tables: standardise with the training split's mean and std


def raw_from_arrays(where: str, name: str, source: str, x_train: np.ndarray, y_train: np.ndarray | None = None,
                    x_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
                    label_names: tuple[str, ...] = ()) -> Raw:
    """Check numeric arrays and infer their spec: (n, H, W) or (n, H, W, 1|3) images, (n, D) tables.

    `where` starts every message (`invalid dataset 'x.npz'`). Integers must be 0..255 (divided by
    255); float images must lie in [0, 1]; float tables in [0, 1] stay as they are, any others are
    standardised.
    """
    _check_samples(x_train, "x_train", where)
    if x_test is not None:
        _check_samples(x_test, "x_test", where)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(f"{where}: x_test has samples of shape {x_test.shape[1:]} but x_train "
                            f"{x_train.shape[1:]}; expected the same shape in both splits")
        if np.issubdtype(x_test.dtype, np.integer) != np.issubdtype(x_train.dtype, np.integer):
            raise DataError(f"{where}: x_test has dtype {x_test.dtype} but x_train {x_train.dtype}; expected "
                            f"integers 0..255 in both splits or floats in both")
    y_train = check_labels(y_train, len(x_train), "y_train", where)
    y_test = None if x_test is None else check_labels(y_test, len(x_test), "y_test", where)
    integers = np.issubdtype(x_train.dtype, np.integer)
    splits = [x for x in (x_train, x_test) if x is not None]
    in_unit = all(float(x.min()) >= 0.0 and float(x.max()) <= 1.0 for x in splits)
    if x_train.ndim == 2:
        bounded = integers or in_unit
        spec = SampleSpec(TABLE, (x_train.shape[1],), (0.0, 1.0) if bounded else None, label_names=label_names)
        return Raw(name, source, spec, x_train, y_train, x_test, y_test, 255.0 if integers else 1.0, not bounded)
    if not integers and not in_unit:
        low, high = min(float(x.min()) for x in splits), max(float(x.max()) for x in splits)
        raise DataError(f"{where}: float images have values {low:g}..{high:g}; expected floats in [0, 1] "
                        f"or uint8 pixel values 0..255")
    height, width = x_train.shape[1:3]
    channels = x_train.shape[3] if x_train.ndim == 4 else 1
    spec = image_spec(height, width, channels, label_names=label_names)
    shaped = [None if x is None else x.reshape(len(x), height, width, channels) for x in (x_train, x_test)]
    return Raw(name, source, spec, shaped[0], y_train, shaped[1], y_test, 255.0 if integers else 1.0)


def _check_samples(x: np.ndarray, key: str, where: str) -> None:
    allowed = "(n, height, width), (n, height, width, 1 or 3) images or (n, features) rows"
    if x.ndim not in (2, 3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
        raise DataError(f"{where}: {key} has shape {x.shape}; expected {allowed}")
    if len(x) == 0 or x.size == 0:
        raise DataError(f"{where}: {key} is empty; expected at least one sample")
    if np.issubdtype(x.dtype, np.integer):
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > 255:
            raise DataError(f"{where}: {key} has integer values {low}..{high}; expected 0..255 (or floats)")
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{where}: {key} has NaN or infinite values; expected finite numbers")
    else:
        raise DataError(f"{where}: {key} has dtype {x.dtype}; expected uint8 values 0..255 or floats")


def check_labels(y: np.ndarray | None, n: int, key: str, where: str) -> np.ndarray | None:
    """Labels as given ((n,) or (n, 1), non-negative integers), flattened to (n,); None stays None."""
    if y is None:
        return None
    if y.ndim == 2 and y.shape[1] == 1:  # Keras' cifar10 keeps labels as a column
        y = y.reshape(-1)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where}: {key} has shape {y.shape}; expected ({n},) labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {key} has dtype {y.dtype}; expected integer labels")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{where}: {key} has label {int(y.min())}; expected labels >= 0")
    return y
