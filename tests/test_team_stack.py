"""aetrack against the shipped team stack (deploy/stack.py): a real `mlflow server` on PostgreSQL
with proxied artifacts in a SeaweedFS S3 bucket, started once per session on 127.0.0.1.

Clients get only MLFLOW_TRACKING_URI. Every test reads back what landed: through the server's REST
API (MlflowClient over HTTP), in the bucket (boto3) and in PostgreSQL's tables (psycopg2).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from aetrack.names import ENTRY_POINT_TAG, PARTS
from deploy import stack as stack_script
from tests.helpers.data import write_npz
from tests.helpers.processes import REPO, pid_alive, run_aetrack, run_concurrently, subprocess_env
from tests.helpers.stores import mlflow_pointed_at
from tests.helpers.team_stack import (
    bucket_keys,
    local_mlflow_files,
    query,
    run_keys,
    running_stack,
)

# Under pytest-xdist (make test) every test of this file runs in one worker, so one stack serves
# them: tests/conftest.py's ONE_WORKER_FILES.
EPOCHS = 2
# Small and quick: a couple of seconds of fit per run on 2 busy cores.
TINY = ["-P", f"epochs={EPOCHS}", "-P", "batch_size=32", "-P", "code_size=8", "-P", "train_samples=256",
        "-P", "test_samples=32", "-P", "image_samples=4"]
CLI_TINY = ["--epochs", str(EPOCHS), "--batch-size", "32", "--code-size", "8", "--train-samples", "256",
            "--test-samples", "32", "--image-samples", "4"]


@pytest.fixture(scope="session")
def team_stack():
    """PostgreSQL + SeaweedFS + mlflow server, started by deploy/stack.py's own start_stack and
    always stopped by process id (stop_stack in a finally), even when a test fails."""
    with running_stack() as stack:
        yield stack


@pytest.fixture(scope="module")
def stack_data(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("stack-data") / "tiny.npz")


def client_for(stack):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)


def mlflow_run(stack, cwd: Path, entry_point: str, *params: str, experiment: str = "aetrack") -> str:
    """`mlflow run . -e <entry point>` with only MLFLOW_TRACKING_URI pointing at the stack; its run id."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(REPO), "-e", entry_point, "--env-manager", "local",
         "--experiment-name", experiment, *params],
        capture_output=True, text=True, timeout=400, env=subprocess_env(stack.tracking_uri), cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    match = re.search(r"=== Run \(ID '([0-9a-f]{32})'\) succeeded ===", out.stderr)
    assert match, out.stderr[-3000:]
    return match.group(1)


