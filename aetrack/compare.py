"""`aetrack compare`: a table of runs ranked by one metric, and their val_loss curves in one PNG.

Reads whatever tracking store MLflow is pointed at (MLFLOW_TRACKING_URI or the default) through
MlflowClient; needs no TensorFlow. Refusals are CompareErrors naming `compare`'s own parameters;
the CLI words them with its flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aetrack.errors import CompareError, UsageError
from aetrack.names import ENTRY_POINT_TAG, RUN_NAME_TAG, SUMMARY_METRICS, higher_is_better

LOSS_CURVES_FILE = "loss_curves.png"

# Params and final metrics shown for every run, in this order (absent ones print as '-').
KEY_PARAMS = (("architecture", "architecture"), ("epochs", "epochs"), ("code_size", "code"), ("loss", "loss"),
              ("learning_rate", "lr"), ("noise_factor", "noise"), ("exclude_digits", "excl"))


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    name: str
    entry_point: str
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class Comparison:
    metric: str
    higher_is_better: bool
    runs: list[RunSummary]  # best first
    skipped: list[RunSummary]  # runs of the experiment that lack the metric
    metric_columns: list[str]


def compare_runs(experiment: str, run_ids: list[str], metric: str, client=None) -> Comparison:
    """Collect the runs (by id, else every run of `experiment`) and rank them by `metric`.

    Named runs must all have the metric; when a whole experiment is compared, runs without it
    (failed runs, or basic runs for a denoise-only metric) are set aside in `skipped`.
    """
    from mlflow.tracking import MlflowClient

    _check_store_exists()
    client = client or MlflowClient()
    if run_ids:
        runs = [_get_run(client, run_id) for run_id in run_ids]
    else:
        runs = _experiment_runs(client, experiment)
    summaries = [_summary(run) for run in runs]
    with_metric = [s for s in summaries if metric in s.metrics]
    without = [s for s in summaries if metric not in s.metrics]
    if not with_metric:
        available = sorted({k for s in summaries for k in s.metrics})
        raise CompareError("metric", metric, f"none of the {len(summaries)} runs logged it",
                           f"expected one of {', '.join(available) or '(no metrics logged)'}")
    if run_ids and without:
        names = ", ".join(f"{s.run_id} ({s.name})" for s in without)
        raise CompareError("run_ids", None, f"runs without metric {metric!r}: {names}")
    higher = higher_is_better(metric)
    ranked = sorted(with_metric, key=lambda s: s.metrics[metric], reverse=higher)
    columns = [m for m in SUMMARY_METRICS if any(m in s.metrics for s in ranked)]
    if metric not in columns:
        columns.append(metric)
    return Comparison(metric, higher, ranked, without, columns)


def _get_run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise CompareError("run_ids", None, f"unknown run id {run_id!r} at tracking URI {_tracking_uri()}",
                           "expected the id of an existing run") from None


def _experiment_runs(client, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = [e.name for e in client.search_experiments()]
        raise CompareError("experiment", experiment, f"no such experiment at tracking URI {_tracking_uri()}",
                           f"expected one of {', '.join(known) or '(none: no runs yet)'}")
    runs = client.search_runs([found.experiment_id], max_results=1000)
    if not runs:
        raise CompareError("experiment", experiment, "it has no runs", "expected at least one")
    return runs


def _check_store_exists() -> None:
    """Refuse a SQLite store that does not exist: opening it would create an empty one."""
    uri = _tracking_uri()
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):
        raise UsageError(
            f"no tracking store at {uri} (no such file); expected MLFLOW_TRACKING_URI to point at "
            "the store holding the runs, or to run in the directory with its mlflow.db"
        )


def _tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def _summary(run) -> RunSummary:
    tags = run.data.tags
    return RunSummary(
        run_id=run.info.run_id,
        name=run.info.run_name or tags.get(RUN_NAME_TAG, run.info.run_id),
        entry_point=tags.get(ENTRY_POINT_TAG, "-"),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


def format_table(comparison: Comparison) -> str:
    """The comparison as aligned text, best run first and marked with '*'."""
    header = ["", "run", "entry"] + [short for _, short in KEY_PARAMS] + comparison.metric_columns + ["run id"]
    rows = [header]
    for rank, run in enumerate(comparison.runs):
        params = [run.params.get(name) or "-" for name, _ in KEY_PARAMS]
        metrics = [f"{run.metrics[m]:.4f}" if m in run.metrics else "-" for m in comparison.metric_columns]
        rows.append(["*" if rank == 0 else "", run.name, run.entry_point, *params, *metrics, run.run_id])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    best = comparison.runs[0]
    direction = "higher" if comparison.higher_is_better else "lower"
    lines.append("")
    lines.append(f"* best by {comparison.metric} ({direction} is better): {best.name} "
                 f"({comparison.metric} = {best.metrics[comparison.metric]:.4f})")
    if comparison.skipped:
        lines.append(f"skipped {len(comparison.skipped)} run(s) without {comparison.metric}: "
                     + ", ".join(s.name for s in comparison.skipped))
    return "\n".join(lines)


def plot_loss_curves(comparison: Comparison, output_dir: str, client=None) -> str:
    """Write the runs' val_loss per epoch, overlaid and labelled by run name; return the path."""
    from matplotlib.ticker import MaxNLocator
    from mlflow.tracking import MlflowClient

    from aetrack.figures import new_figure, save_png

    client = client or MlflowClient()
    names = [run.name for run in comparison.runs]
    figure = new_figure(8, 5)
    axes = figure.subplots()
    for run in comparison.runs:
        points = sorted(client.get_metric_history(run.run_id, "val_loss"), key=lambda m: m.step)
        if not points:
            continue
        # Same-named runs (same settings) would be indistinguishable: add the id's start.
        label = run.name if names.count(run.name) == 1 else f"{run.name} ({run.run_id[:8]})"
        axes.plot([p.step for p in points], [p.value for p in points], marker="o", markersize=3, label=label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are epoch numbers
    axes.set_xlabel("epoch")
    axes.set_ylabel("val_loss (each run's own loss, on the test images)")
    axes.set_title("val_loss per epoch")
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(fontsize=8)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOSS_CURVES_FILE)
    save_png(figure, path)
    return path


def compare(experiment: str, run_ids: list[str], metric: str, output_dir: str) -> tuple[str, str]:
    """Rank the runs, write loss_curves.png under `output_dir`; return (table text, png path)."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise CompareError("output_dir", output_dir, "is a file", "expected a directory")
    comparison = compare_runs(experiment, run_ids, metric)
    return format_table(comparison), plot_loss_curves(comparison, output_dir)
