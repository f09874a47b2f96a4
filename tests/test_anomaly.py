"""Anomaly detection, training side: thresholds and metrics against scikit-learn, a one-class run
whose stored threshold (read back from the store and the registry) flags about `contamination` of
its own training data, the registered scorer loading in safe mode, and the bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aetrack import anomaly
from aetrack.config import TrainConfig
from aetrack.data import load_dataset
from aetrack.errors import ConfigError, DataError
from aetrack.names import ANOMALY_KEY, ANOMALY_METRICS, PARTS, SCORER, higher_is_better
from tests.helpers.data import table_frame, write_npz, write_table


def test_thresholds_flags_and_metrics_match_their_definitions_and_scikit_learn():
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=400), 2)  # ties on purpose
    anomalous = rng.random(400) < 0.2
    scores[anomalous] += 1.5
    threshold = anomaly.threshold_from(scores, "quantile", 0.05)
    assert anomaly.flags(scores, threshold).mean() == pytest.approx(0.05, abs=0.005)
    assert anomaly.threshold_from(scores, "mean_std", 0.3) == pytest.approx(scores.mean() + scores.std())
    got = anomaly.anomaly_metrics(scores, anomalous, threshold)
    flagged = scores > threshold
    assert got["anomaly_auc"] == pytest.approx(sk.roc_auc_score(anomalous, scores), abs=1e-12)
    assert got["anomaly_ap"] == pytest.approx(sk.average_precision_score(anomalous, scores), abs=1e-12)
    assert got["anomaly_precision"] == pytest.approx(sk.precision_score(anomalous, flagged))
    assert got["anomaly_recall"] == pytest.approx(sk.recall_score(anomalous, flagged))
    assert got["anomaly_f1"] == pytest.approx(sk.f1_score(anomalous, flagged))
    # The best F1 is the best over every cut, and its threshold gives it back.
    best = max(sk.f1_score(anomalous, scores > t) for t in np.r_[np.unique(scores), scores.min() - 1])
    assert got["anomaly_best_f1"] == pytest.approx(best)
    assert sk.f1_score(anomalous, scores > got["anomaly_best_f1_threshold"]) == pytest.approx(best)
    assert set(got) == set(ANOMALY_METRICS)
    assert anomaly.anomaly_metrics(scores, np.zeros(400, bool), threshold) == {}
    assert all(higher_is_better(m) for m in ANOMALY_METRICS if not m.endswith("threshold"))
    assert not higher_is_better("anomaly_threshold") and not higher_is_better("anomaly_best_f1_threshold")


@pytest.mark.parametrize("kwargs, message", [
    (dict(contamination=0.5), "invalid contamination 0.5: expected a number > 0 and < 0.5"),
    (dict(contamination=0.0), "invalid contamination 0.0"),
    (dict(threshold_rule="max"), "invalid threshold_rule 'max': expected one of quantile, mean_std"),
    (dict(normal_labels="0", exclude_labels="1"), "invalid normal_labels '0': expected empty when exclude_labels"),
])
def test_bad_anomaly_parameters_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError) as refused:
        TrainConfig(**kwargs).validated()
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert refused.value.exit_code == 2


def test_sweeps_may_maximise_the_detection_metrics_of_one_class_runs():
    from aetrack.search_space import check_metric, sweep_metrics

    one_class = TrainConfig(normal_labels="0")
    assert set(ANOMALY_METRICS) <= set(sweep_metrics(one_class))
    check_metric("anomaly_auc", one_class)
    with pytest.raises(ConfigError, match="anomaly_auc"):
        check_metric("anomaly_auc", TrainConfig())


def test_normal_labels_filter_the_training_split_and_bad_ones_are_refused(tmp_path):
    path = write_npz(tmp_path / "d.npz", n_train=60, n_test=30)
    data = load_dataset(str(path), normal_labels=("3", "5"))
    assert set(data.y_train.tolist()) == {3, 5} and len(set(data.y_test.tolist())) > 2
    assert data.normal_labels == (3, 5)
    with pytest.raises(DataError, match=r"^invalid normal_labels '12': dataset .* has no label '12'; expected labels"):
        load_dataset(str(path), normal_labels=("12",))
    unlabelled = write_npz(tmp_path / "u.npz", n_train=20, n_test=10, y_train=None, y_test=None)
    with pytest.raises(DataError, match=r"^invalid normal_labels '0': .* has no labels; expected it empty$") as e:
        load_dataset(str(unlabelled), normal_labels=("0",))
    assert e.value.exit_code == 2
    table = write_table(tmp_path / "t.csv", table_frame(40))
    assert set(load_dataset(str(table), label_column="kind", normal_labels=("ham",)).y_train.tolist()) == {0}


def test_one_class_run_stores_a_threshold_that_flags_its_contamination(tracking, tiny_config):
    import keras
    import mlflow
    from mlflow.tracking import MlflowClient

    from aetrack.train import train

    config = tiny_config(epochs=1, code_size=4, train_samples=0, test_samples=40, normal_labels="0,1,2,3,4",
                         contamination=0.1, register=True, model_prefix="oc", image_every=0, checkpoint_every=0)
    result = train(config)
    client = MlflowClient()
    run = client.get_run(result.run_id)
    threshold = run.data.metrics["anomaly_threshold"]
    assert result.registered_versions == {f"oc-{p}": "1" for p in PARTS}
    version = client.get_model_version("oc-scorer", "1")
    assert float(version.tags["anomaly_threshold"]) == threshold
    info = mlflow.models.get_model_info("models:/oc-scorer/1")
    assert info.metadata[ANOMALY_KEY] == {"threshold": threshold, "rule": "quantile", "contamination": 0.1,
                                          "score": "mse"}
    assert mlflow.models.get_model_info("models:/oc-autoencoder/1").metadata[ANOMALY_KEY]["threshold"] == threshold
    # The registered scorer, loaded in safe mode, scores as the model in memory and flags ~10%.
    data = load_dataset(config.dataset, 0, 40, normal_labels=("0", "1", "2", "3", "4"))
    local = mlflow.artifacts.download_artifacts("models:/oc-scorer/1")
    [keras_file] = list(Path(local).rglob("*.keras"))
    scorer = keras.saving.load_model(keras_file, safe_mode=True)
    scores = np.asarray(scorer(data.x_train)).reshape(-1)
    errors = np.mean((data.x_train - result.model(data.x_train).numpy()) ** 2, axis=1)
    assert np.allclose(scores, errors, rtol=1e-5, atol=1e-7)
    assert anomaly.flags(scores, threshold).mean() == pytest.approx(0.1, abs=0.02)
    served = mlflow.pyfunc.load_model("models:/oc-scorer/1").predict(data.x_test[:3])
    assert np.allclose(np.asarray(served).reshape(-1), np.asarray(scorer(data.x_test[:3])).reshape(-1), rtol=1e-6)
    # Detection metrics against the labels trained on, read back from the store.
    anomalous = ~np.isin(data.y_test, (0, 1, 2, 3, 4))
    test_scores = np.mean((data.x_test - result.model(data.x_test).numpy()) ** 2, axis=1)
    expected = anomaly.anomaly_metrics(test_scores, anomalous, threshold)
    for name in ANOMALY_METRICS:
        assert run.data.metrics[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-6), name
    figures = {a.path for a in client.list_artifacts(result.run_id, "figures")}
    assert {f"figures/anomaly_{n}.png" for n in ("scores", "roc", "pr", "worst")} <= figures


def test_scorer_of_a_table_vae_takes_raw_rows_and_gives_the_negative_elbo(tmp_path):
    import keras

    from aetrack.models import build_autoencoder
    from aetrack.models.scorer import build_scorer, scorer_in_model_space, scores_of

    data = load_dataset(str(write_table(tmp_path / "t.csv", table_frame(30))), label_column="kind")
    spec = data.spec
    model = build_autoencoder("vae", 2, spec=spec)
    scorer = build_scorer(model, spec)
    assert scorer.name == SCORER and scorer.output.shape[1:] == (1,)
    raw = data.x_test * np.asarray(spec.feature_std, np.float32) + np.asarray(spec.feature_mean, np.float32)
    path = tmp_path / "scorer.keras"
    scorer.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    in_model_space = scores_of(scorer_in_model_space(model, spec), data.x_test)
    assert np.allclose(scores_of(loaded, raw), in_model_space, rtol=1e-4, atol=1e-4)
    # Gaussian decoder: 0.5 * squared error + 0.5 * log(2 pi) per value, plus the KL.
    mean, log_var = (t.numpy() for t in model.moments(data.x_test))
    reconstructed = model(data.x_test).numpy()
    for i in range(len(data.x_test)):
        recon = 0.5 * np.sum((data.x_test[i] - reconstructed[i]) ** 2) + spec.size * 0.5 * np.log(2 * np.pi)
        kl = -0.5 * np.sum(1 + log_var[i] - mean[i] ** 2 - np.exp(log_var[i]))
        assert in_model_space[i] == pytest.approx(recon + kl, rel=1e-4)
