"""End to end: wall time of `mlflow run . -e basic` from start to finish, its peak memory, and
where the seconds go (imports, data, model, fit, evaluation, figures, model logging, ...).

    python benchmarks/end_to_end.py                  # default run (10 epochs, 30,000 images)

Two measurements of the same configuration:
1. `mlflow run <repo> -e basic --env-manager local` as a child process: wall seconds and peak
   resident memory (ru_maxrss of the process tree, from wait4).
2. A child `python benchmarks/end_to_end.py --phases ...` that times its heavy imports, then runs
   aetrack.train.train() and prints the phases it reports (`TrainResult.phase_seconds`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import harness

def run_options() -> argparse.ArgumentParser:
    """The options of the measured `basic` run (also benchmarks/team_stack.py's)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data", default=str(harness.DEFAULT_DATA), help="Keras-layout mnist.npz")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-samples", type=int, default=30000)
    p.add_argument("--test-samples", type=int, default=100)
    p.add_argument("--register", default="true", help="register the trained models (true/false)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[run_options()])
    p.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)  # child mode
    return p.parse_args(argv)


def params(args) -> dict[str, str]:
    return {"dataset": args.data, "epochs": str(args.epochs), "train_samples": str(args.train_samples),
            "test_samples": str(args.test_samples), "register": args.register}


def time_mlflow_run(args, uri: str) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) of the `mlflow run` process tree, and its exit code."""
    command = ["mlflow", "run", str(harness.REPO), "-e", "basic", "--env-manager", "local",
               "--experiment-name", "end_to_end"]
    for key, value in params(args).items():
        command += ["-P", f"{key}={value}"]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=harness.child_env(uri), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    return seconds, usage.ru_maxrss / 1024, child.returncode  # Linux reports KiB


def phases_child(args) -> None:
    """Child mode: time imports, then train() phase by phase; print one JSON line."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for module in ("numpy", "click", "aetrack.cli", "tensorflow", "keras", "mlflow", "matplotlib.pyplot"):
        t = time.perf_counter()
        __import__(module)
        timings[f"import {module}"] = time.perf_counter() - t

    from aetrack.config import TrainConfig, parse_value
    from aetrack.train import train

    config = TrainConfig(experiment_name="end_to_end", **{k: parse_value(k, v) for k, v in params(args).items()})
    t = time.perf_counter()
    result = train(config)
    timings.update(result.phase_seconds)
    timings["train() total"] = time.perf_counter() - t
    timings["process total"] = time.perf_counter() - started
    print("PHASES " + json.dumps(timings), flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.phases:
        phases_child(args)
        return
    for line in harness.machine_lines():
        print(line)
    print(f"config: {args.train_samples} images, {args.epochs} epochs, register={args.register}", flush=True)
    with harness.tracking_store() as (uri, root):
        seconds, peak_mib, code = time_mlflow_run(args, uri)
        if code != 0:
            sys.exit(f"end_to_end: mlflow run failed with exit code {code}")
        print(f"mlflow_run_seconds: {seconds:.2f}")
        print(f"peak_rss_mib: {peak_mib:.0f}")

        started = time.perf_counter()
        command = [sys.executable, __file__, "--phases", "--data", args.data, "--epochs", str(args.epochs),
                   "--train-samples", str(args.train_samples), "--test-samples", str(args.test_samples),
                   "--register", args.register]
        child = subprocess.run(command, env=harness.child_env(uri), capture_output=True, text=True)
        child_seconds = time.perf_counter() - started
    lines = [line for line in child.stdout.splitlines() if line.startswith("PHASES ")]
    if child.returncode != 0 or not lines:
        sys.exit(f"end_to_end: phase run failed ({child.returncode}):\n{child.stderr[-3000:]}")
    timings = json.loads(lines[-1][len("PHASES "):])
    in_train = sum(v for k, v in timings.items() if not k.startswith("import ") and not k.endswith("total"))
    timings["train(): run start/end, other"] = timings["train() total"] - in_train
    timings["interpreter start, exit"] = child_seconds - timings["process total"]
    print(f"phase_run_seconds: {child_seconds:.2f}")
    print(f"mlflow_run_overhead_seconds: {seconds - child_seconds:.2f} (mlflow CLI start, run creation, "
          f"child python)")
    print("\nphase                                seconds  share")
    for name, value in timings.items():
        if name.endswith("total"):
            continue
        print(f"{name:<36} {value:>8.2f}  {100 * value / child_seconds:>4.0f}%")


if __name__ == "__main__":
    main()
