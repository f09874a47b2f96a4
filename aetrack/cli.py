"""The `aetrack` command: a thin click layer over aetrack's core.

Nothing here imports TensorFlow at module level, so `aetrack --help` and parameter errors are fast;
each command imports the heavy modules it needs when it runs.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from aetrack import __version__
from aetrack.config import DEFAULT_EXPERIMENT, ENTRY_POINTS, ConfigError, TrainConfig, parse_value, training_params

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aetrack")
@click.option("--debug", is_flag=True, envvar="AETRACK_DEBUG", help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Train autoencoders with TensorFlow/Keras and track every run with MLflow."""


@cli.group()
def train() -> None:
    """Train an autoencoder and track it as one MLflow run."""


def _parse_option(ctx: click.Context, param: click.Parameter, raw):
    if raw is None:
        return None
    try:
        return parse_value(param.name, raw)
    except ConfigError as exc:
        raise click.BadParameter(
            f"got {raw!r}; expected {exc.allowed}", ctx=ctx, param=param
        ) from None


def _check_dataset(ctx: click.Context, param: click.Parameter, raw):
    value = _parse_option(ctx, param, raw)
    if value is not None:
        from aetrack.data import DataError, check_dataset_spec

        try:
            check_dataset_spec(value)
        except DataError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _check_init_model(ctx: click.Context, param: click.Parameter, raw):
    value = _parse_option(ctx, param, raw)
    if value:
        from aetrack.preflight import InitModelError, check_init_model_spec  # no TensorFlow

        try:
            check_init_model_spec(value)
        except InitModelError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


_OPTION_CHECKS = {"dataset": _check_dataset, "init_model": _check_init_model}


def _train_command(entry_point: str) -> click.Command:
    """Build `aetrack train <entry_point>` with one option per TrainConfig field it takes."""

    def run(experiment_name: str, **values) -> None:
        from aetrack.train import train as run_training

        given = {k: v for k, v in values.items() if v is not None}
        config = TrainConfig(entry_point=entry_point, experiment_name=experiment_name, **given)
        run_training(config)

    params = []
    for f in training_params(entry_point):
        default = f.default if f.type != "bool" else str(f.default).lower()
        params.append(
            click.Option(
                [f"--{f.name.replace('_', '-')}", f.name],
                type=str,
                default=None,
                metavar=f.type.upper(),
                callback=_OPTION_CHECKS.get(f.name, _parse_option),
                help=f"{f.metadata['help']}  [default: {default if default != '' else 'empty'}]",
            )
        )
    params.append(
        click.Option(
            ["--experiment-name"],
            default=DEFAULT_EXPERIMENT,
            envvar="MLFLOW_EXPERIMENT_NAME",
            show_default=True,
            help="MLflow experiment (ignored under `mlflow run`, which picks its own).",
        )
    )
    summary = {
        "basic": "The seed's autoencoder: reconstruct clean images.",
        "denoise": "A denoising autoencoder: noisy images in, clean images out.",
    }[entry_point]
    return click.Command(entry_point, callback=run, params=params, help=summary, short_help=summary)


for _entry_point in ENTRY_POINTS:
    train.add_command(_train_command(_entry_point))

from aetrack.model_commands import MODEL_COMMANDS  # noqa: E402 - promote, encode, reconstruct, denoise

for _command in MODEL_COMMANDS:
    cli.add_command(_command)


@cli.command(short_help="Rank runs by a metric; overlay their val_loss curves.")
@click.argument("run_ids_args", metavar="[RUN_ID]...", nargs=-1)
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True,
              help="Compare every run of this experiment (ignored when run ids are given).")
@click.option("--runs", "run_ids", multiple=True, metavar="ID",
              help="Compare these runs (repeat, separate by commas, or list ids after it).")
@click.option("--metric", default="test_bce", show_default=True,
              help="Rank by this final metric; psnr/ssim/auc/gain higher is better, others lower.")
@click.option("--output", default=".", show_default=True, help="Directory for loss_curves.png.")
def compare(run_ids_args: tuple[str, ...], experiment: str, run_ids: tuple[str, ...], metric: str,
            output: str) -> None:
    """Rank runs by a metric in a table and overlay their val_loss curves in loss_curves.png."""
    from aetrack.compare import compare as compare_runs

    ids = list(dict.fromkeys(i for raw in (*run_ids, *run_ids_args) for i in raw.replace(",", " ").split()))
    table, png = compare_runs(experiment, ids, metric, output)
    click.echo(table)
    click.echo(f"wrote {png}")


@cli.command(short_help="Write per-image reconstruction errors (anomaly scores).")
@click.option("--model", "model_uri", required=True, metavar="URI",
              help="Model URI (runs:/..., models:/...) or a .keras file.")
@click.option("--input", "input_paths", required=True, multiple=True, metavar="FILE",
              help=".npy of images ((n, 28, 28) or (n, 784), uint8 0..255 or floats in [0, 1]) or 28x28 PNGs; "
                   "repeat for several files.")
@click.option("--output", "output_path", default="scores.npy", show_default=True, metavar="FILE",
              help="Where to write the (n,) float32 per-image errors (.npy).")
def score(model_uri: str, input_paths: tuple[str, ...], output_path: str) -> None:
    """Write each image's reconstruction error (MSE): higher means less like the training data."""
    from aetrack.scoring import score as score_images

    errors = score_images(model_uri, input_paths, output_path)
    click.echo(f"wrote {len(errors)} scores to {output_path} (mean {errors.mean():.5f}, "
               f"min {errors.min():.5f}, max {errors.max():.5f})")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _ignore_more_signals() -> None:
    import signal

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one line on stderr and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("AETRACK_DEBUG", "") not in ("", "0", "false")
    try:
        code = cli.main(args=args, prog_name="aetrack", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort as exc:
        _ignore_more_signals()  # the run is already ended; a second Ctrl-C must not add a traceback
        # click turns KeyboardInterrupt (and train's Interrupted) into Abort; the cause says which signal.
        signal_number = getattr(exc.__cause__, "signal_number", 2)
        click.echo(f"aetrack: interrupted by {'SIGTERM' if signal_number == 15 else 'SIGINT'}", err=True)
        code = EXIT_SIGTERM if signal_number == 15 else EXIT_SIGINT
    except click.BadParameter as exc:
        name = exc.param.opts[0] if exc.param is not None and exc.param.opts else (exc.param_hint or "")
        click.echo(f"aetrack: error: invalid {name}: {_one_line(exc.message)}", err=True)
        code = EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"aetrack: error: {_one_line(exc.format_message())}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt as exc:
        _ignore_more_signals()
        signal_number = getattr(exc, "signal_number", 2)
        click.echo(f"aetrack: interrupted by {'SIGTERM' if signal_number == 15 else 'SIGINT'}", err=True)
        code = EXIT_SIGTERM if signal_number == 15 else EXIT_SIGINT
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if debug:
            traceback.print_exc()
        code = EXIT_USAGE if isinstance(exc, ValueError) else EXIT_ERROR
        text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        click.echo(f"aetrack: error: {_one_line(text)}", err=True)
    sys.exit(code if isinstance(code, int) else 0)

