"""`aetrack serve`'s request handling in-process: each accepted form gives the model's outputs, each
bad request one line that says what is allowed (the server process is tested in test_serve.py)."""

import io
import json
import socket

import numpy as np
import pytest

from aetrack.errors import ConfigError, RequestError
from aetrack.serve import ServedModel, answer, make_server


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
        kind, body = answer(served_model, "application/json; charset=utf-8", json.dumps({key: x.tolist()}).encode())
        assert kind == "application/json"
        np.testing.assert_allclose(np.asarray(json.loads(body)["predictions"]), expected, atol=1e-6)

    kind, body = answer(served_model, "application/x-npy", _npy(x))
    assert kind == "application/x-npy"
    np.testing.assert_allclose(np.load(io.BytesIO(body)), expected, atol=1e-6)  # same values as JSON gives

    pixels = (x * 255).astype(np.uint8)
    _, body = answer(served_model, "application/x-npy", _npy(pixels))
    np.testing.assert_allclose(np.load(io.BytesIO(body)), model(pixels / np.float32(255), training=False).numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("content_type, body, status, message", [
    ("application/json", b'{"inputs": [[0.5, 0.5]]}', 400,
     "invalid inputs: shape (1, 2); expected numbers of shape (N, 784), N >= 1"),
    ("application/json", b'{"inputs": []}', 400,
     "invalid inputs: shape (0,); expected numbers of shape (N, 784), N >= 1"),
    ("application/json", json.dumps({"inputs": [[2.0] * 784]}).encode(), 400,
     "invalid inputs: values 2..2; expected pixels as floats in [0, 1] (or, in a .npy, uint8 0..255)"),
    ("application/json", json.dumps({"inputs": [["a"] * 784]}).encode(), 400,
     "invalid inputs: not a rectangular array of numbers (dtype <U1); expected numbers of shape (N, 784)"),
    ("application/json", json.dumps({"inputs": [[0.1] * 784, [0.1]]}).encode(), 400,
     "invalid inputs: rows of different lengths; expected a list of equal-length rows"),
    ("application/json", b'{"data": [[0.1]]}', 400,
     "invalid JSON body: found ['data']; expected an object with one of inputs, instances holding a list of rows"),
    ("application/json", b"[1, 2", 400, None),
    ("application/x-npy", _npy(np.full((1, 784), np.nan, np.float32)), 400,
     "invalid inputs: contains NaN or infinity; expected numbers of shape (N, 784), finite"),
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


def test_handler_over_http_in_a_thread(served):
    """The HTTP layer, on a real socket: routes, MLflow's error document, a body without a length."""
    import http.client
    import threading

    server = make_server(served[1], "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = server.server_address[1]

    def request(method, path, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    try:
        assert request("GET", "/ping")[0] == 200 and request("GET", "/health")[0] == 200
        from aetrack import __version__

        assert request("GET", "/version") == (200, __version__.encode())
        status, body = request("POST", "/invocations", _npy(np.zeros((2, 784), np.float32)),
                               {"Content-Type": "application/x-npy"})
        assert status == 200 and np.load(io.BytesIO(body)).shape == (2, 784)
        status, body = request("POST", "/predict", b"{}", {"Content-Type": "application/json"})
        assert status == 404 and json.loads(body) == {
            "error_code": "NOT_FOUND", "message": "no such path /predict; expected POST /invocations"}
        # A chunked body (no Content-Length) is refused, not read forever.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            raw.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
            answer_bytes = b""
            while chunk := raw.recv(65536):  # the server closes the connection after answering
                answer_bytes += chunk
        assert answer_bytes.startswith(b"HTTP/1.1 411 ")
        assert b"Content-Length None; expected the body's size in bytes" in answer_bytes
    finally:
        server.shutdown()
        server.server_close()
