"""Serving latency, side by side: the same trained autoencoder logged the way aetrack logs it
(pyfunc through `aetrack_keras_pyfunc`, a direct call) and the way MLflow's Keras flavor logs it by
default (pyfunc through `model.predict`), each served by a real `mlflow models serve --env-manager
local` on 127.0.0.1. Requests alternate between the two servers; p50/p90 over `--requests`
requests of 1 image and of 256 images. Also checks that `mlflow models predict` (no `-o`) prints
JSON that parses.

    python benchmarks/serving.py [--data PATH] [--requests 200]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import DEFAULT_DATA, child_env, free_port, machine_lines, stop_group, tracking_store

STARTUP_SECONDS = 900  # a busy 2-core machine takes minutes to start TensorFlow
BATCHES = (1, 256)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Keras-layout mnist.npz")
    parser.add_argument("--requests", type=int, default=200, help="requests per server and batch size")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--test-samples", type=int, default=256, help="test images (repeated to fill a 256 batch)")
    args = parser.parse_args(argv)

    import mlflow
    import numpy as np

    from aetrack.config import TrainConfig
    from aetrack.data import load_dataset
    from aetrack.tracking.registry import pip_requirements, signature_for
    from aetrack.train import train

    print("\n".join(machine_lines()))
    with tracking_store() as (uri, root):
        config = TrainConfig(epochs=1, train_samples=args.train_samples, test_samples=args.test_samples, dataset=args.data,
                             image_every=0, model_prefix="bench")
        result = train(config)
        # Today's MLflow default for the same weights: the Keras flavor's own pyfunc (model.predict).
        with mlflow.start_run(experiment_id=result.experiment_id):
            mlflow.keras.log_model(result.model, name="autoencoder", signature=signature_for("autoencoder", 64),
                                   pip_requirements=pip_requirements(), registered_model_name="bench-predict-autoencoder")
        models = {"aetrack (direct call)": "models:/bench-autoencoder/1",
                  "mlflow.keras default (predict)": "models:/bench-predict-autoencoder/1"}
        images = np.resize(load_dataset(args.data, 1, args.test_samples).x_test, (max(BATCHES), 784))
        payloads = {n: json.dumps({"inputs": images[:n].tolist()}).encode() for n in BATCHES}

        figures: dict[str, dict] = {}
        for label, model_uri in models.items():
            figures[label] = {"predict_stdout_is_json": predict_stdout_is_json(model_uri, uri, root, images[:3])}
        servers = {label: start_server(model_uri, uri, root) for label, model_uri in models.items()}
        try:
            ports = {label: wait_ready(*server) for label, server in servers.items()}
            for n in BATCHES:
                times: dict[str, list[float]] = {label: [] for label in servers}
                for label, port in ports.items():  # warm-up, not counted
                    post(port, payloads[n])
                for i in range(args.requests):
                    order = list(ports) if i % 2 == 0 else list(reversed(ports))
                    for label in order:
                        started = time.perf_counter()
                        answer = post(ports[label], payloads[n])
                        times[label].append((time.perf_counter() - started) * 1000)
                        if i == 0:
                            shape = np.asarray(answer["predictions"]).shape
                            assert shape == (n, 784), (label, shape)
                for label, values in times.items():
                    figures[label][f"p50_ms_{n}"] = statistics.median(values)
                    figures[label][f"p90_ms_{n}"] = statistics.quantiles(values, n=10)[-1]
        finally:
            for process, _, _ in servers.values():
                stop_group(process)

    print(f"\n{'model logged as':<32} {'p50 1 img':>10} {'p90 1 img':>10} {'p50 256':>10} {'p90 256':>10}  predict stdout JSON")
    for label, f in figures.items():
        print(f"{label:<32} {f['p50_ms_1']:>8.1f}ms {f['p90_ms_1']:>8.1f}ms {f['p50_ms_256']:>8.1f}ms "
              f"{f['p90_ms_256']:>8.1f}ms  {'yes' if f['predict_stdout_is_json'] else 'no'}")
    slow, fast = figures["mlflow.keras default (predict)"], figures["aetrack (direct call)"]
    print(f"speed-up p50: {slow['p50_ms_1'] / fast['p50_ms_1']:.1f}x (1 image), "
          f"{slow['p50_ms_256'] / fast['p50_ms_256']:.1f}x (256 images); {args.requests} requests each")
    print("RESULT " + json.dumps(figures))
    return figures


def predict_stdout_is_json(model_uri: str, uri: str, root: Path, images) -> bool:
    (root / "in.json").write_text(json.dumps({"inputs": images.tolist()}))
    out = subprocess.run(
        [sys.executable, "-m", "mlflow", "models", "predict", "-m", model_uri, "-i", str(root / "in.json"),
         "-t", "json", "--env-manager", "local"],
        capture_output=True, text=True, timeout=STARTUP_SECONDS, env=child_env(uri), cwd=root,
    )
    try:
        json.loads(out.stdout)
        return out.returncode == 0
    except ValueError:
        return False


def start_server(model_uri: str, uri: str, root: Path):
    port = free_port()
    log = open(root / f"serve-{port}.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=child_env(uri), cwd=root, start_new_session=True,
    )
    return process, port, log


def wait_ready(process: subprocess.Popen, port: int, log) -> int:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited {process.returncode}:\n{log.read()[-3000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/ping")
            connection.getresponse().read()
            connection.close()
            return port
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"server on port {port} not ready after {STARTUP_SECONDS}s")


def post(port: int, body: bytes) -> dict:
    """One request on a new loopback connection (the server drops idle a new connection per request
    after 5 s, which a busy machine reaches between requests)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    return json.loads(data)


if __name__ == "__main__":
    main()