@pytest.fixture(scope="module")
def project_runs(team_stack, stack_data, tmp_path_factory):
    """A `basic` run, then a `denoise` run continuing from the basic model's @candidate, both with
    `mlflow run` and the default model names (aetrack-basic-*, aetrack-denoise-*)."""
    cwd = tmp_path_factory.mktemp("client")
    basic = mlflow_run(team_stack, cwd, "basic", *TINY, "-P", f"dataset={stack_data}")
    denoise = mlflow_run(team_stack, cwd, "denoise", *TINY, "-P", f"dataset={stack_data}", "-P", "noise_factor=0.3",
                         "-P", "init_model=models:/aetrack-basic-autoencoder@candidate")
    return {"basic": basic, "denoise": denoise, "cwd": cwd}


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ["basic", "denoise"])
def test_mlflow_run_lands_in_server_bucket_and_postgres(team_stack, project_runs, entry_point):
    client = client_for(team_stack)
    run_id = project_runs[entry_point]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the client never sees S3
    assert run.data.params["epochs"] == str(EPOCHS) and run.data.params["code_size"] == "8"
    assert run.data.tags[ENTRY_POINT_TAG] == entry_point
    if entry_point == "denoise":
        assert run.data.params["init_model"] == "models:/aetrack-basic-autoencoder@candidate"
        assert run.data.params["noise_factor"] == "0.3"
    for key in ("loss", "val_loss", "epoch_seconds"):
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), key
        assert all(np.isfinite(m.value) for m in history)
    assert 0 < run.data.metrics["test_bce"] < 1

    # Step images and figures: listed by the server, stored as objects in the bucket.
    keys = run_keys(team_stack, run.info.experiment_id, run_id)
    for key in ("reconstruction", "latent_codes"):
        steps = sorted(int(m.group(1)) for k in keys if (m := re.match(rf"images/{key}\+step\+(\d+)\+.*\.png$", k)))
        assert steps == list(range(0, EPOCHS + 1)), keys  # step 0: the untrained model
    assert "figures/loss_curves.png" in keys
    # The resume checkpoint goes to the bucket too, so a run on the server can be resumed anywhere.
    assert {"checkpoints/latest.json", f"checkpoints/epoch-{EPOCHS}/state.npz"} <= set(keys), keys
    listed = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert "figures/loss_curves.png" in listed
    png = team_stack.s3_client().get_object(
        Bucket=team_stack.bucket,
        Key=f"artifacts/{run.info.experiment_id}/{run_id}/artifacts/figures/loss_curves.png")["Body"].read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # The three models: logged-model files in the bucket, registered versions tagged with this run.
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert sorted(m.name for m in models) == sorted(PARTS)
    for model in models:
        model_keys = bucket_keys(team_stack, f"artifacts/{run.info.experiment_id}/models/{model.model_id}/")
        assert any(k.endswith("/MLmodel") for k in model_keys), model_keys
        assert any(k.endswith(".keras") for k in model_keys), model_keys
    versions = client.search_model_versions(f"name = 'aetrack-{entry_point}-autoencoder'")
    assert run_id in {v.run_id for v in versions}

    # Rows in PostgreSQL, and nothing on the client's disk.
    [(status,)] = query(team_stack, "SELECT status FROM runs WHERE run_uuid = %s", run_id)
    assert status == "FINISHED"
    steps = query(team_stack, "SELECT step FROM metrics WHERE run_uuid = %s AND key = 'loss' ORDER BY step", run_id)
    assert [s for (s,) in steps] == list(range(1, EPOCHS + 1))
    assert query(team_stack, "SELECT value FROM params WHERE run_uuid = %s AND key = 'epochs'", run_id) == [(str(EPOCHS),)]
    assert query(team_stack, "SELECT count(*) FROM model_versions WHERE run_id = %s", run_id) == [(len(PARTS),)]
    assert local_mlflow_files(project_runs["cwd"]) == []


FRESH_LOADER = r"""
import sys, numpy as np, aetrack
x = np.load(sys.argv[1])
out = {ref: np.asarray(aetrack.load_model(f"models:/aetrack-basic-autoencoder@{ref}")(x, training=False))
       for ref in ("candidate", "champion")}
np.savez(sys.argv[2], **out)
"""


