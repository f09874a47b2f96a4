"""Checkpoints and resume: a run stopped early continues from its last checkpoint as the same run,
with the losses of the same run never stopped; bad requests change nothing.

In-process tests stop a run by raising `Interrupted` (what SIGINT becomes) after a chosen epoch;
the slow ones send real SIGKILL/SIGINT to real `aetrack` and `mlflow run` processes. All use real
SQLite stores in temp dirs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack.errors import Interrupted, ResumeError
from aetrack.names import PARTS
from tests.helpers.errors import error_line
from tests.helpers.processes import (REPO, aetrack_in_process, logged_loss_points, run_aetrack, run_concurrently,
                                     subprocess_env, wait_for)
from tests.helpers.stores import session_store

# --- the batch order -----------------------------------------------------------------------------


def test_batch_order_is_a_function_of_seed_and_epoch():
    from aetrack.batches import shuffled_batches

    x = np.arange(40, dtype=np.float32).reshape(40, 1)

    def orders(seed, epochs):
        dataset, order = shuffled_batches(x, x, 16, seed)
        seen = []
        for epoch in epochs:
            order.on_epoch_begin(epoch)
            seen.append([int(v) for batch, _ in dataset for v in batch.numpy()[:, 0]])
        return seen

    a0, a1, a2 = orders(0, [0, 1, 2])
    assert sorted(a0) == sorted(a1) == list(range(40))  # every sample once per epoch
    assert a0 != a1 != a2  # a new order each epoch
    # A pipeline built afresh for a resumed run gives epoch 2 the same order as the uninterrupted one.
    assert orders(0, [2]) == [a2]
    assert orders(1, [0]) != [a0]


# --- checkpoints in the artifact store ----------------------------------------------------------


def _stop_after(monkeypatch, step: int):
    """Make the next training runs raise Interrupted (SIGINT) at the end of epoch `step`, after its
    metrics, images and checkpoint (the Heartbeat callback comes last)."""
    from aetrack.tracking import callbacks

    original = callbacks.Heartbeat.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch + 1 == step:
            raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(callbacks.Heartbeat, "on_epoch_end", on_epoch_end)


def _only_run(client) -> str:
    [run] = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
             if r.info.status != "FINISHED"]
    return run.info.run_id


def _snapshot(client, run_id: str) -> dict:
    """Everything a refused resume must leave as it was."""
    run = client.get_run(run_id)
    artifacts = sorted(a.path for a in client.list_artifacts(run_id, "checkpoints"))
    return {"status": run.info.status, "end_time": run.info.end_time, "tags": dict(run.data.tags),
            "params": dict(run.data.params), "metrics": dict(run.data.metrics), "artifacts": artifacts,
            "loss_steps": [m.step for m in client.get_metric_history(run_id, "loss")],
            "versions": len(client.search_model_versions())}


def test_checkpoint_replaces_the_previous_one(basic_run):
    from aetrack.models import build_dense_autoencoder, compile_autoencoder
    from aetrack.tracking.checkpoints import read_checkpoint, restore

    result = basic_run.result  # 3 epochs, a checkpoint every epoch
    client = MlflowClient()
    assert sorted(a.path for a in client.list_artifacts(result.run_id, "checkpoints")) == [
        "checkpoints/epoch-3", "checkpoints/latest.json"]
    checkpoint = read_checkpoint(client, result.run_id)
    assert checkpoint.epoch == 3 and checkpoint.state["params"]["code_size"] == "16"
    model = compile_autoencoder(build_dense_autoencoder(16), 0.001, "bce")
    restore(model, checkpoint, result.run_id)
    for restored, trained in zip(model.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(restored, trained)
    # Adam's state came back too: its step count is 3 epochs of 8 batches.
    assert int(model.optimizer.iterations.numpy()) == int(result.model.optimizer.iterations.numpy()) == 24
    tags = client.get_run(result.run_id).data.tags
    assert tags["aetrack.pid"] == str(os.getpid()) and tags["aetrack.host"] == socket.gethostname()
    assert "aetrack.heartbeat" in tags


@pytest.mark.slow  # trains in-process for several seconds: make test, not test-fast
def test_a_crash_while_writing_never_breaks_the_last_checkpoint(tracking, tiny_config, tmp_path):
    """Each half-written state a crash can leave: the reader still finds the last whole checkpoint."""
    from aetrack.tracking.checkpoints import read_checkpoint
    from aetrack.train import train

    run_id = train(tiny_config(epochs=2)).run_id
    client = MlflowClient()
    whole = read_checkpoint(client, run_id)
    assert whole.epoch == 2
    junk = tmp_path / "junk"
    junk.mkdir()
    # 1. Crash after the weights of epoch 3, before its state.json: the folder is not whole.
    (junk / "state.npz").write_bytes(b"PK\x03\x04 half a file")
    client.log_artifact(run_id, str(junk / "state.npz"), "checkpoints/epoch-3")
    assert read_checkpoint(client, run_id).epoch == 2
    # 2. state.json written, but state.npz is not what it describes (torn copy).
    (junk / "state.json").write_text(json.dumps({**whole.state, "epoch": 3}))
    client.log_artifact(run_id, str(junk / "state.json"), "checkpoints/epoch-3")
    assert read_checkpoint(client, run_id).epoch == 2
    # 3. The pointer itself half-written, then pointing at the broken folder.
    (junk / "latest.json").write_text('{"epoch": 3, "fol')
    client.log_artifact(run_id, str(junk / "latest.json"), "checkpoints")
    assert read_checkpoint(client, run_id).epoch == 2
    (junk / "latest.json").write_text(json.dumps({"epoch": 3, "folder": "checkpoints/epoch-3"}))
    client.log_artifact(run_id, str(junk / "latest.json"), "checkpoints")
    checkpoint = read_checkpoint(client, run_id)
    assert checkpoint.epoch == 2 and checkpoint.folder == "checkpoints/epoch-2"


# --- resume in-process ----------------------------------------------------------------------------


def _killed_run(client, config, monkeypatch, after: int = 2) -> str:
    """The run of `config`, KILLED by SIGINT at the end of epoch `after` (checkpointed if due); its id."""
    from aetrack.train import train

    with monkeypatch.context() as patch:
        _stop_after(patch, after)
        with pytest.raises(Interrupted):
            train(config)
    return _only_run(client)


@pytest.mark.slow  # two trainings in-process: the longest of the quick tests
def test_resumed_run_matches_the_run_never_stopped(tracking, tiny_config, monkeypatch):
    """Stopped after epoch 3 with checkpoints every 2 epochs: resumed from epoch 2, epoch 3 is
    trained again but not logged again, and every loss equals the uninterrupted run's."""
    from aetrack.resume import resume
    from aetrack.train import train

    config = tiny_config(epochs=5, checkpoint_every=2, register=True, model_prefix="resume-test")
    uninterrupted = train(config)
    client = MlflowClient()
    run_id = _killed_run(client, config, monkeypatch, after=3)
    assert client.get_run(run_id).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3]
    versions_before = len(client.search_model_versions())

    result = resume(run_id)
    assert result.run_id == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["aetrack.resumed_from_epoch"] == "2"
    assert "aetrack.failure" not in run.data.tags
    for key in ("loss", "val_loss", "epoch_seconds"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2, 3, 4, 5], key
    logged = [m.value for m in sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)]
    assert logged == uninterrupted.history["loss"] == result.history["loss"]  # exact, on CPU
    assert run.data.metrics["test_bce"] == uninterrupted.metrics["test_bce"]
    images = [a.path for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    for step in range(1, 6):
        assert sum(f"reconstruction+step+{step}+" in p for p in images) == 1, (step, images)
    # Registered once, by the resumed run.
    new = [v for v in client.search_model_versions() if v.run_id == run_id]
    assert len(client.search_model_versions()) == versions_before + len(PARTS) and len(new) == len(PARTS)


@pytest.mark.slow  # two trainings in-process: the longest of the quick tests
def test_a_mirrored_run_resumes_mirrored(tracking, tiny_config, monkeypatch):
    """Resume builds and restores the model under the run's own strategy. (In this process TensorFlow
    has one CPU device, so MirroredStrategy has one replica; test_devices.py splits the CPU in a child.)"""
    import tensorflow as tf

    from aetrack.resume import resume

    client = MlflowClient()
    run_id = _killed_run(client, tiny_config(epochs=2, strategy="mirrored", image_every=0), monkeypatch, after=1)
    result = resume(run_id)
    assert isinstance(result.model.distribute_strategy, tf.distribute.MirroredStrategy)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["steps_per_execution"] == "1"
    assert run.data.tags["aetrack.devices"].endswith("device:CPU:0")
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2]


