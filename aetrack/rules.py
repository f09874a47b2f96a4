"""What a parameter's value may be: its `Kind` (the Python type, how a command-line string parses,
how messages and MLproject name it) and its `Rule` (which values of that kind are allowed, and the
"expected ..." text that says so).

TrainConfig and SweepConfig (aetrack/config.py) attach one of each to every field, so the CLI, the
sweep's search space and MLproject read types and wording from the field itself, never from its
annotation. Standard library only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Kind:
    """A parameter's type. `parse` turns a command-line string into a value (ValueError if it
    cannot); `text` names the type in messages; `mlproject` is MLproject's type for it."""

    name: str  # also the CLI's metavar, upper-cased
    python_types: tuple[type, ...]
    parse: Callable[[str], Any]
    text: str
    mlproject: str

    def accepts(self, value: Any) -> bool:
        """Whether `value` is of this kind (a bool is not a number here, though Python says it is)."""
        if isinstance(value, bool) and bool not in self.python_types:
            return False
        return isinstance(value, self.python_types)

    def shown(self, value: Any) -> str:
        """The value as a user types it (bools as true/false)."""
        return str(value).lower() if isinstance(value, bool) else str(value)

    @property
    def numeric(self) -> bool:
        return self in (INT, FLOAT)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in _TRUE | _FALSE:
        raise ValueError(raw)
    return lowered in _TRUE


INT = Kind("int", (int,), lambda raw: int(raw.strip()), "an integer", "int")
FLOAT = Kind("float", (int, float), lambda raw: float(raw.strip()), "a number", "float")
STR = Kind("str", (str,), lambda raw: raw, "text", "string")
BOOL = Kind("bool", (bool,), _parse_bool, "true or false", "string")  # MLproject has no bool type
_KINDS_BY_TYPE = {bool: BOOL, int: INT, float: FLOAT, str: STR}


def kind_of_default(default: Any) -> Kind:
    """The kind a field with this default has, unless the field says otherwise."""
    try:
        return _KINDS_BY_TYPE[type(default)]
    except KeyError:
        raise TypeError(f"no kind for a default of type {type(default).__name__}; give kind=") from None


@dataclass(frozen=True)
class Rule:
    """Which values of a kind are allowed: `check(value)` says whether one is; `allowed` is the
    "expected ..." text a refusal ends with."""

    allowed: str
    check: Callable[[Any], bool]


def int_range(low: int, high: int) -> Rule:
    return Rule(f"an integer from {low} to {high}", lambda value: low <= value <= high)


def float_range(low: float, high: float, low_open: bool = False) -> Rule:
    def check(value: float) -> bool:
        above = value > low if low_open else value >= low
        return math.isfinite(value) and above and value <= high

    return Rule(f"a number {'>' if low_open else '>='} {low:g} and <= {high:g}", check)


def choice(*choices: str) -> Rule:
    return Rule("one of " + ", ".join(choices), lambda value: value in choices)


def empty_or_name(empty_means: str) -> Rule:
    """Empty, or a registered-model / study name: letters, digits, '.', '_', '-'."""
    return Rule(f"empty ({empty_means}) or letters, digits, '.', '_', '-' (at most 100, no spaces)",
                lambda value: value == "" or bool(MODEL_NAME_PATTERN.match(value)))


def _is_digit_list(value: str) -> bool:
    if value == "":
        return True
    parts = [p.strip() for p in value.split(",")]
    return all(len(p) == 1 and p.isdigit() for p in parts) and len(set(parts)) < 10


DIGIT_LIST = Rule("empty or comma-separated digits 0-9 (not all ten), e.g. '7' or '1,7'", _is_digit_list)


def label_tokens(value: str) -> tuple[str, ...]:
    """'7, cat' -> ('7', 'cat'): the labels of an exclude_labels value, in the order given."""
    return tuple(p.strip() for p in value.split(",")) if value.strip() else ()


def _is_label_list(value: str) -> bool:
    tokens = label_tokens(value)
    return all(tokens) and len(set(tokens)) == len(tokens)


LABEL_LIST = Rule("empty or comma-separated labels, integers or class names, each once, e.g. '7' or 'cat,dog'",
                  _is_label_list)
IMAGE_SIZE_PATTERN = re.compile(r"^\s*(\d{1,4})\s*[xX]\s*(\d{1,4})\s*$")
MAX_IMAGE_SIDE = 4096


def parse_image_size(value: str) -> tuple[int, int] | None:
    """'32x24' -> (32, 24) (height, width); '' -> None; ValueError for anything else."""
    if value.strip() == "":
        return None
    match = IMAGE_SIZE_PATTERN.match(value)
    if not match:
        raise ValueError(value)
    height, width = int(match.group(1)), int(match.group(2))
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise ValueError(value)
    return height, width


def _is_image_size(value: str) -> bool:
    try:
        parse_image_size(value)
    except ValueError:
        return False
    return True


IMAGE_SIZE = Rule(f"empty (the images' own size) or HEIGHTxWIDTH, each 1 to {MAX_IMAGE_SIDE}, e.g. '28x28'",
                  _is_image_size)
COLOR_MODES = ("grayscale", "rgb")
COLOR_MODE = Rule("empty (from the images), grayscale or rgb", lambda value: value in ("", *COLOR_MODES))
DATASET = Rule("mnist, fashion_mnist, cifar10, digits, or a path to a .npz/.npy file, an image folder or a "
               ".csv/.parquet table", lambda value: value.strip() != "")
RUN_ID = Rule("empty or an MLflow run id (32 hex digits)",
              lambda value: value == "" or bool(RUN_ID_PATTERN.match(value)))
SEARCH = Rule("at least one NAME=low:high, NAME=low:high:log or NAME=a|b|c", lambda value: bool(value.split()))
