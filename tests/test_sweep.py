"""Sweeps: an Optuna study as one parent MLflow run with a nested run per trial, in-process, under
`mlflow run -e sweep`, and split between worker processes sharing one SQLite storage."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.errors import error_line
from tests.helpers.processes import (REPO, aetrack_in_process, run_aetrack, stop_group, subprocess_env,
                                     wait_for)


def children_of(client, parent_run_id):
    parent = client.get_run(parent_run_id)
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=100)


def parents(client, experiment_name="aetrack"):
    experiment = client.get_experiment_by_name(experiment_name)
    return client.search_runs([experiment.experiment_id], "tags.`aetrack.sweep` = 'parent'")


def check_parent_best(client, parent, children, metric="test_bce"):
    """The parent's best_<metric> is the best finished, unpruned child's metric, and names it."""
    complete = [c for c in children if c.info.status == "FINISHED" and "aetrack.pruned" not in c.data.tags]
    best = min(complete, key=lambda c: c.data.metrics[metric])
    assert parent.data.metrics[f"best_{metric}"] == pytest.approx(best.data.metrics[metric], rel=1e-9)
    assert parent.data.tags["aetrack.sweep.best_run_id"] == best.info.run_id
    return best


@pytest.mark.slow
def test_in_process_sweep_nests_trials_and_registers_the_best_once(tracking, tiny_config):
    import optuna

    from aetrack.config import SweepConfig
    from aetrack.search_space import parse_search
    from aetrack.sweep import run_sweep

    base = tiny_config(epochs=1, register=True, model_prefix="sw")
    settings = SweepConfig(trials=3, search="code_size=4:32:log loss=bce|mse", study_name="s1", pruning=False)
    result = run_sweep(base, settings, parse_search([settings.search], "basic"))

    client = MlflowClient()
    (parent,) = parents(client)
    assert parent.info.run_id == result.parent_run_id and parent.info.status == "FINISHED"
    assert parent.data.tags["mlflow.runName"] == "sweep-basic-s1"
    assert parent.data.params["search"] == "code_size=4:32:log loss=bce|mse"
    assert (parent.data.params["sampler"], parent.data.params["metric"], parent.data.params["trials"]) == \
        ("tpe", "test_bce", "3")
    children = children_of(client, parent.info.run_id)
    assert len(children) == 3 and {c.info.status for c in children} == {"FINISHED"}
    assert sorted(c.data.tags["aetrack.sweep.trial"] for c in children) == ["0", "1", "2"]
    for child in children:
        assert 4 <= int(child.data.params["code_size"]) <= 32 and child.data.params["loss"] in ("bce", "mse")
        assert child.data.params["register"] == "false"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")] == [1]
        assert any(a.path == "images" for a in client.list_artifacts(child.info.run_id))
    best = check_parent_best(client, parent, children)
    assert parent.data.params["best.code_size"] == best.data.params["code_size"]
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/optimization_history.png" in figures
    assert "figures/param_importances.png" in figures  # two params over three complete trials
    # Registered once, from the best trial's run, aliased candidate; trials themselves registered nothing.
    for part in ("autoencoder", "encoder", "decoder"):
        versions = client.search_model_versions(f"name='sw-{part}'")
        assert len(versions) == 1 and versions[0].run_id == best.info.run_id
        assert client.get_model_version_by_alias(f"sw-{part}", "candidate").version == versions[0].version
    assert result.registered_versions == {f"sw-{p}": "1" for p in ("autoencoder", "encoder", "decoder", "scorer")}
    study = optuna.load_study(study_name="s1", storage=result.storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3


@pytest.mark.slow
def test_pruning_stops_a_clearly_worse_trial_and_tags_its_run(tracking, tiny_config):
    import optuna

    from aetrack.config import SweepConfig
    from aetrack.search_space import parse_search
    from aetrack.sweep import default_storage, run_sweep

    # Two good trials first, then one whose learning rate barely moves the weights: at epoch 1 its
    # val_loss is far above the median of the first two, so the median pruner stops it there.
    storage = default_storage(tracking)
    study = optuna.create_study(study_name="p1", storage=storage)
    for learning_rate in (0.01, 0.003, 1e-7):
        study.enqueue_trial({"learning_rate": learning_rate})
    base = tiny_config(epochs=3, image_every=0)
    settings = SweepConfig(trials=3, search="learning_rate=1e-7:0.01:log", study_name="p1")
    result = run_sweep(base, settings, parse_search([settings.search], "basic"))

    assert result.states == {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED"}
    client = MlflowClient()
    pruned = client.get_run(result.trial_run_ids[2])
    assert pruned.info.status == "FINISHED"
    assert pruned.data.tags["aetrack.pruned"] == "true" and pruned.data.tags["aetrack.pruned_at_epoch"] == "1"
    assert [m.step for m in client.get_metric_history(pruned.info.run_id, "val_loss")] == [1]
    for number in (0, 1):
        run = client.get_run(result.trial_run_ids[number])
        assert "aetrack.pruned" not in run.data.tags
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2, 3]
    parent = client.get_run(result.parent_run_id)
    assert parent.data.metrics["trials_pruned"] == 1 and parent.data.metrics["trials_complete"] == 2
    assert parent.data.tags["aetrack.sweep.no_param_importances"] == \
        "parameter importances need 2 or more searched parameters; the study searched learning_rate"
    check_parent_best(client, parent, children_of(client, result.parent_run_id))


@pytest.mark.parametrize("spec,says", [
    ("code_size=0:8", "invalid --search 'code_size=0:8': expected code_size values that are an integer from 1"),
    ("nope=1:2", "invalid --search 'nope=1:2': expected a basic training parameter"),
    ("learning_rate=-1:0.1:log", "expected learning_rate values that are a number > 0"),
])
def test_bad_spec_fails_with_one_line_and_nothing_in_the_store(tmp_path, tiny_npz, spec, says):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_aetrack("sweep", "basic", "--search", spec, "--dataset", tiny_npz, "--trials", "2", uri=uri, cwd=tmp_path)
    assert says in error_line(out, 2, only_line=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no MLflow store, no optuna.db


def test_bad_metric_fails_before_anything_runs(tmp_path, tiny_npz):
    out = run_aetrack("sweep", "basic", "--metric", "psnr_gain_db", "--dataset", tiny_npz, uri=f"sqlite:///{tmp_path}/m.db",
                      cwd=tmp_path)
    assert "invalid --metric 'psnr_gain_db': expected a metric every basic trial logs" in error_line(out, 2, True)
    assert list(tmp_path.iterdir()) == []


def sweep_args(npz, *extra):
    return ["--dataset", str(npz), "--train-samples", "200", "--test-samples", "32", "--epochs", "1",
            "--code-size", "8", "--image-samples", "4", *extra]


@pytest.mark.slow
def test_mlflow_run_sweep_makes_one_parent_and_its_trial_children(tmp_path, tiny_npz):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = ["dataset", str(tiny_npz), "train_samples", "128", "test_samples", "16", "epochs", "1",
              "trials", "2", "search", "code_size=4:32:log learning_rate=0.001:0.01:log", "study_name", "mr",
              "register", "false"]
    args = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "sweep", "--env-manager", "local",
            "--experiment-name", "aetrack"]
    for name, value in zip(params[::2], params[1::2]):
        args += ["-P", f"{name}={value}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=subprocess_env(uri))
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("aetrack").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]  # the run mlflow made
    assert parent.data.tags["aetrack.sweep"] == "parent" and parent.data.tags["mlflow.project.entryPoint"] == "sweep"
    assert parent.info.status == "FINISHED"
    children = children_of(client, parent.info.run_id)
    assert len(children) == 2 == len(runs) - 1
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["aetrack.entry_point"] == "basic"
        assert 4 <= int(child.data.params["code_size"]) <= 32
        assert 0.001 <= float(child.data.params["learning_rate"]) <= 0.01
        assert child.data.params["train_samples"] == "128" and child.data.params["epochs"] == "1"
    check_parent_best(client, parent, children)


def test_unusable_storage_fails_with_one_line_before_any_run(tracking, tiny_config):
    from aetrack.config import SweepConfig
    from aetrack.search_space import parse_search
    from aetrack.sweep import SweepError, run_sweep

    settings = SweepConfig(trials=2, search="code_size=4:8", storage="nosuchdb://user:secret@host/db")
    with pytest.raises(SweepError) as info:
        run_sweep(tiny_config(), settings, parse_search([settings.search], "basic"))
    message = str(info.value)
    assert message.startswith("invalid --storage 'nosuchdb://user:***@host/db'") and "secret" not in message
    assert MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()]) == []


def finished_study(direction, trials):
    """An in-memory study holding complete trials: (params, value) pairs."""
    import optuna

    distributions = {"code_size": optuna.distributions.IntDistribution(4, 32, log=True),
                     "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    study = optuna.create_study(direction=direction)
    for params, value in trials:
        study.add_trial(optuna.trial.create_trial(params=params, value=value,
                                                  distributions={k: distributions[k] for k in params}))
    return study


def test_optimization_history_plots_each_value_and_the_best_so_far():
    from aetrack.sweep.plots import optimization_history_figure

    values = [0.5, 0.7, 0.3, 0.4]
    study = finished_study("minimize", [({"code_size": 8}, v) for v in values])
    (ax,) = optimization_history_figure(study, "test_bce").axes
    trials, best = ax.get_lines()
    assert list(trials.get_xdata()) == [0, 1, 2, 3] and list(trials.get_ydata()) == values
    assert list(best.get_ydata()) == [0.5, 0.5, 0.3, 0.3]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("trial", "test_bce (lower is better)")
    maximized = finished_study("maximize", [({"code_size": 8}, v) for v in values])
    (ax,) = optimization_history_figure(maximized, "test_psnr").axes
    assert list(ax.get_lines()[1].get_ydata()) == [0.5, 0.7, 0.7, 0.7]
    assert ax.get_ylabel() == "test_psnr (higher is better)"


def test_param_importances_bars_and_when_they_cannot_be_drawn():
    from aetrack.sweep.plots import param_importances_figure

    study = finished_study("minimize", [({"code_size": c, "learning_rate": lr}, c * lr)
                                        for c, lr in ((4, 1e-3), (8, 1e-4), (16, 5e-3), (32, 1e-2), (6, 2e-3))])
    (ax,) = param_importances_figure(study).axes
    bars = ax.patches
    assert sorted(label.get_text() for label in ax.get_yticklabels()) == ["code_size", "learning_rate"]
    assert sum(bar.get_width() for bar in bars) == pytest.approx(1.0)
    assert bars[0].get_width() <= bars[1].get_width()  # the most important on top
    with pytest.raises(ValueError, match="need 2 or more complete trials; 1 completed"):
        param_importances_figure(finished_study("minimize", [({"code_size": 8, "learning_rate": 1e-3}, 0.1)]))
    with pytest.raises(ValueError, match="need 2 or more searched parameters; the study searched code_size"):
        param_importances_figure(finished_study("minimize", [({"code_size": c}, c / 10) for c in (4, 8, 16)]))


def test_figures_log_to_the_parent_or_tag_why_not():
    from aetrack.sweep.finalise import log_figures

    class Parent:
        def __init__(self):
            self.figures, self.tags = {}, {}

        def log_figure(self, figure, name):
            self.figures[name] = figure

        def tag_no_figure(self, name, reason):
            self.tags[name] = reason

    parent = Parent()
    log_figures(parent, finished_study("minimize", [({"code_size": 8}, 0.2), ({"code_size": 4}, 0.3)]), "test_bce")
    assert list(parent.figures) == ["optimization_history"]
    assert parent.figures["optimization_history"].axes[0].get_ylabel() == "test_bce (lower is better)"
    assert parent.tags == {"param_importances": "parameter importances need 2 or more searched parameters; "
                                                "the study searched code_size"}


@pytest.mark.slow
def test_vae_sweep_on_test_elbo_registers_versions_tagged_with_final_metrics_only(tracking, tiny_npz, tmp_path):
    from aetrack.names import epoch_metric_names

    out = aetrack_in_process("sweep", "basic", "--architecture", "vae", "--metric", "test_elbo", "--trials", "2",
                             "--epochs", "1", "--train-samples", "64", "--test-samples", "16", "--dataset", tiny_npz,
                             "--code-size", "4", "--image-samples", "4", "--search", "learning_rate=0.001:0.01:log",
                             "--study-name", "vae", "--model-prefix", "vs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient()
    (parent,) = parents(client)
    assert parent.info.status == "FINISHED"
    children = children_of(client, parent.info.run_id)
    assert len(children) == 2 and {c.data.params["architecture"] for c in children} == {"vae"}
    best = check_parent_best(client, parent, children, metric="test_elbo")
    for part in ("autoencoder", "encoder", "decoder"):
        (version,) = client.search_model_versions(f"name='vs-{part}'")
        assert version.run_id == best.info.run_id and version.tags["sweep_study"] == "vae"
        assert version.tags["test_elbo"] == repr(float(best.data.metrics["test_elbo"]))
        assert {"test_bce", "test_mse", "test_psnr", "test_ssim"} <= set(version.tags)
        assert not set(epoch_metric_names("vae")) & set(version.tags), version.tags


@pytest.mark.slow
def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_finishes(tracking, tiny_config):
    import optuna

    from aetrack.config import SweepConfig
    from aetrack.search_space import parse_search
    from aetrack.sweep import default_storage, run_sweep

    # A VAE at learning rate 10 reaches a NaN loss in its first epoch; the other trial trains normally.
    study = optuna.create_study(study_name="nan", storage=default_storage(tracking))
    for learning_rate in (10.0, 0.003):
        study.enqueue_trial({"learning_rate": learning_rate})
    base = tiny_config(epochs=1, architecture="vae", image_every=0)
    settings = SweepConfig(trials=2, search="learning_rate=0.001:10:log", study_name="nan", metric="test_elbo",
                           pruning=False)
    result = run_sweep(base, settings, parse_search([settings.search], "basic"))

    assert result.states == {0: "FAIL", 1: "COMPLETE"} and result.finalized
    study = optuna.load_study(study_name="nan", storage=result.storage)
    reason = "training diverged: loss became nan in epoch 1; lower learning_rate or check init_model and the dataset"
    assert study.trials[0].user_attrs["aetrack.failure"] == reason
    client = MlflowClient()
    (parent,) = parents(client)
    assert parent.info.status == "FINISHED" and parent.data.tags["aetrack.sweep.best_trial"] == "1"
    assert (parent.data.metrics["trials_fail"], parent.data.metrics["trials_complete"],
            parent.data.metrics["trials_lost"]) == (1, 1, 0)
    runs = {c.data.tags["aetrack.sweep.trial"]: c for c in children_of(client, parent.info.run_id)}
    assert runs["0"].info.status == "FAILED" and runs["0"].data.tags["aetrack.failure"] == f"TrainingDiverged: {reason}"
    assert runs["1"].info.status == "FINISHED"


def trial_in_training(db):
    """(worker, trial number) of a trial run that has logged an epoch and is still RUNNING, read
    read-only from the SQLite store the workers write (None until there is one)."""
    import sqlite3
    from contextlib import closing

    if not db.exists():
        return None
    query = ("SELECT w.value, n.value FROM runs r JOIN tags w ON w.run_uuid = r.run_uuid AND w.key = 'aetrack.sweep.worker'"
             " JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'aetrack.sweep.trial' WHERE r.status = 'RUNNING' AND"
             " EXISTS (SELECT 1 FROM metrics m WHERE m.run_uuid = r.run_uuid AND m.key = 'loss')")
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return conn.execute(query).fetchone()
    except sqlite3.OperationalError:  # no tables yet, or locked for a moment
        return None


@pytest.mark.slow
def test_a_worker_killed_mid_trial_costs_one_trial_and_the_study_still_finishes(tmp_path, tiny_npz):
    """One of two workers is SIGKILLed mid-trial; the other fails that trial once its heartbeats are
    5 s late (beats every 1 s: room for a loaded machine), runs it again and finishes the study.
    Until the kill both work on one SQLite storage under one parent: every trial's run names the
    worker that ran it, both workers' among them, and the best is registered once. (Two workers
    that both live to the end, one of them ending the study: test_team_stack's sweep test.)"""
    import optuna

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [sys.executable, "-m", "aetrack", "sweep", "basic", *sweep_args(tiny_npz), "--epochs", "2", "--trials", "3",
            "--search", "code_size=4:32:log", "--storage", storage, "--study-name", "k", "--model-prefix", "k",
            "--no-pruning", "--heartbeat-interval", "1", "--grace-period", "5"]
    env = subprocess_env(uri)
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=tmp_path, start_new_session=True) for _ in range(2)]
    try:
        worker, number = wait_for(lambda: trial_in_training(tmp_path / "mlflow.db"), 240, "a trial's first epoch",
                                  poll=0.2)
        (victim,) = [w for w in workers if str(w.pid) == worker.split(":")[1]]
        victim.kill()  # SIGKILL: no handler runs, the trial stays RUNNING and its heartbeats stop
        victim.wait(timeout=30)
        (survivor,) = [w for w in workers if w is not victim]
        out, _ = survivor.communicate(timeout=300)
    finally:
        for w in workers:
            if w.poll() is None:
                stop_group(w, grace=5)
    assert survivor.returncode == 0, out[-3000:]
    lost = int(number)
    study = optuna.load_study(study_name="k", storage=storage)
    states = {t.number: t.state.name for t in study.trials}
    assert states[lost] == "FAIL" and list(states.values()).count("COMPLETE") == 3, states
    (retried,) = [t for t in study.trials if t.system_attrs.get("retry_history") == [lost]]
    assert retried.state.name == "COMPLETE" and retried.params == study.trials[lost].params
    assert retried.user_attrs["aetrack.retry_of"] == lost
    client = MlflowClient(uri)
    (parent,) = parents(client)
    assert parent.info.status == "FINISHED"
    assert (parent.data.metrics["trials_complete"], parent.data.metrics["trials_fail"],
            parent.data.metrics["trials_lost"]) == (3, 0, 1)
    runs = {int(c.data.tags["aetrack.sweep.trial"]): c for c in children_of(client, parent.info.run_id)}
    assert runs[lost].info.status == "FAILED"
    assert runs[lost].data.tags["aetrack.failure"] == \
        f"worker {worker} stopped beating; trial {lost} retried as trial {retried.number}"
    assert runs[retried.number].data.tags["aetrack.sweep.retry_of"] == str(lost)
    assert {r.data.tags["aetrack.sweep.worker"].split(":")[1] for r in runs.values()} == {str(w.pid) for w in workers}
    assert sorted(n for n, r in runs.items() if r.info.status == "FINISHED") == sorted(
        t.number for t in study.trials if t.state.name == "COMPLETE")
    best = check_parent_best(client, parent, runs.values())
    for part in ("autoencoder", "encoder", "decoder"):
        (version,) = client.search_model_versions(f"name='k-{part}'")
        assert version.run_id == best.info.run_id
    assert "aetrack: sweep 'k' finished" in out  # the survivor ended the study


