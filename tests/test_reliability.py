"""Bad input, faults and interruptions: each fails with one clear line and leaves the store clean.

Every case runs the real `aetrack` CLI (or `mlflow run`) in a subprocess against a real SQLite
store in a temp dir, then reads the store back: no run left RUNNING, no registered model version.
Option and dataset errors must not load TensorFlow or MLflow, nor create a run; their tables run
in one fresh interpreter, case after case, each in its own folder and store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack.errors import Interrupted, ModelError
from aetrack.names import FAILURE_TAG
from tests.helpers.data import synthetic_digits, write_npz
from tests.helpers.errors import error_line
from tests.helpers.imports import run_cases_with_import_probe, run_with_import_probe
from tests.helpers.processes import REPO, free_port, subprocess_env, wait_for_first_epoch

TINY = ["--train-samples", "64", "--test-samples", "16", "--code-size", "8", "--epochs", "1",
        "--image-samples", "4", "--register", "true"]


def store_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def cli(tmp_path: Path, *args: str, uri: str | None = None, timeout: float = 180):
    """Run the CLI in `tmp_path` against its store; return (completed process, seconds, heavy modules)."""
    probed = run_with_import_probe(*args, uri=uri or store_uri(tmp_path), cwd=tmp_path, timeout=timeout)
    return probed.out, probed.seconds, probed.heavy


def runs_in_store(uri: str) -> list:
    """Every run in every experiment of the store (none if the database was never created)."""
    path = uri[len("sqlite:///"):]
    if not os.path.exists(path):
        return []
    client = MlflowClient(uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiment_ids) if experiment_ids else []


def experiment_names(uri: str) -> list[str]:
    """Names of the store's experiments (none if the database was never created)."""
    if not os.path.exists(uri[len("sqlite:///"):]):
        return []
    return [e.name for e in MlflowClient(uri).search_experiments()]


def tracking_dir(uri: str) -> Path:
    return Path(uri[len("sqlite:///"):]).parent


def registered_versions(uri: str) -> list:
    """Every registered model version in the store's registry (none if there is no database).

    It must stay empty after every failure: a failed or interrupted run never registers.
    """
    path = uri[len("sqlite:///"):]
    if not os.path.exists(path):
        return []
    return list(MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions())


def assert_nothing_started(tmp_path: Path, uri: str | None = None) -> None:
    uri = uri or store_uri(tmp_path)
    assert runs_in_store(uri) == []
    assert registered_versions(uri) == []


