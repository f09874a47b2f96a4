"""Tables: a `.csv` or `.parquet` file (the training split alone), or a folder holding
`train.csv`/`train.parquet` and optionally `test.csv`/`test.parquet`. Numeric columns are the
features; `label_column` names an optional label column. pandas (and pyarrow for Parquet) load
only when a table is read."""

from __future__ import annotations

import os

import numpy as np

from aetrack.data.raw import Raw
from aetrack.data.spec import TABLE, SampleSpec
from aetrack.errors import DataError

TABLE_EXTENSIONS = (".csv", ".parquet")


def split_files(folder: str) -> tuple[str | None, str | None]:
    """(train file, test file) of a table folder; (None, None) when it is no table folder."""
    found = [next((os.path.join(folder, f"{split}{ext}") for ext in TABLE_EXTENSIONS
                   if os.path.isfile(os.path.join(folder, f"{split}{ext}"))), None) for split in ("train", "test")]
    return found[0], found[1]


def read_table(path: str, label_column: str = "") -> Raw:
    """One table file: the training split; the test split is held out of it."""
    where = f"invalid dataset {path!r}"
    features, x, y, classes = _columns(_frame(path, where), label_column, where, path)
    return _raw(path, os.path.splitext(os.path.basename(path))[0], features, classes, x, y, None, None)


def read_table_folder(folder: str, label_column: str = "") -> Raw:
    """train.<csv|parquet> and, if present, test.<csv|parquet> with the same columns."""
    where = f"invalid dataset {folder!r}"
    train_path, test_path = split_files(folder)
    features, x_train, y_train, classes = _columns(_frame(train_path, where), label_column, where, train_path)
    x_test = y_test = None
    if test_path is not None:
        test = _frame(test_path, where)
        expected = [*features, *([label_column] if label_column else [])]
        if sorted(map(str, test.columns)) != sorted(expected):
            raise DataError(f"{where}: {os.path.basename(test_path)} has columns {', '.join(map(str, test.columns))}"
                            f" but {os.path.basename(train_path)} {', '.join(expected)}; expected the same columns")
        _, x_test, y_test, _ = _columns(test[expected], label_column, where, test_path, classes)
    name = os.path.basename(os.path.normpath(folder))
    return _raw(folder, name, features, classes, x_train, y_train, x_test, y_test)


def _raw(path, name, features, classes, x_train, y_train, x_test, y_test) -> Raw:
    spec = SampleSpec(TABLE, (len(features),), None, feature_names=tuple(features), label_names=tuple(classes))
    return Raw(name, os.path.abspath(path), spec, x_train, y_train, x_test, y_test, 1.0, standardise=True)


def _frame(path: str, where: str):
    import pandas as pd

    try:
        if path.lower().endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (OSError, ValueError, ImportError) as exc:  # pandas' parser errors are ValueErrors
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{where}: cannot read table {path} ({reason}); expected a .csv with a header row "
                        f"or a .parquet file") from None


def _columns(frame, label_column: str, where: str, path: str, classes: tuple[str, ...] | None = None):
    """(feature names, float64 features (n, D), int64 labels or None, class names).

    `classes`: None for the training split (its labels decide), else the training split's class
    names (empty: it had integer labels), which a test split's labels must match.
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if label_column and label_column not in columns:
        raise DataError(f"{where}: no column {label_column!r} for label_column; expected one of "
                        f"{', '.join(columns)}")
    features = [c for c in columns if c != label_column]
    for column in features:
        dtype = frame[column].dtype
        if not is_numeric_dtype(dtype) or is_bool_dtype(dtype):
            raise DataError(f"{where}: column {column!r} is not numeric ({dtype}); expected numeric feature "
                            f"columns (name a label column with label_column)")
    if not features:
        raise DataError(f"{where}: no feature columns; expected at least one numeric column besides the label")
    if len(frame) == 0:
        raise DataError(f"{where}: {os.path.basename(path)} has no rows; expected at least one")
    x = frame[features].to_numpy(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{where}: column {features[col]!r} row {row + 1} of {os.path.basename(path)} is "
                        f"{frame[features[col]].iloc[row]}; expected finite numbers in every feature cell")
    if not label_column:
        return features, x, None, ()
    y, classes = _labels(frame[label_column], label_column, where, path, classes)
    return features, x, y, classes


def _labels(column, name: str, where: str, path: str, classes: tuple[str, ...] | None):
    from pandas.api.types import is_integer_dtype, is_numeric_dtype

    missing = column.isna().to_numpy()
    if missing.any():
        raise DataError(f"{where}: label column {name!r} row {int(np.argmax(missing)) + 1} of "
                        f"{os.path.basename(path)} is empty; expected a label in every row")
    if is_numeric_dtype(column.dtype):
        values = column.to_numpy()
        if not is_integer_dtype(column.dtype) or values.min() < 0:
            raise DataError(f"{where}: label column {name!r} has values like {values[0]!r}; expected integers "
                            f">= 0 or class names")
        if classes:
            raise DataError(f"{where}: label column {name!r} of {os.path.basename(path)} holds integers but "
                            f"the training split class names; expected the same kind of label in both")
        return values.astype(np.int64), ()
    if classes == ():
        raise DataError(f"{where}: label column {name!r} of {os.path.basename(path)} holds class names but "
                        f"the training split integers; expected the same kind of label in both")
    names = column.astype(str)
    classes = classes if classes is not None else tuple(sorted(set(names)))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(f"{where}: label {unknown[0]!r} in {os.path.basename(path)} is not a training class; "
                        f"expected one of {', '.join(classes)}")
    return np.array([index[n] for n in names], np.int64), classes
