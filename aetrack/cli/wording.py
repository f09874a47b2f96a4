"""How the command line words a core ArgumentError: each core parameter spelled as the flag (or
argument) a user typed, so the core never names `--flags` and the user still reads them."""

from __future__ import annotations

from collections.abc import Mapping

from aetrack.errors import ArgumentError, UsageError


def as_flag(parameter: str, spelled: Mapping[str, str] | None = None) -> str:
    """`if_better` -> `--if-better`, unless `spelled` says otherwise (an argument, a renamed option)."""
    return (spelled or {}).get(parameter, f"--{parameter.replace('_', '-')}")


def for_the_command_line(exc: ArgumentError, spelled: Mapping[str, str] | None = None) -> UsageError:
    """The same refusal (exit code, one line) worded with the command's flags."""
    return UsageError(exc.worded(lambda parameter: as_flag(parameter, spelled)))
