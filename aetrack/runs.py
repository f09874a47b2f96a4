"""`aetrack runs`: list an experiment's runs, or the stale ones (RUNNING, process gone), and
optionally end those FAILED."""

from __future__ import annotations

from aetrack.errors import CompareError
from aetrack.names import HEARTBEAT_TAG, RUN_NAME_TAG
from aetrack.tracking.liveness import is_stale, mark_failed
from aetrack.tracking.run import check_tracking_store, tracking_client, tracking_uri


def list_runs(experiment_name: str, stale_only: bool, timeout_s: float, fail_stale: bool) -> str:
    """The table printed by `aetrack runs`; ends stale runs FAILED when `fail_stale`."""
    check_tracking_store(tracking_uri())
    client = tracking_client()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise CompareError(f"no experiment named {experiment_name!r} in {tracking_uri()}")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    if stale_only:
        found = [r for r in found if is_stale(r, timeout_s)]
    lines = [f"{'run id':<32}  {'status':<8}  {'heartbeat (UTC)':<25}  name"]
    for run in found:
        status = run.info.status
        if fail_stale:
            mark_failed(client, run, "stale: its training process is gone (marked by aetrack runs --stale "
                                     "--mark-failed)")
            status = "FAILED"
        lines.append(f"{run.info.run_id:<32}  {status:<8}  {run.data.tags.get(HEARTBEAT_TAG, '-'):<25}  "
                     f"{run.data.tags.get(RUN_NAME_TAG, '')}")
    if len(lines) == 1:
        lines.append("(no stale runs)" if stale_only else "(no runs)")
    elif stale_only and not fail_stale:
        lines.append("continue one with `aetrack resume <run id>`, or end them with --mark-failed")
    return "\n".join(lines)
