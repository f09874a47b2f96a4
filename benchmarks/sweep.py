"""Sweep throughput: trials per minute for one in-process `aetrack sweep` worker, for the same
number of trials as separate `mlflow run -e basic` invocations, and for two sweep workers sharing
one Optuna storage.

    python benchmarks/sweep.py                       # 6 trials of 1 epoch on 2,000 real digits

Every variant is a child process started and timed from outside (wall seconds, start to exit),
each in its own SQLite tracking store, one after the other in the same run of this script, so the
ratios compare like with like. The trials use the same search space (code size and learning rate,
log ranges); `mlflow run` gets values drawn from the same ranges with a seeded generator, since it
has no sampler. Pruning is off, so every trial trains all its epochs.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

SPACE = {"code_size": (8, 64), "learning_rate": (0.001, 0.01)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(harness.DEFAULT_DATA), help="Keras-layout mnist.npz")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-samples", type=int, default=2000)
    p.add_argument("--test-samples", type=int, default=100)
    return p.parse_args(argv)


def fixed(args) -> dict[str, str]:
    return {"dataset": args.data, "epochs": str(args.epochs), "train_samples": str(args.train_samples),
            "test_samples": str(args.test_samples), "register": "false", "image_samples": "4"}


def sweep_command(args, storage: str) -> list[str]:
    command = [sys.executable, "-m", "aetrack", "sweep", "basic", "--trials", str(args.trials), "--no-pruning",
               "--storage", storage, "--study-name", "bench", "--experiment-name", "bench"]
    for name, (low, high) in SPACE.items():
        command += ["--search", f"{name}={low}:{high}:log"]
    for key, value in fixed(args).items():
        command += [f"--{key.replace('_', '-')}", value]
    return command


def timed(commands: list[list[str]], uri: str, cwd: Path) -> float:
    """Start the commands together, wait for all; wall seconds. Fails loudly if one fails."""
    started = time.perf_counter()
    children = [subprocess.Popen(c, env=harness.child_env(uri), cwd=cwd, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for c in commands]
    for child in children:
        _, stderr = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(child.args[:6])} ... exited {child.returncode}:\n{stderr[-3000:]}")
    return time.perf_counter() - started


def variant(name: str, args, commands_for) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"aetrack-bench-{name}-") as folder:
        root = Path(folder)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        seconds = 0.0
        for commands in commands_for(root):
            seconds += timed(commands, uri, root)
    return {"seconds": seconds, "trials_per_minute": 60 * args.trials / seconds}


def mlflow_run_commands(args) -> list[list[list[str]]]:
    rng = random.Random(0)
    runs = []
    for _ in range(args.trials):
        values = {k: math.exp(rng.uniform(math.log(lo), math.log(hi))) for k, (lo, hi) in SPACE.items()}
        command = ["mlflow", "run", str(harness.REPO), "-e", "basic", "--env-manager", "local",
                   "--experiment-name", "bench"]
        params = {**fixed(args), "code_size": str(round(values["code_size"])),
                  "learning_rate": f"{values['learning_rate']:.6g}"}
        for key, value in params.items():
            command += ["-P", f"{key}={value}"]
        runs.append([command])  # one after the other
    return runs


def main(argv=None) -> None:
    args = parse_args(argv)
    results = {
        "in_process_1_worker": variant("inproc", args, lambda root: [[sweep_command(args, f"sqlite:///{root}/o.db")]]),
        "mlflow_run_per_trial": variant("mlflowrun", args, lambda root: mlflow_run_commands(args)),
        "in_process_2_workers": variant("two", args, lambda root: [[sweep_command(args, f"sqlite:///{root}/o.db")] * 2]),
    }
    for line in harness.machine_lines():
        print(line)
    print(f"{args.trials} trials, {args.epochs} epoch(s), {args.train_samples} training images each")
    print(f"{'variant':<24} {'seconds':>8} {'trials/min':>11}")
    for name, r in results.items():
        print(f"{name:<24} {r['seconds']:>8.1f} {r['trials_per_minute']:>11.2f}")
    base = results["mlflow_run_per_trial"]["trials_per_minute"]
    print(f"in_process_speedup: {results['in_process_1_worker']['trials_per_minute'] / base:.2f}")
    print(f"two_workers_speedup: {results['in_process_2_workers']['trials_per_minute'] / base:.2f}")
    print(json.dumps({k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in results.items()}))


if __name__ == "__main__":
    main()
