"""`aetrack score`: per-image reconstruction errors of a trained model (the real command in a child
process), and anomaly scores and flags with the model's stored threshold, `--threshold`, `aetrack
serve`'s scores and flags and the scorer's pyfunc (in-process). (Refusals of bad inputs, outputs
and models: test_use.py.)"""


import numpy as np
import pytest

from tests.helpers.data import synthetic_digits
from tests.helpers.processes import aetrack_in_process, run_aetrack



def aetrack(*args, cwd):
    return run_aetrack(*args, cwd=cwd, timeout=120)


@pytest.fixture
def saved_model(basic_store, tmp_path):
    """The shared tiny basic run's model, saved as a .keras file."""
    model = basic_store.result.model
    path = tmp_path / "m.keras"
    model.save(path)
    return model, path


@pytest.mark.slow  # `aetrack score` loads TensorFlow in a child process
def test_score_writes_per_image_mse(saved_model, tmp_path):
    model, path = saved_model
    images, _ = synthetic_digits(10, seed=7)
    np.save(tmp_path / "digits.npy", images)  # uint8 (10, 28, 28)
    out = aetrack("score", "--model", str(path), "--input", "digits.npy", "--output", "scores.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "wrote 10 scores to scores.npy" in out.stdout

    scores = np.load(tmp_path / "scores.npy")
    x = images.reshape(10, 784).astype(np.float32) / 255.0
    expected = np.mean((model(x, training=False).numpy() - x) ** 2, axis=1)
    assert scores.shape == (10,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert len(np.unique(scores)) == 10 and np.all(scores > 0)

    # The same images as (n, 784) floats in [0, 1] give the same scores (this process's CLI `main`:
    # the child above already ran the whole command; refusals are in test_use.py's table).
    np.save(tmp_path / "floats.npy", x)
    out = aetrack_in_process("score", "--model", str(path), "--input", "floats.npy", "--output", "f.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), scores, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Anomaly scores and flags, in-process: a tiny scaled-table autoencoder and its scorer (built here
# the way training builds them: raw rows in, the score in the standardised space), logged with
# aetrack's Keras flavor and a stored threshold in their MLmodel metadata, one registered with the
# version tag only.

FEATURES = ("a", "b", "c", "d", "e", "f")
ANOMALY_KEY = "aetrack.anomaly"  # aetrack.names.ANOMALY_KEY once the training side lands
THRESHOLD = 0.9


def _table_spec():
    from aetrack.data import SampleSpec

    return SampleSpec("table", (6,), None, feature_names=FEATURES,
                      feature_mean=(1.0, -2.0, 0.5, 3.0, 0.0, 10.0), feature_std=(2.0, 0.5, 1.0, 4.0, 1.0, 3.0))


def _models(spec):
    """(raw-io autoencoder, scorer): the scorer is plain Keras layers giving the standardised MSE, (n, 1)."""
    import keras

    from aetrack.models.scaling import STANDARDISE, with_raw_io

    keras.utils.set_random_seed(3)
    encoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)], name="encoder")
    decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(6)], name="decoder")
    x = keras.Input((6,), name="sample")
    inner = keras.Model(x, decoder(encoder(x)), name="autoencoder")
    autoencoder = with_raw_io("autoencoder", inner, spec)
    raw = keras.Input((6,), name="sample")
    std = np.asarray(spec.feature_std)
    z = keras.layers.Normalization(mean=list(spec.feature_mean), variance=list(std**2), name=STANDARDISE)(raw)
    diff = keras.layers.Subtract()([inner(z), z])
    mean = keras.layers.Dense(1, use_bias=False, trainable=False, name="mean")
    scorer = keras.Model(raw, mean(keras.layers.Multiply()([diff, diff])), name="scorer")
    mean.set_weights([np.full((6, 1), 1 / 6, np.float32)])
    return autoencoder, scorer


