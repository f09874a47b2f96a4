"""One background thread per run for the per-epoch tracking I/O, so training does not wait on the
store.

Against a remote tracking server each epoch's metrics and images are HTTP requests (with S3
uploads behind them) that took about 13% of the fit when made inline; queued here they overlap the
next epoch instead. One thread per run keeps the calls in submission order and never writes to a
SQLite store from two threads at once. `wait()` (at the end of training) blocks until every call
is in the store and raises the first failure, so a run never finishes with metrics or images
silently missing.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class BackgroundCalls:
    """Run calls in order on one worker thread; a failure is raised at the next submit or wait."""

    _by_run: dict[str, "BackgroundCalls"] = {}
    _lock = threading.Lock()

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"aetrack-log-{run_id[:8]}")
        self._pending: list[Future] = []

    @classmethod
    def for_run(cls, run_id: str) -> "BackgroundCalls":
        """The run's queue, shared by all its callbacks."""
        with cls._lock:
            if run_id not in cls._by_run:
                cls._by_run[run_id] = cls(run_id)
            return cls._by_run[run_id]

    def submit(self, call: Callable, *args, **kwargs) -> None:
        self.raise_failure()
        self._pending.append(self._executor.submit(call, *args, **kwargs))

    def raise_failure(self) -> None:
        """Raise the first failure among finished calls; forget the ones that succeeded."""
        still_running = []
        for future in self._pending:
            if not future.done():
                still_running.append(future)
            elif future.exception() is not None:
                raise future.exception()
        self._pending = still_running

    def wait(self) -> None:
        """Block until every submitted call is done, stop the thread, raise the first failure."""
        with BackgroundCalls._lock:
            BackgroundCalls._by_run.pop(self.run_id, None)
        pending, self._pending = self._pending, []
        try:
            for future in pending:
                future.result()
        finally:
            self._executor.shutdown(wait=True)
