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

from aetrack.data import SampleSpec
from aetrack.errors import RequestError
from aetrack.use.anomaly_io import as_scores, flags, reconstruction_scores
from aetrack.use.inputs import expected_shapes
from aetrack.use.specs import fallback_spec

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
TENSOR_KEYS = ("inputs", "instances")
DATAFRAME_KEYS = ("dataframe_split", "dataframe_records")
JSON_KEYS = TENSOR_KEYS + DATAFRAME_KEYS
_SPLIT_KEYS = {"columns", "data", "index"}


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and what its requests must look like: samples of `spec` (None: guessed from
    the widths, `aetrack.use.specs.fallback_spec`), or codes for a decoder."""

    predict: Callable[[np.ndarray], np.ndarray]  # float32 (n, input_width) -> float32 (n, output_width)
    input_width: int
    output_width: int
    spec: SampleSpec | None = None
    scorer: bool = False  # outputs are one anomaly score per sample ((n,) or (n, 1))
    threshold: float | None = None  # the model's stored threshold: answers carry scores and flags

    @property
    def flags_anomalies(self) -> bool:
        """JSON answers add `scores`, `is_anomaly` and `threshold`: a scorer or an autoencoder
        with a stored threshold."""
        return self.threshold is not None and (self.scorer or (self.takes_samples and self.gives_samples))

    @property
    def sample_spec(self) -> SampleSpec:
        return self.spec or fallback_spec(max(self.input_width, self.output_width))

    @property
    def takes_samples(self) -> bool:
        """Requests are samples (an encoder or autoencoder), not codes (a decoder)."""
        return self.input_width == self.sample_spec.size

    @property
    def takes_images(self) -> bool:
        return self.takes_samples and self.sample_spec.is_image

    @property
    def gives_samples(self) -> bool:
        return self.output_width == self.sample_spec.size

    def expected_shapes(self) -> str:
        return expected_shapes(self.sample_spec) if self.takes_samples else f"(N, {self.input_width})"

    def describe(self) -> str:
        spec = self.sample_spec
        what = f"{spec.describe()}s" if self.takes_samples else "codes"
        if self.scorer:
            return f"{what} ({self.input_width} values) -> anomaly scores" + self._flagging()
        out = f"{spec.describe()}s" if self.gives_samples else "codes"
        return f"{what} ({self.input_width} values) -> {out} ({self.output_width} values)" + self._flagging()

    def _flagging(self) -> str:
        return f", flagged above {self.threshold:.6g}" if self.flags_anomalies else ""


class Rows(NamedTuple):
    """A request's rows as sent, and its column names when it was a DataFrame form that named them."""

    array: np.ndarray
    columns: list[str] | None = None


class Answer(NamedTuple):
    """A response body, its Content-Type and how many rows it answered (for the request log)."""

    content_type: str
    body: bytes
    rows: int


def check_batch(array: np.ndarray, model: ServedModel, columns: list[str] | None = None) -> np.ndarray:
    """The request's rows as float32 (n, input_width); a RequestError saying what is allowed otherwise.

    Samples may come in the sample shape (N, *shape) or flat; a table model's rows sent with
    column names are matched to its training columns by name (others are ignored)."""
    expected = f"expected numbers of shape {model.expected_shapes()}"
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise RequestError(f"invalid inputs: not a rectangular array of numbers (dtype {array.dtype}); {expected}")
    spec = model.sample_spec
    if columns is not None and len(columns) > 1 and model.takes_samples and spec.feature_names:
        array = _by_name(array, [str(c) for c in columns], spec)
    shapes = [(model.input_width,)]
    if model.takes_samples:
        shapes += [spec.shape] + ([spec.shape[:2]] if spec.is_image and spec.channels == 1 else [])
    if array.ndim < 2 or tuple(array.shape[1:]) not in shapes or array.shape[0] == 0:
        raise RequestError(f"invalid inputs: shape {array.shape}; {expected}, N >= 1")
    array = array.reshape(len(array), model.input_width)
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


