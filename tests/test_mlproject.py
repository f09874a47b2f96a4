"""The real `mlflow run` command on this project, with the current environment. (Bad -P values
under `mlflow run`: test_reliability.py.)"""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.processes import REPO, subprocess_env


def mlflow_run(entry_point, tmp_path, npz, *params, experiment="aetrack"):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        sys.executable, "-m", "mlflow", "run", str(REPO), "-e", entry_point, "--env-manager", "local",
        "--experiment-name", experiment, "-P", f"dataset={npz}", "-P", "epochs=2", "-P", "train_samples=128",
        "-P", "test_samples=16", "-P", "code_size=8", "-P", "register=false", *params,
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=subprocess_env(uri))
    return out, MlflowClient(uri)


@pytest.mark.slow
def test_mlflow_run_denoise_entry_point(tmp_path, tiny_npz):
    """`-e denoise` end to end. (`-e basic` and `-e main` run in test_architecture_runs.py, one
    architecture each way.)"""
    out, client = mlflow_run("denoise", tmp_path, tiny_npz, "-P", "noise_factor=0.3")
    assert out.returncode == 0, out.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("aetrack").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["aetrack.entry_point"] == "denoise"
    assert run.data.params["epochs"] == "2" and run.data.params["code_size"] == "8"
    for key in ("loss", "val_loss"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2]
    assert {"test_bce", "test_mse"} <= set(run.data.metrics)
    assert run.data.params["noise_factor"] == "0.3"


def test_conda_yaml_pins_what_the_entry_points_import():
    """`mlflow run` with conda, uv or virtualenv builds its environment from conda.yaml alone: every
    package aetrack imports at run time must be there, at the version requirements.txt pins."""
    import yaml

    environment = yaml.safe_load((REPO / "conda.yaml").read_text())
    [pip] = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    conda_pins = dict(line.split("==") for line in pip)
    requirement_pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                            if line and not line.startswith("#"))
    runtime = {"tensorflow", "mlflow", "numpy", "click", "matplotlib", "optuna", "psutil", "orjson"}
    assert set(conda_pins) == runtime
    assert {name: requirement_pins[name] for name in runtime} == conda_pins
