"""Real `mlflow models serve` processes serving a registered encoder and scorer, and `aetrack serve`,
over HTTP on 127.0.0.1."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.helpers.processes import free_port, pid_alive, port_open, stop_group, subprocess_env, wait_for, wait_for_http

STARTUP_SECONDS = 180

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("part", ["encoder", "scorer"])
def test_mlflow_models_serve_answers_as_the_model_in_memory(registered, tmp_path, part):
    """The encoder answers its codes; the scorer one anomaly score per sample (its (n, 1) column),
    the per-sample MSE of the run's autoencoder."""
    from aetrack.data import load_dataset

    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{registered.prefix}-{part}/1",
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

        answered = np.asarray(body["predictions"], dtype=np.float32)
        model = registered.results[0].model
        if part == "encoder":
            expected = model.get_layer("encoder")(x, training=False).numpy()
            assert answered.shape == (5, 8)
        else:
            expected = np.mean((x - model(x, training=False).numpy()) ** 2, axis=1, keepdims=True)
            assert answered.shape == (5, 1)
        np.testing.assert_allclose(answered, expected, rtol=1e-4, atol=1e-6)

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


def _post(port: int, body: bytes, content_type: str) -> tuple[int, str, bytes, int]:
    """(status, Content-Type, body, the answering worker's pid) of POST /invocations."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read(), _worker(response)
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers["Content-Type"], refused.read(), _worker(refused)


def _worker(response) -> int:
    return int(response.headers["X-Aetrack-Worker"])


def test_aetrack_serve_workers_answer_json_and_npy_and_stop_on_sigterm(registered, tmp_path):
    """`aetrack serve --workers 2` in its own process: MLflow's JSON protocol and .npy bodies give
    the model's outputs, from two worker processes on one port; a bad request gets a one-line 400;
    SIGTERM to the parent alone stops every worker and frees the port (exit 143)."""
    import io

    from aetrack.data import load_dataset

    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "aetrack", "serve", "-m", f"models:/{registered.prefix}-autoencoder/2", "-p", str(port),
         "--workers", "2"],
        stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(registered.uri), cwd=tmp_path, start_new_session=True,
    )
    try:
        started = time.monotonic()
        wait_for(lambda: server.poll() is not None or len(re.findall(
            r"^aetrack: worker \d of 2 \(pid \d+\) ready$", (tmp_path / "serve.log").read_text(), re.MULTILINE)) == 2,
            STARTUP_SECONDS, "both workers to be ready")
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        print(f"serve --workers 2: both ready after {time.monotonic() - started:.1f}s")
        x = load_dataset(str(registered.dataset), 256, 32).x_test[:6]
        expected = registered.results[1].model(x, training=False).numpy()

        pids = set()
        status, kind, body, pid = _post(port, json.dumps({"inputs": x.tolist()}).encode(), "application/json")
        assert (status, kind) == (200, "application/json")
        np.testing.assert_allclose(np.asarray(json.loads(body)["predictions"]), expected, atol=1e-6)
        pids.add(pid)
        answered = 1

        buffer = io.BytesIO()
        np.save(buffer, (x * 255).round().astype(np.uint8))  # uint8 pixels are divided by 255, as in training
        for _ in range(40):  # each request is a new connection; the kernel hands them to either worker
            status, kind, body, pid = _post(port, buffer.getvalue(), "application/x-npy")
            assert (status, kind) == (200, "application/x-npy")
            outputs = np.load(io.BytesIO(body))
            assert outputs.dtype == np.float32 and outputs.shape == (6, 784)
            np.testing.assert_allclose(outputs, expected, atol=1e-5)  # tiny_npz pixels are multiples of 1/255
            pids.add(pid)
            answered += 1
            if len(pids) == 2:
                break
        assert len(pids) == 2 and server.pid not in pids

        status, _, body, _ = _post(port, json.dumps({"inputs": [[0.5] * 10]}).encode(), "application/json")
        error = json.loads(body)
        assert status == 400 and error["error_code"] == "BAD_REQUEST"
        assert error["message"] == "invalid inputs: shape (1, 10); expected numbers of shape (N, 28, 28) or (N, 784), N >= 1"

        server.send_signal(signal.SIGTERM)  # the parent alone: it stops the workers
        server.wait(timeout=30)
    finally:
        stop_group(server)
        log.close()
    assert server.returncode == 143
    assert not [pid for pid in pids if pid_alive(pid)]
    text = (tmp_path / "serve.log").read_text()
    assert text.count("aetrack: serving ") == 1 and "2 worker processes share the port" in text
    assert text.count("aetrack: interrupted by SIGTERM") == 1
    # One access line per request on stderr: worker, method, path, status, rows, milliseconds.
    access = re.findall(r"^aetrack: worker [12]: 127\.0\.0\.1 (\S+ \S+ \d+ rows=\S+) [\d.]+ms$", text, re.MULTILINE)
    assert access.count("POST /invocations 200 rows=6") == answered and access.count("POST /invocations 400 rows=-") == 1
    assert "Traceback" not in text
    wait_for(lambda: not port_open(port), 30, f"port {port} to close after the server stopped")


def _fake_worker(fate: str, folder):
    """A `work` for run_workers without a model: worker 1 serves (sleeps) until stopped; worker 2
    meets `fate`. Each writes its pid to `folder`."""
    def work(number, ready):
        from aetrack.errors import ModelError

        (folder / f"worker{number}.pid").write_text(str(os.getpid()))
        if number == 2 and fate == "no model":
            raise ModelError("--model", "models:/none/1", "no such model", "a registered model")
        ready(f"fake {number}")
        if number == 2 and fate == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
    return work


@pytest.mark.parametrize("fate, code, why", [
    ("no model", 2,
     r"exited with status 2: invalid --model 'models:/none/1': no such model; expected a registered model"),
    ("killed", 1, r"was killed by SIGKILL"),
])
def test_a_worker_that_dies_stops_the_others_and_fails_in_one_line(fate, code, why, tmp_path):
    """run_workers, in this process, with fake workers: one that fails to load its model or is
    killed ends the others, and the parent fails with one line naming it and its exit status."""
    from aetrack.serve import WorkerError, run_workers

    ready = []
    started = time.monotonic()
    with pytest.raises(WorkerError) as failed:
        run_workers(2, _fake_worker(fate, tmp_path), lambda number, pid, what: ready.append((number, pid, what)))
    assert time.monotonic() - started < 10  # worker 1 was stopped, not waited for
    message = str(failed.value)
    assert re.fullmatch(rf"serving worker 2 of 2 \(pid \d+\) {why}; the other worker was stopped", message), message
    assert failed.value.exit_code == code
    pids = [int(path.read_text()) for path in tmp_path.glob("worker*.pid")]  # one may have been stopped first
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert all(what == f"fake {number}" for number, _, what in ready)
