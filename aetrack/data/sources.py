"""Any dataset as flat float32 rows in the model's space, with its `SampleSpec`.

A source (named download, .npz/.npy, image folder, .csv/.parquet table; see the modules beside
this one) gives a `Raw`; here the splits are cut (held-out test split, excluded labels, first N),
values scaled into the model's space and the arrays used digested. numpy only at import: Keras,
scikit-learn, PIL and pandas load only for the sources that need them.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, replace

import numpy as np

from aetrack.config import DEFAULT_TEST_CAP, KNOWN_DATASETS, TUTORIAL_SAMPLES, TrainConfig
from aetrack.data.raw import Raw
from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.data.streams import Streamed, StreamedImages
from aetrack.data.table_streams import StreamedTable
from aetrack.errors import DataError

IMAGE_SIDE = 28  # MNIST's, the default spec's (MNIST_SPEC)
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
ALLOWED = ("mnist, fashion_mnist, cifar10, digits, or a path to a .npz/.npy file, an image folder or a "
           ".csv/.parquet table")


@dataclass(frozen=True)
class Dataset:
    """Flat float32 samples in the model's space (see `spec`) and their integer labels, if any.

    An image folder's or a table's training split is `Streamed` (a `StreamedImages`: its files,
    decoded batch by batch while training; a `StreamedTable`: its rows, read batch by batch)
    instead of an array: use `train_count` and `streamed`, not `x_train`'s values.
    """

    name: str
    x_train: np.ndarray | Streamed  # (n, spec.size) float32, or the files or rows that give it
    y_train: np.ndarray | None  # (n,) int64; None when the data has no labels
    x_test: np.ndarray
    y_test: np.ndarray | None
    sha256: str  # of the arrays actually used, so runs on different data never look alike
    source: str = ""  # where the arrays came from: the file's or folder's absolute path, or the download URL
    train_sha256: str = ""  # of x_train and y_train as used (the MLflow `training` dataset's digest)
    test_sha256: str = ""  # of x_test and y_test as used (the `evaluation` dataset's digest)
    spec: SampleSpec = MNIST_SPEC  # what one sample is
    excluded_labels: tuple[int, ...] = ()  # label indices left out of training (class names resolved)
    normal_labels: tuple[int, ...] = ()  # label indices trained on alone (normal_labels; class names resolved)

    @property
    def streamed(self) -> bool:
        """The training split is read from its files as it is used (not held in memory)."""
        return isinstance(self.x_train, Streamed)

    @property
    def train_count(self) -> int:
        """Training samples, streamed or not (nothing is decoded)."""
        return len(self.x_train)

    @property
    def test_count(self) -> int:
        return len(self.x_test)


def anomalous_test(dataset: Dataset) -> np.ndarray | None:
    """Which test samples are anomalies (bool, (n_test,)): labels other than the normal ones
    (normal_labels), or the excluded ones (exclude_labels); None when neither was set or the test
    split has no labels (nothing to measure a detector against)."""
    if dataset.y_test is None:
        return None
    if dataset.normal_labels:
        return ~np.isin(dataset.y_test, dataset.normal_labels)
    if dataset.excluded_labels:
        return np.isin(dataset.y_test, dataset.excluded_labels)
    return None


def load_dataset(
    spec: str,
    train_samples: int = 0,
    test_samples: int = 0,
    exclude_digits: tuple[int | str, ...] = (),
    *,
    validation_split: float = 0.1,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    color_mode: str = "",
    label_column: str = "",
    normal_labels: tuple[int | str, ...] = (),
) -> Dataset:
    """Load a dataset (see ALLOWED) and cut its splits.

    With no test split, a seeded `validation_split` fraction of the training data becomes it.
    `exclude_digits` (labels: integers or class names) then drops those labels from the training
    split before the first `train_samples` are taken (the test split keeps every label). 0 samples
    means the default: TUTORIAL_SAMPLES for mnist/fashion_mnist, else all (test: at most
    DEFAULT_TEST_CAP). `normal_labels` instead keeps only those labels in the training split (the
    one-class setting); the two cannot be combined.
    """
    raw = _read(spec, image_size, color_mode, label_column)
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if x_test is None:
        x_train, y_train, x_test, y_test = _hold_out(raw, validation_split, seed, spec)
    if exclude_digits and normal_labels:
        raise DataError(f"invalid normal_labels {','.join(map(str, normal_labels))!r}: exclude_labels is set too; "
                        f"expected one of the two (train on these labels, or on all but those)")
    excluded = _resolve_labels(exclude_digits, raw, spec)
    normal = _resolve_labels(normal_labels, raw, spec, "normal_labels")
    if excluded or normal:
        keep = np.isin(y_train, normal) if normal else ~np.isin(y_train, excluded)
        x_train, y_train = x_train[keep], y_train[keep]
    filtered = ("exclude_labels", exclude_digits) if excluded else ("normal_labels", normal_labels)
    note = f" after {filtered[0]}={','.join(map(str, filtered[1]))}" if excluded or normal else ""
    tutorial = TUTORIAL_SAMPLES.get(raw.name)
    noun = "images" if raw.spec.is_image else "rows"
    n_train = _count(train_samples, len(x_train), tutorial[0] if tutorial else None, "train_samples",
                     f"training {noun}", spec, note)
    n_test = _count(test_samples, len(x_test), tutorial[1] if tutorial else DEFAULT_TEST_CAP, "test_samples",
                    f"test {noun}", spec)
    x_train, x_test = x_train[:n_train], x_test[:n_test]
    if isinstance(x_test, Streamed):  # held out of a streamed split: the test split stays in memory
        x_test = x_test.stored()
    y_train = None if y_train is None else y_train[:n_train]
    y_test = None if y_test is None else y_test[:n_test]
    if len(x_train) == 0:
        raise DataError(f"invalid {filtered[0]} {','.join(map(str, filtered[1]))!r}: dataset {spec!r} has no "
                        f"training samples left; expected labels that leave some")
    sample_spec, (flat_train, flat_test) = _to_model_space(raw, x_train, x_test)
    return Dataset(
        name=raw.name,
        x_train=flat_train,
        y_train=None if y_train is None else y_train.astype(np.int64),
        x_test=flat_test,
        y_test=None if y_test is None else y_test.astype(np.int64),
        sha256=_dataset_sha256(x_train, y_train, x_test, y_test),
        source=raw.source,
        train_sha256=_train_sha256(x_train, y_train),
        test_sha256=_sha256(x_test, y_test),
        spec=sample_spec,
        excluded_labels=excluded,
        normal_labels=normal,
    )


def dataset_for(config: TrainConfig) -> Dataset:
    """The dataset a training config asks for."""
    return load_dataset(config.dataset, config.train_samples, config.test_samples, config.excluded_labels,
                        validation_split=config.validation_split, seed=config.seed, image_size=config.image_hw,
                        color_mode=config.color_mode, label_column=config.label_column,
                        normal_labels=config.normal_label_tokens)


def flatten(images: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """(n, ...) stored values -> float32 (n, size) rows divided by `scale` (uint8 pixels: 255, as the
    tutorial does)."""
    return images.reshape(len(images), -1).astype(np.float32) / scale


def check_dataset_spec(spec: str) -> None:
    """Cheap early check of a dataset argument (no download, no decoding, no TensorFlow); raise DataError."""
    if spec not in KNOWN_DATASETS:
        _kind_of_path(spec)


def _sha256(*arrays: np.ndarray | None) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        if isinstance(array, StreamedTable):  # chunk by chunk: the same bytes as the array in memory
            array.update_digest(digest)
        elif array is not None:  # unlabelled data: the samples alone
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _train_sha256(x_train, y_train) -> str:
    if isinstance(x_train, StreamedImages):
        return x_train.sha256(y_train)  # the files' bytes, not their decoded pixels
    return _sha256(x_train, y_train)


def _dataset_sha256(x_train, y_train, x_test, y_test) -> str:
    if not isinstance(x_train, StreamedImages):
        return _sha256(x_train, y_train, x_test, y_test)
    digest = hashlib.sha256(x_train.sha256(y_train).encode())
    digest.update(_sha256(x_test, y_test).encode())
    return digest.hexdigest()


def _read(spec: str, image_size, color_mode: str, label_column: str) -> Raw:
    kind = "named" if spec in KNOWN_DATASETS else _kind_of_path(spec)
    if (image_size or color_mode) and kind != "folder":
        option = "image_size" if image_size else "color_mode"
        raise DataError(f"invalid {option} for dataset {spec!r}: it applies to image folders only; expected it "
                        f"empty for a {kind} dataset")
    if label_column and kind not in ("table", "table folder"):
        raise DataError(f"invalid label_column {label_column!r} for dataset {spec!r}: it applies to "
                        f".csv/.parquet tables only; expected it empty for a {kind} dataset")
    if kind == "named":
        from aetrack.data.named import read_named

        return read_named(spec)
    if kind in ("folder", "table folder", "table"):
        from aetrack.data import folders, tables

        if kind == "folder":
            return folders.read_image_folder(spec, image_size, color_mode)
        if kind == "table folder":
            return tables.read_table_folder(spec, label_column)
        return tables.read_table(spec, label_column)
    from aetrack.data import arrays

    return arrays.read_npy(spec) if kind == "npy" else arrays.read_npz(spec)


def _kind_of_path(spec: str) -> str:
    """'npz', 'npy', 'table', 'folder' or 'table folder'; DataError when the path cannot be a dataset."""
    from aetrack.data import folders, tables
    from aetrack.data.arrays import is_npy

    where = f"invalid dataset {spec!r}"
    if not os.path.exists(spec):
        # A bare word like 'cifar100' is most likely a dataset name, not a path: say which names exist.
        looks_like_name = os.sep not in spec and "." not in spec
        problem = "unknown dataset name and no such file" if looks_like_name else "no such file"
        raise DataError(f"{where}: {problem}; expected {ALLOWED}")
    if os.path.isdir(spec):
        if tables.split_files(spec)[0]:
            return "table folder"
        if not folders.has_images(spec):
            raise DataError(f"{where}: folder holds no images; expected {folders.EXTENSIONS_TEXT} files in it, "
                            f"in class subfolders or in train/ and test/ (or a train.csv/train.parquet table)")
        return "folder"
    if spec.lower().endswith(tables.TABLE_EXTENSIONS):
        return "table"
    if spec.lower().endswith(".npy") or is_npy(spec):
        return "npy"
    if not zipfile.is_zipfile(spec):
        raise DataError(f"{where}: not an .npz (zip) file; expected {ALLOWED}")
    return "npz"


def _hold_out(raw: Raw, fraction: float, seed: int, spec: str):
    """A seeded `fraction` of the training samples as the test split; both keep the file's order."""
    n = len(raw.x_train)
    n_test = max(1, int(round(fraction * n)))
    if n - n_test < 1:
        raise DataError(f"invalid dataset {spec!r}: {n} sample(s) and no test split; expected at least 2 "
                        f"samples, or a test split of its own")
    order = np.random.default_rng(seed).permutation(n)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    labels = raw.y_train
    return (raw.x_train[train], None if labels is None else labels[train],
            raw.x_train[test], None if labels is None else labels[test])


