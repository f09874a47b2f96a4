"""The real `aetrack` command in a subprocess: start-up cost, options, one-line errors."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_aetrack, subprocess_env


def aetrack(*args, tracking_uri=None, timeout=120, cwd=None):
    return run_aetrack(*args, uri=tracking_uri, cwd=cwd, timeout=timeout)


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from aetrack.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "train" in out.stdout


def test_train_help_lists_every_parameter():
    out = aetrack("train", "denoise", "--help")
    assert out.returncode == 0
    for option in ("--epochs", "--batch-size", "--noise-factor", "--init-model", "--dataset", "--seed"):
        assert option in out.stdout


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--epochs", "0"], "invalid --epochs: got '0'; expected an integer from 1 to 100000"),
        (["--epochs", "abc"], "invalid --epochs: got 'abc'; expected an integer from 1"),
        (["--learning-rate", "-1"], "invalid --learning-rate: got '-1'; expected a number > 0"),
        (["--loss", "hinge"], "invalid --loss: got 'hinge'; expected one of bce, mse"),
        (["--dataset", "/nope/mnist.npz"], "invalid --dataset: invalid dataset '/nope/mnist.npz': no such file"),
        (["--no-such-option", "1"], "No such option '--no-such-option'"),
    ],
)
def test_bad_options_fail_fast_in_one_line(tmp_path, args, expected):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = aetrack("train", "basic", *args, tracking_uri=uri, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("aetrack: error: ") and expected in lines[0]
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started


def test_cli_trains_and_tracks(tmp_path, tiny_npz):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = aetrack(
        "train", "basic", "--epochs", "2", "--train-samples", "128", "--test-samples", "16",
        "--code-size", "8", "--dataset", str(tiny_npz), "--register", "false", "--experiment-name", "cli",
        tracking_uri=uri, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Epoch 2/2" in out.stdout and "aetrack: run finished" in out.stdout
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].info.run_id in out.stdout
    assert runs[0].data.params["train_samples"] == "128"
    assert len(client.get_metric_history(runs[0].info.run_id, "val_loss")) == 2
