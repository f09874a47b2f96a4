"""Local numpy files: a Keras-layout `.npz` (`x_train`, optional `y_train`, `x_test`, `y_test`)
or a `.npy` (the training split alone). numpy only; never unpickles."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from aetrack.data.raw import Raw, raw_from_arrays
from aetrack.errors import DataError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: str, name: str | None = None) -> Raw:
    """A Keras-layout .npz: x_train required; y_train, x_test, y_test optional (y_test needs x_test)."""
    where = f"invalid dataset {path!r}"
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x_train" not in npz.files:
                raise DataError(f"{where}: missing arrays x_train; expected a .npz with x_train and optionally "
                                f"{', '.join(NPZ_KEYS[1:])} (found: {', '.join(npz.files) or 'none'})")
            arrays = {k: npz[k] for k in NPZ_KEYS if k in npz.files}
    except DataError:
        raise
    except ValueError as exc:
        # allow_pickle=False refuses object arrays: never unpickle data from a file.
        raise DataError(f"{where}: {exc}; expected numeric arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{where}: not a readable .npz file ({exc})") from None
    if "y_test" in arrays and "x_test" not in arrays:
        raise DataError(f"{where}: has y_test but no x_test; expected x_test with y_test, or neither")
    return raw_from_arrays(where, name or _stem(path), os.path.abspath(path), arrays["x_train"],
                           arrays.get("y_train"), arrays.get("x_test"), arrays.get("y_test"))


def read_npy(path: str) -> Raw:
    """A .npy array: the training split alone, no labels (the test split is held out of it)."""
    where = f"invalid dataset {path!r}"
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}; expected a numeric array") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{where}: not a readable .npy file ({exc})") from None
    return raw_from_arrays(where, _stem(path), os.path.abspath(path), x)


def is_npy(path: str) -> bool:
    """The file starts with numpy's .npy magic bytes."""
    with open(path, "rb") as handle:
        return handle.read(6) == b"\x93NUMPY"


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
