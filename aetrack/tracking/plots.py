"""End-of-run figures, logged under `figures/` in the run's artifacts; drawn on
`aetrack.figures.new_figure` (no pyplot) and imported at the end of a run."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from aetrack.data import IMAGE_SIDE
from aetrack.figures import new_figure
from aetrack.images import PAD, image_rows_grid, sample_indices
from aetrack.models import decoder_of, encoder_of
from aetrack.models.prior import PRIOR_SAMPLES, prior_draws
from aetrack.names import NOISE_LEVELS
from aetrack.noise import RunNoise

FIGURE_DIR = "figures"
FIGURE_IMAGES_PER_ROW = 10  # as in the tutorial's figure


def reconstructions_figure(rows: list[tuple[str, np.ndarray]], per_row: int = FIGURE_IMAGES_PER_ROW) -> Figure:
    """The tutorial's figure: one titled row of 28x28 images per (title, (n, 784) images) pair; more
    than `per_row` samples wrap into further bands of the same rows. Drawn as one image of the
    per-epoch grid (`image_rows_grid`) with the titles on the left: one axes, not one per digit,
    because matplotlib's cost grows with the number of axes and the denoise figure has 7 x 10 digits."""
    grid = image_rows_grid(*(images for _, images in rows), per_row=per_row)
    n_grid_rows = (grid.shape[0] - PAD) // (IMAGE_SIDE + PAD)
    figure = new_figure(1.5 + grid.shape[1] / 25, 0.3 + grid.shape[0] / 25)
    ax = figure.subplots()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([PAD + r * (IMAGE_SIDE + PAD) + IMAGE_SIDE / 2 for r in range(n_grid_rows)])
    ax.set_yticklabels([rows[r % len(rows)][0] for r in range(n_grid_rows)])
    ax.tick_params(axis="y", length=0)
    for side in ax.spines.values():
        side.set_visible(False)
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


def latent_map_figure(codes: np.ndarray, labels: np.ndarray | None = None) -> Figure:
    """The codes projected to 2-D by PCA, coloured by label with a legend (plain points without labels)."""
    points = pca_2d(codes)
    figure = new_figure(6.5, 5.5)
    ax = figure.subplots()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.7)
    else:
        for i, label in enumerate(np.unique(labels)):
            chosen = labels == label
            ax.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.7, color=f"C{i % 10}", label=str(label))
        ax.legend(title="label", markerscale=2, fontsize=8, loc="best")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(f"Codes of {len(codes)} test images (PCA to 2-D)")
    figure.tight_layout()
    return figure


MANIFOLD_STEPS = 15  # latent_manifold.png: a 15 x 15 grid of 2-D codes
MANIFOLD_EXTENT = 2.0  # from -2 to 2 standard deviations of the prior on each axis


def samples_figure(generated: np.ndarray) -> Figure:
    """Decoder outputs for draws from the prior, 8 to a row."""
    return reconstructions_figure([("prior sample", generated)], per_row=8)


def latent_manifold_figure(decode) -> Figure:
    """The keras-io VAE figure: decoder outputs over a grid of the 2-D code space (z1 across,
    z2 down from +extent to -extent)."""
    axis = np.linspace(-MANIFOLD_EXTENT, MANIFOLD_EXTENT, MANIFOLD_STEPS, dtype=np.float32)
    codes = np.array([[z1, z2] for z2 in axis[::-1] for z1 in axis], dtype=np.float32)
    digits = np.asarray(decode(codes)).reshape(MANIFOLD_STEPS, MANIFOLD_STEPS, IMAGE_SIDE, IMAGE_SIDE)
    picture = digits.transpose(0, 2, 1, 3).reshape(MANIFOLD_STEPS * IMAGE_SIDE, MANIFOLD_STEPS * IMAGE_SIDE)
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
    denoise_levels.png; for a vae, samples.png and with code_size 2 latent_manifold.png); return
    their artifact paths. `inputs` are the test images the model was validated on (noisy when
    `noise` is given)."""
    sample = sample_indices(len(dataset.x_test), config.image_samples, config.seed)
    originals = dataset.x_test[sample]
    outputs = model(inputs[sample], training=False).numpy()
    if noise is not None:
        rows = [("noisy input", inputs[sample]), ("denoised", outputs), ("original", originals)]
    else:
        rows = [("original", originals), ("reconstructed", outputs)]
    codes = encoder_of(model)(inputs, training=False).numpy()
    figures = {
        "reconstructions.png": reconstructions_figure(rows),
        "loss_curves.png": loss_curves_figure(history, config.loss),
        "latent_map.png": latent_map_figure(codes, dataset.y_test),
    }
    if noise is not None:
        level_rows = [("original", originals)]
        for level in NOISE_LEVELS:
            # The same noisy images as the run's test_psnr_noise_<level> metric.
            noisy = noise.at_level(dataset.x_test, level)[sample]
            level_rows += [(f"noise {level:g}", noisy), (f"denoised ({level:g})", model(noisy, training=False).numpy())]
        figures["denoise_levels.png"] = reconstructions_figure(level_rows)
    if config.architecture == "vae":
        decoder = decoder_of(model)
        draws = prior_draws(PRIOR_SAMPLES, config.code_size, config.seed)  # the per-epoch `samples` draws
        figures["samples.png"] = samples_figure(decoder(draws, training=False).numpy())
        if config.code_size == 2:
            figures["latent_manifold.png"] = latent_manifold_figure(lambda z: decoder(z, training=False).numpy())
    paths = []
    for name, figure in figures.items():
        path = f"{FIGURE_DIR}/{name}"
        # bbox_inches='tight' keeps long row titles inside the picture.
        client.log_figure(run_id, figure, path, save_kwargs={"bbox_inches": "tight"})
        figure.clear()
        paths.append(path)
    return paths