def _assert_refused(client, run_id: str, expected: str) -> None:
    from aetrack.resume import resume

    before = _snapshot(client, run_id)
    with pytest.raises(ResumeError) as info:
        resume(run_id)
    message = str(info.value)
    assert message.startswith(f"cannot resume run {run_id}: ") and expected in message, message
    assert "\n" not in message and info.value.exit_code == 2
    assert _snapshot(client, run_id) == before


def test_finished_run_is_refused(one_epoch_run):
    run_id = one_epoch_run.result.run_id
    _assert_refused(MlflowClient(), run_id, "it is FINISHED; only KILLED, FAILED or stale RUNNING runs")


@pytest.mark.slow  # trains in-process for several seconds: make test, not test-fast
def test_run_without_checkpoint_is_refused(tracking, tiny_config, monkeypatch):
    client = MlflowClient()
    run_id = _killed_run(client, tiny_config(epochs=3, checkpoint_every=0), monkeypatch)
    _assert_refused(client, run_id, "it has no checkpoint (checkpoint_every=0")


@pytest.mark.slow  # trains in-process for several seconds: make test, not test-fast
def test_checkpoint_of_other_params_is_refused(tracking, tiny_config, monkeypatch):
    from aetrack.models import build_dense_autoencoder, compile_autoencoder
    from aetrack.tracking.checkpoints import write_checkpoint
    from aetrack.tracking.run import param_texts

    client = MlflowClient()
    run_id = _killed_run(client, tiny_config(epochs=3), monkeypatch)
    # A checkpoint that claims other params.
    model = compile_autoencoder(build_dense_autoencoder(16), 0.001, "bce")
    model.optimizer.build(model.trainable_variables)
    # Params as train() logs them: the empty loss resolved for the data (bce for digits).
    params = param_texts(tiny_config(epochs=3, learning_rate=0.01).validated().for_data(bounded=True).params())
    write_checkpoint(client, run_id, model, 2, params)
    _assert_refused(client, run_id, "was written for learning_rate='0.01' but the run has learning_rate='0.001'")
    # The right params, but weights of another architecture.
    small = compile_autoencoder(build_dense_autoencoder(8), 0.001, "bce")
    small.optimizer.build(small.trainable_variables)
    write_checkpoint(client, run_id, small, 2,
                     param_texts(tiny_config(epochs=3).validated().for_data(bounded=True).params()))
    _assert_refused(client, run_id, "holds weights of shapes [(784, 8), (8,), (8, 784), (784,)]")
    # A checkpoint from before the data and anomaly params existed was written with their defaults.
    from aetrack.config import PARAMS_ADDED_LATER
    from aetrack.resume import resume

    older = {k: v for k, v in param_texts(tiny_config(epochs=3).validated().for_data(bounded=True).params()).items()
             if k not in PARAMS_ADDED_LATER}
    write_checkpoint(client, run_id, model, 2, older)
    assert resume(run_id).run_id == run_id and client.get_run(run_id).info.status == "FINISHED"