@pytest.fixture(scope="module")
def anomaly_store(tmp_path_factory):
    """A store with the autoencoder and scorer logged (threshold in metadata) and registered;
    a second registered autoencoder carrying only the `anomaly_threshold` version tag."""
    import types

    import mlflow
    from mlflow.models import Model

    from aetrack.names import PART_METADATA, SAMPLE_SPEC_KEY
    from aetrack.tracking import keras_flavor
    from tests.helpers.stores import session_store

    spec = _table_spec()
    autoencoder, scorer = _models(spec)
    folder = tmp_path_factory.mktemp("anomaly")
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(40, 6)) * np.asarray(spec.feature_std) + np.asarray(spec.feature_mean))
    rows[::8] += 25.0  # five far-off rows
    with session_store(folder) as uri:
        client = mlflow.MlflowClient()
        # Its own experiment: an earlier test in this process may have left another store's active one.
        mlflow.set_experiment("score-models")
        with mlflow.start_run():
            infos = {}
            for part, model, anomaly in (("autoencoder", autoencoder, {"score": "mse"}), ("scorer", scorer, {}),
                                         ("tagged", autoencoder, None)):
                metadata = {PART_METADATA: "autoencoder" if part == "tagged" else part,
                            SAMPLE_SPEC_KEY: spec.to_dict()}
                if anomaly is not None:
                    metadata[ANOMALY_KEY] = {"threshold": THRESHOLD, "rule": "quantile", "contamination": 0.05,
                                             "score": "mse", **anomaly}
                infos[part] = Model.log(artifact_path=None, name=part, flavor=keras_flavor, flavor_name="keras",
                                        model=model, metadata=metadata, pip_requirements=["keras"])
            for part in ("scorer", "tagged"):
                version = mlflow.register_model(infos[part].model_uri, f"t-{part}")
                if part == "tagged":
                    client.set_model_version_tag(f"t-{part}", version.version, "anomaly_threshold", str(THRESHOLD))
                    client.set_registered_model_alias(f"t-{part}", "champion", version.version)
    import pandas as pd

    pd.DataFrame(rows, columns=FEATURES).to_csv(folder / "rows.csv", index=False)
    return types.SimpleNamespace(uri=uri, folder=folder, spec=spec, rows=rows.astype(np.float32),
                                 autoencoder=autoencoder, scorer=scorer, infos=infos)


@pytest.fixture
def anomaly(anomaly_store, monkeypatch):
    from tests.conftest import _enter_store

    yield from _enter_store(anomaly_store, monkeypatch)


def _expected_scores(store) -> np.ndarray:
    """The standardised per-sample MSE, computed here with numpy from the autoencoder's output."""
    spec, rows = store.spec, store.rows.astype(np.float64)
    out = store.autoencoder(store.rows, training=False).numpy().astype(np.float64)
    return np.mean(((rows - out) / np.asarray(spec.feature_std)) ** 2, axis=1)


@pytest.mark.parametrize("model", ["models:/t-scorer/1", "autoencoder", "models:/t-tagged@champion",
                                   "models:/t-tagged/latest"])
def test_score_flags_from_the_stored_threshold(anomaly, model, tmp_path):
    """No options: the scorer's output, or the autoencoder's standardised MSE, flagged above the
    threshold in its metadata (or its registered version's tag)."""
    from tests.helpers.processes import aetrack_in_process

    if model == "autoencoder":
        model = anomaly.infos["autoencoder"].model_uri
    out = aetrack_in_process("score", "--model", model, "--input", "rows.csv", "--output", tmp_path / "s.csv")
    assert out.returncode == 0, out.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "s.csv")
    expected = _expected_scores(anomaly)
    assert list(table.columns) == ["score", "is_anomaly"] and len(table) == 40
    np.testing.assert_allclose(table["score"], expected, rtol=1e-4)
    np.testing.assert_array_equal(table["is_anomaly"], (expected > THRESHOLD).astype(int))
    flagged = int((expected > THRESHOLD).sum())
    assert 5 <= flagged < 40
    assert f"{flagged} of 40 samples flagged as anomalies (score > 0.9, the model's threshold)" in out.stdout


