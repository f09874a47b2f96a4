"""train(config) against a real SQLite tracking store, read back through MlflowClient."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack import __version__
from aetrack.train import run_name_for, train


def _history(client, run_id, key):
    return sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)


def test_basic_run_is_fully_tracked(basic_run, tiny_config):
    result = basic_run.result
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "aetrack"

    # Every config value is a param.
    params = run.data.params
    assert params["epochs"] == "3" and params["batch_size"] == "32" and params["code_size"] == "16"
    assert params["loss"] == "bce" and params["learning_rate"] == "0.001" and params["seed"] == "0"
    assert params["register"] == "false" and "noise_factor" not in params

    tags = run.data.tags
    assert tags["aetrack.entry_point"] == "basic" and tags["aetrack.version"] == __version__
    assert tags["aetrack.dataset"] == "tiny" and len(tags["aetrack.dataset_sha256"]) == 64
    assert {"tensorflow.version", "keras.version", "mlflow.version"} <= set(tags)
    assert run.info.run_name == result.run_name == "basic-c16-e3-s0-b32-bce-tiny"

    # One point per epoch at steps 1..3, equal to what Keras reported.
    for key in ("loss", "val_loss", "epoch_seconds", "samples_per_second"):
        points = _history(client, result.run_id, key)
        assert [p.step for p in points] == [1, 2, 3], key
    logged_loss = [p.value for p in _history(client, result.run_id, "loss")]
    np.testing.assert_allclose(logged_loss, result.history["loss"], rtol=1e-6)
    assert logged_loss[-1] < logged_loss[0]
    for p in _history(client, result.run_id, "samples_per_second"):
        assert p.value > 0

    # Final metrics, recomputed independently from the returned model.
    assert set(result.metrics) >= {"test_bce", "test_mse"}
    for key, value in result.metrics.items():
        assert run.data.metrics[key] == pytest.approx(value)
    from aetrack.data import load_dataset

    data = load_dataset(tiny_config().dataset, 256, 32)
    predicted = result.model(data.x_test, training=False).numpy()
    assert run.data.metrics["test_mse"] == pytest.approx(float(np.mean((predicted - data.x_test) ** 2)), rel=1e-5)
    # val_loss is BCE on the same test images.
    assert run.data.metrics["test_bce"] == pytest.approx(result.history["val_loss"][-1], rel=1e-3)


def test_run_names_show_what_differs_where_the_runs_table_cuts_them(tiny_config):
    from aetrack.data import dataset_for

    dataset = dataset_for(tiny_config())
    base = run_name_for(tiny_config(), dataset)
    # The runs table shows about 23 characters: epochs, seed and learning rate must be in them.
    for change, part in ((dict(epochs=7), "-e7-"), (dict(seed=3), "-s3-"), (dict(learning_rate=0.003), "-lr3e-3")):
        name = run_name_for(tiny_config(**change), dataset)
        assert part in name[:23] and name[:23] != base[:23], (change, name)
    conv = run_name_for(tiny_config(architecture="conv", learning_rate=0.01, seed=12), dataset)
    assert conv == "basic-conv-c16-e2-s12-lr0.01-b32-bce-tiny"


def test_another_seed_trains_differently_into_the_named_experiment(tracking, tiny_config, one_epoch_store):
    # The same seed giving the same losses: test_seed_gives_same_result_with_or_without_mlflow_run.
    a = one_epoch_store.result  # seed 0, trained earlier in this session in another store
    c = train(tiny_config(epochs=1, image_every=0, seed=5, experiment_name="mine"))
    assert one_epoch_store.config == tiny_config(epochs=1, image_every=0)
    assert a.history["loss"] != pytest.approx(c.history["loss"], rel=1e-5)
    assert MlflowClient().get_experiment(c.experiment_id).name == "mine"


def test_denoise_learns_noisy_to_clean(denoise_run):
    result = denoise_run.result
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["noise_factor"] == "0.5" and run.data.params["init_model"] == ""
    assert run.data.params["loss"] == "mse" and run.data.tags["aetrack.entry_point"] == "denoise"
    assert "-n0.5-" in run.info.run_name
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_seed_gives_same_result_with_or_without_mlflow_run(tracking, tiny_config, one_epoch_store, monkeypatch):
    # Under `mlflow run`, MLFLOW_RUN_ID names an existing run: train() fills that one in and ends it.
    # MLflow draws a random run name from Python's `random` only when it creates the run itself
    # (not under `mlflow run`); seeding must come after that, or the two paths train differently.
    alone = one_epoch_store.result  # train() created that run itself
    assert MlflowClient(one_epoch_store.uri).get_run(alone.run_id).info.run_name == alone.run_name
    client = MlflowClient()
    outer = client.create_run(client.create_experiment("aetrack"), run_name="outer")
    monkeypatch.setenv("MLFLOW_RUN_ID", outer.info.run_id)
    under_mlflow_run = train(one_epoch_store.config)
    assert under_mlflow_run.run_id == outer.info.run_id
    assert client.get_run(outer.info.run_id).info.status == "FINISHED"
    assert under_mlflow_run.history["loss"] == pytest.approx(alone.history["loss"], rel=1e-6)
