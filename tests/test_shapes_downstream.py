"""Everything after training follows the SampleSpec: per-epoch grids for small and colour images,
table heat maps, metrics by kind (against numpy and tf.image.ssim), end-of-run figures, and the
logged models' metadata, params and signatures and the MLflow datasets of a table, read back
from a real store."""

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack import images
from aetrack.data import Dataset, SampleSpec, image_spec
from aetrack.data.spec import TABLE
from aetrack.evaluation import final_metrics, per_image_ssim
from aetrack.noise import RunNoise
from aetrack.names import SAMPLE_SPEC_KEY, feature_error_metric, final_metric_names
from aetrack.tracking import plots
from tests.helpers.artifacts import step_images

PAD = images.PAD
SMALL = image_spec(8, 8, 1)
COLOUR = image_spec(12, 10, 3)
FEATURES = ("age", "income ($)", "height", "weight", "score")
TABLE_SPEC = SampleSpec(TABLE, (5,), None, feature_names=FEATURES, feature_mean=(1.0,) * 5, feature_std=(2.0,) * 5)


def tile(grid, r, c, h, w):
    top, left = PAD + r * (h + PAD), PAD + c * (w + PAD)
    return grid[top : top + h, left : left + w]


def rows(n, spec, seed=0):
    return np.random.default_rng(seed).random((n, spec.size), dtype=np.float32)


