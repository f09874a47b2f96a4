"""`aetrack serve`'s request handling in-process: each accepted form gives the model's outputs, each
bad request one line that says what is allowed (the server process is tested in test_serve.py)."""

import io
import json
import socket
from http import HTTPStatus

import numpy as np
import pytest

from aetrack.errors import ConfigError, RequestError
from aetrack.serve import Limits, ServedModel, answer, make_server


@pytest.fixture(scope="module")
def served():
    from aetrack.models import build_autoencoder
    from aetrack.tracking.aetrack_keras_pyfunc import DirectKerasModel

    model = build_autoencoder("dense", 8)
    return model, ServedModel(predict=DirectKerasModel(model).predict, input_width=784, output_width=784)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_json_and_npy_answers_are_the_model_outputs(served):
    model, served_model = served
    x = np.random.default_rng(0).random((300, 784), dtype=np.float32)
    expected = model(x, training=False).numpy()

    for key in ("inputs", "instances"):
        kind, body, rows = answer(served_model, "application/json; charset=utf-8",
                                  json.dumps({key: x.tolist()}).encode())
        assert (kind, rows) == ("application/json", 300)
        np.testing.assert_allclose(np.asarray(json.loads(body)["predictions"]), expected, atol=1e-6)

    kind, body, rows = answer(served_model, "application/x-npy", _npy(x))
    assert (kind, rows) == ("application/x-npy", 300)
    np.testing.assert_allclose(np.load(io.BytesIO(body)), expected, atol=1e-6)  # same values as JSON gives

    pixels = (x * 255).astype(np.uint8)
    _, body, _ = answer(served_model, "application/x-npy", _npy(pixels))
    np.testing.assert_allclose(np.load(io.BytesIO(body)), model(pixels / np.float32(255), training=False).numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("content_type, body, status, message", [
    ("application/json", b'{"inputs": [[0.5, 0.5]]}', 400,
     "invalid inputs: shape (1, 2); expected numbers of shape (N, 28, 28) or (N, 784), N >= 1"),
    ("application/json", b'{"inputs": []}', 400,
     "invalid inputs: shape (0,); expected numbers of shape (N, 28, 28) or (N, 784), N >= 1"),
    ("application/json", json.dumps({"inputs": [[2.0] * 784]}).encode(), 400,
     "invalid inputs: values 2..2; expected pixels as floats in [0, 1] (or, in a .npy, uint8 0..255)"),
    ("application/json", json.dumps({"inputs": [["a"] * 784]}).encode(), 400,
     "invalid inputs: not a rectangular array of numbers (dtype <U1); expected numbers of shape (N, 28, 28) or (N, 784)"),
    ("application/json", json.dumps({"inputs": [[0.1] * 784, [0.1]]}).encode(), 400,
     "invalid inputs: rows of different lengths; expected a list of equal-length rows"),
    ("application/json", b'{"data": [[0.1]]}', 400,
     "invalid JSON body: found ['data']; expected an object with one of inputs, instances, dataframe_split, "
     "dataframe_records holding the rows"),
    ("application/json", b"[1, 2", 400, None),
    ("application/x-npy", _npy(np.full((1, 784), np.nan, np.float32)), 400,
     "invalid inputs: contains NaN or infinity; expected numbers of shape (N, 28, 28) or (N, 784), finite"),
    ("application/x-npy", b"not an npy", 400, None),
    ("text/csv", b"0.1,0.2", 415,
     "unsupported Content-Type 'text/csv'; expected application/json or application/x-npy"),
    ("application/json; charset=latin-1", b"{}", 415, "unsupported charset latin-1; expected utf-8"),
])
def test_bad_requests_are_refused_in_one_line(served, content_type, body, status, message):
    with pytest.raises(RequestError) as refused:
        answer(served[1], content_type, body)
    assert refused.value.status == status
    text = str(refused.value)
    assert "\n" not in text
    if message is None:  # the parser's own words vary by version; the allowed form must be there
        assert text.startswith("invalid ") and "expected " in text
    else:
        assert text == message


def test_a_busy_port_is_a_usage_error(served):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as refused:
            make_server(served[1], "127.0.0.1", port)
    assert str(refused.value) == (f"invalid --port {port}: expected a free port (or 0 for any free one); "
                                  "this one is in use")
    server = make_server(served[1], "127.0.0.1", 0)
    try:
        assert server.server_address[1] > 0
    finally:
        server.server_close()


def test_mlflow_dataframe_forms_give_the_model_outputs(served):
    """dataframe_split and dataframe_records, as MLflow's clients send them for a tensor signature:
    one column per value, in the order sent, or one column holding each row as a list."""
    model, served_model = served
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    expected = model(x, training=False).numpy()
    columns = [str(i) for i in range(784)]
    bodies = [
        {"dataframe_split": {"columns": columns, "data": x.tolist()}},
        {"dataframe_split": {"data": x.tolist(), "index": [7, 8, 9]}},
        {"dataframe_split": {"columns": ["image"], "data": [[row] for row in x.tolist()]}},
        {"dataframe_records": [dict(zip(columns, row)) for row in x.tolist()]},
        {"dataframe_records": [{"image": row} for row in x.tolist()]},
    ]
    for document in bodies:
        _, body, rows = answer(served_model, "application/json", json.dumps(document).encode())
        assert rows == 3
        np.testing.assert_allclose(np.asarray(json.loads(body)["predictions"]), expected, atol=1e-6)


# Hostile and odd requests against one real server; each row: (name, what the client does, status).
ROW = np.full((1, 784), 0.25, np.float32)
LIMIT = 1024 * 1024  # the test server's body limit
TIMEOUT = 1.0  # and its read timeout, in seconds


def _request(body: bytes = b"", content_type: str = "application/json", method: str = "POST",
             path: str = "/invocations", length: int | None = None, extra: str = "") -> bytes:
    length = len(body) if length is None else length
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode() + body


def _json(document) -> bytes:
    return json.dumps(document).encode()


def _nested(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"0.5" + b"]" * depth + b"}"


_ONE = ROW.tolist()
_COLUMNS = [f"c{i}" for i in range(784)]
# (name, raw bytes, how: send | half-close | stall | reset, status, in the message)
HOSTILE = [
    ("depth 100,000", _request(_nested(100_000)), "send", 400, "depth limit exceeded"),
    ("depth 70: past numpy's 64 dimensions", _request(_nested(70)), "send", 400, "rows of different lengths"),
    ("body over the limit", _request(b"0" * (2 * LIMIT)), "send", 413, f"expected at most {LIMIT}"),
    ("body over the limit, Expect: 100-continue", _request(length=2 * LIMIT, extra="Expect: 100-continue\r\n"),
     "send", 413, "(--max-body-mb 1)"),
    ("strings", _request(_json({"inputs": [["0.5"] * 784]})), "send", 400, "dtype <U3"),
    ("nulls", _request(_json({"inputs": [[None] * 784]})), "send", 400, "dtype object"),
    ("nested objects", _request(_json({"inputs": [[{"v": 0.5}] * 784]})), "send", 400, "dtype object"),
    ("ragged rows", _request(_json({"inputs": [[0.5] * 784, [0.5] * 783]})), "send", 400, "rows of different"),
    ("empty body", _request(b""), "send", 400, "zero-length"),
    ("no rows", _request(_json({"inputs": []})), "send", 400, "N >= 1"),
    ("truncated JSON", _request(_json({"inputs": _ONE})[:-20]), "send", 400,
     "unexpected end of data"),
    ("a number past float range", _request(b'{"inputs": [[1e400]]}'), "send", 400, "infinity"),
    ("NaN literal", _request(b'{"inputs": [[NaN]]}'), "send", 400, "invalid JSON body"),
    ("invalid UTF-8", _request(b'{"inputs": "\xff"}'), "send", 400, "UTF-8"),
    ("a list, not an object", _request(_json(_ONE)), "send", 400, "found list"),
    ("two forms at once", _request(_json({"inputs": _ONE, "instances": _ONE})), "send", 400, "one of inputs"),
    ("Content-Length longer than the body", _request(_json({"inputs": _ONE}), length=99_999), "half-close", 400,
     "body ended after"),
    ("Content-Length shorter than the body", _request(_json({"inputs": _ONE}), length=30), "send", 400,
     "invalid JSON body"),
    ("Content-Length not a number", _request(b"{}", length=None).replace(b"Content-Length: 2", b"Content-Length: x2"),
     "send", 400, "Content-Length 'x2'"),
    ("Content-Length in other digits",
     _request(b"{}", length=None).replace(b"Content-Length: 2", b"Content-Length: \xb2"), "send", 400,
     "expected the body's size in bytes"),
    ("chunked body", _request(b"2\r\n{}\r\n0\r\n\r\n", extra="Transfer-Encoding: chunked\r\n").replace(
        b"Content-Length: 15\r\n", b""), "send", 411, "chunked bodies are not read"),
    ("slow client stalls mid-body", _request(b'{"inputs": [[', length=5000), "stall", 408,
     "not received within 1 s (13 of 5000 bytes)"),
    ("slow client stalls in the headers", b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-", "stall",
     None, None),
    ("client resets mid-body", _request(b'{"inputs": [[', length=5000), "reset", None, None),
    ("GET /invocations", _request(method="GET"), "send", 405, "method GET not allowed on /invocations"),
    ("PUT /invocations", _request(_json({"inputs": _ONE}), method="PUT"), "send", 405, "expected POST"),
    ("DELETE /ping", _request(method="DELETE", path="/ping"), "send", 405, "expected GET or HEAD"),
    ("PUT elsewhere", _request(b"x", method="PUT", path="/models"), "send", 405, "method PUT not allowed;"),
    ("GET an unknown path", _request(method="GET", path="/predict"), "send", 404, "no such path /predict"),
    ("an unknown method", _request(method="BREW"), "send", 501, "Unsupported method ('BREW')"),
    ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "send", 400, "Bad request"),
    ("text/csv", _request(b"0.5,0.5", content_type="text/csv"), "send", 415, "unsupported Content-Type"),
    ("a truncated .npy", _request(_npy(ROW)[:-100], content_type="application/x-npy"), "send", 400,
     "invalid .npy body"),
    ("dataframe_split with the wrong columns", _request(_json({"dataframe_split": {"columns": ["a"], "data": _ONE}})),
     "send", 400, "1 columns for rows of 784 values"),
    ("dataframe_split as a list", _request(_json({"dataframe_split": _ONE})), "send", 400, "found list"),
    ("dataframe_records lacking a column", _request(_json({"dataframe_records": [
        dict(zip(_COLUMNS, _ONE[0])), dict(zip(_COLUMNS[1:], _ONE[0]))]})), "send", 400, "lacks column 'c0'"),
    ("dataframe_split", _request(_json({"dataframe_split": {"columns": _COLUMNS, "data": _ONE}})), "send", 200, None),
    ("dataframe_records", _request(_json({"dataframe_records": [dict(zip(_COLUMNS, _ONE[0]))] * 2})), "send", 200,
     None),
    ("HEAD /ping", _request(method="HEAD", path="/ping"), "send", 200, None),
]


def _exchange(port: int, raw: bytes, how: str):
    """Send `raw` as the client `how` says; the answer (http.client's response, its body) or None."""
    import http.client
    import struct

    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        if how == "reset":
            client.sendall(raw)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
            return None
        client.sendall(raw)
        if how == "half-close":
            client.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(client, method=raw.split(b" ", 1)[0].decode("latin-1"))
        try:
            response.begin()
        except http.client.RemoteDisconnected:  # dropped without an answer
            return None
        return response, response.read()


@pytest.mark.slow
def test_hostile_requests_get_their_status_from_one_server(served):
    """One real server on 127.0.0.1 in a thread: every row gets its status and MLflow's one-line
    error document; a stalled client is dropped after the timeout; disconnects are one log line;
    the server answers normally afterwards; the access log has a line per request."""
    import threading
    import time

    lines: list[str] = []
    server = make_server(served[1], "127.0.0.1", 0, Limits(max_body_bytes=LIMIT, timeout=TIMEOUT),
                         access_log=lines.append, log=lines.append)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = server.server_address[1]
    expected_outputs = served[0](ROW, training=False).numpy()
    try:
        seen = {}
        for name, raw, how, status, message in HOSTILE:
            started = time.monotonic()
            answered = _exchange(port, raw, how)
            seconds = time.monotonic() - started
            assert seconds < TIMEOUT + 3, name  # nobody waits on a client longer than the timeout (and linger)
            if answered is None:
                seen[name] = None
                continue
            response, body = answered
            seen[name] = response.status
            if status == 200:
                if name.startswith("dataframe"):
                    outputs = np.asarray(json.loads(body)["predictions"])
                    np.testing.assert_allclose(outputs, np.resize(expected_outputs, outputs.shape), atol=1e-6)
                continue
            error = json.loads(body)
            assert error["error_code"] == ("BAD_REQUEST" if status == 400 else HTTPStatus(status).name), name
            assert "\n" not in error["message"] and message in error["message"], (name, error["message"])
            if status == 405:
                assert response.headers["Allow"] == {"GET /invocations": "POST", "PUT /invocations": "POST",
                                                     "DELETE /ping": "GET, HEAD"}.get(name, "GET, HEAD, POST")
        assert seen == {name: status for name, _, _, status, _ in HOSTILE}

        # Still serving, on a kept-alive connection, and the access log says what it answered.
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(2):
            connection.request("POST", "/invocations?format=json", body=_json({"inputs": ROW.tolist() * 3}),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and np.asarray(json.loads(response.read())["predictions"]).shape == (3, 784)
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    dropped = [line.split(" ", 2)[2] for line in lines if "disconnected" in line or "timed out" in line]
    assert dropped == ["timed out during POST /invocations",
                       "disconnected (ConnectionResetError) during POST /invocations"]
    assert not [line for line in lines if "Traceback" in line or "Error:" in line]
    access = [line for line in lines if " rows=" in line]
    assert sum(" 408 rows=- " in line for line in access) == 1
    last = access[-1].split()
    assert last[:6] == ["aetrack:", "127.0.0.1", "POST", "/invocations?format=json", "200", "rows=3"]
    assert last[6].endswith("ms") and float(last[6][:-2]) > 0
    assert len(access) == len(HOSTILE) - 2 + 2  # each answered request once; the dropped ones have their own line


def test_a_failing_model_is_a_500_and_one_log_line():
    """An error inside the model (not the request's fault): 500 in MLflow's document, one line, and
    the server goes on answering."""
    import http.client
    import threading

    def predict(batch):
        raise ValueError("a broken model\nsecond line")

    lines: list[str] = []
    server = make_server(ServedModel(predict=predict, input_width=3, output_width=3), "127.0.0.1", 0, log=lines.append)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
        connection.request("POST", "/invocations", body=b'{"inputs": [[0.1, 0.2, 0.3]]}',
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 500 and json.loads(response.read()) == {
            "error_code": "INTERNAL_SERVER_ERROR", "message": "the model failed: ValueError"}
        connection.request("GET", "/ping")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    assert lines == ["aetrack: 127.0.0.1 POST /invocations failed: ValueError: a broken model second line"]


@pytest.mark.parametrize("option, value, allowed", [
    ("--max-body-mb", "0", "0<x<=4096"),
    ("--timeout", "-1", "0<x<=3600"),
    ("--workers", "65", "1<=x<=64"),
])
def test_serve_limits_are_checked_before_anything_loads(option, value, allowed):
    from tests.helpers.processes import aetrack_in_process

    result = aetrack_in_process("serve", "-m", "unused.keras", option, value)
    assert result.returncode == 2
    shown = value if option == "--workers" else float(value)  # click shows an IntRange's value as given
    assert result.stderr.strip().splitlines()[-1] == (f"aetrack: error: invalid {option}: {shown} is not in "
                                                       f"the range {allowed}.")
