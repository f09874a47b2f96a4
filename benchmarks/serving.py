"""Serving latency, side by side, for the same trained autoencoder:
- logged the way aetrack logs it (pyfunc through `aetrack_keras_pyfunc`, a direct call) and the way
  MLflow's Keras flavor logs it by default (pyfunc through `model.predict`), each served by a real
  `mlflow models serve --env-manager local`;
- served by `aetrack serve`, with MLflow's JSON protocol and with .npy bodies.
All on 127.0.0.1; requests rotate between the endpoints; p50/p90 over `--requests` requests of 1
image and of 256 images, from the request's first byte sent to the answer's last byte read (the
client decodes outside the timing). Also checks that `mlflow models predict` (no `-o`) prints JSON that parses.

    python benchmarks/serving.py [--data PATH] [--requests 200]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import DEFAULT_DATA, child_env, free_port, machine_lines, registered, stop_group, tracking_store

from aetrack.serve import JSON_TYPE, NPY_TYPE  # harness put the checkout on sys.path

STARTUP_SECONDS = 900  # a busy 2-core machine takes minutes to start TensorFlow
BATCHES = (1, 256)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Keras-layout mnist.npz")
    parser.add_argument("--requests", type=int, default=200, help="requests per server and batch size")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--test-samples", type=int, default=256, help="test images (repeated to fill a 256 batch)")
    parser.add_argument("--no-predict-check", action="store_true",
                        help="skip the `mlflow models predict` stdout check (two more processes loading TensorFlow)")
    parser.add_argument("--workdir", help="keep the tracking store in this folder; models already registered there "
                                          "(by an earlier serving.py) are served, not trained again")
    args = parser.parse_args(argv)

    import mlflow
    import numpy as np

    from aetrack.config import TrainConfig
    from aetrack.data import load_dataset
    from aetrack.tracking.registry import pip_requirements, signature_for
    from aetrack.train import train

    print("\n".join(machine_lines()))
    with tracking_store(args.workdir) as (uri, root):
        if not registered("bench-predict-autoencoder"):
            config = TrainConfig(epochs=1, train_samples=args.train_samples, test_samples=args.test_samples,
                                 dataset=args.data, image_every=0, model_prefix="bench")
            result = train(config)
            # Today's MLflow default for the same weights: the Keras flavor's own pyfunc (model.predict).
            with mlflow.start_run(experiment_id=result.experiment_id):
                mlflow.keras.log_model(result.model, name="autoencoder", signature=signature_for("autoencoder", 64),
                                       pip_requirements=pip_requirements(),
                                       registered_model_name="bench-predict-autoencoder")
        models = {"aetrack (direct call)": "models:/bench-autoencoder/1",
                  "mlflow.keras default (predict)": "models:/bench-predict-autoencoder/1"}
        images = np.resize(load_dataset(args.data, 1, args.test_samples).x_test, (max(BATCHES), 784))
        figures: dict[str, dict] = {}
        for label, model_uri in models.items():
            figures[f"mlflow serve, {label}"] = {} if args.no_predict_check else {
                "predict_stdout_is_json": predict_stdout_is_json(model_uri, uri, root, images[:3])}
        servers = {f"mlflow serve, {label}": start_server(mlflow_serve(model_uri), uri, root)
                   for label, model_uri in models.items()}
        servers["aetrack serve"] = start_server(aetrack_serve("models:/bench-autoencoder/1"), uri, root)
        try:
            ports = {label: wait_ready(*server) for label, server in servers.items()}
            # (label, port, wire format): every server gets JSON; aetrack serve also .npy bodies.
            endpoints = [(f"{label} (JSON)", port, "json") for label, port in ports.items()]
            endpoints.append(("aetrack serve (.npy)", ports["aetrack serve"], "npy"))
            for n in BATCHES:
                bodies = {wire: request_body(images[:n], wire) for wire in ("json", "npy")}
                times: dict[str, list[float]] = {label: [] for label, _, _ in endpoints}
                for _, port, wire in endpoints:  # warm-up, not counted
                    post(port, bodies[wire], wire)
                for i in range(args.requests):
                    order = endpoints if i % 2 == 0 else endpoints[::-1]
                    for label, port, wire in order:
                        started = time.perf_counter()
                        answer = post(port, bodies[wire], wire)
                        times[label].append((time.perf_counter() - started) * 1000)
                        if i == 0:  # decoded outside the timing: the client's choice of decoder is its own
                            outputs = decode(answer, wire)
                            assert outputs.shape == (n, 784), (label, outputs.shape)
                for label, values in times.items():
                    figure = figures.setdefault(label.replace(" (JSON)", ""), {})
                    figure[f"p50_ms_{n}"] = statistics.median(values)
                    figure[f"p90_ms_{n}"] = statistics.quantiles(values, n=10)[-1]
        finally:
            for process, _, _ in servers.values():
                stop_group(process)

    print(f"\n{'served by, model logged as':<48} {'p50 1 img':>10} {'p90 1 img':>10} {'p50 256':>10} {'p90 256':>10}"
          "  predict stdout JSON")
    for label, f in figures.items():
        stdout_json = {True: "yes", False: "no"}.get(f.get("predict_stdout_is_json"), "-")
        print(f"{label:<48} {f['p50_ms_1']:>8.1f}ms {f['p90_ms_1']:>8.1f}ms {f['p50_ms_256']:>8.1f}ms "
              f"{f['p90_ms_256']:>8.1f}ms  {stdout_json}")
    baseline = figures["mlflow serve, mlflow.keras default (predict)"]
    for label in ("mlflow serve, aetrack (direct call)", "aetrack serve", "aetrack serve (.npy)"):
        print(f"speed-up p50 over the mlflow.keras default, {label}: {baseline['p50_ms_1'] / figures[label]['p50_ms_1']:.1f}x"
              f" (1 image), {baseline['p50_ms_256'] / figures[label]['p50_ms_256']:.1f}x (256 images)")
    print(f"{args.requests} requests per endpoint and batch size; latency to the answer's last byte, not decoded")
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


def mlflow_serve(model_uri: str):
    return lambda port: [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
                         "-h", "127.0.0.1", "-p", str(port), "-w", "1"]


def aetrack_serve(model_uri: str):
    return lambda port: [sys.executable, "-m", "aetrack", "serve", "-m", model_uri, "-p", str(port)]


def start_server(command, uri: str, root: Path):
    port = free_port()
    log = open(root / f"serve-{port}.log", "w+")
    process = subprocess.Popen(command(port), stdout=log, stderr=subprocess.STDOUT, env=child_env(uri), cwd=root,
                               start_new_session=True)
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


CONTENT_TYPES = {"json": JSON_TYPE, "npy": NPY_TYPE}


def request_body(images, wire: str) -> bytes:
    """The request, encoded once before timing (a client sending the same images again would too)."""
    import numpy as np

    if wire == "npy":
        buffer = io.BytesIO()
        np.save(buffer, images)
        return buffer.getvalue()
    return json.dumps({"inputs": images.tolist()}).encode()


def post(port: int, body: bytes, wire: str) -> bytes:
    """One request on a new loopback connection (MLflow's server drops a connection idle for 5 s,
    which a busy machine reaches between requests); the answer's bytes, read to the end."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": CONTENT_TYPES[wire]})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    return data


def decode(data: bytes, wire: str):
    """The outputs in an answer, as an array."""
    import numpy as np

    if wire == "npy":
        return np.load(io.BytesIO(data))
    return np.asarray(json.loads(data)["predictions"])


if __name__ == "__main__":
    main()
