"""Tables: a `.csv` or `.parquet` file (the training split alone), or a folder holding
`train.csv`/`train.parquet` and optionally `test.csv`/`test.parquet`. Numeric columns are the
features; `label_column` names an optional label column. pandas (and pyarrow for Parquet) load
only when a table is read.

The training file is read once in chunks (every cell checked, the features written to a
`StreamedTable`'s cache file), so it is streamed while training: memory grows with the chunk and
the batch, not with the file (its labels, one integer a row, stay in memory). A test file is read
into memory, as the evaluation needs it whole."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from aetrack.data.raw import Raw
from aetrack.data.spec import TABLE, SampleSpec
from aetrack.data.table_streams import CHUNK_ROWS, RowCache, StreamedTable
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
    features, x, y, classes = _streamed_columns(path, label_column, where)
    return _raw(path, os.path.splitext(os.path.basename(path))[0], features, classes, x, y, None, None)


def read_table_folder(folder: str, label_column: str = "") -> Raw:
    """train.<csv|parquet> and, if present, test.<csv|parquet> with the same columns."""
    where = f"invalid dataset {folder!r}"
    train_path, test_path = split_files(folder)
    features, x_train, y_train, classes = _streamed_columns(train_path, label_column, where)
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
    x_train = replace(x_train, spec=spec)
    return Raw(name, os.path.abspath(path), spec, x_train, y_train, x_test, y_test, 1.0, standardise=True)


def _streamed_columns(path: str, label_column: str, where: str):
    """As `_columns` for a whole file, read in chunks: (feature names, its StreamedTable, labels or
    None, class names); the features of every chunk go to the cache, the labels are kept."""
    cache = features = None
    labels = _LabelParts(label_column, where, path)
    try:
        for chunk in _chunks(path, where):
            features = _features(chunk, label_column, where)  # each chunk's types are inferred anew
            if cache is None:
                cache = RowCache(len(features))
            cache.append(_finite(chunk, features, where, path, cache.count))
            if label_column:
                labels.add(chunk[label_column], cache.count - len(chunk))
    finally:
        if cache is not None:
            cache.close()
    if cache is None or cache.count == 0:  # no rows: the header alone says what is wrong
        _columns(_frame(path, where, header_only=True), label_column, where, path)
    spec = SampleSpec(TABLE, (len(features),), None, feature_names=tuple(features))
    x = StreamedTable(cache, np.arange(cache.count, dtype=np.int64), spec)
    if not label_column:
        return features, x, None, ()
    y, classes = labels.finish()
    return features, x, y, classes


class _LabelParts:
    """A training file's label column, chunk by chunk, held as integers: integer labels as they are,
    class names as codes into each chunk's names (one int a row, not one string), remapped at the
    end onto the sorted names of the whole file, as `_labels` gives them for the file in memory."""

    def __init__(self, name: str, where: str, path: str):
        self.name, self.where, self.path = name, where, path
        self.parts: list = []  # numpy arrays (numeric chunks) or pandas Categoricals (names)

    def add(self, column, first_row: int) -> None:
        import pandas as pd
        from pandas.api.types import is_numeric_dtype

        missing = column.isna().to_numpy()
        if missing.any():
            raise DataError(f"{self.where}: label column {self.name!r} row {first_row + int(np.argmax(missing)) + 1} "
                            f"of {os.path.basename(self.path)} is empty; expected a label in every row")
        numeric = is_numeric_dtype(column.dtype) and not isinstance(column.dtype, pd.CategoricalDtype)
        self.parts.append(column.to_numpy() if numeric else pd.Categorical(column.astype(str)))

    def finish(self) -> tuple[np.ndarray, tuple[str, ...]]:
        import pandas as pd
        from pandas.api.types import union_categoricals

        if all(isinstance(part, np.ndarray) for part in self.parts):
            return _labels(pd.Series(np.concatenate(self.parts)), self.name, self.where, self.path, None)
        # Some chunk holds names: the whole column is names (as pandas reads a mixed column whole).
        names = union_categoricals([part if isinstance(part, pd.Categorical) else pd.Categorical(part.astype(str))
                                    for part in self.parts])
        classes = tuple(sorted(map(str, names.categories)))
        index = {c: i for i, c in enumerate(classes)}
        position = np.array([index[str(c)] for c in names.categories], np.int64)
        return position[names.codes], classes


def _chunks(path: str, where: str):
    """The table's rows as pandas frames of up to CHUNK_ROWS rows; DataError when it cannot be read."""
    import pandas as pd

    try:
        if path.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            # Not pre-buffered: pyarrow would otherwise read ahead most of the file (its pool
            # peaked at 1.4x a 160 MB table's float64 size); so it holds about one row group.
            table = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
            for batch in table.iter_batches(batch_size=CHUNK_ROWS):
                yield batch.to_pandas()
        else:
            yield from pd.read_csv(path, chunksize=CHUNK_ROWS)
    except (OSError, ValueError, ImportError) as exc:  # pyarrow's and pandas' parser errors are ValueErrors
        raise _unreadable(path, where, exc) from None


def _unreadable(path: str, where: str, exc: Exception) -> DataError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return DataError(f"{where}: cannot read table {path} ({reason}); expected a .csv with a header row "
                     f"or a .parquet file")


def _frame(path: str, where: str, header_only: bool = False):
    import pandas as pd

    try:
        if path.lower().endswith(".parquet"):
            frame = pd.read_parquet(path)
            return frame.iloc[:0] if header_only else frame
        return pd.read_csv(path, nrows=0 if header_only else None)
    except (OSError, ValueError, ImportError) as exc:  # pandas' parser errors are ValueErrors
        raise _unreadable(path, where, exc) from None


def _columns(frame, label_column: str, where: str, path: str, classes: tuple[str, ...] | None = None):
    """(feature names, float64 features (n, D), int64 labels or None, class names).

    `classes`: None for the training split (its labels decide), else the training split's class
    names (empty: it had integer labels), which a test split's labels must match.
    """
    features = _features(frame, label_column, where)
    if len(frame) == 0:
        raise DataError(f"{where}: {os.path.basename(path)} has no rows; expected at least one")
    x = _finite(frame, features, where, path)
    if not label_column:
        return features, x, None, ()
    y, classes = _labels(frame[label_column], label_column, where, path, classes)
    return features, x, y, classes


def _features(frame, label_column: str, where: str) -> list[str]:
    """The feature columns (all but the label); DataError for a missing label or non-numeric column."""
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
    return features


def _finite(frame, features: list[str], where: str, path: str, first_row: int = 0) -> np.ndarray:
    """float64 (n, D) feature values; DataError naming the first NaN or infinite cell (rows count
    from 1, `first_row` rows before this frame)."""
    x = frame[features].to_numpy(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{where}: column {features[col]!r} row {first_row + row + 1} of {os.path.basename(path)} "
                        f"is {frame[features[col]].iloc[row]}; expected finite numbers in every feature cell")
    return x


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
