"""End-of-run figures, logged under `figures/` in the run's artifacts; drawn on
`aetrack.figures.new_figure` (no pyplot) and imported at the end of a run."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.evaluation import feature_names, per_feature_mse
from aetrack.figures import new_figure
from aetrack.images import PAD, TABLE_SCALE_STD, image_rows_grid, sample_indices
from aetrack.models import decoder_of, encoder_of
from aetrack.models.prior import PRIOR_SAMPLES, prior_draws
from aetrack.names import NOISE_LEVELS
from aetrack.noise import RunNoise

FIGURE_DIR = "figures"
FIGURE_IMAGES_PER_ROW = 10  # as in the tutorial's figure


def reconstructions_figure(rows: list[tuple[str, np.ndarray]], per_row: int = FIGURE_IMAGES_PER_ROW,
                           spec: SampleSpec = MNIST_SPEC) -> Figure:
    """The tutorial's figure: one titled row of HxW images per (title, (n, spec.size) images) pair;
    more than `per_row` samples wrap into further bands of the same rows. Drawn as one image of the
    per-epoch grid (`image_rows_grid`) with the titles on the left: one axes, not one per digit,
    because matplotlib's cost grows with the number of axes and the denoise figure has 7 x 10 digits.
    Tables get `table_reconstructions_figure`."""
    if not spec.is_image:
        return table_reconstructions_figure(rows, spec)
    grid = image_rows_grid(*(images for _, images in rows), per_row=per_row, spec=spec)
    n_grid_rows = (grid.shape[0] - PAD) // (spec.height + PAD)
    # Sized for 28-pixel tiles as before; smaller images are enlarged to stay legible.
    zoom = max(1.0, 28 / max(spec.height, spec.width))
    figure = new_figure(1.5 + zoom * grid.shape[1] / 25, 0.3 + zoom * grid.shape[0] / 25)
    ax = figure.subplots()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")  # cmap is ignored for RGB
    ax.set_xticks([])
    ax.set_yticks([PAD + r * (spec.height + PAD) + spec.height / 2 for r in range(n_grid_rows)])
    ax.set_yticklabels([rows[r % len(rows)][0] for r in range(n_grid_rows)])
    ax.tick_params(axis="y", length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return figure


# Feature names are written under a table's columns only up to this many features.
MAX_FEATURE_TICKS = 40


def table_reconstructions_figure(rows: list[tuple[str, np.ndarray]], spec: SampleSpec) -> Figure:
    """A table's reconstructions as a heat map: for each sample, one line per (title, (n, D) rows)
    pair (e.g. original over reconstructed), features across, on the fixed scale of the per-epoch
    images (blue low, red high; +-TABLE_SCALE_STD standard deviations for standardised tables)."""
    stacked = np.stack([np.asarray(values, np.float64).reshape(-1, spec.size) for _, values in rows], axis=1)
    n, k = stacked.shape[:2]
    low, high = spec.value_range if spec.bounded else (-TABLE_SCALE_STD, TABLE_SCALE_STD)
    figure = new_figure(2.5 + min(12.0, 0.25 * spec.size), 1.0 + 0.22 * n * k)
    ax = figure.subplots()
    shown = ax.imshow(stacked.reshape(n * k, spec.size), cmap="bwr", vmin=low, vmax=high, aspect="auto",
                      interpolation="nearest")
    ax.set_yticks(range(n * k))
    ax.set_yticklabels([f"{rows[j][0]} {i}" for i in range(n) for j in range(k)], fontsize=7)
    for i in range(1, n):  # a line between samples
        ax.axhline(i * k - 0.5, color="black", linewidth=0.8)
    if spec.size <= MAX_FEATURE_TICKS:
        ax.set_xticks(range(spec.size))
        ax.set_xticklabels(feature_names(spec), rotation=90, fontsize=7)
    else:
        ax.set_xlabel("feature")
    figure.colorbar(shown, ax=ax, label="value" if spec.bounded else "standardised value")
    return figure


def feature_errors_figure(clean: np.ndarray, predicted: np.ndarray, spec: SampleSpec) -> Figure:
    """A table's per-feature reconstruction error: one bar per feature, its MSE over the test
    samples (in the model's space, so standardised features compare), named by feature."""
    errors = per_feature_mse(clean.reshape(-1, spec.size), predicted.reshape(-1, spec.size))
    figure = new_figure(2.0 + min(14.0, 0.25 * spec.size), 4.0)
    ax = figure.subplots()
    ax.bar(range(spec.size), errors, color="C3")
    if spec.size <= MAX_FEATURE_TICKS:
        ax.set_xticks(range(spec.size))
        ax.set_xticklabels(feature_names(spec), rotation=90, fontsize=7)
    else:
        ax.set_xlabel("feature")
    ax.set_ylabel("mse" if spec.bounded else "mse (standardised)")
    ax.set_title(f"Reconstruction error per feature ({len(clean)} test samples)")
    ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def loss_curves_figure(history: dict[str, list[float]], loss_name: str = "loss") -> Figure:
    """`loss` and `val_loss` against the 1-based epoch number."""
    figure = new_figure(6.0, 4.0)
    ax = figure.subplots()
    for key in ("loss", "val_loss"):
        values = history.get(key) or []
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(loss_name)
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return figure


def pca_2d(codes: np.ndarray) -> np.ndarray:
    """Project (n, d) codes onto their first two principal components (zeros where there are fewer)."""
    centred = codes.astype(np.float64) - codes.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:2].T
    if projected.shape[1] < 2:
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    return projected