@pytest.mark.slow
def test_registry_aliases_promote_and_fresh_process_load(team_stack, project_runs, stack_data, tmp_path, monkeypatch):

    from aetrack.config import TrainConfig
    from aetrack.data import load_dataset
    from aetrack.train import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_stack.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", team_stack.tracking_uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    with mlflow_pointed_at(team_stack.tracking_uri):
        # This process trains the next version of aetrack-basic-*, after the `mlflow run` one.
        result = train(TrainConfig(epochs=3, batch_size=32, code_size=8, train_samples=256, test_samples=32,
                                   dataset=str(stack_data), image_samples=4, register=True))
    client = client_for(team_stack)
    name = "aetrack-basic-autoencoder"
    versions = {v.run_id: v.version for v in client.search_model_versions(f"name = '{name}'")}
    ours = versions[result.run_id]
    assert result.registered_versions[name] == ours
    assert int(ours) > int(versions[project_runs["basic"]])  # distinct, later version
    assert client.get_model_version_by_alias(name, "candidate").version == ours

    promoted = run_aetrack("promote", name, "--version", versions[project_runs["basic"]], uri=team_stack.tracking_uri,
                           cwd=tmp_path, timeout=120)
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    assert client.get_model_version_by_alias(name, "champion").version == versions[project_runs["basic"]]
    # --if-better moves champion to the candidate only if its test_bce is lower (3 epochs vs 2 here).
    better = run_aetrack("promote", name, "--if-better", uri=team_stack.tracking_uri, cwd=tmp_path, timeout=120)
    assert better.returncode == 0, better.stderr[-2000:]
    champion = client.get_model_version_by_alias(name, "champion").version
    basic_bce = client.get_run(project_runs["basic"]).data.metrics["test_bce"]
    assert champion == (ours if result.metrics["test_bce"] < basic_bce else versions[project_runs["basic"]])
    client.set_registered_model_alias(name, "champion", ours)  # so a fresh process must find this model twice

    x = load_dataset(str(stack_data), 256, 32).x_test[:6]
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run([sys.executable, "-c", FRESH_LOADER, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, timeout=300, env=subprocess_env(team_stack.tracking_uri),
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = np.load(tmp_path / "out.npz")
    expected = result.model(x, training=False).numpy()
    for ref in ("candidate", "champion"):
        np.testing.assert_allclose(loaded[ref], expected, atol=1e-6, err_msg=ref)
    assert local_mlflow_files(tmp_path) == []


@pytest.mark.slow
def test_compare_against_the_server(team_stack, project_runs, tmp_path):
    out = run_aetrack("compare", "--output", tmp_path / "cmp", uri=team_stack.tracking_uri, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    client = client_for(team_stack)
    names = {client.get_run(project_runs[e]).info.run_name for e in ("basic", "denoise")}
    table_names = {cells[1] if cells[0] == "*" else cells[0]
                   for cells in (line.split() for line in out.stdout.splitlines()) if cells}
    assert names <= table_names, out.stdout
    assert (tmp_path / "cmp" / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_four_concurrent_runs_all_finish_with_distinct_versions(team_stack, stack_data, tmp_path):
    prefix = "aetrack-concurrent"
    commands = [[sys.executable, "-m", "aetrack", "train", "basic", *CLI_TINY, "--dataset", str(stack_data),
                 "--seed", str(seed), "--experiment-name", "concurrent", "--model-prefix", prefix] for seed in range(4)]
    children = run_concurrently(commands, subprocess_env(team_stack.tracking_uri), tmp_path)
    for child in children:
        assert child.returncode == 0, child.stderr[-2000:]
    # Each child prints where its run is (".../experiments/<id>/runs/<run id>").
    printed = [re.search(r"/experiments/(\d+)/runs/([0-9a-f]{32})", child.stdout) for child in children]
    assert all(printed), [child.stdout[-500:] for child in children]
    client = client_for(team_stack)
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id])
    # A run missing here once started in the Default experiment (the experiment-creation race that
    # tracked_run guards against): say where a missing one is.
    missing = {m.group(2) for m in printed} - {r.info.run_id for r in runs}
    where = [(run_id, client.get_run(run_id).info.experiment_id, client.get_run(run_id).info.status,
              client.get_run(run_id).info.lifecycle_stage) for run_id in sorted(missing)]
    assert not missing, f"experiment {experiment.experiment_id} lacks printed runs (id, experiment, status, stage): {where}"
    assert len(printed) == len({m.group(2) for m in printed}) == 4
    assert {m.group(1) for m in printed} == {experiment.experiment_id}
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(1, EPOCHS + 1))
    run_ids = {r.info.run_id for r in runs}
    for part in PARTS:
        versions = client.search_model_versions(f"name = '{prefix}-{part}'")
        assert sorted(int(v.version) for v in versions) == [1, 2, 3, 4], part
        assert {v.run_id for v in versions} == run_ids, part


# How long the MLflow client keeps retrying a request the server refuses: 7 retries with backoff
# factor 2 (MLflow's defaults), at about 0, 4, 12, 28, 60, 124 and 244 s after the first failure.
# An outage inside that window is ridden out, which is what the README promises: the run ends
# FINISHED. The server here is down for a few seconds plus its start-up, well inside it.
RETRY_WINDOW_S = 244.0
RESTART_DELAY_S = 3.0


@pytest.mark.slow
def test_server_restart_during_training(team_stack, tmp_path, capsys):
    """Stop `mlflow server` after the first epoch, start it again on the same port a few seconds
    later. The promise (README, "Measured against the real stack"): the run ends FINISHED with
    every epoch's metrics and images and its registered version. Training goes on; the run's
    background logging thread waits in MLflow's HTTP retries until the server answers, and the end
    of training waits for that thread."""
    data = write_npz(tmp_path / "slower.npz", n_train=3000, n_test=64)  # epochs of a few seconds
    epochs = 4
    child = subprocess.Popen(
        [sys.executable, "-m", "aetrack", "train", "basic", "--epochs", str(epochs), "--batch-size", "32",
         "--code-size", "8", "--train-samples", "3000", "--test-samples", "32", "--image-samples", "4",
         "--steps-per-execution", "1", "--dataset", str(data), "--experiment-name", "restart",
         "--model-prefix", "aetrack-restart"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(team_stack.tracking_uri),
        cwd=tmp_path)
    client = client_for(team_stack)
    try:
        run_id = _wait_for_first_epoch(client, child)
        stopped = time.monotonic()
        stack_script.stop_process(team_stack.processes["mlflow"])
        assert not pid_alive(team_stack.processes["mlflow"].pid)
        # While it is down, a new run fails fast with aetrack's one-line preflight error.
        down = run_aetrack("train", "basic", *CLI_TINY, "--dataset", data, uri=team_stack.tracking_uri,
                           cwd=tmp_path, timeout=120)
        assert down.returncode == 1
        assert [line for line in down.stderr.splitlines() if line.startswith("aetrack:")] == [
            f"aetrack: error: cannot reach the MLflow tracking server at {team_stack.tracking_uri} "
            "(MLFLOW_TRACKING_URI): Connection refused; start it (mlflow server ...) or point MLFLOW_TRACKING_URI "
            "at a reachable store"]
        fail_fast_s = time.monotonic() - stopped
        time.sleep(max(0.0, RESTART_DELAY_S - fail_fast_s))
        stack_script.start_mlflow_server(team_stack)
        stack_script.wait_for_mlflow(team_stack)
        outage_s = time.monotonic() - stopped
        # The run was still training when the server came back (else this test proves nothing).
        assert len(client.get_metric_history(run_id, "loss")) < epochs
        resumed_s = _wait_for_step(client, child, run_id, 2) - stopped
        _, stderr = child.communicate(timeout=400)
        finished_s = time.monotonic() - stopped
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if team_stack.processes["mlflow"].poll() is not None:  # leave a running server for later tests
            stack_script.start_mlflow_server(team_stack)
            stack_script.wait_for_mlflow(team_stack)
    run = client.get_run(run_id)
    with capsys.disabled():
        print(f"\nrestart: preflight failed fast in {fail_fast_s:.1f}s; server down {outage_s:.1f}s "
              f"(stop -> /health again); epoch 2 reached the server {resumed_s:.1f}s after the stop; "
              f"epoch_seconds {[round(m.value, 1) for m in client.get_metric_history(run_id, 'epoch_seconds')]}; run ended {run.info.status} {finished_s:.1f}s after the stop, "
              f"exit {child.returncode}")
    assert outage_s < RETRY_WINDOW_S, "the server was down longer than MLflow's client retries"
    assert child.returncode == 0, stderr[-2000:]
    assert [line for line in stderr.splitlines() if line.startswith("aetrack:")] == []
    assert run.info.status == "FINISHED"
    for key in ("loss", "val_loss"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == list(range(1, epochs + 1))
    keys = run_keys(team_stack, run.info.experiment_id, run_id)
    steps = sorted(int(m.group(1)) for k in keys if (m := re.match(r"images/reconstruction\+step\+(\d+)\+.*\.png$", k)))
    assert steps == list(range(0, epochs + 1))  # step 0: the untrained model
    [version] = client.search_model_versions("name = 'aetrack-restart-autoencoder'")
    assert version.run_id == run_id


def _wait_for_step(client, child, run_id: str, step: int, timeout: float = 400) -> float:
    """The monotonic time at which the run's `loss` at `step` is readable on the server."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(m.step >= step for m in client.get_metric_history(run_id, "loss")):
            return time.monotonic()
        assert child.poll() is None or child.returncode == 0, child.communicate()[1][-2000:]
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout}s")


def _wait_for_first_epoch(client, child, timeout: float = 240) -> str:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert child.poll() is None, child.communicate()[1][-2000:]
        experiment = client.get_experiment_by_name("restart")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
            return runs[0].info.run_id
        time.sleep(0.2)
    raise AssertionError(f"no first epoch within {timeout}s")


@pytest.mark.slow
def test_stack_script_stops_every_process_on_sigterm(tmp_path_factory):
    """`python deploy/stack.py --data-dir DIR` as a user starts it: writes the URI, and SIGTERM
    stops PostgreSQL, SeaweedFS and mlflow server (none of their pids is left)."""
    import signal
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="aetrack-stack-cli-"))
    folder.chmod(0o711)
    script = subprocess.Popen([sys.executable, str(REPO / "deploy" / "stack.py"), "--data-dir", str(folder / "s")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env(), start_new_session=True)
    try:
        uri_file = folder / "s" / "tracking_uri"
        started = time.monotonic()
        while not uri_file.exists():
            assert script.poll() is None, script.communicate()[1][-2000:]
            assert time.monotonic() - started < 180, "stack not up in 180 s"
            time.sleep(0.5)
        uri = uri_file.read_text().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", uri)
        import urllib.request

        with urllib.request.urlopen(f"{uri}/health", timeout=10) as response:
            assert response.status == 200
        postgres_pid = int((folder / "s" / "postgres" / "postmaster.pid").read_text().split()[0])
        children = _descendants(script.pid)
        assert postgres_pid in children and len(children) >= 3
        script.send_signal(signal.SIGTERM)
        out, err = script.communicate(timeout=120)
        assert script.returncode == 0, err[-2000:]
        assert f"export MLFLOW_TRACKING_URI={uri}" in out and "stack stopped" in out
        assert [pid for pid in children if pid_alive(pid)] == []
        assert not uri_file.exists()  # the URI file marks a running stack
        assert not (folder / "s" / "optuna_storage").exists()  # and so does the Optuna URL, with its password
    finally:
        if script.poll() is None:
            import os

            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    """Process ids below `pid` (from /proc), children first."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            kids = [int(p) for p in task.read_text().split()]
            found += kids
            frontier += kids
    return found


def test_docker_compose_runs_the_tested_server_flags():
    """deploy/docker-compose.yml is not run here (no Docker engine); its `mlflow server` command
    must be the tested stack's: the same flags, a PostgreSQL backend and an s3:// destination."""
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    command = services["mlflow"]["command"]
    command = command.split() if isinstance(command, str) else list(command)
    tested = stack_script.mlflow_server_args("BACKEND", "DESTINATION", "HOST", 0)
    assert command[0] == "mlflow" and command[1:2] == tested[:1]
    flags = lambda args: [a for a in args if a.startswith("--")]  # noqa: E731
    assert flags(command) == flags(tested)
    value = lambda args, flag: args[args.index(flag) + 1]  # noqa: E731
    assert value(command, "--backend-store-uri").startswith("postgresql+psycopg2://")
    assert value(command, "--artifacts-destination").startswith("s3://")
    assert value(command, "--host") == "0.0.0.0" and value(command, "--workers") == value(tested, "--workers")
    environment = services["mlflow"]["environment"]
    for key, expected in stack_script.Stack(
            data_dir=Path("."), tracking_uri="", backend_store_uri="", s3_endpoint="", bucket="", access_key="",
            secret_key="", mlflow_port=0).server_env().items():
        assert key in environment, key
        if key == "MLFLOW_SERVER_ENABLE_JOB_EXECUTION":
            assert str(environment[key]).lower() == expected
    assert {"postgres", "s3"} <= set(services)


def test_team_stack_benchmark_starts():
    """benchmarks/team_stack.py imports and parses its options. (A tiny full run starts its own stack
    and four trainings, about 4 minutes on 2 cores: too long for the suite; RESULTS.md has its figures.)"""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "team_stack.py"), "--help"],
                         capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--reps" in out.stdout and "Team stack cost" in out.stdout


SWEEP_TRIALS = 3


@pytest.mark.slow
def test_two_sweep_workers_share_one_study_on_the_stacks_postgres(team_stack, stack_data, tmp_path):
    """Two `aetrack sweep` workers with --storage on the stack's Optuna database and only
    MLFLOW_TRACKING_URI for MLflow: one parent, every trial once, the best registered once, the
    trials' files in the bucket, the study's rows in PostgreSQL and nothing on the workers' disk."""
    import optuna

    from aetrack.names import RUN_ID_ATTR, SKIPPED_ATTR
    from tests.helpers.team_stack import optuna_query

    storage_file = team_stack.data_dir / "optuna_storage"
    assert storage_file.read_text().strip() == team_stack.optuna_storage
    assert storage_file.stat().st_mode & 0o777 == 0o600  # it holds the database password
    study_name = f"stack-sweep-{tmp_path.name}"
    prefix = "aetrack-stacksweep"
    command = [sys.executable, "-m", "aetrack", "sweep", "basic", "--storage", storage_file.read_text().strip(),
               "--study-name", study_name, "--trials", str(SWEEP_TRIALS), "--epochs", "1", "--batch-size", "32",
               "--train-samples", "256", "--test-samples", "32", "--image-samples", "4", "--code-size", "8",
               "--dataset", str(stack_data), "--search", "learning_rate=0.0005:0.005:log", "--no-pruning",
               "--experiment-name", "stack-sweep", "--model-prefix", prefix]
    workers = run_concurrently([command, command], subprocess_env(team_stack.tracking_uri), tmp_path, timeout=400)
    for worker in workers:
        assert worker.returncode == 0, worker.stderr[-3000:]
    # Both joined the one study and its one parent (each prints the parent it works under).
    printed = {m.group(1) for w in workers for m in re.finditer(r"; parent run ([0-9a-f]{32})", w.stdout)}
    assert len(printed) == 1, [w.stdout[-1000:] for w in workers]
    assert [w.stdout.count(f"aetrack: sweep {study_name!r} finished") for w in workers].count(1) == 1

    client = client_for(team_stack)
    experiment = client.get_experiment_by_name("stack-sweep")
    (parent,) = client.search_runs([experiment.experiment_id],
                                   f"tags.`aetrack.sweep` = 'parent' AND tags.`aetrack.sweep.study` = '{study_name}'")
    assert parent.info.run_id in printed and parent.info.status == "FINISHED"
    assert parent.data.params["storage"] == stack_script.redacted_url(team_stack.optuna_storage)
    assert parent.data.metrics["trials_complete"] == SWEEP_TRIALS and parent.data.metrics["trials_fail"] == 0
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(int(c.data.tags["aetrack.sweep.trial"]) for c in children) == list(range(SWEEP_TRIALS))
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["aetrack.sweep.worker"].split(":")[1] for c in children} <= {str(w.pid) for w in workers}

    # The study on PostgreSQL: trials 0..2 complete, each naming its run; a trial beyond them can
    # only be one a worker gave back after losing the race for the last trial.
    study = optuna.load_study(study_name=study_name, storage=team_stack.optuna_storage)
    complete = {t.number: t.user_attrs[RUN_ID_ATTR] for t in study.trials if t.state.name == "COMPLETE"}
    assert complete == {int(c.data.tags["aetrack.sweep.trial"]): c.info.run_id for c in children}
    assert all(SKIPPED_ATTR in t.user_attrs for t in study.trials if t.number >= SWEEP_TRIALS)
    rows = optuna_query(team_stack, "SELECT count(*) FROM trials JOIN studies USING (study_id) "
                                    "WHERE study_name = %s AND state = 'COMPLETE'", study_name)
    assert rows == [(SWEEP_TRIALS,)]

    # The best trial's three models registered once, from its run.
    best = min(children, key=lambda c: c.data.metrics["test_bce"])
    assert parent.data.tags["aetrack.sweep.best_run_id"] == best.info.run_id
    for part in ("autoencoder", "encoder", "decoder"):
        versions = client.search_model_versions(f"name = '{prefix}-{part}'")
        assert [(v.version, v.run_id) for v in versions] == [("1", best.info.run_id)], part

    # Files are objects in the bucket: each trial's checkpoint, figure and images, the parent's
    # study figure, the best trial's model files.
    for child in children:
        keys = set(run_keys(team_stack, experiment.experiment_id, child.info.run_id))
        assert {"checkpoints/latest.json", "checkpoints/epoch-1/state.npz", "figures/loss_curves.png"} <= keys, keys
        assert any(k.startswith("images/reconstruction") for k in keys), keys
    assert "figures/optimization_history.png" in run_keys(team_stack, experiment.experiment_id, parent.info.run_id)
    models = client.search_logged_models([experiment.experiment_id],
                                         filter_string=f"source_run_id = '{best.info.run_id}'")
    assert sorted(m.name for m in models) == sorted(PARTS)
    for model in models:
        model_keys = bucket_keys(team_stack, f"artifacts/{experiment.experiment_id}/models/{model.model_id}/")
        assert any(k.endswith("/MLmodel") for k in model_keys), model_keys
    # Nothing local: no MLflow store and no default optuna.db in the workers' directory.
    assert local_mlflow_files(tmp_path) == [] and not list(tmp_path.rglob("optuna.db"))


def test_docker_compose_creates_the_optuna_database_the_stack_creates():
    """deploy/docker-compose.yml makes the same Optuna database beside MLflow's as deploy/stack.py."""
    services = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())["services"]
    command = " ".join(services["optuna-db"]["command"])
    assert f"createdb {stack_script.OPTUNA_DB_NAME}" in command
    assert f"datname = '{stack_script.OPTUNA_DB_NAME}'" in command
    assert services["optuna-db"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["environment"]["POSTGRES_USER"] == stack_script.DB_USER
