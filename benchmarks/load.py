"""Serving under concurrent load, side by side, for one trained autoencoder on 127.0.0.1:
`aetrack serve` (JSON and .npy bodies) and `mlflow models serve` (JSON, its default workers).

For each server, wire format, batch size (`--batches`, default 1 and 256 images) and client count
(`--clients`, default 1, 8 and 32), that many client threads send the same request over kept-alive
connections for `--seconds` each: throughput, p50 and p99 latency (request sent to the whole answer
read; clients decode outside the timing) and errors (anything but a 200 with the right shape).
Bounded: a client starts no request after its phase's time, and each request has a timeout.

Also, in the same run: the JSON 256-image p50 of `aetrack serve` with the encoder it used before
orjson (`json.loads` for requests, `json.dumps(outputs.tolist())` for answers) beside orjson's.

    python benchmarks/load.py [--data PATH] [--seconds 5] [--clients 1 8 32] [--batches 1 256]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import sys
import threading
import time

from harness import DEFAULT_DATA, machine_lines, registered, tracking_store
from serving import request_body, start_server, stop_group, wait_ready

from aetrack.serve import JSON_TYPE, NPY_TYPE  # harness put the checkout on sys.path

REQUEST_TIMEOUT = 120
# `aetrack serve` as it was before orjson: the standard library's JSON both ways.
BEFORE_ORJSON = """
import json, sys, types
import orjson
from aetrack.serve import protocol
protocol.orjson = types.SimpleNamespace(loads=json.loads, dumps=orjson.dumps, JSONDecodeError=ValueError)
def encode_json(outputs, scores=None, threshold=None):
    document = {"predictions": outputs.tolist()}
    if scores is not None and threshold is not None:  # a model with a stored threshold: scores and flags too
        document.update(scores=scores.tolist(), is_anomaly=[int(s > threshold) for s in scores.tolist()],
                        threshold=float(threshold))
    return json.dumps(document).encode()