# --- bad options: rejected while parsing, before TensorFlow, MLflow or a store exist -------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, str]:
    """Broken datasets and model files, made once."""
    root = tmp_path_factory.mktemp("bad")
    x, y = synthetic_digits(20, 0)
    not_finite = x.astype(np.float32) / 255
    not_finite[3, 4, 5] = np.nan
    files = {
        "directory": str(root),
        "text": str(root / "notes.npz"),
        "truncated_keras": str(root / "truncated.keras"),
        "h5_model": str(root / "model.h5"),
        "wrong_keys": str(write_npz(root / "keys.npz", 20, 5, x_train=None, images=x)),
        "wrong_shape": str(write_npz(root / "shape.npz", 20, 5, x_train=x.reshape(20, 784))),
        "not_finite": str(write_npz(root / "finite.npz", 20, 5, x_train=not_finite)),
        "out_of_range": str(write_npz(root / "range.npz", 20, 5, x_test=np.full((5, 28, 28), 300, np.int32))),
        "empty": str(write_npz(root / "empty.npz", 20, 5, x_train=np.zeros((0, 28, 28), np.uint8),
                               y_train=np.zeros(0, np.uint8))),
        "small": str(write_npz(root / "small.npz", 20, 5)),
    }
    Path(files["text"]).write_text("this is not a zip archive\n")
    Path(files["h5_model"]).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    # A real .keras archive cut in half: the zip directory at its end is gone.
    with zipfile.ZipFile(root / "whole.keras", "w") as archive:
        archive.writestr("config.json", "{}" * 2000)
        archive.writestr("model.weights.h5", os.urandom(4000))
    whole = (root / "whole.keras").read_bytes()
    Path(files["truncated_keras"]).write_bytes(whole[: len(whole) // 2])
    return files


# (entry point, args, text the error line must contain). Each names the option, the value and the rule.
BAD_OPTIONS = [
    ("basic", ["--epochs", "0"], "invalid --epochs: got '0'; expected an integer from 1 to 100000"),
    ("basic", ["--epochs", "-3"], "invalid --epochs: got '-3'; expected an integer from 1 to"),
    ("basic", ["--epochs", "ten"], "invalid --epochs: got 'ten'; expected an integer from 1 to"),
    ("basic", ["--epochs", "2.5"], "invalid --epochs: got '2.5'; expected an integer"),
    ("basic", ["--batch-size", "0"], "invalid --batch-size: got '0'; expected an integer from 1 to 65536"),
    ("basic", ["--batch-size", "-64"], "invalid --batch-size: got '-64'; expected an integer from 1"),
    ("basic", ["--code-size", "0"], "invalid --code-size: got '0'; expected an integer from 1 to 4096"),
    ("basic", ["--code-size", "big"], "invalid --code-size: got 'big'; expected an integer from 1"),
    ("basic", ["--train-samples", "-1"], "invalid --train-samples: got '-1'; expected an integer from 0"),
    ("basic", ["--test-samples", "-5"], "invalid --test-samples: got '-5'; expected an integer from 0"),
    ("basic", ["--image-samples", "0"], "invalid --image-samples: got '0'; expected an integer from 1 to 64"),
    ("basic", ["--seed", "-1"], "invalid --seed: got '-1'; expected an integer from 0"),
    ("basic", ["--learning-rate", "0"], "invalid --learning-rate: got '0'; expected a number > 0 and <= 10"),
    ("basic", ["--learning-rate", "-0.01"], "invalid --learning-rate: got '-0.01'; expected a number > 0"),
    ("basic", ["--learning-rate", "fast"], "invalid --learning-rate: got 'fast'; expected a number > 0"),
    ("basic", ["--learning-rate", "nan"], "invalid --learning-rate: got 'nan'; expected a number > 0"),
    ("denoise", ["--noise-factor", "-0.1"], "invalid --noise-factor: got '-0.1'; expected a number >= 0 and <= 5"),
    ("denoise", ["--noise-factor", "1e6"], "invalid --noise-factor: got '1e6'; expected a number >= 0 and <= 5"),
    ("denoise", ["--noise-factor", "inf"], "invalid --noise-factor: got 'inf'; expected a number >= 0"),
    ("denoise", ["--noise-factor", "lots"], "invalid --noise-factor: got 'lots'; expected a number >= 0"),
    ("basic", ["--loss", "hinge"], "invalid --loss: got 'hinge'; expected empty (bce for data in [0, 1], mse for "
     "standardised tables), bce or mse"),
    ("basic", ["--register", "maybe"], "invalid --register: got 'maybe'; expected true or false"),
    ("basic", ["--exclude-digits", "a"], "invalid --exclude-digits: got 'a'; expected empty or comma-separated"),
    ("basic", ["--model-prefix", "bad name!"], "invalid --model-prefix: got 'bad name!'; expected empty"),
    ("basic", ["--model-prefix", "a/b"], "invalid --model-prefix: got 'a/b'; expected empty"),
    ("basic", ["--steps-per-execution", "0"], "invalid --steps-per-execution: got '0'; expected an integer"),
    ("basic", ["--dataset", "cifar100"],
     "invalid --dataset: invalid dataset 'cifar100': unknown dataset name and no such file; "
     "expected mnist, fashion_mnist, cifar10, digits, or a path to a .npz/.npy file, an image folder or a "
     ".csv/.parquet table"),
    ("basic", ["--dataset", "{tmp}/missing.npz"], "invalid dataset '{tmp}/missing.npz': no such file; expected mnist"),
    ("basic", ["--dataset", "{directory}"], "invalid dataset '{directory}': folder holds no images; expected png, jpg"),
    ("basic", ["--dataset", "{text}"], "invalid dataset '{text}': not an .npz (zip) file; expected mnist"),
    ("denoise", ["--init-model", "{tmp}/missing.keras"],
     "invalid --init-model: invalid init_model '{tmp}/missing.keras': no such file or directory; "
     "expected models:/<name>@<alias>, models:/<name>/<version>"),
    ("denoise", ["--init-model", "{truncated_keras}"],
     "invalid init_model '{truncated_keras}': not a readable .keras (zip) file: truncated or corrupt"),
    ("denoise", ["--init-model", "{h5_model}"], "invalid init_model '{h5_model}': not a .keras file"),
    ("denoise", ["--init-model", "{directory}"], "invalid init_model '{directory}': a directory without an MLmodel"),
    ("denoise", ["--init-model", "runs:/abc/autoencoder"], "invalid init_model 'runs:/abc/autoencoder': malformed runs: URI"),
    ("denoise", ["--init-model", "models:/"], "invalid init_model 'models:/': malformed models: URI"),
    ("basic", ["--init-model", "x.keras"], "No such option '--init-model'"),
]


def _bad_option_args(index: int, bad_files: dict[str, str], folder: Path) -> list[str]:
    entry_point, args, _ = BAD_OPTIONS[index]
    names = {"tmp": str(folder), **bad_files}
    return ["train", entry_point, "--dataset", bad_files["small"], *TINY, *(a.format(**names) for a in args)]


def _bad_dataset_args(index: int, bad_files: dict[str, str]) -> list[str]:
    name, args, _ = BAD_DATASETS[index]
    return ["train", "basic", *TINY, "--train-samples", "8", "--test-samples", "4", "--dataset", bad_files[name], *args]


@pytest.fixture(scope="module")
def rejected(tmp_path_factory, bad_files) -> dict[tuple[str, int], tuple]:
    """Every BAD_OPTIONS and BAD_DATASETS case, run once in one fresh interpreter, each in its own
    empty folder with its own store URI: {(table, index): (Probed, folder)}."""
    cases, keys = [], []
    for table, count in (("option", len(BAD_OPTIONS)), ("dataset", len(BAD_DATASETS))):
        for index in range(count):
            folder = tmp_path_factory.mktemp(f"{table}-{index}")
            args = _bad_option_args(index, bad_files, folder) if table == "option" else _bad_dataset_args(index, bad_files)
            cases.append((args, folder, store_uri(folder)))
            keys.append((table, index))
    probed = run_cases_with_import_probe(cases)
    return {key: (result, folder) for key, result, (_, folder, _) in zip(keys, probed, cases)}


@pytest.mark.parametrize("index", range(len(BAD_OPTIONS)), ids=[str(case)[:40] for case in BAD_OPTIONS])
def test_bad_option_fails_before_anything_heavy(rejected, bad_files, index):
    probed, folder = rejected["option", index]
    names = {"tmp": str(folder), **bad_files}
    line = error_line(probed.out, 2)
    assert BAD_OPTIONS[index][2].format(**names) in line, line
    assert probed.heavy == [], f"loaded {probed.heavy} before rejecting {BAD_OPTIONS[index][1]}"
    assert probed.seconds < 15, probed.seconds  # typically well under a second; generous for a busy machine
    assert sorted(folder.iterdir()) == []  # no store, no mlruns


def test_a_bad_option_through_the_real_command(tmp_path, bad_files):
    """One case of the table as a user types it: `python -m aetrack ...`, fresh interpreter."""
    out, _, heavy = cli(tmp_path, *_bad_option_args(0, bad_files, tmp_path))
    assert BAD_OPTIONS[0][2] in error_line(out, 2, only_line=True)
    assert heavy == [] and not (tmp_path / "mlflow.db").exists()


# --- bad datasets: rejected after reading the file with numpy, still before TensorFlow or a run ---

BAD_DATASETS = [
    ("wrong_keys", [], "invalid dataset '{path}': missing arrays x_train; expected a .npz with x_train and "
                       "optionally y_train, x_test, y_test (found: y_train, x_test, y_test, images)"),
    ("wrong_shape", [], "invalid dataset '{path}': x_test has samples of shape (28, 28) but x_train (784,); "
                        "expected the same shape in both splits"),
    ("not_finite", [], "invalid dataset '{path}': x_train has NaN or infinite values; expected finite numbers"),
    ("out_of_range", [], "invalid dataset '{path}': x_test has integer values 300..300; expected 0..255 (or floats)"),
    ("empty", [], "invalid dataset '{path}': x_train is empty; expected at least one sample"),
    ("small", ["--train-samples", "21"],
     "invalid train_samples 21: dataset '{path}' has only 20 training images; expected train_samples <= 20"),
    ("small", ["--test-samples", "6"],
     "invalid test_samples 6: dataset '{path}' has only 5 test images; expected test_samples <= 5"),
]


@pytest.mark.parametrize("index", range(len(BAD_DATASETS)), ids=[str(case)[:30] for case in BAD_DATASETS])
def test_bad_dataset_fails_before_tensorflow_or_a_run(rejected, bad_files, index):
    probed, folder = rejected["dataset", index]
    name, _, expected = BAD_DATASETS[index]
    assert error_line(probed.out, 2) == "aetrack: error: " + expected.format(path=bad_files[name])
    assert not {"tensorflow", "keras", "mlflow"} & set(probed.heavy), probed.heavy
    assert probed.seconds < 15
    assert not (folder / "mlflow.db").exists()


# --- init_model that parses but cannot be used: loaded (safe mode) before the run is created -------


def _save_model(path: Path, code_size: int = 8, lambda_layer: bool = False, nan_weights: bool = False) -> str:
    import keras

    from aetrack.models import build_dense_autoencoder

    if lambda_layer:
        inputs = keras.Input(shape=(784,))
        # A Python lambda is stored as bytecode; loading it would run code from the file.
        model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 1.0)(keras.layers.Dense(8)(inputs)))
    else:
        model = build_dense_autoencoder(code_size)
        if nan_weights:
            model.set_weights([np.full(w.shape, np.nan, np.float32) for w in model.get_weights()])
    model.save(path)
    return str(path)


