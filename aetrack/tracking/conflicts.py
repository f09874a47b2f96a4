"""Writes that lose a race with another run writing the same rows, retried until they win.

Two processes writing one store at once meet in two ways. SQLite can answer "database is locked"
at once, despite MLflow's busy timeout, when two writers upgrade their locks together. A SQL
server (PostgreSQL) lets two runs both find a row missing and both insert it: MLflow checks, then
inserts, so the loser fails on the row's key (an alias both set, a dataset both log). Each
retried call is one of MLflow's own transactions, rolled back when it fails, so a retry starts
clean and finds the winner's row.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

CONFLICTS = (
    "database is locked",
    'unique constraint "registered_model_alias_pk"',  # PostgreSQL: two runs set one alias
    'unique constraint "dataset_pk"',  # PostgreSQL: two runs log the same dataset first
    "UNIQUE constraint failed: datasets.",  # SQLite: the same
)


def is_conflict(exc: BaseException) -> bool:
    """Whether `exc` is a store refusing a write because another process wrote at the same time."""
    return any(marker in str(exc) for marker in CONFLICTS)


def retry_conflicts(call: Callable[[], T], attempts: int = 8) -> T:
    """`call()`, again after a short, growing wait each time another writer won; other errors and
    the last attempt's raise."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - only conflicts are retried
            if not is_conflict(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
