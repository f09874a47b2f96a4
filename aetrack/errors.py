"""aetrack's one error family: every error a user can cause or meet carries its exit code.

The CLI turns any of them into one line, `aetrack: error: <message>`, and exits with the class's
`exit_code`; messages say what was wrong and what is allowed. Standard library only, so the CLI can
raise and format them before anything heavy loads.
"""

from __future__ import annotations

import re
import signal
from http import HTTPStatus
from typing import Any, Callable

EXIT_OK = 0
EXIT_FAILURE = 1  # the run failed: setup, store, training, registration
EXIT_USAGE = 2  # bad input: an option, a dataset, a model URI, an input or output file
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class AetrackError(Exception):
    """Base of aetrack's errors; `exit_code` says how the command ends."""

    exit_code = EXIT_FAILURE


class UsageError(AetrackError):
    """Input the user can fix: the message names it and says what is allowed."""

    exit_code = EXIT_USAGE


class RunError(AetrackError):
    """Something failed while setting up or running a training run."""

    exit_code = EXIT_FAILURE


class ConfigError(UsageError):
    """A parameter value that is not allowed; the message names it, the value and the rule."""

    def __init__(self, name: str, value: Any, allowed: str):
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {name} {value!r}: expected {allowed}")


class DataError(UsageError):
    """A dataset that cannot be used."""


class ModelError(UsageError):
    """A model (URI or file) that cannot be loaded or does not fit where it is used.

    `option` is where it came from (`--model`, `init_model`); `reason` is the cause alone.
    """

    def __init__(self, option: str, value: str, reason: str, allowed: str):
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {option} {value!r}: {reason}; expected {allowed}")


class InputError(UsageError):
    """An input or output file of a model command that cannot be used."""


class ArgumentError(UsageError):
    """A request that cannot be done as asked, naming the argument at fault as the core function
    calls it; the CLI words it with its own flags (`worded`).

    `parameter` is that argument (empty: the request as a whole, called `request`), `value` what
    was given (None: nothing to show), `reason` why and `remedy` what would do. `reason` and
    `remedy` name other arguments as `{version}`, spelled by `worded` like `parameter`.
    """

    request = "request"

    def __init__(self, parameter: str, value: Any, reason: str, remedy: str = ""):
        self.parameter = parameter
        self.value = value
        self.reason = reason
        self.remedy = remedy
        super().__init__(self.worded(lambda name: name))

    def worded(self, spell: Callable[[str], str]) -> str:
        """The message with every argument's name given by `spell` (e.g. `version` -> `--version`)."""
        subject = spell(self.parameter) if self.parameter else self.request
        shown = "" if self.value is None else f" {self.value!r}"
        parts = (_ARGUMENT.sub(lambda m: spell(m.group(1)), part) for part in (self.reason, self.remedy) if part)
        return f"invalid {subject}{shown}: {'; '.join(parts)}"


_ARGUMENT = re.compile(r"\{([a-z_]+)\}")


class RegistryError(ArgumentError):
    """A registry request (promote) that cannot be done as asked; `parameter` is one of promote's
    (`name`, `version`, `if_better`)."""

    request = "promote"


class RequestError(UsageError):
    """A request `aetrack serve` refuses: the message is the answer's one line, `status` its HTTP status."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class CompareError(ArgumentError):
    """A comparison that cannot be made (unknown run, experiment or metric); `parameter` is one of
    compare's (`experiment`, `run_ids`, `metric`, `output_dir`)."""

    request = "compare"


class ResumeError(UsageError):
    """A run that cannot be resumed as asked (finished, no checkpoint, params that do not match,
    being resumed by another process); nothing was changed."""


class TrackingStoreError(RunError):
    """The MLflow tracking store cannot be reached or written to."""


class TrainingDiverged(RunError):
    """The training loss became NaN or infinite; the run fails and registers nothing."""


class Interrupted(KeyboardInterrupt):
    """Stopped by SIGINT or SIGTERM. A KeyboardInterrupt, so `except Exception` never swallows it."""

    def __init__(self, signal_number: int = signal.SIGINT):
        self.signal_number = int(signal_number)
        super().__init__(self.signal_name)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signal_number == signal.SIGTERM else EXIT_SIGINT


def one_line(text: object) -> str:
    """Collapse any message to one line (MLflow and Keras messages span many)."""
    return " ".join(str(text).split())


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type name when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> tuple[str, int]:
    """(the one-line message, the exit code) for any error reaching the CLI."""
    if isinstance(exc, AetrackError):
        return one_line(exc), exc.exit_code
    return one_line(f"{type(exc).__name__}: {exc}"), EXIT_FAILURE
