"""`strategy=mirrored`: one run on two logical CPU devices (MirroredStrategy), for real."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from aetrack.config import TrainConfig
from aetrack.devices import for_strategy
from tests.helpers.processes import subprocess_env


def test_mirrored_trains_with_one_step_per_execution():
    assert for_strategy(TrainConfig(strategy="mirrored")).steps_per_execution == 1
    assert for_strategy(TrainConfig()).steps_per_execution == 200


ARGS = dict(epochs=2, train_samples=256, test_samples=32, code_size=16, batch_size=32, image_samples=4,
            register=False, seed=3)


def train_mirrored_in_child(tmp_path, npz):
    """A mirrored run in a fresh process, whose CPU TensorFlow splits into two logical devices."""
    uri = f"sqlite:///{tmp_path / 'mirrored.db'}"
    env = subprocess_env(uri)
    env["AETRACK_CPU_DEVICES"] = "2"  # a fresh process: TensorFlow splits the CPU before it starts
    options = [item for name, value in ARGS.items() for item in (f"--{name.replace('_', '-')}", str(value).lower())]
    args = [sys.executable, "-m", "aetrack", "train", "basic", *options, "--dataset", str(npz),
            "--strategy", "mirrored", "--experiment-name", "mirrored"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=400, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mirrored").experiment_id])
    return client, run


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_default(tracking, tmp_path, tiny_npz):
    from aetrack.train import train

    default = train(TrainConfig(dataset=str(tiny_npz), experiment_name="default", **ARGS))
    default = MlflowClient().get_run(default.run_id)
    client, mirrored = train_mirrored_in_child(tmp_path, tiny_npz)
    tags = mirrored.data.tags
    assert tags["aetrack.strategy"] == "mirrored" and tags["aetrack.steps_per_execution_used"] == "1"
    assert mirrored.data.params["steps_per_execution"] == "1"
    assert [d.rsplit("/", 1)[-1] for d in tags["aetrack.devices"].split(",")] == ["device:CPU:0", "device:CPU:1"]
    assert default.data.tags["aetrack.devices"].endswith("device:CPU:0")
    for key in ("loss", "val_loss"):
        history = client.get_metric_history(mirrored.info.run_id, key)
        assert [m.step for m in history] == [1, 2]  # logged once per epoch, not once per device
        final = {m.step: m.value for m in history}[2]
        assert final == pytest.approx(default.data.metrics[key], rel=0.01)
    images = client.list_artifacts(mirrored.info.run_id, "images")
    steps = sorted(a.path for a in images if a.path.startswith("images/reconstruction+step+") and a.path.endswith(".png"))
    assert len(steps) == 3, steps  # steps 0 (untrained), 1, 2: once each, not once per device