def latent_map_figure(codes: np.ndarray, labels: np.ndarray | None = None, spec: SampleSpec = MNIST_SPEC) -> Figure:
    """The codes projected to 2-D by PCA, coloured by label with a legend (plain points without
    labels); the legend says `spec.label_names` where the data names its classes."""
    points = pca_2d(codes)
    figure = new_figure(6.5, 5.5)
    ax = figure.subplots()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.7)
    else:
        for i, label in enumerate(np.unique(labels)):
            chosen = labels == label
            name = spec.label_names[label] if 0 <= label < len(spec.label_names) else str(label)
            ax.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.7, color=f"C{i % 10}", label=name)
        ax.legend(title="label", markerscale=2, fontsize=8, loc="best")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(f"Codes of {len(codes)} test {'images' if spec.is_image else 'samples'} (PCA to 2-D)")
    figure.tight_layout()
    return figure


MANIFOLD_STEPS = 15  # latent_manifold.png: a 15 x 15 grid of 2-D codes
MANIFOLD_EXTENT = 2.0  # from -2 to 2 standard deviations of the prior on each axis


def samples_figure(generated: np.ndarray, spec: SampleSpec = MNIST_SPEC) -> Figure:
    """Decoder outputs for draws from the prior, 8 to a row."""
    return reconstructions_figure([("prior sample", generated)], per_row=8, spec=spec)


def latent_manifold_figure(decode, spec: SampleSpec = MNIST_SPEC) -> Figure:
    """The keras-io VAE figure: decoder outputs over a grid of the 2-D code space (z1 across,
    z2 down from +extent to -extent); images only, any HxWxC (colour stays colour)."""
    axis = np.linspace(-MANIFOLD_EXTENT, MANIFOLD_EXTENT, MANIFOLD_STEPS, dtype=np.float32)
    codes = np.array([[z1, z2] for z2 in axis[::-1] for z1 in axis], dtype=np.float32)
    height, width, channels = spec.shape
    digits = np.asarray(decode(codes)).reshape(MANIFOLD_STEPS, MANIFOLD_STEPS, height, width, channels)
    picture = digits.transpose(0, 2, 1, 3, 4).reshape(MANIFOLD_STEPS * height, MANIFOLD_STEPS * width, channels)
    picture = picture[..., 0] if channels == 1 else np.clip(picture, 0.0, 1.0)
    figure = new_figure(7.0, 7.0)
    ax = figure.subplots()
    extent = (-MANIFOLD_EXTENT, MANIFOLD_EXTENT, -MANIFOLD_EXTENT, MANIFOLD_EXTENT)
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("Decoder over the 2-D code space")
    figure.tight_layout()
    return figure


def log_final_figures(client, run_id: str, model, config, dataset, inputs: np.ndarray,
                      history: dict[str, list[float]], noise: RunNoise | None = None) -> list[str]:
    """Log figures/reconstructions.png, loss_curves.png, latent_map.png (and, for a denoising run,
    denoise_levels.png; for a vae, samples.png and, for images with code_size 2,
    latent_manifold.png; for tables, feature_errors.png); return their artifact paths. `inputs`
    are the test samples the model was validated on (noisy when `noise` is given); `dataset.spec`
    says how samples are drawn, and the latent map is coloured by label only when there are labels."""
    spec = dataset.spec
    sample = sample_indices(len(dataset.x_test), config.image_samples, config.seed)
    originals = dataset.x_test[sample]
    outputs = model(inputs[sample], training=False).numpy()
    if noise is not None:
        rows = [("noisy input", inputs[sample]), ("denoised", outputs), ("original", originals)]
    else:
        rows = [("original", originals), ("reconstructed", outputs)]
    codes = encoder_of(model)(inputs, training=False).numpy()
    figures = {
        "reconstructions.png": reconstructions_figure(rows, spec=spec),
        "loss_curves.png": loss_curves_figure(history, config.loss),
        "latent_map.png": latent_map_figure(codes, dataset.y_test, spec=spec),
    }
    if not spec.is_image:
        predicted = model(inputs, training=False).numpy()
        figures["feature_errors.png"] = feature_errors_figure(dataset.x_test, predicted, spec)
    if noise is not None:
        level_rows = [("original", originals)]
        for level in NOISE_LEVELS:
            # The same noisy samples as the run's test_<psnr|mse>_noise_<level> metric.
            noisy = noise.at_level(dataset.x_test, level)[sample]
            level_rows += [(f"noise {level:g}", noisy), (f"denoised ({level:g})", model(noisy, training=False).numpy())]
        figures["denoise_levels.png"] = reconstructions_figure(level_rows, spec=spec)
    if config.architecture == "vae":
        decoder = decoder_of(model)
        draws = prior_draws(PRIOR_SAMPLES, config.code_size, config.seed)  # the per-epoch `samples` draws
        figures["samples.png"] = samples_figure(decoder(draws, training=False).numpy(), spec=spec)
        if config.code_size == 2 and spec.is_image:
            figures["latent_manifold.png"] = latent_manifold_figure(lambda z: decoder(z, training=False).numpy(), spec)
    return log_figures(client, run_id, figures)


def log_figures(client, run_id: str, figures: dict) -> list[str]:
    """Log each {file name: figure} under figures/ and free it; the artifact paths."""
    paths = []
    for name, figure in figures.items():
        path = f"{FIGURE_DIR}/{name}"
        # bbox_inches='tight' keeps long row titles inside the picture.
        client.log_figure(run_id, figure, path, save_kwargs={"bbox_inches": "tight"})
        figure.clear()
        paths.append(path)
    return paths
