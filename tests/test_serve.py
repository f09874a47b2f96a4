"""A real `mlflow models serve` process serving a registered encoder over HTTP on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.helpers.processes import subprocess_env

STARTUP_SECONDS = 180

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status


def test_served_encoder_answers_invocations_with_codes(registered, tmp_path):
    from aetrack.data import load_dataset

    port = _free_port()
    log = open(tmp_path / "serve.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{registered.prefix}-encoder/1",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(registered.uri), cwd=tmp_path,
        start_new_session=True,  # its own process group, so the test can stop the server and its workers
    )
    started = time.monotonic()
    try:
        while True:
            assert server.poll() is None, f"server exited {server.returncode}: {_tail(log)}"
            assert time.monotonic() - started < STARTUP_SECONDS, f"server not up in {STARTUP_SECONDS}s: {_tail(log)}"
            try:
                if _get(f"http://127.0.0.1:{port}/ping") == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        ready = time.monotonic() - started

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
        try:
            urllib.request.urlopen(bad, timeout=60)
            raise AssertionError("a (1, 10) input was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
        log.close()
    assert server.returncode is not None


def _tail(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-3000:]
