"""`mlflow run . -e basic` with MLflow's environment managers, each from a clean clone and a cold
environment cache (MLFLOW_ENV_ROOT in a temp dir): how long each takes, and whether it finishes.

    python benchmarks/env_managers.py [--managers uv virtualenv] [--data PATH]

`uv` must be on PATH for `--env-manager uv` (`pip install uv`); `virtualenv` uses pyenv to install
the Python version `conda.yaml` names. Both download TensorFlow and the rest from PyPI: minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import DEFAULT_DATA, REPO, child_env, machine_lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--managers", nargs="+", default=["uv", "virtualenv"])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Keras-layout mnist.npz")
    parser.add_argument("--workdir", default=None, help="keep clones, stores and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    print("\n".join(machine_lines()), flush=True)

    root = Path(args.workdir or tempfile.mkdtemp(prefix="aetrack-envs-"))
    results = {}
    for manager in args.managers:
        folder = root / manager
        folder.mkdir(parents=True, exist_ok=True)
        clone = folder / "aetrack"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        env = child_env(f"sqlite:///{folder / 'mlflow.db'}")
        env["MLFLOW_ENV_ROOT"] = str(folder / "envs")  # cold: nothing cached from an earlier run
        command = [sys.executable, "-m", "mlflow", "run", ".", "-e", "basic", "--env-manager", manager,
                   "--experiment-name", "aetrack", "-P", f"dataset={args.data}", "-P", "epochs=1",
                   "-P", "train_samples=1000", "-P", "test_samples=50"]
        started = time.monotonic()
        with open(folder / "run.log", "w") as log:
            code = subprocess.run(command, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        seconds = time.monotonic() - started
        tail = (folder / "run.log").read_text().strip().splitlines()[-3:]
        results[manager] = {"exit": code, "seconds": round(seconds, 1), "last_lines": tail}
        print(f"{manager}: exit {code} after {seconds:.0f} s (log: {folder / 'run.log'})", flush=True)
        for line in tail:
            print(f"    {line[:200]}")
    print("RESULT " + json.dumps(results))
    return results


if __name__ == "__main__":
    main()