def test_unknown_run_is_refused(tracking):
    from aetrack.resume import resume

    with pytest.raises(ResumeError, match="no such run"):
        resume("0123456789abcdef0123456789abcdef")


def test_live_claim_blocks_a_second_resume(tracking, tiny_config, monkeypatch):
    """The claim: a live holder (this process) blocks; the same number cannot be claimed twice."""
    from aetrack.tracking.liveness import claim

    client = MlflowClient()
    run_id = _killed_run(client, tiny_config(epochs=3), monkeypatch)
    assert claim(client, run_id) == "aetrack.resume.1"
    with pytest.raises(ResumeError, match="it is being resumed by process"):
        claim(client, run_id)
    # A racer that read no claims tries the same key with another value: the store refuses it.
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        client.log_param(run_id, "aetrack.resume.1", "otherhost 1 2026-01-01T00:00:00+00:00")


# --- stale runs -----------------------------------------------------------------------------------


def test_stale_runs_are_listed_and_marked_failed(tracking):
    from aetrack.runs import list_runs
    from aetrack.tracking.liveness import HEARTBEAT_TAG, HOST_TAG, PID_TAG

    client = MlflowClient()
    experiment_id = client.create_experiment("aetrack")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # Not reaped yet: a zombie keeps its pid (a killed run's process whose parent died too, where
    # nothing reaps orphans) and answers signal 0, but trains nothing.
    zombie = subprocess.Popen(["true"])
    wait_for(lambda: _proc_state(zombie.pid) == "Z", 30, "the child to exit unreaped", poll=0.05)
    cases = {
        "dead-pid-here": {HOST_TAG: socket.gethostname(), PID_TAG: str(dead.pid), HEARTBEAT_TAG: _ago(5)},
        "zombie-here": {HOST_TAG: socket.gethostname(), PID_TAG: str(zombie.pid), HEARTBEAT_TAG: _ago(5)},
        "old-heartbeat-elsewhere": {HOST_TAG: "elsewhere", PID_TAG: "1", HEARTBEAT_TAG: _ago(3600)},
        "fresh-heartbeat-elsewhere": {HOST_TAG: "elsewhere", PID_TAG: "1", HEARTBEAT_TAG: _ago(5)},
    }
    ids = {}
    for name, tags in cases.items():
        ids[name] = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    table = list_runs("aetrack", True, 600.0, False)
    zombie.wait()
    assert ids["dead-pid-here"] in table and ids["old-heartbeat-elsewhere"] in table
    assert ids["zombie-here"] in table
    assert ids["fresh-heartbeat-elsewhere"] not in table
    assert ids["fresh-heartbeat-elsewhere"] in list_runs("aetrack", True, 1.0, False)  # a shorter timeout
    list_runs("aetrack", True, 600.0, True)
    statuses = {name: client.get_run(i).info.status for name, i in ids.items()}
    assert statuses == {"dead-pid-here": "FAILED", "zombie-here": "FAILED", "old-heartbeat-elsewhere": "FAILED",
                        "fresh-heartbeat-elsewhere": "RUNNING"}
    assert client.get_run(ids["dead-pid-here"]).data.tags["aetrack.failure"].startswith("stale: ")
    assert "(no stale runs)" in list_runs("aetrack", True, 600.0, False)


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _ago(seconds: float) -> str:
    from datetime import datetime, timedelta, timezone

    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat(timespec="seconds")