def _tampered_copy(source: str, target: Path) -> str:
    """A .keras archive that is still a zip, but whose weights file has been overwritten."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as tampered:
        for item in original.infolist():
            data = original.read(item)
            tampered.writestr(item, os.urandom(len(data)) if item.filename.endswith(".h5") else data)
    return str(target)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    good = _save_model(root / "good.keras")
    return {
        "good": good,
        "other_code_size": _save_model(root / "c3.keras", code_size=3),
        "lambda": _save_model(root / "lambda.keras", lambda_layer=True),
        "tampered": _tampered_copy(good, root / "tampered.keras"),
        "nan": _save_model(root / "nan.keras", nan_weights=True),
    }


BAD_INIT_MODELS = [
    ("other_code_size", "its weights have shapes [(784, 3), (3,), (3, 784), (784,)]; expected [(784, 8), (8,), (8, 784)"),
    ("lambda", "cannot load it (Requested the deserialization of a `Lambda` layer whose `function` is a Python lambda"),
    ("tampered", "cannot load it (Unable to synchronously open file"),
    ("runs:/0123456789abcdef0123456789abcdef/autoencoder", "cannot load it (Run with id=0123456789abcdef0123456789abcdef not found)"),
    ("models:/no-such-model/1", "cannot load it (Registered Model with name=no-such-model not found)"),
    ("models:/no-such-model@champion", "cannot load it (Registered Model with name=no-such-model not found)"),
]


@pytest.mark.parametrize("name,expected", BAD_INIT_MODELS, ids=lambda v: str(v)[:30])
def test_unusable_init_model_fails_before_the_run(tracking, tiny_config, model_files, name, expected):
    """train() loads init_model (safe mode) before creating the run. In-process: TensorFlow loads once."""
    from aetrack.train import train

    value = model_files.get(name, name)
    with pytest.raises(ModelError) as info:
        train(tiny_config(entry_point="denoise", code_size=8, init_model=value, register=True))
    assert str(info.value).startswith(f"invalid init_model {value!r}: ") and expected in str(info.value)
    assert "\n" not in str(info.value)
    assert runs_in_store(tracking) == [] and registered_versions(tracking) == []
    assert "aetrack" not in experiment_names(tracking)  # not even the experiment was made


@pytest.mark.slow
def test_unsafe_init_model_through_the_cli(tmp_path, tiny_npz, model_files):
    """The same refusal through the real CLI: exit 2, one line, no run."""
    value = model_files["lambda"]
    out, _, _ = cli(tmp_path, "train", "denoise", *TINY, "--dataset", str(tiny_npz), "--init-model", value)
    line = error_line(out, 2)
    assert line.startswith(f"aetrack: error: invalid init_model {value!r}: cannot load it (Requested the "
                           "deserialization of a `Lambda` layer") and "safe_mode" in line
    assert_nothing_started(tmp_path)


def test_good_init_model_is_used(tracking, tiny_config, model_files):
    """The control: a usable init_model passes the same checks and the run starts from its weights."""
    import keras

    from aetrack.train import train

    # A learning rate so small that one epoch leaves the starting weights as they were.
    result = train(tiny_config(entry_point="denoise", code_size=8, epochs=1, learning_rate=1e-9,
                               init_model=model_files["good"]))
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["init_model"] == model_files["good"]
    start = keras.saving.load_model(model_files["good"]).get_weights()
    for trained, initial in zip(result.model.get_weights(), start):
        np.testing.assert_allclose(trained, initial, atol=1e-6)


# --- faults during a run: the run ends FAILED or KILLED with a reason; nothing is registered -------


@pytest.mark.slow
def test_nan_loss_fails_the_run_and_registers_nothing(tmp_path, tiny_npz, model_files):
    uri = store_uri(tmp_path)
    out, _, _ = cli(tmp_path, "train", "denoise", *TINY, "--epochs", "3", "--dataset", str(tiny_npz),
                    "--init-model", model_files["nan"])
    assert error_line(out, 1) == (
        "aetrack: error: training diverged: loss became nan in epoch 1; "
        "lower learning_rate or check init_model and the dataset"
    )
    [run] = runs_in_store(uri)
    assert run.info.status == "FAILED"
    assert run.data.tags[FAILURE_TAG].startswith("TrainingDiverged: training diverged: loss became nan")
    # TerminateOnNaN stopped in the first epoch: one (NaN) loss point, no epoch 2, no final metrics.
    losses = MlflowClient(uri).get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [1] and np.isnan(losses[0].value)
    assert "test_mse" not in run.data.metrics
    assert registered_versions(uri) == []


@pytest.mark.slow
@pytest.mark.parametrize("signal_number,exit_code,repeats", [(signal.SIGTERM, 143, 1), (signal.SIGINT, 130, 5)],
                         ids=["SIGTERM", "SIGINT-mashed"])
def test_signal_during_training_kills_the_run(tmp_path, tiny_npz, signal_number, exit_code, repeats):
    """Ctrl-C or SIGTERM mid-training: run KILLED with the reason, exit code says which, nothing
    registered. `repeats` sends the signal again every 20 ms, as an impatient user does, which must
    not interrupt ending the run (the first Ctrl-C is the plain case)."""
    uri = store_uri(tmp_path)
    # Small batches and many epochs: still training long after the first epoch is logged.
    args = ["train", "basic", "--dataset", str(tiny_npz), "--train-samples", "256", "--test-samples", "16",
            "--batch-size", "2", "--code-size", "8", "--epochs", "10000", "--image-every", "0"]
    env = subprocess_env(uri)
    env["PYTHONFAULTHANDLER"] = "1"  # on a hang, SIGABRT below makes it print every thread's stack
    child = subprocess.Popen([sys.executable, "-m", "aetrack", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        wait_for_first_epoch(child, tmp_path / "mlflow.db", "training")
        for _ in range(repeats):
            child.send_signal(signal_number)
            time.sleep(0.02)
        try:
            _, stderr = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGABRT)
            _, stderr = child.communicate(timeout=30)
            raise AssertionError(f"still running 60 s after {signal_number!r}:\n{stderr[-6000:]}") from None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    name = signal.Signals(signal_number).name
    assert child.returncode == exit_code, stderr[-2000:]
    assert [line for line in stderr.splitlines() if line.startswith("aetrack:")] == [f"aetrack: interrupted by {name}"]
    assert "Traceback" not in stderr
    [run] = runs_in_store(uri)
    assert run.info.status == "KILLED"
    assert run.data.tags[FAILURE_TAG] == f"interrupted by {name}"
    logged = MlflowClient(uri).get_metric_history(run.info.run_id, "loss")
    assert 1 <= len(logged) < 10000
    assert registered_versions(uri) == []


def test_a_second_signal_while_the_run_ends_changes_nothing(tracking, tiny_config):
    """Issue 19: `mlflow run` answers Ctrl-C with SIGTERM to aetrack, so a second signal is often
    pending when the first is handled. Both arrive at once here (sent to the training thread while
    it blocks them, unblocked at an epoch's end): the run still ends KILLED with the first one's
    reason, and the SIGTERM neither interrupts the ending nor, its default action, kills the
    process afterwards."""
    import keras

    from aetrack.train import train

    both = {signal.SIGINT, signal.SIGTERM}

    class SignalsTwice(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # To this thread, which blocks them: sent to the process, each would go to whichever
            # other thread (TensorFlow's, MLflow's) runs first, so SIGTERM could be handled first.
            signal.pthread_sigmask(signal.SIG_BLOCK, both)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, both)  # both delivered: SIGINT's handler runs first

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in the CLI: SIGTERM kills by default
    try:
        with pytest.raises(Interrupted) as info:
            train(tiny_config(epochs=3, image_every=0, checkpoint_every=0, register=True), callbacks=[SignalsTwice()])
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # still ignored on the way out
    finally:
        signal.signal(signal.SIGTERM, previous)  # this test process is not stopping
    assert info.value.signal_name == "SIGINT"
    [run] = runs_in_store(tracking)
    assert run.info.status == "KILLED" and run.data.tags[FAILURE_TAG] == "interrupted by SIGINT"
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, "loss")] == [1]
    assert registered_versions(tracking) == []


def _in_process_against(uri: str, monkeypatch, *args: str) -> subprocess.CompletedProcess:
    """`aetrack ARGS` through the CLI's `main` in this process, with `uri` as its tracking store."""
    from tests.helpers.processes import aetrack_in_process
    from tests.helpers.stores import mlflow_pointed_at

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with mlflow_pointed_at(uri):
        return aetrack_in_process(*args)


@pytest.mark.slow
def test_unreachable_tracking_server_fails_in_seconds(tmp_path, tiny_npz, monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    out, seconds, heavy = cli(tmp_path, "train", "basic", *TINY, "--dataset", str(tiny_npz), uri=uri, timeout=120)
    assert error_line(out, 1) == (
        f"aetrack: error: cannot reach the MLflow tracking server at {uri} "
        "(MLFLOW_TRACKING_URI): Connection refused; start it (mlflow server ...) or point "
        "MLFLOW_TRACKING_URI at a reachable store"
    )
    assert seconds < 30 and "tensorflow" not in heavy
    # --debug shows where it came from (the same command through `main`, in this process).
    debug = _in_process_against(uri, monkeypatch, "--debug", "train", "basic", *TINY, "--dataset", str(tiny_npz))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "TrackingStoreError" in debug.stderr


@pytest.mark.slow
def test_unwritable_store_fails_with_a_clear_line(tmp_path, tiny_npz, monkeypatch):
    # Tests run as root, which ignores permission bits; a store path under a regular file is
    # unwritable for everyone, so that is the case checked here.
    (tmp_path / "afile").write_text("x")
    uri = f"sqlite:///{tmp_path / 'afile' / 'mlflow.db'}"
    out, seconds, heavy = cli(tmp_path, "train", "basic", *TINY, "--dataset", str(tiny_npz), uri=uri)
    assert error_line(out, 1) == (
        f"aetrack: error: tracking store {uri}: cannot create {tmp_path / 'afile'} "
        f"because {tmp_path / 'afile'} is not a directory"
    )
    assert "tensorflow" not in heavy
    (tmp_path / "store.db").mkdir()  # the second case through `main`, in this process
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    out = _in_process_against(uri, monkeypatch, "train", "basic", *TINY, "--dataset", str(tiny_npz))
    assert error_line(out, 1).endswith(f"{tmp_path / 'store.db'} is a directory; expected a database file")


# --- the same inputs under `mlflow run`, which passes -P values through unchecked -----------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "entry_point,params,expected",
    [
        # One option and one dataset: the rest of the tables above go through the same checks.
        ("denoise", ["noise_factor=-1"], "aetrack: error: invalid --noise-factor: got '-1'; expected a number >= 0"),
        ("basic", ["dataset={wrong_keys}"], "aetrack: error: invalid dataset '{wrong_keys}': missing arrays x_train"),
    ],
    ids=["negative-noise", "wrong-keys"],
)
def test_mlflow_run_bad_parameter_ends_failed(tmp_path, tiny_npz, bad_files, entry_point, params, expected):
    uri = store_uri(tmp_path)
    values = {"dataset": str(tiny_npz), "epochs": "1", "train_samples": "64", "test_samples": "16", "code_size": "8"}
    values.update(p.format(**bad_files).split("=", 1) for p in params)
    args = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", entry_point, "--env-manager", "local",
            "--experiment-name", "aetrack"]
    for name, value in values.items():
        args += ["-P", f"{name}={value}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=subprocess_env(uri))
    assert out.returncode != 0
    ours = [line for line in out.stderr.splitlines() if line.startswith("aetrack:")]
    assert len(ours) == 1 and expected.format(**bad_files) in ours[0], out.stderr[-3000:]
    assert [r.info.status for r in runs_in_store(uri)] == ["FAILED"]
    assert registered_versions(uri) == []


@pytest.mark.slow
def test_ctrl_c_under_mlflow_run_kills_the_run(tmp_path, tiny_npz):
    """Ctrl-C in a terminal signals the whole foreground process group: `mlflow run` and aetrack."""
    uri = store_uri(tmp_path)
    args = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "basic", "--env-manager", "local",
            "--experiment-name", "aetrack", "-P", f"dataset={tiny_npz}", "-P", "train_samples=256",
            "-P", "test_samples=16", "-P", "batch_size=2", "-P", "code_size=8", "-P", "epochs=10000",
            "-P", "image_every=0"]
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                             env=subprocess_env(uri), start_new_session=True)
    try:
        wait_for_first_epoch(child, tmp_path / "mlflow.db", "mlflow run")
        os.killpg(child.pid, signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode != 0, stderr[-2000:]
    [run] = runs_in_store(uri)
    # aetrack ends the run KILLED, with the reason, before it exits; `mlflow run`, handling its own
    # Ctrl-C, then sets FAILED (seen with MLflow 3.17: KILLED for about a second, then FAILED).
    # `mlflow run` also sends aetrack SIGTERM as it handles Ctrl-C, often while aetrack is ending
    # the run (issue 19): whichever signal aetrack handles first is the reason; the second changes
    # nothing, and neither cuts the ending short.
    assert run.info.status in ("KILLED", "FAILED")
    assert run.data.tags[FAILURE_TAG] in ("interrupted by SIGINT", "interrupted by SIGTERM")
    assert "aetrack: interrupted by SIG" in stderr
    assert registered_versions(uri) == []


@pytest.mark.parametrize("damage", ["truncated", "lambda"])
def test_damaged_logged_model_is_refused(tracking, tiny_config, model_files, damage):
    """A model logged to a run, then truncated in the artifact store, or one that needs code to
    load (a Lambda layer): init_model=runs:/... fails before a run starts, in Keras safe mode."""
    import keras
    import mlflow

    from aetrack.train import train

    source = model_files["lambda" if damage == "lambda" else "good"]
    model = keras.saving.load_model(source, safe_mode=False)  # we made it; the test trusts it
    mlflow.set_experiment("logged")
    with mlflow.start_run() as logging_run:
        # Given requirements: inferring them would start a child process (seconds) for nothing tested here.
        info = mlflow.keras.log_model(model, name="autoencoder", pip_requirements=["keras"])
    value = f"runs:/{logging_run.info.run_id}/autoencoder"
    if damage == "truncated":
        from aetrack.models.loading import load_init_model

        assert load_init_model(value, 8).count_params() == model.count_params()  # loads before the damage
        # Damage the stored copy itself, in the store's local artifact directory.
        stored = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tracking_dir(tracking) / "x")))
        [archive] = list(stored.rglob("*.keras"))
        relative = archive.relative_to(stored)
        [original] = [p for p in tracking_dir(tracking).rglob(str(relative)) if "/x/" not in str(p)]
        original.write_bytes(original.read_bytes()[:1000])
    with pytest.raises(ModelError) as info:
        train(tiny_config(entry_point="denoise", code_size=8, init_model=value, register=True))
    text = str(info.value)
    assert text.startswith(f"invalid init_model {value!r}: cannot load it (") and "\n" not in text
    if damage == "lambda":
        assert "Lambda" in text and "safe_mode" in text
    assert [r.info.run_id for r in runs_in_store(tracking)] == [logging_run.info.run_id]
    assert registered_versions(tracking) == []
