"""Registering, promoting and loading models against real SQLite stores, read back from the registry
and from fresh Python processes."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack.errors import Interrupted, ModelError
from aetrack.config import TrainConfig
from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.names import MODEL_VERSIONS_TAG, NOTE_TAG
from aetrack.tracking.logged_models import describe_logged_models, logged_model_description
from aetrack.tracking.registry import PARTS, link_version, log_models, logged_model_versions, register_models
from aetrack.train import train
from aetrack.models.loading import load_model
from tests.helpers.errors import error_line
from tests.helpers.processes import aetrack_in_process, run_aetrack, run_concurrently, subprocess_env


def _inputs(store, n=12):
    from aetrack.data import load_dataset

    return load_dataset(str(store.dataset), 256, 32).x_test[:n]


def test_versions_tags_and_aliases_read_back(registered):
    client = MlflowClient()
    first, second = registered.results
    assert first.registered_versions == {f"aetrack-test-{p}": "1" for p in PARTS}
    assert second.registered_versions == {f"aetrack-test-{p}": "2" for p in PARTS}
    for result, version in ((first, "1"), (second, "2")):
        run = client.get_run(result.run_id)
        assert run.info.status == "FINISHED"
        for part in PARTS:
            name = f"aetrack-test-{part}"
            mv = client.get_model_version(name, version)
            assert mv.run_id == result.run_id and mv.tags["run_id"] == result.run_id
            assert mv.tags["dataset_sha256"] == run.data.tags["aetrack.dataset_sha256"]
            assert mv.tags["code_size"] == "8" and mv.tags["part"] == part and mv.tags["entry_point"] == "basic"
            for metric in ("test_bce", "test_mse"):
                assert float(mv.tags[metric]) == pytest.approx(run.data.metrics[metric], rel=1e-9)
    # The newest run's versions are the candidates; test_bce improved with more epochs.
    for part in PARTS:
        assert str(client.get_model_version_by_alias(f"aetrack-test-{part}", "candidate").version) == "2"
    assert second.metrics["test_bce"] < first.metrics["test_bce"]


def test_logged_models_list_their_versions_as_the_ui_reads_them(registered):
    # The UI's logged model page and Models list read the logged model's `mlflow.modelVersions`
    # tag, a JSON list written by mlflow.register_model; without it they say "Not registered".
    client = MlflowClient()
    for result, version in zip(registered.results, ("1", "2")):
        logged = _logged_models_of(client, result)
        for part in PARTS:
            name = f"aetrack-test-{part}"
            assert client.get_model_version(name, version).source == logged[part].model_uri
            model = client.get_logged_model(logged[part].model_id)
            assert json.loads(model.tags[MODEL_VERSIONS_TAG]) == [{"name": name, "version": version}]
            # Linking again (a tracking server records the link itself) keeps one entry.
            link_version(client, model.model_id, name, version)
            assert logged_model_versions(client, model.model_id) == [{"name": name, "version": version}]


def _logged_models_of(client, result) -> dict:
    """{part: LoggedModel} of a finished run."""
    models = client.search_logged_models(experiment_ids=[result.experiment_id],
                                         filter_string=f"source_run_id = '{result.run_id}'")
    return {m.name: m for m in models}


def test_logged_models_get_a_description_saying_what_each_part_is(registered):
    client = MlflowClient()
    result = registered.results[1]
    logged = _logged_models_of(client, result)
    assert set(logged) == set(PARTS)
    threshold = result.metrics["anomaly_threshold"]
    # train() described them; describe_logged_models writes the same texts again.
    texts = {part: client.get_logged_model(logged[part].model_id).tags[NOTE_TAG] for part in PARTS}
    assert describe_logged_models(logged, TrainConfig(code_size=8), MNIST_SPEC, result.run_name, threshold) == texts
    run = result.run_name
    assert texts["encoder"] == f"The encoder of run {run} (dense): 28x28x1 images (784) -> code (8)."
    assert texts["decoder"] == f"The decoder of run {run} (dense): code (8) -> 28x28x1 images (784)."
    assert texts["autoencoder"] == (f"The autoencoder of run {run} (dense): 28x28x1 images (784) -> "
                                    "reconstructions (784).")
    assert texts["scorer"] == (f"The scorer of run {run} (dense): 28x28x1 images (784) -> anomaly score (1). "
                               f"A score above {threshold:.6g} is anomalous.")
    table = SampleSpec(kind="table", shape=(30,), value_range=None)
    assert (logged_model_description("encoder", "r", 4, table, "vae")
            == "The encoder of run r (vae): 30-feature rows (30) -> code (4).")


def test_logged_models_have_signatures_and_pinned_requirements(registered):
    import importlib.metadata

    import mlflow

    for part, outputs in (("autoencoder", 784), ("encoder", 8), ("decoder", 784)):
        info = mlflow.models.get_model_info(f"models:/aetrack-test-{part}/1")
        assert "keras" in info.flavors
        (spec_in,) = info.signature.inputs.inputs
        (spec_out,) = info.signature.outputs.inputs
        assert spec_in.shape == (-1, 8 if part == "decoder" else 784) and str(spec_in.type) == "float32"
        assert spec_out.shape == (-1, outputs)
        requirements = mlflow.artifacts.load_text(f"models:/aetrack-test-{part}/1/requirements.txt").split()
        for package in ("mlflow", "tensorflow", "keras", "numpy"):
            assert f"{package}=={importlib.metadata.version(package)}" in requirements


# Runs in a fresh interpreter: loads every part by version, alias and latest, with aetrack.load_model
# and mlflow.pyfunc.load_model, and saves what each produced for the parent to compare.
FRESH_LOADER = r"""
import sys, time, numpy as np, mlflow.pyfunc
import aetrack
x = np.load(sys.argv[1]); outputs = {}
for part in ("autoencoder", "encoder", "decoder", "scorer"):
    for ref in ("1", "2", "@candidate", "latest"):
        uri = f"models:/aetrack-test-{part}{'' if ref.startswith('@') else '/'}{ref}"
        started = time.perf_counter()
        model = aetrack.load_model(uri)
        print("LOAD", uri, round(time.perf_counter() - started, 3), flush=True)
        inputs = x if part != "decoder" else outputs["encoder|" + ref]
        outputs[f"{part}|{ref}"] = np.asarray(model.predict(inputs, verbose=0))
        outputs[f"{part}|{ref}|pyfunc"] = np.asarray(mlflow.pyfunc.load_model(uri).predict(inputs))