# --- real processes, real signals -----------------------------------------------------------------

FIVE_EPOCHS = {"train_samples": "256", "test_samples": "16", "batch_size": "2", "code_size": "8", "epochs": "5",
               "image_samples": "4", "steps_per_execution": "1", "register": "true", "model_prefix": "killed"}


def _wait_for_epochs(child: subprocess.Popen, db: Path, count: int) -> None:
    def logged():
        if child.poll() is not None:
            raise AssertionError(f"training ended early: {child.stderr.read()[-2000:]}")
        return logged_loss_points(db) >= count

    wait_for(logged, 240, f"{count} epochs to be logged", poll=0.05)


@pytest.fixture(scope="module")
def uninterrupted_losses(tiny_npz, tmp_path_factory) -> list[float]:
    """The FIVE_EPOCHS config never stopped, trained once here (same machine, same TensorFlow) in
    its own store: the losses every resumed run must reproduce."""
    from aetrack.config import TrainConfig, parse_value
    from aetrack.train import train

    values = {k: parse_value(k, v) for k, v in FIVE_EPOCHS.items()}
    with session_store(tmp_path_factory.mktemp("uninterrupted")):
        return train(TrainConfig(**{**values, "register": False}, dataset=str(tiny_npz))).history["loss"]


def _check_resumed(uri: str, run_id: str, uninterrupted: list[float], steps_at_kill: list[int]) -> None:
    """The run finished as itself: steps 1..5 once each, the uninterrupted run's losses, its own
    registered versions only."""
    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    checkpoint_epoch = int(run.data.tags["aetrack.resumed_from_epoch"])
    assert 1 <= checkpoint_epoch <= max(steps_at_kill) < 5
    losses = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in losses] == [1, 2, 3, 4, 5]
    for key in ("val_loss", "epoch_seconds"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == [1, 2, 3, 4, 5]
    versions = client.search_model_versions()
    assert len(versions) == len(PARTS) and {v.run_id for v in versions} == {run_id}
    np.testing.assert_allclose([m.value for m in losses], uninterrupted, rtol=1e-6, atol=0)
    print("max |resumed - uninterrupted| loss:", max(abs(m.value - u) for m, u in zip(losses, uninterrupted)))


@pytest.mark.slow
def test_mlflow_run_resume_run_id(tmp_path, tiny_npz, uninterrupted_losses, monkeypatch):
    """SIGKILL to `mlflow run` and its aetrack child: killed outright, the hardest case, the run is
    left RUNNING and `aetrack runs --stale` lists it; `mlflow run -P resume_run_id=...` finishes it
    (the resume code `aetrack resume` runs too; that command's own process tests: the two resumes
    at once, and its bad input). The second `mlflow run` makes its own run, tagged with the run it
    resumed. (An interrupted, KILLED run is resumed in-process by the _killed_run tests, and
    SIGINT's handling is test_reliability's.)"""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    base = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "basic", "--env-manager", "local",
            "--experiment-name", "aetrack"]
    params = []
    for name, value in {**FIVE_EPOCHS, "dataset": str(tiny_npz)}.items():
        params += ["-P", f"{name}={value}"]
    child = subprocess.Popen(base + params, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, env=subprocess_env(uri), start_new_session=True)
    try:
        _wait_for_epochs(child, tmp_path / "mlflow.db", 2)
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    client = MlflowClient(uri, registry_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("aetrack").experiment_id])
    run_id = run.info.run_id
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert run.info.status == "RUNNING" and steps and max(steps) < 5, (run.info.status, steps)
    assert client.search_model_versions() == []
    # SIGKILL is sent, not yet done: a process holding a trained model takes a moment to exit.
    trainer = run.data.tags["aetrack.pid"]
    wait_for(lambda: _proc_state(trainer) in (None, "Z"), 60, "the killed trainer to exit", poll=0.1)
    stale = run_aetrack("runs", "--stale", uri=uri, cwd=tmp_path)  # left RUNNING by a dead process
    assert stale.returncode == 0 and run_id in stale.stdout, stale.stderr[-2000:]

    out = subprocess.run(base + ["-P", f"resume_run_id={run_id}"], capture_output=True, text=True, timeout=400,
                         cwd=tmp_path, env=subprocess_env(uri))
    assert out.returncode == 0, out.stderr[-3000:]
    _check_resumed(uri, run_id, uninterrupted_losses, steps)
    [outer] = [r for r in client.search_runs([run.info.experiment_id]) if r.info.run_id != run_id]
    assert outer.data.tags["aetrack.resumes"] == run_id and outer.info.status == "FINISHED"
    assert client.get_run(run_id).data.tags["aetrack.resumed_by"] == outer.info.run_id
    assert client.get_metric_history(outer.info.run_id, "loss") == []