# --- per-epoch grids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [SMALL, COLOUR], ids=["8x8x1", "12x10x3"])
def test_image_grids_tile_any_height_width_and_channels(spec):
    originals, outputs = rows(10, spec), rows(10, spec, seed=1)
    grid = images.reconstruction_grid(originals, outputs, spec=spec)
    h, w = spec.height, spec.width
    # 10 samples wrap after 8: two bands of (original, reconstruction).
    assert grid.shape[:2] == (4 * h + 5 * PAD, 8 * w + 9 * PAD)
    assert grid.shape[2:] == (() if spec.channels == 1 else (3,))
    for row, values in enumerate((originals, outputs)):
        for i in (0, 7, 9):
            expected = np.rint(values[i].reshape(spec.shape) * 255)
            expected = expected[..., 0] if spec.channels == 1 else expected
            np.testing.assert_array_equal(tile(grid, 2 * (i // 8) + row, i % 8, h, w), expected)
    assert (tile(grid, 2, 2, h, w) == images.PAD_VALUE).all()  # unused slot in the last band


def test_table_heat_map_one_band_per_sample_on_a_fixed_scale():
    originals = np.array([[0.0, 3.0, -3.0, 9.0, -1.5], [1.0, 1.0, 1.0, 1.0, 1.0]], np.float32)
    outputs = originals * 0.5
    grid = images.reconstruction_grid(originals, outputs, spec=TABLE_SPEC)
    cell_h, cell_w = images.table_cell(TABLE_SPEC)
    h, w = 2 * cell_h, 5 * cell_w
    assert grid.dtype == np.uint8 and grid.shape == (2 * h + 3 * PAD, w + 2 * PAD, 3)
    band = tile(grid, 0, 0, h, w)
    colour = lambda strip, feature: band[strip * cell_h, feature * cell_w].tolist()  # noqa: E731
    # 0 is white, +3 std red, -3 std blue, beyond saturates, -1.5 half-way to blue.
    assert colour(0, 0) == [255, 255, 255] and colour(0, 1) == [255, 0, 0] and colour(0, 2) == [0, 0, 255]
    assert colour(0, 3) == [255, 0, 0] and colour(0, 4) == [128, 128, 255]
    assert colour(1, 1) == [255, 128, 128]  # the reconstruction's strip: 1.5 std
    # Cells are uniform blocks, and the same value gives the same colour in any sample.
    assert (band[:cell_h, :cell_w] == 255).all()
    np.testing.assert_array_equal(images.table_colours(np.array([1.0]), TABLE_SPEC)[0],
                                  tile(grid, 1, 0, h, w)[0, 0])


@pytest.mark.parametrize("code_size", [1, 2, 3, 5, 100])
def test_latent_codes_image_for_any_code_size(code_size):
    codes = np.linspace(0, 1, 3 * code_size, dtype=np.float32).reshape(3, code_size)
    grid = images.latent_codes_grid(codes, scale=1.0)
    r, c = images.code_shape(code_size)
    zoom = images.code_zoom(r, c)
    per_row = images.codes_per_row(3, r * zoom, c * zoom)
    first = tile(grid, 0, 0, r * zoom, c * zoom)[::zoom, ::zoom]
    np.testing.assert_array_equal(first, np.rint(codes[0].reshape(r, c) * 255))
    assert grid.shape[1] == per_row * c * zoom + (per_row + 1) * PAD


# --- metrics -------------------------------------------------------------------------------------


def test_image_metrics_follow_the_spec_and_match_numpy_and_tensorflow():
    import tensorflow as tf

    clean = rows(6, COLOUR)
    predicted = np.clip(clean * 0.8 + 0.1, 0, 1).astype(np.float32)
    metrics = final_metrics(lambda x: predicted, clean, clean, None, spec=COLOUR)
    assert set(metrics) == set(final_metric_names("basic", "dense", False, kind="image"))
    t, p = clean.astype(np.float64), np.clip(predicted.astype(np.float64), 1e-7, 1 - 1e-7)
    assert metrics["test_bce"] == pytest.approx(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))
    assert metrics["test_mse"] == pytest.approx(np.mean((t - predicted) ** 2))
    assert metrics["test_psnr"] == pytest.approx(np.mean(10 * np.log10(1 / np.mean((t - predicted) ** 2, axis=1))))
    # SSIM over the 3 channels, the 11-pixel window shrunk to the 10-pixel width (sigma scaled too).
    reference = tf.image.ssim(clean.reshape(6, 12, 10, 3), predicted.reshape(6, 12, 10, 3), max_val=1.0,
                              filter_size=10, filter_sigma=1.5 * 10 / 11).numpy()
    np.testing.assert_allclose(per_image_ssim(clean, predicted, spec=COLOUR), reference, atol=1e-5)
    assert metrics["test_ssim"] == pytest.approx(float(np.mean(reference)), abs=1e-5)
    small, small_out = rows(4, SMALL), rows(4, SMALL, seed=2)
    reference = tf.image.ssim(small.reshape(4, 8, 8, 1), small_out.reshape(4, 8, 8, 1), max_val=1.0,
                              filter_size=8, filter_sigma=1.5 * 8 / 11).numpy()
    np.testing.assert_allclose(per_image_ssim(small, small_out, spec=SMALL), reference, atol=1e-5)
    np.testing.assert_allclose(per_image_ssim(small, small, spec=SMALL), 1.0, atol=1e-12)


def test_table_metrics_mse_mae_and_worst_features():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(40, 5)).astype(np.float32)
    predicted = (clean * np.array([1.0, 0.2, 0.9, 0.5, 0.99])).astype(np.float32)  # income worst, then weight
    metrics = final_metrics(lambda x: predicted, clean, clean, None, spec=TABLE_SPEC)
    errors = np.mean((clean.astype(np.float64) - predicted) ** 2, axis=0)
    worst = {feature_error_metric(FEATURES[i]): errors[i] for i in np.argsort(-errors)[:3]}
    assert list(worst)[:2] == ["test_mse.income ___", "test_mse.weight"]  # ( $ ) are not allowed in MLflow
    named = set(final_metric_names("basic", "dense", False, kind="table", bounded=False))
    assert named == {"test_mse", "test_mae"} and set(metrics) == named | set(worst)  # no bce, psnr, ssim
    assert metrics["test_mse"] == pytest.approx(np.mean((clean.astype(np.float64) - predicted) ** 2))
    assert metrics["test_mae"] == pytest.approx(np.mean(np.abs(clean.astype(np.float64) - predicted)))
    for name, value in worst.items():
        assert metrics[name] == pytest.approx(value)
    # A bounded table keeps bce; labels excluded but absent (y None) add nothing.
    bounded = SampleSpec(TABLE, (5,), (0.0, 1.0))
    unit = rng.random((10, 5)).astype(np.float32)
    some = final_metrics(lambda x: x * 0.5, unit, unit, None, excluded_digits=(1,), spec=bounded)
    assert "test_bce" in some and "anomaly_auc" not in some
    assert {"test_bce", "test_mse", "test_mae"} == set(final_metric_names("basic", "dense", False, kind="table"))
    # A denoising table run: the noisy input's MSE and the MSE at each noise level, as named.
    noisy = final_metrics(lambda x: x * 0.5, unit, unit, None, noise=RunNoise(0, 0.4), spec=bounded)
    assert set(noisy) - {m for m in noisy if m.startswith("test_mse.")} == set(
        final_metric_names("denoise", "dense", False, kind="table"))
    assert noisy["test_mse_noise_0.2"] == pytest.approx(np.mean((unit - RunNoise(0, 0.4).at_level(unit, 0.2) * 0.5)
                                                                ** 2))


# --- figures -------------------------------------------------------------------------------------


def test_table_figures_name_the_features():
    clean = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    predicted = clean * 0.5
    bars = plots.feature_errors_figure(clean, predicted, TABLE_SPEC).axes[0]
    assert [t.get_text() for t in bars.get_xticklabels()] == list(FEATURES)
    heights = [p.get_height() for p in bars.patches]
    np.testing.assert_allclose(heights, np.mean((clean - predicted) ** 2, axis=0), rtol=1e-6)
    heat = plots.reconstructions_figure([("original", clean[:2]), ("reconstructed", predicted[:2])],
                                        spec=TABLE_SPEC).axes[0]
    np.testing.assert_allclose(np.asarray(heat.images[0].get_array()), np.stack([clean[0], predicted[0],
                                                                                   clean[1], predicted[1]]))
    assert [t.get_text() for t in heat.get_yticklabels()][:2] == ["original 0", "reconstructed 0"]


def test_colour_figures_and_the_manifold_of_any_image_shape():
    shown = plots.reconstructions_figure([("original", rows(3, COLOUR))], spec=COLOUR).axes[0].images[0]
    np.testing.assert_array_equal(np.asarray(shown.get_array()), images.image_rows_grid(rows(3, COLOUR), per_row=10,
                                                                                         spec=COLOUR))
    manifold = plots.latent_manifold_figure(lambda z: np.tile(z[:, :1] * 0 + 0.5, (1, COLOUR.size)), COLOUR)
    picture = np.asarray(manifold.axes[0].images[0].get_array())
    assert picture.shape == (plots.MANIFOLD_STEPS * 12, plots.MANIFOLD_STEPS * 10, 3)
    labels = plots.latent_map_figure(np.eye(4), np.array([0, 1, 1, 0]), spec=image_spec(2, 2, 1, ("cat", "dog")))
    assert [t.get_text() for t in labels.axes[0].get_legend().get_texts()] == ["cat", "dog"]


# --- a table model logged to a real store ---------------------------------------------------------


def read_png(client, run_id, path, tmp_path):
    from PIL import Image

    with Image.open(client.download_artifacts(run_id, path, str(tmp_path))) as image:
        return np.asarray(image)


def tiny_table_model(spec: SampleSpec, code_size: int):
    import keras

    inputs = keras.Input((spec.size,))
    encoder = keras.Sequential([keras.Input((spec.size,)), keras.layers.Dense(code_size)], name="encoder")
    decoder = keras.Sequential([keras.Input((code_size,)), keras.layers.Dense(spec.size)], name="decoder")
    return keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")


def test_table_run_logs_spec_models_datasets_and_figures(tracking, tmp_path):
    import mlflow

    from aetrack.config import TrainConfig
    from aetrack.tracking.background import BackgroundCalls
    from aetrack.tracking.callbacks import image_loggers
    from aetrack.tracking.logged_models import log_models
    from aetrack.tracking.records import record_run_inputs

    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(20, 5)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    dataset = Dataset("people", x_train, None, x_test, None, "ab" * 32, str(tmp_path / "people"), "cd" * 32,
                      "ef" * 32, spec=TABLE_SPEC)
    config = TrainConfig(epochs=1, code_size=2, image_samples=3, loss="mse", register=False)
    model = tiny_table_model(TABLE_SPEC, 2)
    client = MlflowClient()
    # Its own experiment: an earlier test in this process may have left another store's active one.
    mlflow.set_experiment("downstream-table")
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        record_run_inputs(client, run_id, config, dataset, "people-run")
        logged = log_models(model, config, dataset)
        metrics = final_metrics(lambda x: model(x, training=False).numpy(), x_test, x_test, None, spec=TABLE_SPEC)
        # Feature errors' names are valid MLflow metric names, whatever the features are called.
        metrics.update({feature_error_metric(f"{name} (ü/%)"): 1.0 for name in FEATURES})
        mlflow.log_metrics(metrics)
        paths = plots.log_final_figures(client, run_id, model, config, dataset, x_test, {"loss": [1.0]})
        with BackgroundCalls(run_id) as calls:  # the per-epoch images: a heat map of the same rows each step
            [logger] = image_loggers(client, run_id, calls, config, x_test, x_test, spec=TABLE_SPEC)
            logger.set_model(model)
            logger.on_train_begin()
            model.get_layer("decoder").layers[-1].bias.assign(np.ones(5, np.float32))
            logger.on_epoch_end(0)
    stepped = step_images(run_id)
    assert sorted(stepped["reconstruction"]) == [0, 1] and sorted(stepped["latent_codes"]) == [0, 1]
    sample = images.sample_indices(6, 3, config.seed)
    cell_h, cell_w = images.table_cell(TABLE_SPEC)
    h, w = 2 * cell_h, 5 * cell_w
    frames = [read_png(client, run_id, stepped["reconstruction"][step], tmp_path) for step in (0, 1)]
    outputs = model(x_test[sample], training=False).numpy()
    for i in range(3):
        originals = [tile(frame, i, 0, h, w)[0, ::cell_w] for frame in frames]
        np.testing.assert_array_equal(originals[0], images.table_colours(x_test[sample[i]], TABLE_SPEC))
        np.testing.assert_array_equal(originals[0], originals[1])  # the same rows every epoch
        reconstructed = tile(frames[1], i, 0, h, w)[cell_h, ::cell_w]
        np.testing.assert_array_equal(reconstructed, images.table_colours(outputs[i], TABLE_SPEC))
    assert set(paths) == {f"figures/{n}" for n in ("reconstructions.png", "loss_curves.png", "latent_map.png",
                                                    "feature_errors.png")}
    assert set(client.get_run(run_id).data.metrics) == set(metrics)
    note = client.get_run(run_id).data.tags["mlflow.note.content"]
    assert "20 training samples (5-feature table)" in note and "6 test samples" in note and "images" not in note

    for part, (width_in, width_out) in {"autoencoder": (5, 5), "encoder": (5, 2), "decoder": (2, 5)}.items():
        info = mlflow.models.get_model_info(logged[part].model_uri)
        assert SampleSpec.from_dict(info.metadata[SAMPLE_SPEC_KEY]) == TABLE_SPEC
        signature = info.signature.to_dict()
        assert json.loads(signature["inputs"])[0]["tensor-spec"]["shape"] == [-1, width_in]
        assert json.loads(signature["outputs"])[0]["tensor-spec"]["shape"] == [-1, width_out]
        params = client.get_logged_model(logged[part].model_id).params
        assert params["data_kind"] == "table" and params["sample_shape"] == "5"

    found = {}
    for dataset_input in client.get_run(run_id).inputs.dataset_inputs:
        tags = {t.key: t.value for t in dataset_input.tags}
        found[tags["mlflow.data.context"]] = (dataset_input.dataset, tags)
    training, tags = found["training"]
    assert tags["data_kind"] == "table" and tags["sample_shape"] == "5" and tags["rows"] == "20"
    assert training.digest == "cd" * 16 and json.loads(training.source)["uri"] == str(tmp_path / "people")
    assert [c["name"] for c in json.loads(training.schema)["mlflow_colspec"]] == list(FEATURES)  # no label column
    assert json.loads(training.profile)["num_rows"] == 20
    assert found["evaluation"][1]["rows"] == "6"


def test_registered_version_tags_and_description_name_the_kind_and_shape():
    from aetrack.config import TrainConfig
    from aetrack.tracking.registry import version_description, version_tags

    config = TrainConfig(code_size=2, loss="mse")
    tags = version_tags(config, "run", "sha", {"test_mse": 0.25}, spec=TABLE_SPEC)
    assert (tags["data_kind"], tags["sample_shape"], tags["test_mse"]) == ("table", "5", "0.25")
    assert (version_tags(config, "run", "sha", {})["sample_shape"]) == "28x28x1"  # MNIST by default
    table = Dataset("people", np.zeros((20, 5), np.float32), None, np.zeros((6, 5), np.float32), None, "",
                    spec=TABLE_SPEC)
    # Unbounded data has no bce: the headline is test_mse.
    assert version_description("r1", table, {"test_mse": 0.25}) == (
        "Trained by run r1 on people (20 training samples, 5-feature table). test_mse 0.2500 on 6 test samples.")
