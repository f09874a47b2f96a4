"""`aetrack promote`, `encode`, `reconstruct`, `denoise`, `score` and `sample`: commands that use trained
models. Each is a thin layer over `aetrack.use` (or the registry, for promote), which checks
inputs and outputs before TensorFlow or MLflow load."""

from __future__ import annotations

import click

from aetrack.config import MODEL_URI_FORMS
from aetrack.cli.wording import for_the_command_line
from aetrack.errors import ArgumentError, ModelError, RegistryError, UsageError
from aetrack.names import CHAMPION

_MODEL_HELP = f"The model: {MODEL_URI_FORMS}."
_INPUT_HELP = ("Samples of the model's shape: a .npy of shape (N, *shape) or flat (N, size) (MNIST: (N, 28, 28) "
               "or (N, 784); images uint8 0..255 or float 0..1), image files (.png, .jpg, .bmp, .gif) of the "
               "model's size, or for table models CSV/Parquet files with the training columns (others are "
               "ignored). Repeat for more files; samples are taken in order.")
_RESIZE_HELP = "Resize image files to the model's size instead of refusing other sizes."
# The core's argument names (aetrack.use) spelled as this module's flags.
_SPELLED = {"noise_factor": "--add-noise"}


def _worded(call, *args, **kwargs):
    """Run an `aetrack.use` operation; its refusals read with the command's flags."""
    from aetrack import use

    try:
        return call(*args, **kwargs)
    except ArgumentError as exc:
        raise for_the_command_line(exc, _SPELLED) from None
    except ModelError as exc:
        if exc.option != use.MODEL:
            raise
        # "invalid model 'x': ..." -> "invalid --model 'x': ..."; the rest of the line as the core said it.
        raise UsageError(f"invalid --model{str(exc)[len(f'invalid {use.MODEL}'):]}") from None


@click.command()
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), default=None, help="The version to promote.")
@click.option("--if-better", is_flag=True,
              help="Only if its test_bce is lower than the champion's (without --version: the candidate).")
def promote(name: str, version: int | None, if_better: bool) -> None:
    """Point the registered model NAME's `champion` alias at a version."""
    from aetrack.tracking.promotion import promote as promote_version

    try:
        result = promote_version(name, version, if_better)
    except RegistryError as exc:
        raise for_the_command_line(exc, {"name": "name"}) from None
    was = f" (was version {result.previous})" if result.previous and result.moved else ""
    if result.moved:
        click.echo(f"aetrack: {name}@{CHAMPION} -> version {result.version}{was}: {result.reason}")
    else:
        click.echo(f"aetrack: {name}@{CHAMPION} unchanged: {result.reason}")


def _model_options(output_default: str | None = None):
    """--model, --input (repeatable) and --output. Required ones are checked in `_require` rather
    than with required=True, so a missing one reads like any other error."""
    def decorate(function):
        output_help = "Where to write the result." + (f"  [default: {output_default}]" if output_default
                                                      else "  [required]")
        function = click.option("--output", "-o", default=output_default, help=output_help)(function)
        function = click.option("--resize", is_flag=True, help=_RESIZE_HELP)(function)
        function = click.option("--input", "-i", "inputs", multiple=True, help=_INPUT_HELP + "  [required]")(function)
        return click.option("--model", "-m", "model_uri", help=_MODEL_HELP + "  [required]")(function)

    return decorate


def _require(model_uri, inputs, output) -> None:
    for option, value, expected in (("--model", model_uri, "a model URI"), ("--input", inputs, "an input file"),
                                    ("--output", output, "an output file")):
        if not value:
            raise click.BadParameter(f"missing; expected {expected} (see --help)", param_hint=option)


@click.command()
@_model_options()
def encode(model_uri: str, inputs: tuple[str, ...], resize: bool, output: str) -> None:
    """Write the codes of samples to --output (.npy, float32 (N, code_size))."""
    from aetrack import use

    _require(model_uri, inputs, output)
    codes = _worded(use.encode, model_uri, inputs, output, resize=resize)
    click.echo(f"aetrack: wrote {codes.shape[0]} codes of size {codes.shape[1]} to {output}")


@click.command()
@_model_options()
@click.option("--grid", default=None, help="Also write a PNG grid: inputs above their reconstructions.")
def reconstruct(model_uri: str, inputs: tuple[str, ...], resize: bool, output: str, grid: str | None) -> None:
    """Write reconstructions to --output: a .npy in the sample shape (MNIST: float32 (N, 28, 28) in
    [0, 1]), a .png grid (images) or a .csv/.parquet table with the training columns (tables)."""
    _transform(model_uri, inputs, output, grid, noise_factor=None, seed=0, resize=resize)


