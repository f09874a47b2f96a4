"""One background thread per fit for the per-epoch tracking I/O, so training does not wait on the
store.

Against a remote tracking server each epoch's metrics and images are HTTP requests (with S3
uploads behind them); queued here they overlap the next epoch instead of stalling it. One thread
keeps the calls in submission order and never writes to a SQLite store from two threads at once.

The fit that makes the queue owns it (a `with` block around `model.fit`) and hands it to its
callbacks. Leaving the block waits for every submitted call, whether training ended or failed:
after success the first failed call is raised, so a run never finishes with metrics, images or a
checkpoint silently missing; after a training error that error is the one raised.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Callable


class BackgroundCalls:
    """Run calls in order on one worker thread; a failure is raised at the next submit or wait."""

    def __init__(self, name: str):
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"aetrack-log-{name[:8]}")
        self._pending: list[Future] = []

    def __enter__(self) -> "BackgroundCalls":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc is None:
            self.wait()
            return
        try:
            self.wait()
        except Exception as queued:  # noqa: BLE001 - the training error is what the caller must see
            exc.add_note(f"a queued tracking call failed too: {type(queued).__name__}: {queued}")

    def submit(self, call: Callable, *args, **kwargs) -> None:
        self.raise_failure()
        self._pending.append(self._executor.submit(call, *args, **kwargs))

    def raise_failure(self) -> None:
        """Raise the first failure among finished calls (once); forget the ones that succeeded."""
        still_running = []
        for index, future in enumerate(self._pending):
            if not future.done():
                still_running.append(future)
            elif future.exception() is not None:
                self._pending = still_running + self._pending[index + 1:]
                raise future.exception()
        self._pending = still_running

    def wait(self) -> None:
        """Block until every submitted call is done, stop the thread, raise the first failure."""
        pending, self._pending = self._pending, []
        try:
            for future in pending:
                future.result()
        finally:
            self._executor.shutdown(wait=True)
