"""The HTTP side of `aetrack serve`: routes and methods, body limits, read timeouts, one log line
per request and per dropped client.

Standard library only (`http.server`): one process, one thread per connection, the model shared.
Every answer, the parser's own refusals included, is MLflow's error document; nothing a client
sends or does (a deep body, a stall, a disconnect) ends in a traceback.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

from aetrack import __version__
from aetrack.errors import ConfigError, RequestError, one_line
from aetrack.serve.protocol import JSON_TYPE, ServedModel, answer, error_document

# Path -> the methods it answers.
ROUTES = {"/invocations": ("POST",), "/ping": ("GET", "HEAD"), "/health": ("GET", "HEAD"),
          "/version": ("GET", "HEAD")}
ALL_METHODS = "GET, HEAD, POST"
_EVERY_ROUTE = "POST /invocations, or GET /ping, /health or /version"
WORKER_HEADER = "X-Aetrack-Worker"  # the answering process's pid: tells `--workers` processes apart
_LINGER_SECONDS = 2.0  # reading an unwanted body so the client sees the refusal, not a reset


@dataclass(frozen=True)
class Limits:
    """What a client may send: `max_body_bytes` per request, and `timeout` seconds to send a
    request's body (also the longest wait for any read or write, and for an idle connection)."""

    max_body_bytes: int = 256 * 1024 * 1024
    timeout: float = 30.0


def to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")  # one write per line: threads do not interleave within a line
    sys.stderr.flush()


class ScoringServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connections when tens of clients connect at once

    def __init__(self, address: tuple[str, int], model: ServedModel | None, limits: Limits,
                 access_log: Callable[[str], None] | None, log: Callable[[str], None]):
        super().__init__(address, _Handler)
        self.model = model
        self.limits = limits
        self.access_log = access_log
        self.log = log

    def handle_error(self, request, client_address) -> None:
        # Whatever a handler did not answer: one line, never a traceback per request.
        exc = sys.exc_info()[1]
        self.log(f"aetrack: {client_address[0]}:{client_address[1]}: {type(exc).__name__}: {one_line(exc)}")