protocol.encode_json = encode_json
from aetrack.cli import main
main(sys.argv[1:])
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Keras-layout mnist.npz")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per phase (server, form, batch, clients)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--test-samples", type=int, default=256, help="test images (repeated to fill a batch)")
    parser.add_argument("--aetrack-processes", type=int, default=1,
                        help="also run N `aetrack serve` processes with the clients spread over them, as "
                             "SO_REUSEPORT workers would be (1: not)")
    parser.add_argument("--workdir", help="keep the tracking store in this folder; a `bench` model already "
                                          "registered there (by serving.py or load.py) is served, not trained again")
    args = parser.parse_args(argv)
    if max(args.clients) > 64 or args.seconds > 60 or not 1 <= args.aetrack_processes <= 8:
        parser.error("at most 64 clients, 60 seconds a phase and 8 processes: this is a bounded load test")

    import numpy as np

    from aetrack.config import TrainConfig
    from aetrack.data import load_dataset

    print("\n".join(machine_lines()))
    with tracking_store(args.workdir) as (uri, root):
        if not registered("bench-autoencoder"):
            from aetrack.train import train  # TensorFlow: only when there is a model to train

            train(TrainConfig(epochs=1, train_samples=args.train_samples, test_samples=args.test_samples,
                              dataset=args.data, image_every=0, model_prefix="bench"))
        model_uri = "models:/bench-autoencoder/1"
        images = np.resize(load_dataset(args.data, 1, args.test_samples).x_test, (max(args.batches), 784))
        aetrack = [sys.executable, "-m", "aetrack", "serve", "-m", model_uri, "--no-access-log"]
        commands = {
            "aetrack serve": lambda port: [*aetrack, "-p", str(port)],
            "aetrack serve, before orjson": lambda port: [sys.executable, "-c", BEFORE_ORJSON, *aetrack[3:],
                                                          "-p", str(port)],
            "mlflow models serve": lambda port: [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
                                                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        }
        for i in range(2, args.aetrack_processes + 1):
            commands[f"aetrack serve, process {i}"] = commands["aetrack serve"]
        servers = {label: start_server(command, uri, root) for label, command in commands.items()}
        try:
            ports = {label: wait_ready(*server) for label, server in servers.items()}
            # (row label, port, wire, batch, clients): the full grid for both servers; the old
            # encoder only where the comparison is asked for (JSON, 256 images, one client).
            spread = [port for label, port in ports.items() if label == "aetrack serve" or ", process" in label]
            many = f"aetrack serve x{len(spread)} processes"
            phases = []
            for n in args.batches:
                for clients in args.clients:
                    phases += [("aetrack serve (JSON)", [ports["aetrack serve"]], "json", n, clients),
                               ("aetrack serve (.npy)", [ports["aetrack serve"]], "npy", n, clients),
                               ("mlflow models serve (JSON)", [ports["mlflow models serve"]], "json", n, clients)]
                    if len(spread) > 1 and clients > 1:
                        phases += [(f"{many} (JSON)", spread, "json", n, clients),
                                   (f"{many} (.npy)", spread, "npy", n, clients)]
            phases.append(("aetrack serve, before orjson (JSON)", [ports["aetrack serve, before orjson"]], "json",
                           max(args.batches), 1))
            results = []
            for label, phase_ports, wire, n, clients in phases:
                body = request_body(images[:n], wire)
                run_phase(phase_ports, body, wire, n, len(phase_ports), min(args.seconds, 1.0))  # warm-up, not counted
                figures = run_phase(phase_ports, body, wire, n, clients, args.seconds)
                results.append({"server": label, "batch": n, "clients": clients, **figures})
                print(f"  {label:<38} {n:>4} images x {clients:>2} clients: {figures['requests_per_s']:8.1f} req/s "
                      f"p50 {figures['p50_ms']:8.1f} ms  p99 {figures['p99_ms']:8.1f} ms  errors {figures['errors']}",
                      flush=True)
        finally:
            for process, _, log in servers.values():
                stop_group(process)
                log.close()

    print(f"\n| server | images | clients | requests/s | images/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['server']} | {r['batch']} | {r['clients']} | {r['requests_per_s']:.1f} | "
              f"{r['requests_per_s'] * r['batch']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |")
    n = max(args.batches)
    json_p50 = {r["server"]: r["p50_ms"] for r in results
                if r["batch"] == n and r["clients"] == 1 and "(JSON)" in r["server"]}
    if "aetrack serve (JSON)" in json_p50:
        before = json_p50["aetrack serve, before orjson (JSON)"]
        print(f"\nJSON, {n} images, 1 client, p50: before orjson {before:.1f} ms, orjson "
              f"{json_p50['aetrack serve (JSON)']:.1f} ms")
    print(f"{args.seconds:g} s per phase; latency from the request's first byte sent to the answer's last byte read")
    print("RESULT " + json.dumps(results))
    return {"phases": results}


def run_phase(ports: list[int], body: bytes, wire: str, n: int, clients: int, seconds: float) -> dict:
    """`clients` threads posting `body` until `seconds` have passed, client i to `ports[i % len(ports)]`;
    their figures together."""
    start = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    first_answers: list[bytes] = []
    stop_at = [0.0]

    def client(index: int) -> None:
        connection = None
        port = ports[index % len(ports)]
        start.wait()
        while time.perf_counter() < stop_at[0]:
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
                asked = time.perf_counter()
                connection.request("POST", "/invocations", body=body,
                                   headers={"Content-Type": NPY_TYPE if wire == "npy" else JSON_TYPE})
                response = connection.getresponse()
                data = response.read()
                latencies[index].append((time.perf_counter() - asked) * 1000)
                if response.status != 200:
                    errors[index] += 1
                elif not first_answers:
                    first_answers.append(data)
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join(seconds + REQUEST_TIMEOUT + 10)
    elapsed = time.perf_counter() - began
    times = sorted(t for per_client in latencies for t in per_client)
    if first_answers and decoded_rows(first_answers[0], wire) != n:
        raise RuntimeError(f"an answer from port {ports} does not hold {n} rows")
    return {"requests": len(times), "requests_per_s": len(times) / elapsed, "errors": sum(errors),
            "p50_ms": statistics.median(times) if times else float("nan"),
            "p99_ms": statistics.quantiles(times, n=100)[98] if len(times) > 1 else (times or [float("nan")])[0]}


def decoded_rows(data: bytes, wire: str) -> int:
    import numpy as np

    outputs = np.load(io.BytesIO(data)) if wire == "npy" else np.asarray(json.loads(data)["predictions"])
    assert outputs.shape[1:] == (784,), outputs.shape
    return len(outputs)


if __name__ == "__main__":
    main()
