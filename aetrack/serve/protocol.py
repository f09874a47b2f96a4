"""What `aetrack serve` accepts and answers, without HTTP: a request body and its Content-Type in,
the response body (or a RequestError saying what is allowed) out.

JSON is read and written with orjson: it parses numbers straight from bytes, refuses nesting past
its own depth limit (so a deep body is a clean error, never a RecursionError) and writes float32
arrays without turning them into Python lists first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from http import HTTPStatus
from typing import Callable, NamedTuple

import numpy as np
import orjson

from aetrack.data import IMAGE_PIXELS
from aetrack.errors import RequestError

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
TENSOR_KEYS = ("inputs", "instances")
DATAFRAME_KEYS = ("dataframe_split", "dataframe_records")
JSON_KEYS = TENSOR_KEYS + DATAFRAME_KEYS
_SPLIT_KEYS = {"columns", "data", "index"}


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and what its requests must look like."""

    predict: Callable[[np.ndarray], np.ndarray]  # float32 (n, input_width) -> float32 (n, output_width)
    input_width: int
    output_width: int

    @property
    def takes_images(self) -> bool:
        return self.input_width == IMAGE_PIXELS

    def describe(self) -> str:
        what = "images" if self.takes_images else "codes"
        return f"{what} ({self.input_width} values) -> {self.output_width} values"


class Answer(NamedTuple):
    """A response body, its Content-Type and how many rows it answered (for the request log)."""

    content_type: str
    body: bytes
    rows: int


def check_batch(array: np.ndarray, model: ServedModel) -> np.ndarray:
    """The request's rows as float32 (n, input_width); a RequestError saying what is allowed otherwise."""
    expected = f"expected numbers of shape (N, {model.input_width})"
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise RequestError(f"invalid inputs: not a rectangular array of numbers (dtype {array.dtype}); {expected}")
    if array.ndim != 2 or array.shape[1] != model.input_width or array.shape[0] == 0:
        raise RequestError(f"invalid inputs: shape {array.shape}; {expected}, N >= 1")
    if array.dtype == np.uint8 and model.takes_images:
        array = array / np.float32(255.0)  # pixel values, as training divided them
    batch = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(batch)):
        raise RequestError(f"invalid inputs: contains NaN or infinity; {expected}, finite")
    if model.takes_images:
        low, high = float(batch.min()), float(batch.max())
        if low < 0.0 or high > 1.0:
            raise RequestError(f"invalid inputs: values {low:g}..{high:g}; expected pixels as floats in [0, 1] "
                               "(or, in a .npy, uint8 0..255)")
    return np.ascontiguousarray(batch)


def _rows(value: object) -> np.ndarray:
    try:
        rows = np.asarray(value)
    except (ValueError, TypeError, RecursionError):  # ragged rows, or deeper than numpy's 64 dimensions
        raise RequestError("invalid inputs: rows of different lengths; expected a list of equal-length rows") from None
    if rows.ndim == 3 and rows.shape[1] == 1:
        # One column holding each row as a list: MLflow's form of a tensor in a DataFrame cell.
        rows = rows.reshape(rows.shape[0], -1)
    return rows


def _split_rows(split: object) -> np.ndarray:
    form = 'expected {"columns": [...], "data": [[...], ...]} (and optionally "index")'
    if not isinstance(split, dict) or "data" not in split or set(split) - _SPLIT_KEYS:
        found = sorted(split) if isinstance(split, dict) else type(split).__name__
        raise RequestError(f"invalid dataframe_split: found {found}; {form}")
    rows = _rows(split["data"])
    columns = split.get("columns")
    if columns is not None:
        if not isinstance(columns, list):
            raise RequestError(f"invalid dataframe_split: columns is a {type(columns).__name__}; {form}")
        data = split["data"]
        width = len(data[0]) if isinstance(data, list) and data and isinstance(data[0], list) else None
        if len(columns) != width:
            raise RequestError(f"invalid dataframe_split: {len(columns)} columns for rows of {width} values; "
                               "expected one column name per value")
    return rows


def _records_rows(records: object) -> np.ndarray:
    form = 'expected a list of records [{"column": value, ...}, ...], all with the same columns'
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise RequestError(f"invalid dataframe_records: not a non-empty list of objects; {form}")
    columns = list(records[0])
    try:
        # Values in the order of the first record's columns, as pandas (and so MLflow) orders them.
        rows = [[record[column] for column in columns] for record in records]
    except KeyError as missing:
        raise RequestError(f"invalid dataframe_records: a record lacks column {missing.args[0]!r}; {form}") from None
    if any(len(record) != len(columns) for record in records):
        raise RequestError(f"invalid dataframe_records: records with different columns; {form}")
    return _rows(rows)


def parse_json_body(body: bytes) -> np.ndarray:
    """MLflow's JSON forms for a tensor-signature model as an array: `{"inputs": [[...], ...]}` or
    `{"instances": ...}`, and the DataFrame forms `dataframe_split` and `dataframe_records`, whose
    columns are the row's values in the order sent (a tensor signature names no columns)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"invalid JSON body ({exc}); expected {{\"inputs\": [[...], ...]}}") from None
    keys = [key for key in JSON_KEYS if isinstance(document, dict) and key in document]
    if len(keys) != 1:
        found = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise RequestError(f"invalid JSON body: found {found}; expected an object with one of "
                           f"{', '.join(JSON_KEYS)} holding the rows")
    value = document[keys[0]]
    if keys[0] == "dataframe_split":
        return _split_rows(value)
    if keys[0] == "dataframe_records":
        return _records_rows(value)
    return _rows(value)


def parse_npy_body(body: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RequestError(f"invalid .npy body ({' '.join(str(exc).split())}); expected an array written "
                           "by numpy.save") from None


def encode_json(outputs: np.ndarray) -> bytes:
    """`{"predictions": [[...], ...]}` of a float32 array, in one native call."""
    return orjson.dumps({"predictions": np.ascontiguousarray(outputs, dtype=np.float32)},
                        option=orjson.OPT_SERIALIZE_NUMPY)


def answer(model: ServedModel, content_type: str, body: bytes) -> Answer:
    """The response to one `/invocations` request."""
    mime, _, parameters = content_type.partition(";")
    mime = mime.strip().lower()
    if mime == NPY_TYPE:
        batch = check_batch(parse_npy_body(body), model)
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(model.predict(batch), dtype=np.float32), allow_pickle=False)
        return Answer(NPY_TYPE, buffer.getvalue(), len(batch))
    if mime == JSON_TYPE:
        charset = parameters.partition("charset=")[2].strip().lower() or "utf-8"
        if charset != "utf-8":
            raise RequestError(f"unsupported charset {charset}; expected utf-8", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        batch = check_batch(parse_json_body(body), model)
        return Answer(JSON_TYPE, encode_json(model.predict(batch)), len(batch))
    raise RequestError(f"unsupported Content-Type {content_type or '(none)'!r}; expected {JSON_TYPE} or {NPY_TYPE}",
                       HTTPStatus.UNSUPPORTED_MEDIA_TYPE)


def error_document(exc: RequestError) -> bytes:
    """MLflow's error document, so clients of `mlflow models serve` read it the same way."""
    code = "BAD_REQUEST" if exc.status == HTTPStatus.BAD_REQUEST else exc.status.name
    return orjson.dumps({"error_code": code, "message": str(exc)})
