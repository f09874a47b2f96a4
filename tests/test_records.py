"""What a run records where MLflow expects it, read back from a real SQLite store: datasets with
aetrack's digest, logged models with metrics/params/type, version descriptions, the note, the model
summary, lineage of a denoiser, system metrics, and models that serve through a direct call."""

import json
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack.data import load_dataset
from aetrack.names import NOTE_TAG, PARTS
from aetrack.tracking.records import DIGEST_LENGTH, SUMMARY_ARTIFACT, TRAINABLE_PARAMS
from tests.helpers.processes import subprocess_env


def _used_dataset(config):
    return load_dataset(config.dataset, config.train_samples, config.test_samples)


def _logged_models(run_id: str) -> dict:
    run = MlflowClient().get_run(run_id)
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run_id}'", output_format="list")
    return {m.name: m for m in models}


def test_datasets_are_run_inputs_with_aetracks_digest_and_context(basic_run):
    config, result = basic_run.config, basic_run.result
    used = _used_dataset(config)
    inputs = MlflowClient().get_run(result.run_id).inputs.dataset_inputs
    found = {}
    for dataset_input in inputs:
        context = {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"]
        found[context] = dataset_input.dataset
    assert set(found) == {"training", "evaluation"}
    assert found["training"].name == "tiny-train" and found["evaluation"].name == "tiny-test"
    assert found["training"].digest == used.train_sha256[:DIGEST_LENGTH]
    assert found["evaluation"].digest == used.test_sha256[:DIGEST_LENGTH]
    assert found["training"].digest != found["evaluation"].digest
    # Another subset of the same file gets another digest (MLflow's own digest would not tell).
    assert load_dataset(config.dataset, config.train_samples - 1, config.test_samples).train_sha256[:DIGEST_LENGTH] \
        != found["training"].digest
    assert json.loads(found["training"].source)["uri"].endswith("tiny.npz")


def test_logged_models_carry_final_metrics_params_and_type(basic_run):
    config, result = basic_run.config, basic_run.result
    used = _used_dataset(config)
    models = _logged_models(result.run_id)
    assert set(models) == set(PARTS)
    widths = {"autoencoder": f"784-{config.code_size}-784", "encoder": f"784-{config.code_size}",
              "decoder": f"{config.code_size}-784", "scorer": f"784-{config.code_size}-784-1"}
    for part, model in models.items():
        assert model.model_type == part
        assert model.params["architecture"] == config.architecture == "dense"
        assert model.params["layers"] == widths[part]
        assert model.params["code_size"] == str(config.code_size)
        assert model.params["entry_point"] == "basic"
        assert model.params["dataset_name"] == "tiny"
        assert model.params["dataset_digest"] == used.train_sha256[:DIGEST_LENGTH]
        metrics = {m.key: m for m in model.metrics}
        for key in ("test_bce", "test_mse", "test_psnr", "test_ssim"):
            assert metrics[key].value == pytest.approx(result.metrics[key]), (part, key)
            assert metrics[key].dataset_name == "tiny-test"
            assert metrics[key].dataset_digest == used.test_sha256[:DIGEST_LENGTH]
            assert metrics[key].step == config.epochs
        # The last epoch's losses, linked at the model's step.
        assert metrics["loss"].value == pytest.approx(result.history["loss"][-1])
        assert metrics["val_loss"].value == pytest.approx(result.history["val_loss"][-1])
        assert metrics["loss"].step == metrics["val_loss"].step == config.epochs
        assert len(model.metrics) == len({m.key for m in model.metrics})  # each metric linked once
    autoencoder = mlflow.get_logged_model(models["autoencoder"].model_id)
    assert autoencoder.source_run_id == result.run_id


def test_run_metric_history_keeps_one_point_per_step(basic_run):
    history = MlflowClient().get_metric_history(basic_run.result.run_id, "test_bce")
    assert [m.step for m in history] == [basic_run.config.epochs]


def test_registered_versions_have_a_description(registered):
    client = MlflowClient()
    result = registered.results[1]
    for part in PARTS:
        version = client.get_model_version(f"{registered.prefix}-{part}", "2")
        assert result.run_name in version.description
        assert f"test_bce {result.metrics['test_bce']:.4f}" in version.description
        assert "tiny" in version.description


def test_run_has_a_note_a_model_summary_and_its_parameter_count(basic_run):
    client = MlflowClient()
    result = basic_run.result
    run = client.get_run(result.run_id)
    note = run.data.tags[NOTE_TAG]
    assert result.run_name in note and "`tiny`" in note and "256 training images" in note
    assert run.data.params[TRAINABLE_PARAMS] == str(result.model.count_params())
    path = client.download_artifacts(result.run_id, SUMMARY_ARTIFACT)
    with open(path) as f:
        summary = f.read()
    assert "encoder" in summary and "decoder" in summary
    assert f"{result.model.count_params():,}" in summary


def test_system_metrics_are_off_by_default(basic_run):
    metrics = MlflowClient().get_run(basic_run.result.run_id).data.metrics
    assert not [k for k in metrics if k.startswith("system/")]


@pytest.mark.slow
def test_system_metrics_when_asked_for(tracking, tiny_config, monkeypatch):
    from aetrack.train import train

    import psutil

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    result = train(tiny_config(epochs=2, image_every=0, system_metrics=True))
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.params["system_metrics"] == "true"
    # Sampled again and again while the run was open: consecutive steps, timestamps inside the run.
    cpu = client.get_metric_history(result.run_id, "system/cpu_utilization_percentage")
    memory = client.get_metric_history(result.run_id, "system/system_memory_usage_megabytes")
    for history in (cpu, memory):
        assert len(history) >= 2
        assert sorted(m.step for m in history) == list(range(len(history)))
        # mlflow.end_run marks the run ended before it stops the sampling thread
        # (mlflow/tracking/fluent.py), so one last sample may come up to an interval after end_time.
        assert all(run.info.start_time <= m.timestamp <= run.info.end_time + 1000 for m in history)
    # Percentages of a busy CPU (training ran between the samples) and megabytes this machine has.
    assert all(0 <= m.value <= 100 for m in cpu) and max(m.value for m in cpu) > 0
    total_mb = psutil.virtual_memory().total / 2**20
    assert all(0 < m.value <= total_mb for m in memory)


@pytest.mark.slow
def test_denoise_run_records_the_model_it_continued_from(tracking, tiny_config, denoise_store):
    from aetrack.train import train

    basic = train(tiny_config(epochs=1, image_every=0, register=True, model_prefix="lineage"))
    autoencoder_id = _logged_models(basic.run_id)["autoencoder"].model_id
    for uri in (f"runs:/{basic.run_id}/autoencoder", "models:/lineage-autoencoder/1"):
        denoise = train(tiny_config(entry_point="denoise", epochs=1, image_every=0, init_model=uri))
        inputs = MlflowClient().get_run(denoise.run_id).inputs.model_inputs
        assert [i.model_id for i in inputs] == [autoencoder_id], uri
    # A fresh denoiser (the session's, trained without init_model) has no model input.
    assert denoise_store.config.init_model == ""
    assert not MlflowClient(denoise_store.uri).get_run(denoise_store.result.run_id).inputs.model_inputs


def test_models_keep_the_keras_flavor_and_serve_by_direct_call(registered, capfd):
    import keras

    result = registered.results[1]
    uri = f"runs:/{result.run_id}/autoencoder"
    x = load_dataset(str(registered.dataset), 256, 32).x_test[:7]
    expected = result.model(x, training=False).numpy()

    assert isinstance(mlflow.keras.load_model(uri), keras.Model)
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc.metadata.flavors["python_function"]["loader_module"] == "aetrack_keras_pyfunc"
    capfd.readouterr()
    np.testing.assert_allclose(pyfunc.predict(x), expected, atol=1e-5)
    assert capfd.readouterr().out == ""  # no Keras progress bar on stdout


@pytest.mark.slow
def test_mlflow_models_predict_prints_json(registered, tmp_path):
    x = load_dataset(str(registered.dataset), 256, 32).x_test[:3]
    (tmp_path / "in.json").write_text(json.dumps({"inputs": x.tolist()}))
    out = subprocess.run(
        [sys.executable, "-m", "mlflow", "models", "predict", "-m", f"models:/{registered.prefix}-encoder/2",
         "-i", str(tmp_path / "in.json"), "-t", "json", "--env-manager", "local"],
        capture_output=True, text=True, timeout=300, env=subprocess_env(registered.uri), cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    codes = np.asarray(json.loads(out.stdout)["predictions"], dtype=np.float32)
    expected = registered.results[1].model.get_layer("encoder")(x, training=False).numpy()
    np.testing.assert_allclose(codes, expected, atol=1e-5)


def test_a_run_that_loses_the_race_to_record_its_data_links_the_winners_record(tracking, tmp_path):
    """Concurrent runs on one dataset (a team server, a sweep) all find its record missing and
    all insert it; MLflow fails the losers on the record's key. The race is played here on the
    real store: another writer inserts the same dataset between this run's check and its insert.
    The run still records its inputs, as links to the winner's record, and adds none of its own."""
    import uuid

    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import SqlDataset
    from sqlalchemy.orm import Session

    from aetrack.config import TrainConfig
    from aetrack.data import Dataset
    from aetrack.tracking.records import record_run_inputs

    rng = np.random.default_rng(0)
    x_train, x_test = rng.random((8, 784), np.float32), rng.random((4, 784), np.float32)
    dataset = Dataset("raced", x_train, None, x_test, None, "ab" * 32, str(tmp_path / "raced.npz"),
                      "cd" * 32, "ef" * 32)
    client = MlflowClient()
    store = client._tracking_client.store
    winner_source = json.dumps({"uri": "the other run's"})
    raced = []

    def insert_first(session, flush_context, instances):
        pending = [o for o in session.new if isinstance(o, SqlDataset)]
        if pending and not raced:
            raced.append(len(pending))
            with Session(store.engine) as other:
                other.add_all([SqlDataset(dataset_uuid=uuid.uuid4().hex, experiment_id=o.experiment_id, name=o.name,
                                          digest=o.digest, dataset_source_type=o.dataset_source_type,
                                          dataset_source=winner_source, dataset_schema=o.dataset_schema,
                                          dataset_profile=o.dataset_profile) for o in pending])
                other.commit()

    mlflow.set_experiment("raced")
    sqlalchemy.event.listen(Session, "before_flush", insert_first)
    try:
        with mlflow.start_run() as run:
            record_run_inputs(client, run.info.run_id, TrainConfig(register=False), dataset, "raced-run")
    finally:
        sqlalchemy.event.remove(Session, "before_flush", insert_first)
    assert raced == [2]  # the training and the evaluation records, both lost
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == ["raced-test", "raced-train"]
    assert {i.dataset.source for i in inputs} == {winner_source}
    with Session(store.engine) as session:
        assert session.query(SqlDataset).count() == 2