np.savez(sys.argv[2], **outputs)
"""


@pytest.mark.slow
def test_fresh_process_loads_every_model_like_the_trained_one(registered, tmp_path):
    x = _inputs(registered)
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run(
        [sys.executable, "-c", FRESH_LOADER, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300, env=subprocess_env(registered.uri), cwd=registered.folder,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    print("\n".join(line for line in out.stdout.splitlines() if line.startswith("LOAD")))
    loaded = np.load(tmp_path / "out.npz")
    assert len(loaded.files) == 4 * 4 * 2
    for ref, result in (("1", registered.results[0]), ("2", registered.results[1]),
                        ("@candidate", registered.results[1]), ("latest", registered.results[1])):
        model = result.model
        expected = {
            "autoencoder": model(x, training=False).numpy(),
            "encoder": model.get_layer("encoder")(x, training=False).numpy(),
        }
        expected["decoder"] = model.get_layer("decoder")(expected["encoder"], training=False).numpy()
        expected["scorer"] = np.mean((x - expected["autoencoder"]) ** 2, axis=1, keepdims=True)
        for part in PARTS:
            for how in ("", "|pyfunc"):
                np.testing.assert_allclose(loaded[f"{part}|{ref}{how}"], expected[part], atol=1e-6, err_msg=part + ref)
        # The encoder's codes fed to the decoder give the autoencoder's output.
        np.testing.assert_allclose(loaded[f"decoder|{ref}"], loaded[f"autoencoder|{ref}"], atol=1e-6)
    assert loaded["encoder|1"].shape == (len(x), 8)
    assert not np.allclose(loaded["autoencoder|1"], loaded["autoencoder|2"])  # versions really differ


def test_runs_uri_and_bad_uris(registered):
    x = _inputs(registered, 3)
    run_id = registered.results[0].run_id
    encoder = load_model(f"runs:/{run_id}/encoder")
    np.testing.assert_allclose(encoder.predict(x, verbose=0),
                               registered.results[0].model.get_layer("encoder")(x).numpy(), atol=1e-6)
    for uri, reason in (("models:/aetrack-test-encoder/99", "not found"), ("models:/no-such-model/1", "not found"),
                        ("models:/aetrack-test-encoder@nope", "nope")):
        with pytest.raises(ModelError, match=r"invalid --model .*: cannot load it .*expected models:/") as info:
            load_model(uri)
        assert reason in str(info.value).lower() and "\n" not in str(info.value)


def test_safe_mode_refuses_code_in_models(tracking):
    import keras
    import mlflow

    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    mlflow.set_experiment("safe-mode")
    with mlflow.start_run():
        info = mlflow.keras.log_model(model, name="lambda", pip_requirements=["keras"])
    with pytest.raises(ModelError, match="safe_mode"):
        load_model(info.model_uri)


def test_register_false_logs_but_registers_nothing(basic_run):
    result = basic_run.result  # trained with register=False
    assert basic_run.config.register is False
    client = MlflowClient()
    assert result.registered_versions == {}
    assert client.search_registered_models() == [] and client.search_model_versions() == []
    logged = client.search_logged_models(experiment_ids=[result.experiment_id])
    assert sorted(m.name for m in logged) == sorted(PARTS)
    assert {m.source_run_id for m in logged} == {result.run_id}


@pytest.mark.slow  # a signal mid-training
def test_run_interrupted_mid_training_registers_nothing(tracking, tiny_config):
    client = MlflowClient()

    def interrupt_after_first_epoch():
        # Wait until epoch 1 is in the store, then SIGINT this process (train turns it into Interrupted).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            experiment = client.get_experiment_by_name("aetrack")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    threading.Thread(target=interrupt_after_first_epoch, daemon=True).start()
    with pytest.raises(Interrupted):
        train(tiny_config(epochs=500, register=True))
    (run,) = client.search_runs([client.get_experiment_by_name("aetrack").experiment_id])
    assert run.info.status == "KILLED"
    assert 1 <= len(client.get_metric_history(run.info.run_id, "loss")) < 500
    assert client.search_model_versions() == []


def test_failed_registration_deletes_the_versions_it_made(tracking, tiny_config):
    import mlflow

    from aetrack.data import dataset_for
    from aetrack.models import build_dense_autoencoder

    config = tiny_config(code_size=8)
    mlflow.set_experiment("broken-registration")
    with mlflow.start_run() as run:
        logged = log_models(build_dense_autoencoder(8), config, dataset_for(config))
    # A real registry failure on the last part: its source logged model does not exist.
    logged["decoder"] = types.SimpleNamespace(model_uri="models:/m-0000000000000000", model_id="m-0000000000000000")
    with pytest.raises(Exception, match="m-0000000000000000"):
        register_models(logged, "aetrack-broken", run.info.run_id, {"run_id": run.info.run_id})
    client = MlflowClient()
    # The first two parts got a version before the failure; both were deleted again.
    names = {m.name for m in client.search_registered_models()}
    assert {"aetrack-broken-autoencoder", "aetrack-broken-encoder"} <= names
    assert client.search_model_versions("name LIKE 'aetrack-broken%'") == []
    # Their logged models no longer list the deleted versions.
    for part in ("autoencoder", "encoder"):
        assert MODEL_VERSIONS_TAG not in client.get_logged_model(logged[part].model_id).tags


@pytest.mark.slow
def test_two_concurrent_runs_get_distinct_versions(tracking, tmp_path, tiny_npz):
    # Create the store first so both children only write to it (schema creation is not concurrent-safe).
    client = MlflowClient()
    client.search_experiments()
    args = [sys.executable, "-m", "aetrack", "train", "basic", "--epochs", "1", "--train-samples", "64",
            "--test-samples", "16", "--code-size", "4", "--dataset", str(tiny_npz), "--image-every", "0"]
    for child in run_concurrently([[*args, "--seed", str(seed)] for seed in (1, 2)], subprocess_env(tracking),
                                  tmp_path):
        assert child.returncode == 0, child.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("aetrack").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for part in PARTS:
        versions = client.search_model_versions(f"name='aetrack-basic-{part}'")
        assert sorted(int(v.version) for v in versions) == [1, 2]
        assert {v.run_id for v in versions} == {r.info.run_id for r in runs}
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    codes = [load_model(f"models:/aetrack-basic-encoder/{v}").predict(x, verbose=0) for v in (1, 2)]
    assert codes[0].shape == codes[1].shape == (3, 4) and not np.allclose(codes[0], codes[1])


def promote_cli(*args, uri):
    """The first call is the real command in a child process; the rest run `main` in this process."""
    return run_aetrack("promote", *args, uri=uri, timeout=120)


@pytest.mark.slow
def test_promote_by_version_and_if_better(registered):
    client = MlflowClient()
    name = "aetrack-test-autoencoder"

    def champion():
        return str(client.get_model_version_by_alias(name, "champion").version)

    out = promote_cli(name, "--if-better", uri=registered.uri)  # no champion yet: the candidate (2)
    assert out.returncode == 0, out.stderr
    assert champion() == "2" and "version 2" in out.stdout
    out = aetrack_in_process("promote", name, "--version", "1", "--if-better")  # worse: kept
    assert out.returncode == 0 and "unchanged" in out.stdout and "not lower" in out.stdout
    assert champion() == "2"
    out = aetrack_in_process("promote", name, "--version", "1")  # forced
    assert out.returncode == 0 and champion() == "1" and "was version 2" in out.stdout
    out = aetrack_in_process("promote", name, "--if-better")  # the candidate beats it again
    assert out.returncode == 0 and champion() == "2" and "test_bce" in out.stdout
    # Aliases only: no deprecated stages were touched.
    assert {v.current_stage for v in client.search_model_versions(f"name='{name}'")} <= {"None", None}

    for args, expected in (
        (["no-such-model", "--version", "1"], "invalid name 'no-such-model': no such registered model"),
        ([name, "--version", "7"], "invalid --version 7: 'aetrack-test-autoencoder' has no version 7; expected one of 1, 2"),
        ([name], "give --version N or --if-better"),
    ):
        line = error_line(aetrack_in_process("promote", *args), 2, only_line=True)
        assert expected in line, line
    assert champion() == "2"


def test_denoise_starts_from_registry_alias(registered, tiny_npz):
    from aetrack.config import TrainConfig

    candidate = load_model("models:/aetrack-test-autoencoder@candidate")
    # A learning rate so small that one epoch cannot move the weights measurably from where they started.
    result = train(TrainConfig(entry_point="denoise", init_model="models:/aetrack-test-autoencoder@candidate",
                               epochs=1, learning_rate=1e-9, code_size=8, train_samples=64, test_samples=16,
                               dataset=str(tiny_npz), register=False, image_every=0))
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["init_model"].endswith("@candidate")
    for trained, start in zip(result.model.get_weights(), candidate.get_weights()):
        np.testing.assert_allclose(trained, start, atol=1e-6)


def test_promote_refusals_name_its_parameters_and_the_cli_words_them_as_flags(tracking):
    from aetrack.errors import RegistryError
    from aetrack.tracking.promotion import promote

    MlflowClient().create_registered_model("m")
    with pytest.raises(RegistryError) as refused:
        promote("m")
    assert (refused.value.parameter, refused.value.value) == ("", None)
    assert str(refused.value) == "invalid promote: give version N or if_better (which promotes the candidate)"
    line = error_line(aetrack_in_process("promote", "m"), 2, only_line=True)
    assert line == "aetrack: error: invalid promote: give --version N or --if-better (which promotes the candidate)"
    with pytest.raises(RegistryError) as refused:
        promote("m", version=3)
    assert str(refused.value) == "invalid version 3: 'm' has no version 3; expected one of none"
    line = error_line(aetrack_in_process("promote", "m", "--version", "3"), 2, only_line=True)
    assert line == "aetrack: error: invalid --version 3: 'm' has no version 3; expected one of none"