def _by_name(array: np.ndarray, columns: list[str], spec: SampleSpec) -> np.ndarray:
    """The training columns, in training order, out of rows sent with `columns`."""
    missing = [name for name in spec.feature_names if name not in columns]
    if missing:
        raise RequestError(f"invalid inputs: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                           f"expected the training columns {', '.join(spec.feature_names)} (others are ignored)")
    if array.ndim != 2 or array.shape[1] != len(columns):
        return array  # refused by its shape next
    return array[:, [columns.index(name) for name in spec.feature_names]]


def shaped_like(outputs: np.ndarray, model: ServedModel, request_shape: tuple[int, ...]) -> np.ndarray:
    """Samples answered in the shape their request's samples came in; codes, and flat requests, flat."""
    if model.takes_samples and model.gives_samples and len(request_shape) > 2:
        return outputs.reshape(len(outputs), *request_shape[1:])
    return outputs


def _rows(value: object) -> np.ndarray:
    try:
        rows = np.asarray(value)
    except (ValueError, TypeError, RecursionError):  # ragged rows, or deeper than numpy's 64 dimensions
        raise RequestError("invalid inputs: rows of different lengths; expected a list of equal-length rows") from None
    if rows.ndim == 3 and rows.shape[1] == 1:
        # One column holding each row as a list: MLflow's form of a tensor in a DataFrame cell.
        rows = rows.reshape(rows.shape[0], -1)
    return rows


def _split_rows(split: object) -> Rows:
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
    return Rows(rows, columns)


def _records_rows(records: object) -> Rows:
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
    return Rows(_rows(rows), [str(c) for c in columns])


def parse_json_body(body: bytes) -> np.ndarray:
    """The request's rows as an array (`parse_json_request` without the column names)."""
    return parse_json_request(body).array


def parse_json_request(body: bytes) -> Rows:
    """MLflow's JSON forms for a tensor-signature model: `{"inputs": [[...], ...]}` or
    `{"instances": ...}`, and the DataFrame forms `dataframe_split` and `dataframe_records`, whose
    values are taken in the order sent and whose column names are kept (a table model matches them
    to its training columns)."""
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
    return Rows(_rows(value))


def parse_npy_body(body: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RequestError(f"invalid .npy body ({' '.join(str(exc).split())}); expected an array written "
                           "by numpy.save") from None


def encode_json(outputs: np.ndarray, scores: np.ndarray | None = None, threshold: float | None = None) -> bytes:
    """`{"predictions": [[...], ...]}` of a float32 array, in one native call; with `scores` and a
    `threshold`, also `"scores"`, `"is_anomaly"` (0/1, score > threshold) and `"threshold"`."""
    document: dict = {"predictions": np.ascontiguousarray(outputs, dtype=np.float32)}
    if scores is not None and threshold is not None:
        document.update(scores=np.ascontiguousarray(scores, dtype=np.float32),
                        is_anomaly=flags(scores, threshold), threshold=float(threshold))
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _outputs(model: ServedModel, batch: np.ndarray, request_shape: tuple[int, ...]) -> np.ndarray:
    """The model's outputs as `mlflow models serve` answers them (a scorer's (n, 1) column too)."""
    return shaped_like(np.asarray(model.predict(batch), dtype=np.float32), model, request_shape)


def _scores(model: ServedModel, batch: np.ndarray, outputs: np.ndarray) -> np.ndarray | None:
    """The batch's anomaly scores when the answer carries them (`ServedModel.flags_anomalies`)."""
    if not model.flags_anomalies:
        return None
    return as_scores(outputs) if model.scorer else reconstruction_scores(batch, outputs, model.sample_spec)


def answer(model: ServedModel, content_type: str, body: bytes) -> Answer:
    """The response to one `/invocations` request."""
    mime, _, parameters = content_type.partition(";")
    mime = mime.strip().lower()
    if mime == NPY_TYPE:
        array = parse_npy_body(body)
        batch = check_batch(array, model)
        outputs = _outputs(model, batch, array.shape)
        buffer = io.BytesIO()
        np.save(buffer, outputs, allow_pickle=False)
        return Answer(NPY_TYPE, buffer.getvalue(), len(batch))
    if mime == JSON_TYPE:
        charset = parameters.partition("charset=")[2].strip().lower() or "utf-8"
        if charset != "utf-8":
            raise RequestError(f"unsupported charset {charset}; expected utf-8", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        rows = parse_json_request(body)
        batch = check_batch(rows.array, model, rows.columns)
        outputs = _outputs(model, batch, rows.array.shape)
        return Answer(JSON_TYPE, encode_json(outputs, _scores(model, batch, outputs), model.threshold), len(batch))
    raise RequestError(f"unsupported Content-Type {content_type or '(none)'!r}; expected {JSON_TYPE} or {NPY_TYPE}",
                       HTTPStatus.UNSUPPORTED_MEDIA_TYPE)


def error_document(exc: RequestError) -> bytes:
    """MLflow's error document, so clients of `mlflow models serve` read it the same way."""
    code = "BAD_REQUEST" if exc.status == HTTPStatus.BAD_REQUEST else exc.status.name
    return orjson.dumps({"error_code": code, "message": str(exc)})