def test_score_threshold_override_npy_and_refusals(anomaly, tmp_path):
    from tests.helpers.processes import aetrack_in_process

    expected = _expected_scores(anomaly)
    cut = float(np.median(expected))
    out = aetrack_in_process("score", "-m", "models:/t-scorer/1", "-i", "rows.csv", "-o", tmp_path / "s.parquet",
                             "--threshold", f"{cut!r}")
    assert out.returncode == 0, out.stderr
    import pandas as pd

    table = pd.read_parquet(tmp_path / "s.parquet")
    np.testing.assert_array_equal(table["is_anomaly"], (table["score"] > cut).astype(int))
    assert table["is_anomaly"].sum() == 20 and "20 of 40 samples flagged" in out.stdout
    assert "--threshold)" in out.stdout

    # A .npy keeps the scores-only array; the flag count is still printed.
    out = aetrack_in_process("score", "-m", "models:/t-scorer/1", "-i", "rows.csv", "-o", tmp_path / "s.npy")
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), expected, rtol=1e-4)
    assert np.load(tmp_path / "s.npy").shape == (40,) and "flagged as anomalies" in out.stdout

    for bad in ("nan", "inf", "-inf", "abc", ""):
        target = tmp_path / f"bad{bad}.csv"
        out = aetrack_in_process("score", "-m", "models:/t-scorer/1", "-i", "rows.csv", "-o", target,
                                 "--threshold", bad)
        assert out.returncode == 2, (bad, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "invalid --threshold" in lines[0] and "finite number" in lines[0], lines
        assert not target.exists()


def test_score_without_a_threshold_writes_scores_only(anomaly, tmp_path):
    """A model carrying no threshold (a plain .keras file: no metadata, no registry): the score
    column only, and a note saying how to get flags."""
    from tests.helpers.processes import aetrack_in_process

    path = tmp_path / "m.keras"
    anomaly.autoencoder.save(path)
    np.save(tmp_path / "rows.npy", anomaly.rows)
    out = aetrack_in_process("score", "-m", path, "-i", tmp_path / "rows.npy", "-o", tmp_path / "s.csv")
    assert out.returncode == 0, out.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "s.csv")
    assert list(table.columns) == ["score"] and len(table) == 40
    # No spec travels with a .keras file: the raw rows' MSE.
    raw = np.mean((anomaly.autoencoder(anomaly.rows, training=False).numpy() - anomaly.rows) ** 2, axis=1)
    np.testing.assert_allclose(table["score"], raw, rtol=1e-4)
    assert "flagged" not in out.stdout
    assert "note: no threshold stored with the model and none given" in out.stdout and "--threshold" in out.stdout


def test_serve_answers_scores_and_flags(anomaly):
    """`aetrack serve`'s server on 127.0.0.1: the scorer and the thresholded autoencoder answer
    scores, flags and the threshold beside their predictions; the .npy form answers (n,) scores."""
    import io
    import json
    import threading
    import urllib.request

    from aetrack.serve import load_served_model, make_server

    expected = _expected_scores(anomaly)
    rows = anomaly.rows[:10]
    for uri in ("models:/t-scorer/1", anomaly.infos["autoencoder"].model_uri):
        served = load_served_model(uri)
        assert served.threshold == THRESHOLD and served.flags_anomalies
        server = make_server(served, "127.0.0.1", 0, access_log=None)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            port = server.server_address[1]
            body = json.dumps({"dataframe_split": {"columns": list(FEATURES), "data": rows.tolist()}}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
            np.testing.assert_allclose(answer["scores"], expected[:10], rtol=1e-4)
            assert answer["is_anomaly"] == (expected[:10] > THRESHOLD).astype(int).tolist()
            assert answer["threshold"] == THRESHOLD and 1 <= sum(answer["is_anomaly"]) < 10
            if "scorer" in uri:
                # "predictions" as `mlflow models serve` answers them: the scorer's (n, 1) column.
                assert np.asarray(answer["predictions"]).shape == (10, 1)
                np.testing.assert_allclose(np.asarray(answer["predictions"])[:, 0], expected[:10], rtol=1e-4)
                buffer = io.BytesIO()
                np.save(buffer, rows)
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=buffer.getvalue(),
                                                 headers={"Content-Type": "application/x-npy"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    scores = np.load(io.BytesIO(response.read()))
                assert scores.shape == (10, 1)
                np.testing.assert_allclose(scores[:, 0], expected[:10], rtol=1e-4)
            else:  # the reconstructions, as before
                assert np.asarray(answer["predictions"]).shape == (10, 6)
        finally:
            server.shutdown()
            server.server_close()


def test_pyfunc_scorer_gives_the_in_memory_scores(anomaly):
    """The scorer through its pyfunc (what `mlflow models serve` calls): the in-memory scores, for
    flat rows and for a DataFrame of the training columns."""
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model("models:/t-scorer/1")
    in_memory = anomaly.scorer(anomaly.rows, training=False).numpy()
    from_rows = model.predict(anomaly.rows)
    shuffled = pd.DataFrame(anomaly.rows, columns=FEATURES)[list(reversed(FEATURES))]
    from_frame = model.predict(shuffled)
    assert from_rows.shape == from_frame.shape == in_memory.shape == (40, 1)  # the scorer's column
    np.testing.assert_allclose(from_rows, in_memory, rtol=1e-6)
    np.testing.assert_allclose(from_frame, in_memory, rtol=1e-6)
    np.testing.assert_allclose(in_memory[:, 0], _expected_scores(anomaly), rtol=1e-4)