def test_a_grace_period_within_one_heartbeat_is_refused_before_anything_runs(tmp_path, tiny_npz, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    out = aetrack_in_process("sweep", "basic", "--dataset", tiny_npz, "--heartbeat-interval", "5", "--grace-period", "5",
                             cwd=tmp_path)
    assert error_line(out, 2, only_line=True) == ("aetrack: error: invalid grace_period 5: expected more than "
                                                  "heartbeat_interval (5), or trials still running would be taken for lost")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_lost_trials_are_retried_twice_and_do_not_count():
    import optuna
    from optuna.trial import TrialState

    from aetrack.sweep.claims import all_finished, counted, lost_count, started
    from aetrack.sweep.heartbeat import retry

    study = finished_study("minimize", [({"code_size": 8}, 0.2)])  # trial 0 complete
    for attrs in ({"aetrack.failure": "training diverged"}, {}, {"aetrack.skipped": "full"}):  # 1 failed, 2 lost, 3
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs, params={"code_size": 4},
                                                  distributions={"code_size": optuna.distributions.IntDistribution(4, 32)}))
    assert (started(study), counted(study, 3), lost_count(study)) == (3, [0, 1, 3], 1)
    assert all_finished(study, 3) and not all_finished(study, 4)

    lost = study.trials[2]
    assert retry(study, lost, "stopped beating") == 4
    again = study.trials[4]
    assert (again.state, again.params, again.user_attrs) == (TrialState.WAITING, {"code_size": 4}, {"aetrack.retry_of": 2})
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(again) == [2]
    assert started(study) == 3  # a waiting retry is not under way yet
    twice = optuna.trial.create_trial(state=TrialState.FAIL, params=again.params, distributions=again.distributions,
                                      system_attrs=again.system_attrs)
    study.add_trial(twice)
    assert retry(study, study.trials[5], "stopped beating") == 6 and study.trials[6].system_attrs["retry_history"] == [2, 5]
    assert retry(study, study.trials[6], "stopped beating") is None  # lost twice: a new trial takes its place


