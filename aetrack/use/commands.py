"""The operations behind `aetrack encode`, `reconstruct`, `denoise`, `score` and `sample`, for a
model of any sample shape (its `SampleSpec`: `aetrack.use.specs`).

Each reads and checks its files and output paths first (numpy, Pillow and pandas only), then loads
the model (TensorFlow) and its spec, fits the inputs to that spec and writes its output atomically.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from aetrack.data import SampleSpec
from aetrack.errors import ArgumentError
from aetrack.models.loading import check_model_spec, load_model
from aetrack.models.prior import prior_draws
from aetrack.use.anomaly_io import (MSE, Threshold, as_scores, check_threshold, flags, is_scorer,
                                    reconstruction_scores, stored_threshold)
from aetrack.use.checks import MODEL, check_decoder, check_input_width, check_sample_model, encoder_for_codes
from aetrack.use.inputs import TABLE_SUFFIXES, open_inputs, to_model_inputs
from aetrack.use.outputs import (SCORE_SUFFIXES, check_output, check_sample_output, write_grid, write_npy,
                                 write_samples, write_samples_grid, write_scores_table)
from aetrack.use.specs import model_metadata, model_spec

# Before the spec is known any sample output may do; the spec then narrows it (`check_sample_output`).
_ANY_SAMPLE_OUTPUT = (".npy", ".png") + TABLE_SUFFIXES


def predict(model, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run the model in inference mode, in batches; float32 numpy out."""
    return np.asarray(model.predict(rows, batch_size=batch_size, verbose=0), dtype=np.float32)


def reconstruction_errors(model, rows: np.ndarray, spec: SampleSpec | None = None) -> np.ndarray:
    """Per-sample MSE between each row and the model's reconstruction of it, shape (n,); with a
    scaled table's `spec`, in its standardised space (`anomaly_io.reconstruction_scores`)."""
    from aetrack.data import MNIST_SPEC

    return reconstruction_scores(rows, predict(model, rows), spec or MNIST_SPEC)


def load_with_spec(model_uri: str, option: str = MODEL) -> tuple[object, SampleSpec]:
    """The Keras model at `model_uri` and the spec of the samples it takes or gives; a ModelError
    naming `option` when it does not load."""
    model = load_model(model_uri, option)
    return model, model_spec(model_uri, model)


def encode(model_uri: str, input_paths: Sequence[str], output_path: str, resize: bool = False) -> np.ndarray:
    """Write the codes of the inputs to a .npy; return them, float32 (n, code_size)."""
    files = open_inputs(input_paths)
    check_output(output_path, (".npy",))
    check_model_spec(model_uri, MODEL)
    model, spec = load_with_spec(model_uri)
    rows = to_model_inputs(files, spec, resize)
    codes = predict(encoder_for_codes(model, model_uri, spec), rows)
    write_npy(output_path, codes)
    return codes


def transform(model_uri: str, input_paths: Sequence[str], output_path: str, grid_path: str | None = None,
              noise_factor: float | None = None, seed: int = 0, resize: bool = False) -> np.ndarray:
    """Run a sample-to-sample model (reconstruct or denoise) on the inputs, images optionally
    noised first with `clip(x + noise_factor * N(0, 1), 0, 1)`; write the outputs as a .npy in the
    sample shape, a .png grid (images) or a CSV/Parquet table (tables), and a grid to `grid_path`.
    Return them flat, float32 (n, spec.size)."""
    files = open_inputs(input_paths)
    check_output(output_path, _ANY_SAMPLE_OUTPUT)
    if grid_path is not None:
        check_output(grid_path, (".png",), "grid")
    check_model_spec(model_uri, MODEL)
    model, spec = load_with_spec(model_uri)
    suffix = check_sample_output(output_path, spec)
    if grid_path is not None and not spec.is_image:
        raise ArgumentError("grid", grid_path, "a grid shows images", f"expected none for a {spec.describe()} model")
    if noise_factor is not None and not spec.bounded:
        raise ArgumentError("noise_factor", noise_factor, "noise is added to image inputs only",
                            f"expected none for a {spec.describe()} model")
    rows = to_model_inputs(files, spec, resize)
    if noise_factor is not None:
        from aetrack.noise import add_noise

        rows = add_noise(rows, noise_factor, seed)
    check_sample_model(model, model_uri, spec)
    outputs = predict(model, rows)
    if suffix == ".png":
        write_grid(output_path, rows, outputs, spec)
    else:
        write_samples(output_path, suffix, outputs, spec)
    if grid_path is not None:
        write_grid(grid_path, rows, outputs, spec)
    return outputs


