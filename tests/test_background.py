"""The fit's background queue for tracking I/O: calls run in order, and leaving the block waits for
all of them; a queued failure is raised after success and never hides a training error."""

from __future__ import annotations

import threading
import time

import pytest

from aetrack.tracking.background import BackgroundCalls


def test_calls_run_in_order_and_are_all_done_when_the_block_ends():
    done = []
    with BackgroundCalls("run-a") as calls:
        for i in range(5):
            calls.submit(lambda i=i: (time.sleep(0.01), done.append(i)))
    assert done == [0, 1, 2, 3, 4]


def test_a_queued_failure_is_raised_when_training_succeeded():
    release = threading.Event()
    done = []
    with pytest.raises(OSError, match="store down"):
        with BackgroundCalls("run-b") as calls:
            calls.submit(release.wait, 5)
            calls.submit(_raise, OSError("store down"))
            calls.submit(done.append, "after")
            release.set()
    assert done == ["after"]  # what was submitted behind the failure still ran


def test_a_failure_seen_at_submit_is_raised_once():
    calls = BackgroundCalls("run-d")
    calls.submit(_raise, OSError("first"))
    time.sleep(0.05)
    with pytest.raises(OSError, match="first"):
        calls.submit(print)
    calls.wait()  # raised already: not again


def test_a_training_error_waits_for_the_queue_and_stays_the_error_raised():
    release = threading.Event()
    done = []
    calls = BackgroundCalls("run-c")

    def slow_upload():
        release.wait(5)
        done.append("checkpoint")

    with pytest.raises(KeyboardInterrupt) as raised:
        with calls:
            calls.submit(release.wait, 5)
            calls.submit(_raise, OSError("metrics lost"))
            calls.submit(slow_upload)
            threading.Timer(0.05, release.set).start()
            raise KeyboardInterrupt
    assert done == ["checkpoint"]  # waited for the upload before the error left the block
    assert any("OSError: metrics lost" in note for note in raised.value.__notes__)


def test_each_fit_has_its_own_queue():
    first, second = BackgroundCalls("same-run"), BackgroundCalls("same-run")
    assert first is not second
    first.submit(_raise, ValueError("first only"))
    second.wait()  # nothing of the first queue's reaches the second
    with pytest.raises(ValueError, match="first only"):
        first.wait()


def _raise(error: BaseException) -> None:
    raise error