def _resolve_labels(tokens: tuple[int | str, ...], raw: Raw, spec: str, param: str = "exclude_labels") -> tuple[int, ...]:
    """`param`'s labels as label indices: class names looked up in spec.label_names, integers as
    they are; each must be a label the training split has."""
    if not tokens:
        return ()
    shown = ",".join(map(str, tokens))
    if raw.y_train is None:
        raise DataError(f"invalid {param} {shown!r}: dataset {spec!r} has no labels; expected it empty")
    present = set(np.unique(raw.y_train).tolist())
    names = raw.spec.label_names
    resolved = set()
    for token in tokens:
        text = str(token).strip()
        if text in names:
            resolved.add(names.index(text))
        elif text.isdigit() and (not names or int(text) < len(names)) and (param == "exclude_labels" or
                                                                           int(text) in present):
            resolved.add(int(text))
        else:
            allowed = f"class names ({', '.join(names)}) or label indices 0-{len(names) - 1}" if names \
                else "integer labels" if param == "exclude_labels" else \
                f"labels it has ({', '.join(map(str, sorted(present)))})"
            raise DataError(f"invalid {param} {shown!r}: dataset {spec!r} has no label {text!r}; "
                            f"expected {allowed}")
    return tuple(sorted(resolved))


def _count(n: int, available: int, default: int | None, param: str, what: str, spec: str, note: str = "") -> int:
    if n == 0:  # the default: never more than there is
        return available if default is None else min(default, available)
    if n > available:
        raise DataError(f"invalid {param} {n}: dataset {spec!r} has only {available} {what}{note}; "
                        f"expected {param} <= {available}")
    return n


def _to_model_space(raw: Raw, x_train: np.ndarray, x_test: np.ndarray):
    """(spec with the scaling, (flat train, flat test)): stored values divided by raw.scale, or
    standardised with the training split's mean and std (a constant feature: std 1)."""
    if not raw.standardise:
        # A streamed split decodes straight into the model's space, batch by batch.
        train = x_train if isinstance(x_train, StreamedImages) else flatten(x_train, raw.scale)
        return raw.spec, (train, flatten(x_test, raw.scale))
    if isinstance(x_train, StreamedTable):  # read in chunks, scaled batch by batch while training
        mean, std = x_train.moments()
    else:
        train = x_train.reshape(len(x_train), -1).astype(np.float64)
        mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    spec = replace(raw.spec, value_range=None, feature_mean=tuple(map(float, mean)), feature_std=tuple(map(float, std)))
    if isinstance(x_train, StreamedTable):
        test = ((x_test.reshape(len(x_test), -1) - mean) / std).astype(np.float32)
        return spec, (x_train.scaled(mean, std, spec), test)
    scaled = [((x.reshape(len(x), -1) - mean) / std).astype(np.float32) for x in (x_train, x_test)]
    return spec, tuple(scaled)
