"""`aetrack promote`, `encode`, `reconstruct` and `denoise`: commands that use registered models.

Inputs and outputs are checked (numpy and Pillow only) before TensorFlow or MLflow load, so a bad
file fails in a fraction of a second with one line.
"""

from __future__ import annotations

import click

_MODEL_HELP = ("MLflow model URI: models:/<name>@<alias>, models:/<name>/<version>, models:/<name>/latest, "
               "runs:/<run id>/<autoencoder|encoder|decoder>, or a .keras file.")
_INPUT_HELP = ("A .npy of shape (N, 28, 28) or (N, 784), uint8 0..255 or float 0..1, or a 28x28 PNG "
               "(white digit on black). Repeat for more files; images are taken in order.")


@click.command()
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), default=None, help="The version to promote.")
@click.option("--if-better", is_flag=True,
              help="Only if its test_bce is lower than the champion's (without --version: the candidate).")
def promote(name: str, version: int | None, if_better: bool) -> None:
    """Point the registered model NAME's `champion` alias at a version."""
    from aetrack.registry import CHAMPION, promote as promote_version

    result = promote_version(name, version, if_better)
    was = f" (was version {result.previous})" if result.previous and result.moved else ""
    if result.moved:
        click.echo(f"aetrack: {name}@{CHAMPION} -> version {result.version}{was}: {result.reason}")
    else:
        click.echo(f"aetrack: {name}@{CHAMPION} unchanged: {result.reason}")


def _model_options(function):
    # Checked in _require rather than with required=True, so a missing one reads like any other error.
    function = click.option("--output", "-o", help="Where to write the result.  [required]")(function)
    function = click.option("--input", "-i", "inputs", multiple=True, help=_INPUT_HELP + "  [required]")(function)
    return click.option("--model", "-m", "model_uri", help=_MODEL_HELP + "  [required]")(function)


def _require(model_uri, inputs, output) -> None:
    for option, value, expected in (("--model", model_uri, "a model URI"), ("--input", inputs, "an input file"),
                                    ("--output", output, "an output file")):
        if not value:
            raise click.BadParameter(f"missing; expected {expected} (see --help)", param_hint=option)


@click.command()
@_model_options
def encode(model_uri: str, inputs: tuple[str, ...], output: str) -> None:
    """Write the codes of images to --output (.npy, float32 (N, code_size))."""
    from aetrack import inference

    _require(model_uri, inputs, output)
    images = inference.read_images(inputs)
    inference.check_output(output, (".npy",))
    model = _load(model_uri)
    codes = inference.predict(inference.encoder_for_codes(model, model_uri), images)
    inference.write_npy(output, codes)
    click.echo(f"aetrack: wrote {codes.shape[0]} codes of size {codes.shape[1]} to {output}")


@click.command()
@_model_options
@click.option("--grid", default=None, help="Also write a PNG grid: inputs above their reconstructions.")
def reconstruct(model_uri: str, inputs: tuple[str, ...], output: str, grid: str | None) -> None:
    """Write reconstructions to --output (.npy float32 (N, 28, 28) in [0, 1], or a .png grid)."""
    _run_image_model(model_uri, inputs, output, grid, add_noise=None, seed=0)


@click.command()
@_model_options
@click.option("--grid", default=None, help="Also write a PNG grid: noisy inputs above their denoised images.")
@click.option("--add-noise", type=click.FloatRange(0.0, 5.0), default=None,
              help="First add clip(x + F * N(0, 1), 0, 1) noise to the inputs, as training did (a demo).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True, help="Seed for --add-noise.")
def denoise(model_uri: str, inputs: tuple[str, ...], output: str, grid: str | None, add_noise: float | None,
            seed: int) -> None:
    """Write denoised images of noisy inputs to --output (.npy (N, 28, 28) in [0, 1], or a .png grid)."""
    _run_image_model(model_uri, inputs, output, grid, add_noise, seed)


def _run_image_model(model_uri, inputs, output, grid, add_noise, seed) -> None:
    from aetrack import inference

    _require(model_uri, inputs, output)
    images = inference.read_images(inputs)
    suffix = inference.check_output(output, (".npy", ".png"))
    if grid is not None:
        inference.check_output(grid, (".png",), "--grid")
    if add_noise is not None:
        from aetrack.noise import add_noise as noisy

        images = noisy(images, add_noise, seed)
    model = _load(model_uri)
    inference.check_image_model(model, model_uri)
    outputs = inference.predict(model, images)
    if suffix == ".npy":
        inference.write_npy(output, outputs.reshape(-1, inference.IMAGE_SIDE, inference.IMAGE_SIDE))
    else:
        inference.write_grid(output, images, outputs)
    if grid is not None:
        inference.write_grid(grid, images, outputs)
    click.echo(f"aetrack: wrote {len(outputs)} images to {output}" + (f" and a grid to {grid}" if grid else ""))


def _load(model_uri: str):
    from aetrack.registry import RegistryError, load_model

    try:
        return load_model(model_uri)
    except RegistryError as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None


MODEL_COMMANDS = (promote, encode, reconstruct, denoise)
