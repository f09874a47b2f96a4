"""`aetrack compare`, `aetrack runs`: commands that read runs back from the tracking store."""

from __future__ import annotations

import click

from aetrack.cli.wording import for_the_command_line
from aetrack.config import DEFAULT_EXPERIMENT
from aetrack.errors import CompareError


@click.command(short_help="Rank runs by a metric; overlay their val_loss curves.")
@click.argument("run_ids_args", metavar="[RUN_ID]...", nargs=-1)
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True,
              help="Compare every run of this experiment (ignored when run ids are given).")
@click.option("--runs", "run_ids", multiple=True, metavar="ID",
              help="Compare these runs (repeat, separate by commas, or list ids after it).")
@click.option("--metric", default="test_bce", show_default=True,
              help="Rank by this final metric; psnr/ssim/auc/gain higher is better, others lower.")
@click.option("--output", default=".", show_default=True, help="Directory for loss_curves.png.")
def compare(run_ids_args: tuple[str, ...], experiment: str, run_ids: tuple[str, ...], metric: str,
            output: str) -> None:
    """Rank runs by a metric in a table and overlay their val_loss curves in loss_curves.png."""
    from aetrack.compare import compare as compare_runs

    ids = list(dict.fromkeys(i for raw in (*run_ids, *run_ids_args) for i in raw.replace(",", " ").split()))
    try:
        table, png = compare_runs(experiment, ids, metric, output)
    except CompareError as exc:
        raise for_the_command_line(exc, {"run_ids": "--runs", "output_dir": "--output"}) from None
    click.echo(table)
    click.echo(f"wrote {png}")


@click.command(short_help="List runs; --stale: RUNNING runs whose process is gone.")
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True, help="Experiment to list.")
@click.option("--stale", is_flag=True, help="Only RUNNING runs whose training process is gone.")
@click.option("--timeout", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="With --stale: a run on another host is stale after this many seconds without a heartbeat.")
@click.option("--mark-failed", is_flag=True, help="With --stale: end the stale runs FAILED (tag aetrack.failure says why).")
def runs(experiment: str, stale: bool, timeout: float, mark_failed: bool) -> None:
    """List the experiment's runs (id, status, last heartbeat, name); with --stale only the RUNNING
    runs left behind by a dead process, which `aetrack resume` can continue or --mark-failed ends."""
    if mark_failed and not stale:
        raise click.UsageError("--mark-failed needs --stale (it only ends stale runs)")
    from aetrack.runs import list_runs

    click.echo(list_runs(experiment, stale, timeout, mark_failed))


RUN_COMMANDS = (compare, runs)