class Scored(NamedTuple):
    """What `score_samples` wrote: the scores, their 0/1 flags and the threshold used (both None
    when the model has no threshold and none was given), and a note for the user (or "")."""

    scores: np.ndarray
    flags: np.ndarray | None
    threshold: Threshold | None
    note: str = ""


def score_samples(model_uri: str, input_paths: Sequence[str], output_path: str, resize: bool = False,
                  threshold: float | str | None = None) -> Scored:
    """Score the inputs and write them: a .npy holds the scores only (float32 (n,)); a .csv or
    .parquet one row per sample with `score` and, when there is a threshold, `is_anomaly` (0/1).

    The score is a `scorer` model's output, or an autoencoder's per-sample MSE in the model's space.
    The threshold is `threshold` when given, else the one stored with the model (`anomaly_io`).
    """
    given = check_threshold(threshold)
    files = open_inputs(input_paths)
    suffix = check_output(output_path, SCORE_SUFFIXES)
    check_model_spec(model_uri, MODEL)
    model = load_model(model_uri, MODEL)
    metadata = model_metadata(model_uri)
    spec = model_spec(model_uri, model, metadata)
    rows = to_model_inputs(files, spec, resize)
    scorer = is_scorer(model, metadata)
    if scorer:
        check_input_width(model, model_uri, spec)
        scores = as_scores(predict(model, rows))
    else:
        check_sample_model(model, model_uri, spec)
        scores = reconstruction_scores(rows, predict(model, rows), spec)
    note = ""
    used = Threshold(given, "given") if given is not None else stored_threshold(model_uri, metadata)
    if used is not None and used.source == "stored" and not scorer and used.score != MSE:
        note = (f"the model's threshold is on {used.score} scores, not this autoencoder's MSE: no is_anomaly; "
                "score with the run's scorer model (models:/<prefix>-scorer/...) for its flags")
        used = None
    elif used is None:
        note = "no threshold stored with the model and none given: scores only (give {threshold} for flags)"
    flagged = None if used is None else flags(scores, used.value)
    if suffix == ".npy":
        write_npy(output_path, scores)
    else:
        write_scores_table(output_path, scores, flagged)
    return Scored(scores, flagged, used, note)


def score(model_uri: str, input_paths: Sequence[str], output_path: str, resize: bool = False,
          threshold: float | str | None = None) -> np.ndarray:
    """`score_samples`, returning only the scores, float32 (n,)."""
    return score_samples(model_uri, input_paths, output_path, resize, threshold).scores


def sample(model_uri: str, output_path: str, count: int = 64, seed: int = 0) -> np.ndarray:
    """Decode `count` codes drawn from N(0, I) (seeded) and write the samples: a .npy in the sample
    shape (MNIST: float32 (count, 28, 28)), a .png grid of up to 64 images, or a CSV/Parquet table;
    return them flat, float32 (count, spec.size).

    Meant for a vae's decoder, whose codes follow the prior; a plain autoencoder's decoder also
    works, but its codes were never pulled towards N(0, I), so most draws decode to blur.
    """
    if count < 1:
        raise ArgumentError("count", count, "expected an integer >= 1")
    check_output(output_path, _ANY_SAMPLE_OUTPUT)
    check_model_spec(model_uri, MODEL)
    model, spec = load_with_spec(model_uri)
    suffix = check_sample_output(output_path, spec)
    code_size = check_decoder(model, model_uri, spec)
    generated = predict(model, prior_draws(count, code_size, seed))
    if suffix == ".png":
        write_samples_grid(output_path, generated, spec)
    else:
        write_samples(output_path, suffix, generated, spec)
    return generated
