"""Data of any shape end to end. A Parquet table through the real `mlflow run`; a CSV table, an RGB
image folder and scikit-learn's digits trained in process. Read back: what a sample is (tags,
`sample_spec.json`, version tags, model metadata), the metrics of its kind, and each kind's
registered models, loaded in one fresh process, giving what the trained model gave in memory on
the same raw input (table models take raw rows: their scaling is part of the logged model)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack.data import SampleSpec
from aetrack.names import DATA_KIND_TAG, SAMPLE_SHAPE_TAG, SAMPLE_SPEC_ARTIFACT
from tests.helpers.data import table_frame, write_image_folder, write_table
from tests.helpers.processes import REPO, subprocess_env

pytestmark = pytest.mark.slow

FEATURES = ["a", "b", "c"]  # table_frame's columns; c is constant (its std is taken as 1)


def run_spec(client, run_id: str, tmp_path) -> SampleSpec:
    local = client.download_artifacts(run_id, SAMPLE_SPEC_ARTIFACT, str(tmp_path))
    return SampleSpec.from_json(open(local).read())


def test_mlflow_run_trains_a_parquet_table_and_records_what_a_sample_is(tmp_path):
    table = write_table(tmp_path / "rows.parquet", table_frame(96, seed=1))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "basic", "--env-manager", "local",
            "--experiment-name", "aetrack", "-P", f"dataset={table}", "-P", "label_column=kind",
            "-P", "epochs=2", "-P", "code_size=2", "-P", "batch_size=16", "-P", "image_samples=4",
            "-P", "model_prefix=rows"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=400, cwd=tmp_path, env=subprocess_env(uri))
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("aetrack").experiment_id])
    assert run.info.status == "FINISHED"
    assert (run.data.tags[DATA_KIND_TAG], run.data.tags[SAMPLE_SHAPE_TAG]) == ("table", "3")
    spec = run_spec(client, run.info.run_id, tmp_path)
    assert spec.feature_names == tuple(FEATURES) and spec.label_names == ("ham", "spam") and not spec.bounded
    # 10% held out (no test split in the file): 86 training rows; the scaling is the training rows'.
    assert run.data.tags["aetrack.train_images"] == "86" and run.data.tags["aetrack.test_images"] == "10"
    training = table_frame(96, seed=1)[FEATURES].to_numpy()
    assert len(spec.feature_mean) == 3 and spec.feature_std[2] == 1.0  # constant column: not divided by 0
    assert spec.feature_mean[2] == 7.0 and np.min(training[:, 0]) < spec.feature_mean[0] < np.max(training[:, 0])
    # An empty loss is mse for a standardised table; bce, psnr and ssim do not exist for it.
    assert "-mse-" in run.data.tags["mlflow.runName"]
    metrics = run.data.metrics
    assert {"test_mse", "test_mae"} <= set(metrics) and not {"test_bce", "test_psnr", "test_ssim"} & set(metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/feature_errors.png" in figures
    version = client.get_model_version("rows-autoencoder", "1")
    assert (version.tags["data_kind"], version.tags["sample_shape"]) == ("table", "3")
    assert float(version.tags["test_mse"]) == pytest.approx(metrics["test_mse"])


_LOAD_IN_A_FRESH_PROCESS = """
import json, sys
import mlflow
import numpy as np
import aetrack
from aetrack.names import SAMPLE_SPEC_KEY
folder = sys.argv[1]
out = {}
for prefix in sys.argv[2:]:
    x = np.load(f"{folder}/{prefix}.in.npy")
    out[prefix] = aetrack.load_model(f"models:/{prefix}-autoencoder/1").predict(x, verbose=0).tolist()
    info = mlflow.models.get_model_info(f"models:/{prefix}-autoencoder/1")
    out[prefix + ".spec"] = info.metadata[SAMPLE_SPEC_KEY]
print(json.dumps(out))
"""


def test_each_kind_trains_and_its_registered_model_loads_in_a_fresh_process_as_trained(tracking, tmp_path):
    import pandas as pd

    from aetrack.config import TrainConfig
    from aetrack.train import train

    table = write_table(tmp_path / "rows.csv", table_frame(60, seed=2))
    photos = tmp_path / "photos"
    write_image_folder(photos, classes=("cat", "dog"), per_class=10, size=(12, 10), channels=3)
    common = dict(epochs=1, code_size=2, batch_size=8, image_samples=3, checkpoint_every=0)
    configs = {
        "rows": TrainConfig(dataset=str(table), label_column="kind", model_prefix="rows", **common),
        "photos": TrainConfig(dataset=str(photos), architecture="conv", model_prefix="photos", **common),
        "digits": TrainConfig(dataset="digits", architecture="vae", train_samples=160, test_samples=40,
                              model_prefix="digits", **common),
    }
    results = {name: train(config) for name, config in configs.items()}
    client = MlflowClient(tracking)
    specs = {name: run_spec(client, r.run_id, tmp_path / name) for name, r in results.items()}
    assert specs["photos"].shape == (12, 10, 3) and specs["photos"].label_names == ("cat", "dog")
    assert specs["digits"].shape == (8, 8, 1) and specs["digits"].bounded
    assert specs["rows"].shape == (3,) and specs["rows"].scaled
    assert {"test_psnr", "test_ssim", "test_bce"} <= set(results["photos"].metrics)
    assert {"test_elbo", "test_bce"} <= set(results["digits"].metrics)
    assert "test_mae" in results["rows"].metrics and "test_bce" not in results["rows"].metrics

    # Raw inputs as a user has them: table rows in their own units, images flat in [0, 1].
    rng = np.random.default_rng(0)
    raw = {"rows": pd.read_csv(table)[FEATURES].to_numpy(np.float32)[:6],
           "photos": rng.uniform(0, 1, (4, 12 * 10 * 3)).astype(np.float32),
           "digits": rng.uniform(0, 1, (4, 64)).astype(np.float32)}
    expected = {}
    for name, x in raw.items():
        spec, model = specs[name], results[name].model
        if spec.scaled:  # the trained model works on standardised rows; the logged one on raw rows
            mean, std = np.array(spec.feature_mean, np.float32), np.array(spec.feature_std, np.float32)
            expected[name] = model.predict((x - mean) / std, verbose=0) * std + mean
        else:
            autoencoder = model.autoencoder if hasattr(model, "autoencoder") else model
            expected[name] = autoencoder.predict(x, verbose=0)
        np.save(tmp_path / f"{name}.in.npy", x)
    child = subprocess.run([sys.executable, "-c", _LOAD_IN_A_FRESH_PROCESS, str(tmp_path), *raw],
                           capture_output=True, text=True, timeout=300, env=subprocess_env(tracking), cwd=tmp_path)
    assert child.returncode == 0, child.stderr[-3000:]
    loaded = json.loads(child.stdout.strip().splitlines()[-1])
    for name in raw:
        np.testing.assert_allclose(np.array(loaded[name]), expected[name], rtol=1e-4, atol=1e-4, err_msg=name)
        assert SampleSpec.from_dict(loaded[name + ".spec"]) == specs[name]
