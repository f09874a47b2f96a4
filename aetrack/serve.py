"""`aetrack serve`: a lean scoring server for one trained model, for when batch throughput matters.

`mlflow models serve` answers aetrack's models through one compiled call (see
`tracking/aetrack_keras_pyfunc.py`), but for a batch its server spends most of a request on JSON:
it decodes the request twice and writes every output float with Python's pure-Python JSON encoder,
which the model cannot change (benchmarks/serving.py measures it; benchmarks/RESULTS.md has the
figures). This server keeps MLflow's protocol (`POST /invocations` with `{"inputs": ...}` or
`{"instances": ...}`, answered with `{"predictions": ...}`; `GET /ping`, `/health`, `/version`),
encodes JSON in one C-accelerated call, and adds a binary form: a `.npy` body with
`Content-Type: application/x-npy` is answered with a `.npy` body of float32 outputs.

Standard library only (`http.server`): one process, one thread per connection, the model shared.
A refused request is a RequestError (aetrack's error family), answered with its HTTP status and
MLflow's error document.
"""

from __future__ import annotations

import errno
import io
import json
import signal
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np

from aetrack import __version__
from aetrack.data import IMAGE_PIXELS
from aetrack.errors import ConfigError, Interrupted, RequestError

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
JSON_KEYS = ("inputs", "instances")
MAX_BODY_BYTES = 256 * 1024 * 1024  # 256 MiB: about 85,000 images as float32 .npy


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


def load_served_model(uri: str) -> ServedModel:
    """Load `uri` (any form `aetrack.models.loading.load_model` takes) behind a direct compiled call."""
    from aetrack.tracking.aetrack_keras_pyfunc import DirectKerasModel
    from aetrack.models.loading import load_model

    model = load_model(uri)
    direct = DirectKerasModel(model)
    return ServedModel(predict=direct.predict, input_width=int(model.inputs[0].shape[-1]),
                       output_width=int(model.outputs[0].shape[-1]))


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


def parse_json_body(body: bytes) -> np.ndarray:
    """`{"inputs": [[...], ...]}` or `{"instances": ...}` (MLflow's tensor forms) as an array."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"invalid JSON body ({exc}); expected {{\"inputs\": [[...], ...]}}") from None
    keys = [key for key in JSON_KEYS if isinstance(document, dict) and key in document]
    if len(keys) != 1:
        found = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise RequestError(f"invalid JSON body: found {found}; expected an object with one of "
                         f"{', '.join(JSON_KEYS)} holding a list of rows")
    try:
        return np.asarray(document[keys[0]])
    except ValueError:  # ragged rows
        raise RequestError("invalid inputs: rows of different lengths; expected a list of equal-length rows") from None


def parse_npy_body(body: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RequestError(f"invalid .npy body ({' '.join(str(exc).split())}); expected an array written "
                         "by numpy.save") from None


def answer(model: ServedModel, content_type: str, body: bytes) -> tuple[str, bytes]:
    """The response (content type, bytes) to one `/invocations` request."""
    mime, _, parameters = content_type.partition(";")
    mime = mime.strip().lower()
    if mime == NPY_TYPE:
        outputs = model.predict(check_batch(parse_npy_body(body), model))
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(outputs, dtype=np.float32), allow_pickle=False)
        return NPY_TYPE, buffer.getvalue()
    if mime == JSON_TYPE:
        charset = parameters.partition("charset=")[2].strip().lower() or "utf-8"
        if charset != "utf-8":
            raise RequestError(f"unsupported charset {charset}; expected utf-8", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        outputs = model.predict(check_batch(parse_json_body(body), model))
        # json.dumps of a plain list takes the C encoder (json.dump into a stream would not).
        return JSON_TYPE, json.dumps({"predictions": outputs.tolist()}).encode()
    raise RequestError(f"unsupported Content-Type {content_type or '(none)'!r}; expected {JSON_TYPE} or {NPY_TYPE}",
                     HTTPStatus.UNSUPPORTED_MEDIA_TYPE)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    model: ServedModel


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as MLflow's server
    server_version = f"aetrack/{__version__}"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path in ("/ping", "/health"):
            self._send(HTTPStatus.OK, JSON_TYPE, b"\n")
        elif self.path == "/version":
            self._send(HTTPStatus.OK, JSON_TYPE, __version__.encode())
        else:
            self._error(RequestError(f"no such path {self.path}; expected /invocations (POST), /ping, /health "
                                   "or /version", HTTPStatus.NOT_FOUND))

    def do_POST(self) -> None:  # noqa: N802
        try:
            if self.path != "/invocations":
                raise RequestError(f"no such path {self.path}; expected POST /invocations", HTTPStatus.NOT_FOUND)
            body = self.rfile.read(self._body_length())
            self._send(HTTPStatus.OK, *answer(self.server.model, self.headers.get("Content-Type", ""), body))
        except RequestError as exc:
            self._error(exc)

    def _body_length(self) -> int:
        text = self.headers.get("Content-Length")
        if text is None or not text.strip().isdigit():
            self.close_connection = True  # the body's end is unknown: the connection cannot be reused
            raise RequestError(f"Content-Length {text!r}; expected the body's size in bytes",
                             HTTPStatus.LENGTH_REQUIRED)
        length = int(text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(f"body of {length} bytes; expected at most {MAX_BODY_BYTES}",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return length

    def _error(self, exc: RequestError) -> None:
        code = "BAD_REQUEST" if exc.status == HTTPStatus.BAD_REQUEST else exc.status.name
        # MLflow's error document, so clients of `mlflow models serve` read it the same way.
        self._send(exc.status, JSON_TYPE, json.dumps({"error_code": code, "message": str(exc)}).encode())

    def _send(self, status: HTTPStatus, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - one line per request is noise
        pass


def make_server(model: ServedModel | None, host: str, port: int) -> ThreadingHTTPServer:
    """Bind `host:port` (port 0: a free one; read it from `server.server_address`); set `.model`
    before serving if it is None here."""
    try:
        server = _Server((host, port), _Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError("--port", port, "a free port (or 0 for any free one); this one is in use") from None
        raise ConfigError("--host", host, f"an address of this machine, e.g. 127.0.0.1 ({exc.strerror})") from None
    server.model = model
    return server


def serve(model_uri: str, host: str, port: int, announce: Callable[[str], None] = print) -> None:
    """Load the model, then answer requests until SIGINT or SIGTERM (raised as Interrupted)."""
    server = make_server(None, host, port)  # bind first: a busy port fails before TensorFlow loads

    def stop(signal_number, _frame):
        raise Interrupted(signal_number)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        model = server.model = load_served_model(model_uri)
        bound_host, bound_port = server.server_address[:2]
        announce(f"aetrack: serving {model_uri}: {model.describe()}")
        announce(f"  POST http://{bound_host}:{bound_port}/invocations  ({JSON_TYPE} {{\"inputs\": [[...]]}} "
                 f"or {NPY_TYPE}); Ctrl-C stops")
        server.serve_forever(poll_interval=0.5)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
