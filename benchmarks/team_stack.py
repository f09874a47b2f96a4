"""Team stack cost: a default `basic` run end to end against the team stack's `mlflow server`
(PostgreSQL + S3, deploy/stack.py) vs the SQLite default, side by side, and the share of the fit
spent in aetrack's per-epoch logging callbacks against each.

    python benchmarks/team_stack.py                 # default run (10 epochs, 30,000 images), 2 reps

1. `mlflow run <repo> -e basic --env-manager local`, alternating SQLite / server (the order
   rotates each repetition): wall seconds; the ratio of the medians.
2. `aetrack.train.train()` in this process against each store, with keras.Model.fit timed and the
   callbacks' own time summed (harness.FitTimer): callback seconds as a share of the fit (the
   time training waits for them; uploads run on a background thread); then the same fit with the
   callbacks dropped, for the tracked/untracked fit ratio.
Needs the server extra and PostgreSQL (see README, Team setup).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import harness
from end_to_end import run_options, time_mlflow_run

from deploy import stack as stack_script  # harness put the checkout on sys.path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[run_options()])
    p.add_argument("--reps", type=int, default=2, help="mlflow runs per store")
    return p.parse_args(argv)


@contextlib.contextmanager
def server_store(uri: str):
    """Point this process (and its children) at the server, in a scratch cwd."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID")}
    cwd = os.getcwd()
    scratch = tempfile.mkdtemp(prefix="aetrack-bench-client-")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.environ.pop("MLFLOW_RUN_ID", None)
    os.chdir(scratch)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri, Path(scratch)
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def callback_share(args, drop_callbacks: bool = False) -> tuple[float, float]:
    """(fit seconds, % of the fit inside aetrack's callbacks) of one in-process train(); with
    `drop_callbacks` the same fit without them (the untracked baseline)."""
    from aetrack.config import TrainConfig, parse_value
    from end_to_end import params

    config = TrainConfig(experiment_name="team_stack_bench", **{k: parse_value(k, v) for k, v in params(args).items()})
    from aetrack.train import train

    with harness.FitTimer(drop_callbacks=drop_callbacks) as timer, contextlib.redirect_stdout(io.StringIO()):
        train(config)
    fit, inside = timer.seconds[0], timer.callback_seconds[0]
    return fit, 100 * inside / fit


def main(argv=None) -> None:
    args = parse_args(argv)
    for line in harness.machine_lines():
        print(line)
    print(f"config: {args.train_samples} images, {args.epochs} epochs, register={args.register}, reps={args.reps}",
          flush=True)
    seconds: dict[str, list[float]] = {"sqlite": [], "server": []}
    shares = {}
    with contextlib.ExitStack() as cleanup:
        folder = Path(tempfile.mkdtemp(prefix="aetrack-bench-stack-"))
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        folder.chmod(0o711)  # PostgreSQL runs as the postgres user when we are root
        stack = stack_script.start_stack(folder / "stack")
        cleanup.callback(stack_script.stop_stack, stack)
        # One SQLite store for all its runs, its tables created first, as a user's mlflow.db is
        # after the first run (the server's database is migrated at start-up too).
        sqlite_uri, _ = cleanup.enter_context(harness.tracking_store())
        from mlflow.tracking import MlflowClient

        MlflowClient(sqlite_uri).search_experiments()
        print(f"stack: {stack.tracking_uri} (PostgreSQL + SeaweedFS S3); sqlite: {sqlite_uri}", flush=True)
        for rep in range(args.reps):
            for store in (("sqlite", "server") if rep % 2 == 0 else ("server", "sqlite")):
                if store == "sqlite":
                    wall, _, code = time_mlflow_run(args, sqlite_uri)
                else:
                    with server_store(stack.tracking_uri) as (uri, _):
                        wall, _, code = time_mlflow_run(args, uri)
                if code != 0:
                    sys.exit(f"team_stack: mlflow run against {store} failed with exit code {code}")
                seconds[store].append(wall)
                print(f"  rep {rep + 1} {store}: {wall:.2f} s", flush=True)
        shares["sqlite"] = callback_share(args)
        with server_store(stack.tracking_uri):
            shares["server"] = callback_share(args)
            untracked_fit, _ = callback_share(args, drop_callbacks=True)

    sqlite, server = harness.median(seconds["sqlite"]), harness.median(seconds["server"])
    print("\nstore    median mlflow run s   min s   fit s   callbacks % of fit")
    for store, median in (("sqlite", sqlite), ("server", server)):
        fit, share = shares[store]
        print(f"{store:<8} {median:>19.2f} {min(seconds[store]):>7.2f} {fit:>7.2f} {share:>20.1f}")
    print(f"sqlite_mlflow_run_seconds: {sqlite:.2f}")
    print(f"server_mlflow_run_seconds: {server:.2f}")
    print(f"server_to_sqlite_ratio: {server / sqlite:.3f}")
    print(f"server_callback_percent: {shares['server'][1]:.1f}")
    print(f"sqlite_callback_percent: {shares['sqlite'][1]:.1f}")
    print(f"untracked_fit_seconds: {untracked_fit:.2f}")
    print(f"server_tracked_to_untracked_fit_ratio: {shares['server'][0] / untracked_fit:.3f}")


if __name__ == "__main__":
    main()
