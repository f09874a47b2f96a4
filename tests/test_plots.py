"""End-of-run figures: logged under figures/, decodable, not blank. (Drawn headless on Agg in a real
training process with a GUI MPLBACKEND: test_cli.py.)"""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from mlflow.tracking import MlflowClient
from PIL import Image

from aetrack import images
from aetrack.tracking import plots


def read_figure(run_id, path, tmp_path) -> np.ndarray:
    local = MlflowClient().download_artifacts(run_id, path, str(tmp_path))
    with Image.open(local) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def assert_not_blank(pixels: np.ndarray, name: str) -> None:
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100, name
    assert pixels.std() > 0, f"{name} is one flat colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, f"{name} has almost no colours"


def test_basic_run_logs_the_final_figures(basic_run, tmp_path):
    result = basic_run.result
    listed = {a.path for a in MlflowClient().list_artifacts(result.run_id, "figures")}
    assert listed == {"figures/reconstructions.png", "figures/loss_curves.png", "figures/latent_map.png"}
    for path in sorted(listed):
        assert_not_blank(read_figure(result.run_id, path, tmp_path), path)


def test_denoise_run_adds_the_noise_levels_figure(denoise_run, tmp_path):
    result = denoise_run.result
    listed = {a.path for a in MlflowClient().list_artifacts(result.run_id, "figures")}
    assert "figures/denoise_levels.png" in listed and len(listed) == 4
    levels = read_figure(result.run_id, "figures/denoise_levels.png", tmp_path)
    assert_not_blank(levels, "denoise_levels.png")
    # original + (noisy, denoised) per level: 7 rows of images, so taller than the 3-row figure.
    three_rows = read_figure(result.run_id, "figures/reconstructions.png", tmp_path)
    assert levels.shape[0] > 2 * three_rows.shape[0]


def test_latent_map_colours_by_label_or_plain_points():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    codes = rng.normal(size=(60, 8)) + labels[:, None] * 5.0
    labelled = plots.latent_map_figure(codes, labels)
    ax = labelled.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert len(ax.collections) == 3
    plain = plots.latent_map_figure(codes, None)
    assert plain.axes[0].get_legend() is None and len(plain.axes[0].collections) == 1
    assert isinstance(labelled.canvas, FigureCanvasAgg) and isinstance(plain.canvas, FigureCanvasAgg)


def test_reconstructions_figure_titles_rows_and_wraps_after_ten():
    rng = np.random.default_rng(0)
    originals, outputs = rng.random((12, 784)), rng.random((12, 784))
    figure = plots.reconstructions_figure([("original", originals), ("reconstructed", outputs)])
    ax = figure.axes[0]
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_array_equal(shown, images.image_rows_grid(originals, outputs, per_row=10))
    assert shown.shape == (4 * 28 + 5 * images.PAD, 10 * 28 + 11 * images.PAD)  # 2 bands of 2 rows
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["original", "reconstructed", "original", "reconstructed"]


def test_loss_curves_plot_the_history_by_epoch():
    figure = plots.loss_curves_figure({"loss": [0.3, 0.2, 0.1], "val_loss": [0.35, 0.25, 0.2]}, "bce")
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["loss"].get_xdata()) == [1, 2, 3] and list(lines["val_loss"].get_ydata()) == [0.35, 0.25, 0.2]
    assert ax.get_ylabel() == "bce"


def test_pca_finds_the_main_direction():
    t = np.linspace(-1, 1, 50)
    codes = np.stack([3 * t, 3 * t, 0.01 * np.sin(40 * t)], axis=1)
    projected = plots.pca_2d(codes)
    assert projected.shape == (50, 2)
    assert abs(np.corrcoef(projected[:, 0], t)[0, 1]) == pytest.approx(1.0, abs=1e-6)
    assert plots.pca_2d(np.ones((4, 1))).shape == (4, 2)  # a 1-number code still gives 2-D points