@pytest.mark.slow
def test_two_resumes_at_once_one_wins(tracking, tiny_config, monkeypatch):
    client = MlflowClient()
    run_id = _killed_run(client, tiny_config(epochs=4, register=True, model_prefix="race"), monkeypatch)
    resume_command = [sys.executable, "-m", "aetrack", "resume", run_id]
    results = [(child.returncode, child.stderr)
               for child in run_concurrently([resume_command, resume_command], subprocess_env(tracking))]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    [(_, loser)] = [r for r in results if r[0] == 2]
    line = error_line(subprocess.CompletedProcess([], 2, "", loser), 2)
    assert line.startswith(f"aetrack: error: cannot resume run {run_id}: "), line
    # Which check stops the loser depends on how far the winner got: its claim, the reopened
    # RUNNING run with a live process, or the finished run.
    assert any(reason in line for reason in ("it is being resumed by process", "another process is resuming it",
                                             "it is RUNNING and its process is alive", "it is FINISHED")), line
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4]
    assert len([v for v in client.search_model_versions() if v.run_id == run_id]) == len(PARTS)
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_resume_command_bad_input_is_one_line(tmp_path, tracking, tiny_config):
    from aetrack.train import train

    finished = train(tiny_config(epochs=1, image_every=0)).run_id
    cases = [
        (["resume", finished], f"aetrack: error: cannot resume run {finished}: it is FINISHED; only KILLED, "
                               "FAILED or stale RUNNING runs can be resumed"),
        (["resume", "0123456789abcdef0123456789abcdef"],
         "aetrack: error: cannot resume run 0123456789abcdef0123456789abcdef: no such run in "),
        (["resume", "not-a-run"], "aetrack: error: invalid RUN_ID 'not-a-run': expected an MLflow run id"),
    ]
    for number, (args, expected) in enumerate(cases):
        # The real command in a child process once; the CLI's `main` in this process for the rest.
        out = run_aetrack(*args, uri=tracking, cwd=tmp_path) if number == 0 else aetrack_in_process(*args, cwd=tmp_path)
        assert error_line(out, 2).startswith(expected), out.stderr[-2000:]
    assert MlflowClient().get_run(finished).info.status == "FINISHED"
