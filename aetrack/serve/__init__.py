"""`aetrack serve`: a lean scoring server for one trained model, for when batch throughput matters.

`mlflow models serve` answers aetrack's models through one compiled call (see
`tracking/aetrack_keras_pyfunc.py`), but for a batch its server spends most of a request on JSON:
it decodes the request twice and writes every output float with Python's pure-Python JSON encoder,
which the model cannot change (benchmarks/serving.py measures it; benchmarks/RESULTS.md has the
figures). This server keeps MLflow's protocol (`POST /invocations` with `{"inputs": ...}`,
`{"instances": ...}`, `{"dataframe_split": ...}` or `{"dataframe_records": ...}`, answered with
`{"predictions": ...}`; `GET /ping`, `/health`, `/version`), reads and writes JSON with orjson,
and adds a binary form: a `.npy` body with `Content-Type: application/x-npy` is answered with a
`.npy` body of float32 outputs. A scorer answers one anomaly score per sample; a scorer or an
autoencoder that carries a stored threshold adds `"scores"`, `"is_anomaly"` (0/1) and
`"threshold"` beside `"predictions"` in JSON answers. Inputs are samples of the model's
`SampleSpec` (read with the model, `aetrack.use.specs`), in the sample shape (N, *shape) or flat
(N, size); samples are answered in the shape they came in, and a table model's DataFrame columns
are matched by name.

`protocol` turns a body into an answer (no HTTP); `server` is the HTTP side (routes, limits,
timeouts, the request log). A refused request is a RequestError (aetrack's error family),
answered with its HTTP status and MLflow's error document.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable

from aetrack.errors import Interrupted
from aetrack.serve.protocol import (JSON_TYPE, NPY_TYPE, Answer, ServedModel, answer, check_batch, parse_json_body,
                                    parse_json_request)
from aetrack.serve.server import Limits, ScoringServer, make_server, to_stderr
from aetrack.serve.workers import WorkerError, run_workers

__all__ = ["JSON_TYPE", "NPY_TYPE", "Answer", "Limits", "ScoringServer", "ServedModel", "answer", "check_batch",
           "load_served_model", "make_server", "parse_json_body", "parse_json_request", "run_workers", "serve",
           "WorkerError"]


def load_served_model(uri: str) -> ServedModel:
    """Load `uri` (any form `aetrack.models.loading.load_model` takes) behind a direct compiled call,
    with the spec of its samples."""
    from aetrack.models.loading import load_model
    from aetrack.tracking.aetrack_keras_pyfunc import DirectKerasModel
    from aetrack.use.anomaly_io import MSE, is_scorer, stored_threshold
    from aetrack.use.specs import model_metadata, model_spec

    model = load_model(uri, option="--model")  # the serve command's flag, as load_model names it
    metadata = model_metadata(uri)
    spec = model_spec(uri, model, metadata)
    scorer = is_scorer(model, metadata)
    threshold = stored_threshold(uri, metadata)
    if threshold is not None and not scorer and threshold.score != MSE:
        threshold = None  # a vae autoencoder's threshold is on its ELBO, which only its scorer answers
    direct = DirectKerasModel(model)
    output = model.outputs[0].shape
    return ServedModel(predict=direct.predict, input_width=int(model.inputs[0].shape[-1]),
                       output_width=int(output[-1]) if len(output) > 1 else 1, spec=spec, scorer=scorer,
                       threshold=None if threshold is None else threshold.value)


def serve(model_uri: str, host: str, port: int, announce: Callable[[str], None] = print,
          limits: Limits = Limits(), access_log: bool = True, workers: int = 1) -> None:
    """Load the model, then answer requests until SIGINT or SIGTERM (raised as Interrupted).
    `access_log`: one line per request on stderr (method, path, status, rows, milliseconds).
    `workers` > 1: that many processes share the port, each loading its own copy of the model
    (see `aetrack.serve.workers`); a worker that exits unexpectedly is a WorkerError."""
    if workers > 1:
        for heavy in ("tensorflow", "mlflow"):
            if heavy in sys.modules:  # forking after TensorFlow loads is unsafe
                raise RuntimeError(f"serve(workers={workers}) must fork before {heavy} is imported")
    # Bind first: a busy port fails before TensorFlow loads.
    server = make_server(None, host, port, limits, access_log=to_stderr if access_log else None)

    def stop(signal_number, _frame):
        raise Interrupted(signal_number)

    def describe_lines(description: str, how: str = "") -> None:
        bound_host, bound_port = server.server_address[:2]
        announce(f"aetrack: serving {model_uri}: {description}{how}")
        announce(f"  POST http://{bound_host}:{bound_port}/invocations  ({JSON_TYPE} {{\"inputs\": [[...]]}} "
                 f"or {NPY_TYPE}); bodies up to {limits.max_body_bytes / 2**20:g} MiB, {limits.timeout:g} s "
                 "to send one; Ctrl-C stops")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if workers == 1:
            model = server.model = load_served_model(model_uri)
            describe_lines(model.describe())
            server.serve_forever(poll_interval=0.5)
            return

        def work(number: int, ready: Callable[[str], None]) -> None:
            prefix = _worker_prefix(number)
            server.log = prefix(server.log)
            if server.access_log is not None:
                server.access_log = prefix(server.access_log)
            model = server.model = load_served_model(model_uri)
            ready(model.describe())
            server.serve_forever(poll_interval=0.5)

        def on_ready(number: int, pid: int, description: str) -> None:
            if not announced:
                announced.append(number)
                describe_lines(description, f"; {workers} worker processes share the port")
            to_stderr(f"aetrack: worker {number} of {workers} (pid {pid}) ready")

        announced: list[int] = []
        run_workers(workers, work, on_ready)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


def _worker_prefix(number: int) -> Callable[[Callable[[str], None]], Callable[[str], None]]:
    """Wrap a log function so its lines read `aetrack: worker N: ...`."""
    def wrap(log: Callable[[str], None]) -> Callable[[str], None]:
        def prefixed(line: str) -> None:
            head, sep, rest = line.partition("aetrack: ")
            log(f"aetrack: worker {number}: {rest}" if sep and not head else f"worker {number}: {line}")
        return prefixed
    return wrap