@click.command()
@_model_options()
@click.option("--grid", default=None, help="Also write a PNG grid: noisy inputs above their denoised images.")
@click.option("--add-noise", type=click.FloatRange(0.0, 5.0), default=None,
              help="First add clip(x + F * N(0, 1), 0, 1) noise to the inputs, as training did (a demo).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True, help="Seed for --add-noise.")
def denoise(model_uri: str, inputs: tuple[str, ...], resize: bool, output: str, grid: str | None,
            add_noise: float | None, seed: int) -> None:
    """Write denoised samples of noisy inputs to --output: a .npy in the sample shape (MNIST: (N, 28, 28)
    in [0, 1]), a .png grid (images) or a .csv/.parquet table (tables)."""
    _transform(model_uri, inputs, output, grid, noise_factor=add_noise, seed=seed, resize=resize)


def _transform(model_uri, inputs, output, grid, noise_factor, seed, resize) -> None:
    from aetrack import use

    _require(model_uri, inputs, output)
    outputs = _worded(use.transform, model_uri, inputs, output, grid, noise_factor, seed, resize=resize)
    what = "images" if output.lower().endswith(".png") or grid else "samples"
    click.echo(f"aetrack: wrote {len(outputs)} {what} to {output}" + (f" and a grid to {grid}" if grid else ""))


@click.command(short_help="Write per-sample anomaly scores and flags.")
@_model_options(output_default="scores.npy")
@click.option("--threshold", default=None, metavar="X",
              help="Flag samples scoring above X instead of above the model's stored threshold (a finite number).")
def score(model_uri: str, inputs: tuple[str, ...], resize: bool, output: str, threshold: str | None) -> None:
    """Write each sample's anomaly score to --output: a .csv or .parquet with the columns `score`
    and `is_anomaly` (1: score above the threshold), or a .npy of the scores alone (float32 (N,)).
    Higher means less like the training data.

    The score is a scorer model's output (models:/<prefix>-scorer/...), or an autoencoder's
    reconstruction error (MSE). The threshold is the one stored with the model when it was trained;
    --threshold overrides it. A model with none and no --threshold gets scores only (no
    is_anomaly column)."""
    from aetrack import use

    _require(model_uri, inputs, output)
    scored = _worded(use.score_samples, model_uri, inputs, output, resize=resize, threshold=threshold)
    scores = scored.scores
    click.echo(f"aetrack: wrote {len(scores)} scores to {output} (mean {scores.mean():.5f}, "
               f"min {scores.min():.5f}, max {scores.max():.5f})")
    if scored.threshold is not None:
        from aetrack.use.anomaly_io import flagged_line

        line = flagged_line(int(scored.flags.sum()), len(scores), scored.threshold)
        click.echo(f"aetrack: {line.replace('the threshold given', '--threshold')}")
    if scored.note:
        click.echo(f"aetrack: note: {scored.note.replace('{threshold}', '--threshold')}")


@click.command(short_help="Write samples decoded from random codes (a generative model's samples).")
@click.option("--model", "-m", "model_uri", help=_MODEL_HELP.replace("The model", "The decoder") + "  [required]")
@click.option("--count", "-n", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Images to generate.")
@click.option("--output", "-o", default=None, help="A .npy in the sample shape (MNIST: float32 (N, 28, 28)), a .png "
              "grid (images, up to 64) or a .csv/.parquet table (tables).  [required]")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Seed for the standard-normal codes.")
def sample(model_uri: str, count: int, output: str, seed: int) -> None:
    """Decode --count codes drawn from N(0, I) with a decoder (best: a vae's) and write the samples."""
    from aetrack import use

    for option, value, expected in (("--model", model_uri, "a decoder model URI"), ("--output", output, "a file")):
        if not value:
            raise click.BadParameter(f"missing; expected {expected} (see --help)", param_hint=option)
    generated = _worded(use.sample, model_uri, output, count, seed)
    click.echo(f"aetrack: wrote {len(generated)} sampled {'images' if output.lower().endswith('.png') else 'samples'} "
               f"to {output}")


@click.command(short_help="Serve a model over HTTP (MLflow's JSON protocol, or .npy for fast batches).")
@click.option("--model", "-m", "model_uri", help=_MODEL_HELP + "  [required]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=5001, show_default=True,
              help="Port to bind (0: any free one).")
@click.option("--max-body-mb", type=click.FloatRange(0, 4096, min_open=True), default=256, show_default=True,
              help="Largest request body in MiB; a larger one is answered 413 without being read.")
@click.option("--timeout", type=click.FloatRange(0, 3600, min_open=True), default=30, show_default=True,
              help="Seconds a client may take to send a request's body (else 408) or to read an answer; "
                   "idle connections close after it too.")
@click.option("--no-access-log", is_flag=True,
              help="Do not write a line per request (method, path, status, rows, milliseconds) on stderr.")
@click.option("--workers", "-w", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes sharing the port, each with its own copy of the model; more than the machine's "
                   "cores rarely helps.")
def serve(model_uri: str, host: str, port: int, max_body_mb: float, timeout: float, no_access_log: bool,
          workers: int) -> None:
    """Answer POST /invocations with the model's outputs until Ctrl-C or SIGTERM.

    A request is MLflow's JSON ({"inputs": [[...], ...]}, "instances", "dataframe_split" or
    "dataframe_records"; answered with {"predictions": ...}) or, much faster for batches, a .npy body
    sent as Content-Type application/x-npy, answered with a .npy of float32 outputs. Inputs are
    samples of the model's shape, (N, *shape) or flat (N, size); a table model's dataframe columns
    are matched to its training columns by name. Samples are answered in the shape they were sent.
    GET /ping and /health answer 200 once the model is loaded.
    """
    from aetrack.serve import Limits, serve as serve_model

    if not model_uri:
        raise click.BadParameter("missing; expected a model URI (see --help)", param_hint="--model")
    limits = Limits(max_body_bytes=int(max_body_mb * 2**20), timeout=timeout)
    serve_model(model_uri, host, port, announce=lambda line: click.echo(line), limits=limits,
                access_log=not no_access_log, workers=workers)


@click.command(short_help="Write a model as a SavedModel, TFLite or ONNX file, checked against Keras.")
@click.option("--model", "-m", "model_uri", help=_MODEL_HELP + "  [required]")
@click.option("--format", "-f", "fmt", default=None, metavar="FORMAT",
              help="savedmodel (a folder), tflite or onnx (needs the export extra).  [required]")
@click.option("--output", "-o", default=None, help="The new file (tflite, onnx) or folder (savedmodel).  [required]")
@click.option("--quantize", default=None, metavar="TYPE",
              help="tflite only: float16 (half-size weights) or int8 (weights and activations, calibrated on "
                   "the model's run's training samples).")
@click.option("--log-to-run", is_flag=True,
              help="Also store the export under the model's run (exports/<format>/) with its size and difference.")
def export(model_uri: str, fmt: str, output: str, quantize: str | None, log_to_run: bool) -> None:
    """Export --model to --format at --output, then load the export with its own runtime, run it on
    held-out samples (the run's test split, else seeded random inputs) and compare it with the Keras
    model; an export further off than its tolerance (float32 1e-4, float16 1e-2, times the largest
    output when that is above 1; int8 0.25 of the outputs' range) is refused and nothing is written."""
    for option, value, expected in (("--model", model_uri, "a model URI"),
                                    ("--format", fmt, "savedmodel, tflite or onnx"),
                                    ("--output", output, "a new file or folder")):
        if not value:
            raise click.BadParameter(f"missing; expected {expected} (see --help)", param_hint=option)
    from aetrack.use.export import check_export

    check_export(model_uri, fmt, output, quantize, log_to_run)  # before TensorFlow loads
    from aetrack.use.export import export_model

    result = export_model(model_uri, fmt, output, quantize, log_to_run)
    what = f"{fmt}" + (f" ({quantize})" if quantize else "")
    click.echo(f"aetrack: wrote {what} to {output} ({result.bytes} bytes)")
    click.echo(f"aetrack: largest absolute difference from Keras on {result.samples} samples ({result.source}): "
               f"{result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})")
    if quantize and result.metric:
        click.echo(f"aetrack: {result.metric}: Keras {result.metric_keras:.6f}, export {result.metric_export:.6f}")
    if result.logged:
        click.echo(f"aetrack: logged to run {result.run_id} under exports/{fmt}/: "
                   + ", ".join(f"{k}={v:.6g}" for k, v in result.logged.items()))


MODEL_COMMANDS = (promote, encode, reconstruct, denoise, score, sample, serve, export)