def _printable(text: str | None, limit: int = 200) -> str:
    return "".join(c if c.isprintable() and c != " " else "?" for c in (text or "-")[:limit])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as MLflow's server
    server_version = f"aetrack/{__version__}"
    disable_nagle_algorithm = True  # headers and body are two writes; do not hold the second
    server: ScoringServer

    def setup(self) -> None:
        self.timeout = self.server.limits.timeout  # StreamRequestHandler sets it on the socket
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError) as exc:
            self._note("timed out" if isinstance(exc, TimeoutError) else f"disconnected ({type(exc).__name__})")

    def _note(self, what: str) -> None:
        """One line for a client gone mid-request; none between requests, where clients close
        their connections as a matter of course."""
        if self.command is not None:
            self._noted = True
            self.server.log(f"aetrack: {self.client_address[0]}:{self.client_address[1]} {what} during "
                            f"{_printable(self.command)} {_printable(self.path)}")

    def handle_one_request(self) -> None:
        self.command = self.path = self.headers = None
        self._status: int | None = None
        self._rows: int | None = None
        self._noted = False
        self._started = time.perf_counter()
        super().handle_one_request()
        if self._status is not None and not self._noted and self.server.access_log is not None:
            rows = "-" if self._rows is None else self._rows
            milliseconds = (time.perf_counter() - self._started) * 1000
            self.server.access_log(f"aetrack: {self.client_address[0]} {_printable(self.command)} "
                                   f"{_printable(self.path)} {self._status} rows={rows} {milliseconds:.1f}ms")

    def parse_request(self) -> bool:
        self._started = time.perf_counter()  # the request line is in: the time waiting for it is not the request's
        return super().parse_request()

    # Routes.

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self._route()
        if path is None:
            return
        self._send(HTTPStatus.OK, JSON_TYPE, __version__.encode() if path == "/version" else b"\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if self._route() is None:
            return
        try:
            length = self._body_length()
        except RequestError as exc:
            self._refuse(exc, close=True)
            return
        try:
            body = self._read_body(length)
        except RequestError as exc:  # a stalled or cut-off body: the connection cannot be reused
            self.close_connection = True
            self._refuse(exc)
            return
        try:
            result = answer(self.server.model, self.headers.get("Content-Type", ""), body)
        except RequestError as exc:
            self._refuse(exc)
        except RecursionError:  # the last guard: orjson's depth limit and numpy's 64 dimensions stop deep bodies first
            self._refuse(RequestError("invalid JSON body: nested too deeply; expected {\"inputs\": [[...], ...]}"))
        except Exception as exc:  # the model failed on valid rows: the client gets a 500, the log one line
            self.server.log(f"aetrack: {self.client_address[0]} POST /invocations failed: {type(exc).__name__}: "
                            f"{one_line(exc)[:500]}")
            self._refuse(RequestError(f"the model failed: {type(exc).__name__}", HTTPStatus.INTERNAL_SERVER_ERROR))
        else:
            self._rows = result.rows
            self._send(HTTPStatus.OK, result.content_type, result.body)

    def _method_not_allowed(self) -> None:
        self._route()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _method_not_allowed

    def _route(self) -> str | None:
        """The request's path if it exists and takes this method; else answer 404 or 405 and None."""
        path = urlsplit(self.path).path
        methods = ROUTES.get(path)
        if methods is not None and self.command in methods:
            return path
        if methods is None and self.command in ("GET", "HEAD", "POST"):
            self._refuse(RequestError(f"no such path {_printable(path)}; expected {_EVERY_ROUTE}",
                                      HTTPStatus.NOT_FOUND), close=True)
        elif methods is None:
            self._refuse(RequestError(f"method {self.command} not allowed; expected {_EVERY_ROUTE}",
                                      HTTPStatus.METHOD_NOT_ALLOWED), close=True, headers={"Allow": ALL_METHODS})
        else:
            self._refuse(RequestError(f"method {self.command} not allowed on {path}; expected {' or '.join(methods)}",
                                      HTTPStatus.METHOD_NOT_ALLOWED), close=True, headers={"Allow": ", ".join(methods)})
        return None

    # Bodies.

    def _body_length(self) -> int:
        if self.headers.get("Transfer-Encoding") is not None or self.headers.get("Content-Length") is None:
            raise RequestError(f"Content-Length {self.headers.get('Content-Length')!r}; expected the body's size "
                               "in bytes (chunked bodies are not read)", HTTPStatus.LENGTH_REQUIRED)
        text = self.headers.get("Content-Length", "").strip()
        if not (text.isascii() and text.isdigit()) or len(self.headers.get_all("Content-Length", [])) > 1:
            raise RequestError(f"Content-Length {_printable(text)!r}; expected the body's size in bytes")
        length, limit = int(text), self.server.limits.max_body_bytes
        if length > limit:
            raise RequestError(f"body of {length} bytes; expected at most {limit} (--max-body-mb "
                               f"{limit / 2**20:g})", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return length

    def _read_body(self, length: int) -> bytes:
        """The body, read within the time limit: a client that stalls is answered 408, not waited on."""
        timeout = self.server.limits.timeout
        deadline = time.monotonic() + timeout
        parts, received = [], 0
        try:
            while received < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(length - received, 1 << 20))
                if not chunk:
                    raise RequestError(f"body ended after {received} of {length} bytes; expected as many bytes "
                                       "as Content-Length says")
                parts.append(chunk)
                received += len(chunk)
        except TimeoutError:
            raise RequestError(f"body not received within {timeout:g} s ({received} of {length} bytes); "
                               "expected the whole body in time (--timeout)", HTTPStatus.REQUEST_TIMEOUT) from None
        self.connection.settimeout(timeout)
        return b"".join(parts)

    def handle_expect_100(self) -> bool:
        # Refuse a body that will not be read before the client sends it.
        try:
            self._body_length()
        except RequestError as exc:
            self._refuse(exc, close=True)
            return False
        return super().handle_expect_100()

    # Answers.

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, too many headers, an unknown method), as
        MLflow's error document; the connection is not read further."""
        status = HTTPStatus(code)
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unreadable request line: answer with a status line anyway
            self.request_version = "HTTP/1.0"
        self._refuse(RequestError(f"{message or status.phrase}; expected an HTTP/1.1 request", status))

    def _refuse(self, exc: RequestError, close: bool = False, headers: dict[str, str] | None = None) -> None:
        """Answer `exc`. `close`: the request's body (if any) was not read, so the connection ends
        after the answer rather than reading the body as the next request."""
        has_body = self.headers is not None and (self.headers.get("Transfer-Encoding") is not None
                                                 or self.headers.get("Content-Length", "0").strip() != "0")
        if close and has_body:
            self.close_connection = True
        self._send(exc.status, JSON_TYPE, error_document(exc), headers)
        if close and has_body:
            self._linger()

    def _send(self, status: HTTPStatus, content_type: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self._status = int(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header(WORKER_HEADER, str(os.getpid()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _linger(self) -> None:
        """Read and drop what the client still sends, for a moment, after the answer: closing with
        unread bytes resets the connection, and the client would see the reset, not the answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + min(_LINGER_SECONDS, self.server.limits.timeout)
            while (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv(1 << 20):
                    break
        except OSError:
            pass

    def log_error(self, format: str, *args) -> None:  # noqa: A002 - http.server's naming
        # http.server's only own call: a read or write that timed out ("Request timed out: ...").
        self._note("timed out" if format.startswith("Request timed out") else one_line(format % args))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - replaced by the access log line
        pass


def make_server(model: ServedModel | None, host: str, port: int, limits: Limits = Limits(),
                access_log: Callable[[str], None] | None = None,
                log: Callable[[str], None] = to_stderr) -> ScoringServer:
    """Bind `host:port` (port 0: a free one; read it from `server.server_address`); set `.model`
    before serving if it is None here. `access_log` gets one line per request (None: none)."""
    try:
        return ScoringServer((host, port), model, limits, access_log, log)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError("--port", port, "a free port (or 0 for any free one); this one is in use") from None
        raise ConfigError("--host", host, f"an address of this machine, e.g. 127.0.0.1 ({exc.strerror})") from None
