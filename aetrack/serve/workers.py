"""`aetrack serve --workers N`: N pre-forked processes answering on one listening socket.

One process is bound by the GIL (JSON decoding, the request's Python, the model call's
dispatch), so on a machine with cores to spare N processes answer more. The parent binds and
listens, then forks the workers before anything imports TensorFlow or MLflow (forking after
TensorFlow loads is unsafe); each worker loads its own copy of the model and accepts on the
inherited socket, and the kernel spreads connections over the accepting processes.

The parent only supervises: it announces once the first worker is ready, forwards SIGTERM and
SIGINT to the workers and waits for them. A worker that exits unexpectedly (its model did not
load, it was killed) stops the others, and the parent fails with one line naming the worker and
its exit status; workers are not respawned. Each worker tells the parent, over a pipe, that it is
ready or why it failed.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from aetrack.errors import EXIT_FAILURE, AetrackError, describe, one_line

_GRACE_SECONDS = 15.0  # how long stopped workers get to finish before SIGKILL
_POLL_SECONDS = 0.2


class WorkerError(AetrackError):
    """A serving worker exited unexpectedly; `exit_code` is the worker's own when it said why
    (e.g. 2 for a model that does not load), else 1."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class _Worker:
    number: int
    pid: int
    pipe: int  # read end: "ready <what>" or "error <code> <message>" lines from the worker
    said: bytes = b""
    status: int | None = None  # os.waitpid's status once reaped
    ready: bool = False
    error: tuple[int, str] | None = field(default=None)


# What runs in a worker: `work(number, ready)` loads the model, calls `ready(description)`, then
# serves until a signal (KeyboardInterrupt, Interrupted) ends it.
Work = Callable[[int, Callable[[str], None]], None]


def run_workers(count: int, work: Work, on_ready: Callable[[int, int, str], None]) -> None:
    """Fork `count` workers running `work` and supervise them until a signal (raised here as
    KeyboardInterrupt/Interrupted after the workers are stopped) or an unexpected exit
    (WorkerError). `on_ready(number, pid, description)` is called in the parent per ready worker."""
    workers: list[_Worker] = []
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        for number in range(1, count + 1):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                # Stop when the parent says so, whatever handlers the parent process had (a library
                # caller's, or the no-op aetrack keeps after an interrupted run).
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                os.close(read_end)
                for other in workers:
                    os.close(other.pipe)
                _run_worker(number, write_end, work)
            os.close(write_end)
            workers.append(_Worker(number, pid, read_end))
        failed = _supervise(workers, on_ready)
    except KeyboardInterrupt as stop:  # SIGINT, or SIGTERM raised as Interrupted
        # A second signal must not cut the stopping short.
        previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            _stop(workers, getattr(stop, "signal_number", signal.SIGINT))
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        raise
    except BaseException:
        _stop(workers, signal.SIGTERM)
        raise
    _stop(workers, signal.SIGTERM)
    raise _failure(failed, count)


def _run_worker(number: int, pipe: int, work: Work) -> None:
    code = EXIT_FAILURE
    try:
        def ready(description: str) -> None:
            os.write(pipe, f"ready {one_line(description)}\n".encode())

        work(number, ready)
        code = 0
    except KeyboardInterrupt as stop:  # stopped by the parent (or Ctrl-C on the whole group): quietly
        code = getattr(stop, "exit_code", 130)
    except BaseException as exc:  # noqa: BLE001 - the parent words it, in one line
        message, code = describe(exc)
        try:
            os.write(pipe, f"error {code} {message}\n".encode(errors="replace")[:8192])
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _supervise(workers: list[_Worker], on_ready: Callable[[int, int, str], None]) -> _Worker:
    """Wait until a worker exits (every exit is unexpected here); return it."""
    while True:
        open_pipes = [w.pipe for w in workers if w.pipe >= 0]
        readable, _, _ = select.select(open_pipes, [], [], _POLL_SECONDS) if open_pipes else ([], [], [])
        for worker in workers:
            if worker.pipe in readable:
                _read(worker, on_ready)
        for worker in workers:
            if worker.status is None and _reap(worker, block=False):
                if worker.pipe >= 0:
                    _read(worker, on_ready)  # whatever it said before exiting
                return worker
        if not open_pipes:
            time.sleep(_POLL_SECONDS)


def _read(worker: _Worker, on_ready: Callable[[int, int, str], None]) -> None:
    try:
        chunk = os.read(worker.pipe, 65536)
    except OSError:
        chunk = b""
    if not chunk:
        os.close(worker.pipe)
        worker.pipe = -1
    worker.said += chunk
    while b"\n" in worker.said:
        line, worker.said = worker.said.split(b"\n", 1)
        kind, _, rest = line.decode(errors="replace").partition(" ")
        if kind == "ready" and not worker.ready:
            worker.ready = True
            on_ready(worker.number, worker.pid, rest)
        elif kind == "error":
            code, _, message = rest.partition(" ")
            worker.error = (int(code) if code.isdigit() else EXIT_FAILURE, message)


def _reap(worker: _Worker, block: bool) -> bool:
    try:
        pid, status = os.waitpid(worker.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        pid, status = worker.pid, 0
    if pid == 0:
        return False
    worker.status = status
    return True


def _stop(workers: list[_Worker], signal_number: int) -> None:
    """Signal every live worker, wait `_GRACE_SECONDS` for them, then SIGKILL what is left."""
    for worker in workers:
        if worker.status is None:
            try:
                os.kill(worker.pid, signal_number)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + _GRACE_SECONDS
    while any(w.status is None for w in workers) and time.monotonic() < deadline:
        for worker in workers:
            if worker.status is None:
                _reap(worker, block=False)
        time.sleep(0.05)
    for worker in workers:
        if worker.status is None:
            try:
                os.kill(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(worker, block=True)
        if worker.pipe >= 0:
            os.close(worker.pipe)
            worker.pipe = -1


def _failure(worker: _Worker, count: int) -> WorkerError:
    status = worker.status or 0
    if os.WIFSIGNALED(status):
        how = f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        how = f"exited with status {os.waitstatus_to_exitcode(status)}"
    code = EXIT_FAILURE
    if worker.error is not None:
        code, message = worker.error
        how += f": {message}"
    others = "; the other worker was stopped" if count == 2 else f"; the other {count - 1} workers were stopped"
    return WorkerError(f"serving worker {worker.number} of {count} (pid {worker.pid}) {how}{others}",
                       code or EXIT_FAILURE)
