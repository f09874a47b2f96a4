"""Is a RUNNING run's process still alive? Heartbeats, stale runs, and the claim that lets exactly
one of two simultaneous `aetrack resume`s continue a run.

A process killed outright (SIGKILL, out of memory, a lost machine) runs no handler and leaves its
run RUNNING. Each run records who trains it (tags `aetrack.host`, `aetrack.pid`) and a heartbeat
(tag `aetrack.heartbeat`, UTC, at the start and after every epoch). A RUNNING run is *stale* when
its process is gone: on this host, no live aetrack process has that pid; elsewhere, its heartbeat
is older than a timeout.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone

from aetrack.errors import ResumeError

from aetrack.names import CLAIM_PREFIX, FAILURE_TAG, HEARTBEAT_TAG, HOST_TAG, PID_START_TAG, PID_TAG

DEFAULT_STALE_TIMEOUT_S = 600.0


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def owner_tags() -> dict[str, str]:
    """Tags saying which process trains the run now, and a first heartbeat."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), PID_START_TAG: start_ticks(os.getpid()) or "",
            HEARTBEAT_TAG: now_utc()}


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _started(fields: list[str] | None) -> str | None:
    return fields[19] if fields and len(fields) > 19 else None  # field 22 of the whole line


def start_ticks(pid: int | str) -> str | None:
    """When process `pid` started (field 22 of /proc/<pid>/stat), or None where that cannot be read."""
    return _started(_stat_fields(pid))


def heartbeat(client, run_id: str) -> None:
    client.set_tag(run_id, HEARTBEAT_TAG, now_utc())


def seconds_since(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return (datetime.now(timezone.utc) - then).total_seconds()


def process_alive(host: str | None, pid: str | None, started: str | None = None) -> bool | None:
    """True/False when the process can be checked from here (same host), None when it cannot.
    `started` (start_ticks when it was recorded) tells a reused pid from the original process."""
    if not host or not pid or host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    # A killed process whose parent died too stays a zombie until something reaps it, and a
    # container's first process may never do that: it answers signals but trains nothing.
    if fields and fields[0] in ("Z", "X"):
        return False
    if started:
        now = _started(fields)
        return now is None or now == started
    return True


def is_stale(run, timeout_s: float = DEFAULT_STALE_TIMEOUT_S) -> bool:
    """A RUNNING run whose training process is gone (see the module docstring)."""
    if run.info.status != "RUNNING":
        return False
    tags = run.data.tags
    alive = process_alive(tags.get(HOST_TAG), tags.get(PID_TAG), tags.get(PID_START_TAG))
    if alive is not None:
        return not alive
    age = seconds_since(tags.get(HEARTBEAT_TAG))
    if age is None:  # no heartbeat at all: judge by the start time
        age = time.time() - run.info.start_time / 1000
    return age > timeout_s


def stale_runs(client, experiment_ids: list[str], timeout_s: float) -> list:
    runs = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'")
    return [r for r in runs if is_stale(r, timeout_s)]


def mark_failed(client, run, reason: str) -> None:
    client.set_tag(run.info.run_id, FAILURE_TAG, reason)
    client.set_terminated(run.info.run_id, "FAILED")


def claim(client, run_id: str, timeout_s: float = DEFAULT_STALE_TIMEOUT_S) -> str:
    """Claim the run for this process's resume; raise ResumeError if another resume holds it.

    MLflow params cannot change once logged, and the SQL stores enforce that with the table's
    primary key: of two processes logging `aetrack.resume.<n>` with different values, exactly one
    succeeds. A process first checks that the newest claim's holder is gone, then claims the next
    number; two that race for the same number cannot both win.
    """
    from mlflow.exceptions import MlflowException

    params = client.get_run(run_id).data.params
    numbers = sorted(int(k[len(CLAIM_PREFIX):]) for k in params
                     if k.startswith(CLAIM_PREFIX) and k[len(CLAIM_PREFIX):].isdigit())
    if numbers:
        holder = params[f"{CLAIM_PREFIX}{numbers[-1]}"].split()
        if len(holder) == 4:
            host, pid, started, stamp = holder
            alive = process_alive(host, pid, started if started != "-" else None)
            age = seconds_since(stamp)
            if alive or (alive is None and age is not None and age < timeout_s):
                raise ResumeError(f"cannot resume run {run_id}: it is being resumed by process {pid} on {host}")
    key = f"{CLAIM_PREFIX}{numbers[-1] + 1 if numbers else 1}"
    value = f"{socket.gethostname()} {os.getpid()} {start_ticks(os.getpid()) or '-'} {now_utc()}"
    try:
        client.log_param(run_id, key, value)
    except MlflowException:
        raise ResumeError(f"cannot resume run {run_id}: another process is resuming it") from None
    if client.get_run(run_id).data.params.get(key) != value:  # a store without the unique key
        raise ResumeError(f"cannot resume run {run_id}: another process is resuming it")
    return key
