"""`aetrack train basic|denoise` and `aetrack sweep basic|denoise`: one option per TrainConfig (and
SweepConfig) field, checked before TensorFlow loads; `aetrack resume RUN_ID`: continue a run that
stopped early."""

from __future__ import annotations

import functools

import click

from aetrack.config import (DEFAULT_EXPERIMENT, ENTRY_POINTS, SweepConfig, TrainConfig, field_kind, parse_value,
                            sweep_params, training_params)
from aetrack.errors import ConfigError, UsageError
from aetrack.rules import RUN_ID_PATTERN

SUMMARIES = {
    "basic": "The tutorial's dense autoencoder: reconstruct clean images.",
    "denoise": "A denoising autoencoder: noisy images in, clean images out.",
}


@click.group()
def train() -> None:
    """Train an autoencoder and track it as one MLflow run."""


def _parse_option(ctx: click.Context, param: click.Parameter, raw, config_class: type = TrainConfig):
    if raw is None or raw == ():
        return None
    if isinstance(raw, tuple):  # a repeatable option (--search): its values, space-separated
        raw = " ".join(raw)
    try:
        value = parse_value(param.name, raw, config_class)
        if param.name == "dataset":
            from aetrack.data import check_dataset_spec

            check_dataset_spec(value)
        elif param.name == "init_model" and value:
            from aetrack.models.loading import check_model_spec  # no TensorFlow

            check_model_spec(value, "init_model")
    except ConfigError as exc:
        raise click.BadParameter(f"got {raw!r}; expected {exc.allowed}", ctx=ctx, param=param) from None
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def training_options(entry_point: str) -> list[click.Option]:
    """One `--name VALUE` option per parameter the entry point takes, parsed by TrainConfig's rules."""
    return _options(training_params(entry_point), TrainConfig)


def _options(fields, config_class: type, repeatable: tuple[str, ...] = ()) -> list[click.Option]:
    options = []
    for f in fields:
        kind = field_kind(f)
        default = kind.shown(f.default)
        options.append(
            click.Option(
                [f"--{f.name.replace('_', '-')}", f.name],
                type=str,
                default=None,
                multiple=f.name in repeatable,
                metavar=kind.name.upper(),
                callback=functools.partial(_parse_option, config_class=config_class),
                help=f"{f.metadata['help']}  [default: {default if default != '' else 'empty'}]",
            )
        )
    return options


def _train_command(entry_point: str) -> click.Command:
    def run(experiment_name: str, **values) -> None:
        from aetrack.data import dataset_for

        given = {k: v for k, v in values.items() if v is not None}
        config = TrainConfig(entry_point=entry_point, experiment_name=experiment_name, **given).validated()
        if config.resume_run_id:  # `mlflow run -P resume_run_id=...`: the run's own params decide
            _resume(config.resume_run_id)
            return
        # A bad dataset file (numpy only) or an unusable store fails in a second, before TensorFlow loads.
        dataset = dataset_for(config)
        check_store_then_load_tensorflow()
        from aetrack.train import train as run_training

        run_training(config, dataset)

    summary = SUMMARIES[entry_point]
    return click.Command(entry_point, callback=run, params=[*training_options(entry_point), _experiment_option()],
                         help=summary, short_help=summary)


def check_store_then_load_tensorflow() -> None:
    """An unusable tracking store fails in a second, before TensorFlow loads; then TensorFlow loads
    quietly (its start-up lines kept off the terminal unless --debug)."""
    import mlflow

    from aetrack.tracking.run import check_tracking_store

    check_tracking_store(mlflow.get_tracking_uri())
    from aetrack.quiet import load_tensorflow

    load_tensorflow()


def _experiment_option() -> click.Option:
    return click.Option(
        ["--experiment-name"],
        default=DEFAULT_EXPERIMENT,
        envvar="MLFLOW_EXPERIMENT_NAME",
        show_default=True,
        help="MLflow experiment (ignored under `mlflow run`, which picks its own).",
    )


for _entry_point in ENTRY_POINTS:
    train.add_command(_train_command(_entry_point))


@click.group()
def sweep() -> None:
    """Search hyperparameters with Optuna: one parent MLflow run, one nested run per trial."""


def _sweep_command(entry_point: str) -> click.Command:
    def run(experiment_name: str, no_pruning: bool, **values) -> None:
        from aetrack.data import dataset_for
        from aetrack.search_space import check_metric, parse_search, searches_data

        sweep_names = {f.name for f in sweep_params()}
        given = {k: v for k, v in values.items() if v is not None and k not in sweep_names}
        sweep_given = {k: v for k, v in values.items() if v is not None and k in sweep_names}
        if no_pruning:
            sweep_given["pruning"] = False
        config = TrainConfig(entry_point=entry_point, experiment_name=experiment_name, **given).validated()
        settings = SweepConfig(**sweep_given)
        # The whole search space and the metric are checked before anything heavy loads or a run exists.
        space = parse_search([settings.search], entry_point)
        dataset = None if searches_data(space) else dataset_for(config)
        check_metric(settings.metric, config, space, *([dataset.spec] if dataset is not None else []))
        check_store_then_load_tensorflow()
        from aetrack.sweep import run_sweep

        run_sweep(config, settings, space, dataset)

    no_pruning = click.Option(["--no-pruning"], is_flag=True, help="The same as --pruning false.")
    summary = f"Sweep {entry_point} runs: {SUMMARIES[entry_point][:-1].lower()}."
    params = [*training_options(entry_point), *_options(sweep_params(), SweepConfig, repeatable=("search",)),
              no_pruning, _experiment_option()]
    return click.Command(entry_point, callback=run, params=params, help=summary, short_help=summary)


for _entry_point in ENTRY_POINTS:
    sweep.add_command(_sweep_command(_entry_point))


@click.command(short_help="Continue a run that stopped early from its last checkpoint.")
@click.argument("run_id")
@click.option("--timeout", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="A RUNNING run on another host counts as stopped after this many seconds without a heartbeat.")
def resume(run_id: str, timeout: float) -> None:
    """Continue run RUN_ID (KILLED, FAILED, or RUNNING with its process gone) from its last
    checkpoint, as the same run, with its own params; it ends with the usual evaluation, figures
    and registration."""
    if not RUN_ID_PATTERN.match(run_id):
        raise ConfigError("RUN_ID", run_id, "an MLflow run id (32 hex digits)")
    _resume(run_id, timeout)


def _resume(run_id: str, timeout: float = 600.0) -> None:
    check_store_then_load_tensorflow()
    from aetrack.resume import resume as resume_run

    resume_run(run_id, timeout)