@pytest.mark.slow
def test_an_interrupted_worker_gives_its_trial_back_and_a_new_worker_finishes_the_study(tracking, tiny_config,
                                                                                        monkeypatch):
    import optuna

    import aetrack.sweep.worker
    from aetrack.config import SweepConfig
    from aetrack.errors import Interrupted
    from aetrack.search_space import parse_search
    from aetrack.sweep import run_sweep

    def interrupted(trial, context):
        for param in context.space:
            param.suggest(trial)
        raise Interrupted(15)  # as SIGTERM during training

    base = tiny_config(epochs=1, image_every=0)
    settings = SweepConfig(trials=1, search="code_size=4:32:log", study_name="int", pruning=False)
    space = parse_search([settings.search], "basic")
    with monkeypatch.context() as patch:
        patch.setattr(aetrack.sweep.worker, "run_trial", interrupted)
        with pytest.raises(Interrupted):
            run_sweep(base, settings, space)
    client = MlflowClient()
    (parent,) = parents(client)
    assert parent.info.status == "KILLED"
    result = run_sweep(base, settings, space)  # one more worker on the same study

    study = optuna.load_study(study_name="int", storage=result.storage)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert study.trials[1].params == study.trials[0].params and study.trials[1].user_attrs["aetrack.retry_of"] == 0
    assert result.finalized and result.states == {1: "COMPLETE"}
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["aetrack.sweep.best_trial"] == "1"
    assert (parent.data.metrics["trials_complete"], parent.data.metrics["trials_lost"]) == (1, 1)
