"""A real `mlflow models serve` process serving a registered encoder over HTTP on 127.0.0.1."""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.helpers.processes import free_port, port_open, stop_group, subprocess_env, wait_for, wait_for_http

STARTUP_SECONDS = 180

pytestmark = pytest.mark.slow


def test_served_encoder_answers_invocations_with_codes(registered, tmp_path):
    from aetrack.data import load_dataset

    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{registered.prefix}-encoder/1",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(registered.uri), cwd=tmp_path,
        start_new_session=True,  # its own process group, so the test can stop the server and its workers
    )
    try:
        ready = wait_for_http(f"http://127.0.0.1:{port}/ping", server, STARTUP_SECONDS, log)

        x = load_dataset(str(registered.dataset), 256, 32).x_test[:5]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        asked = time.monotonic()
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            body = json.loads(response.read())
        answered = time.monotonic() - asked
        print(f"serve: ready after {ready:.1f}s, /invocations answered in {answered * 1000:.0f} ms")

        codes = np.asarray(body["predictions"], dtype=np.float32)
        assert codes.shape == (5, 8)
        expected = registered.results[0].model.get_layer("encoder")(x, training=False).numpy()
        np.testing.assert_allclose(codes, expected, atol=1e-5)

        # A request of the wrong width is refused by the signature, not answered with garbage.
        bad = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": [[0.5] * 10]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=60)
        assert refused.value.code == 400
    finally:
        stop_group(server)
        log.close()
    # Stopping the process group stopped the workers too: nothing answers on the port any more.
    wait_for(lambda: not port_open(port), 30, f"port {port} to close after the server stopped")


def _post(port: int, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers["Content-Type"], refused.read()


def test_aetrack_serve_answers_json_and_npy_and_stops_on_sigterm(registered, tmp_path):
    """`aetrack serve` in its own process: MLflow's JSON protocol and .npy bodies give the model's
    outputs; a bad request gets a one-line 400; SIGTERM stops it and frees the port."""
    import io

    from aetrack.data import load_dataset

    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "aetrack", "serve", "-m", f"models:/{registered.prefix}-autoencoder/2", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(registered.uri), cwd=tmp_path, start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, STARTUP_SECONDS, log)
        x = load_dataset(str(registered.dataset), 256, 32).x_test[:6]
        expected = registered.results[1].model(x, training=False).numpy()

        status, kind, body = _post(port, json.dumps({"inputs": x.tolist()}).encode(), "application/json")
        assert (status, kind) == (200, "application/json")
        np.testing.assert_allclose(np.asarray(json.loads(body)["predictions"]), expected, atol=1e-6)

        buffer = io.BytesIO()
        np.save(buffer, (x * 255).round().astype(np.uint8))  # uint8 pixels are divided by 255, as in training
        status, kind, body = _post(port, buffer.getvalue(), "application/x-npy")
        assert (status, kind) == (200, "application/x-npy")
        outputs = np.load(io.BytesIO(body))
        assert outputs.dtype == np.float32 and outputs.shape == (6, 784)
        np.testing.assert_allclose(outputs, expected, atol=1e-5)  # tiny_npz pixels are multiples of 1/255

        status, _, body = _post(port, json.dumps({"inputs": [[0.5] * 10]}).encode(), "application/json")
        error = json.loads(body)
        assert status == 400 and error["error_code"] == "BAD_REQUEST"
        assert error["message"] == "invalid inputs: shape (1, 10); expected numbers of shape (N, 784), N >= 1"
    finally:
        stop_group(server)
        log.close()
    assert server.returncode == 143
    text = (tmp_path / "serve.log").read_text()
    assert "aetrack: interrupted by SIGTERM" in text
    # One access line per request on stderr: method, path, status, rows, milliseconds.
    access = re.findall(r"^aetrack: 127\.0\.0\.1 (\S+ \S+ \d+ rows=\S+) [\d.]+ms$", text, re.MULTILINE)
    assert access[-3:] == ["POST /invocations 200 rows=6", "POST /invocations 200 rows=6",
                           "POST /invocations 400 rows=-"]
    assert "Traceback" not in text
    wait_for(lambda: not port_open(port), 30, f"port {port} to close after the server stopped")
