"""The `aetrack` command: thin click layers over aetrack's core.

Nothing here imports TensorFlow or MLflow at module level, so `aetrack --help` and bad options
are fast; each command imports the heavy modules it needs when it runs. `main` is the one place
that turns errors and signals into one line on stderr and an exit code.
"""

from __future__ import annotations

import signal
import sys
import traceback

import click

from aetrack import __version__
from aetrack.cli.models import MODEL_COMMANDS
from aetrack.cli.runs import RUN_COMMANDS
from aetrack.cli.train import resume, sweep, train
from aetrack.errors import EXIT_OK, EXIT_USAGE, Interrupted, describe
from aetrack.quiet import quiet_tensorflow


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aetrack")
@click.option("--debug", is_flag=True, envvar="AETRACK_DEBUG", help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Train autoencoders with TensorFlow/Keras and track every run with MLflow."""


cli.add_command(train)
cli.add_command(sweep)
cli.add_command(resume)
for _command in (*MODEL_COMMANDS, *RUN_COMMANDS):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one line on stderr and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    context = None
    try:
        with cli.make_context("aetrack", args) as context:
            quiet_tensorflow(debug=context.params.get("debug", False))
            cli.invoke(context)
        code = EXIT_OK
    except click.exceptions.Exit as exc:  # --help, --version
        code = exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare `aetrack` or `aetrack train`
        exc.show()
        code = exc.exit_code
    except click.BadParameter as exc:
        name = exc.param.opts[0] if exc.param is not None and exc.param.opts else (exc.param_hint or "")
        code = _fail(f"invalid {name}: {exc.message}", EXIT_USAGE)
    except click.ClickException as exc:
        code = _fail(exc.format_message(), exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        # The run is already ended: a second Ctrl-C must not add a traceback.
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signal_number, signal.SIG_IGN)
        interrupted = exc if isinstance(exc, Interrupted) else Interrupted()
        click.echo(f"aetrack: interrupted by {interrupted.signal_name}", err=True)
        code = interrupted.exit_code
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if context is not None and context.params.get("debug"):
            traceback.print_exc()
        message, code = describe(exc)
        code = _fail(message, code)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> int:
    click.echo(f"aetrack: error: {' '.join(str(message).split())}", err=True)
    return code
