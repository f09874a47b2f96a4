"""A sweep's search space: `NAME=SPEC` strings parsed and checked against TrainConfig's own rules.

SPEC is `low:high` (uniform), `low:high:log` (log-uniform) or `a|b|c` (a choice). NAME is any
training parameter of the entry point, so a parameter added to TrainConfig is searchable at once,
with its own type and rule. Every value is checked here, before Optuna, TensorFlow or MLflow load,
so a bad spec fails with one line and no run exists. Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from aetrack.config import TrainConfig, field_kind, parse_value, training_params
from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.errors import ConfigError
from aetrack.names import final_metric_names
from aetrack.rules import FLOAT

SPEC_FORMS = "NAME=low:high, NAME=low:high:log or NAME=a|b|c"
# Set by the sweep itself, never searched: trials never register, the best one does (once).
NOT_SEARCHABLE = ("register", "model_prefix")
# Searching these changes the data, so each trial loads its own instead of sharing the worker's.
DATA_FIELDS = ("dataset", "train_samples", "test_samples", "validation_split", "image_size", "color_mode",
               "label_column", "exclude_labels", "exclude_digits", "normal_labels")


class SearchSpecError(ConfigError):
    """A `--search` spec that cannot be used; the message names the spec and what is allowed."""

    def __init__(self, spec: str, allowed: str):
        super().__init__("--search", spec, allowed)


@dataclass(frozen=True)
class SearchParam:
    """One searched parameter: a numeric range (`low`..`high`, maybe log) or a list of `choices`."""

    name: str
    kind: str  # "int", "float" or "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def spec(self) -> str:
        """The spec as a user writes it (logged on the parent run, stored on the study)."""
        if self.kind == "choice":
            return f"{self.name}=" + "|".join(_text(c) for c in self.choices)
        return f"{self.name}={self.low:g}:{self.high:g}" + (":log" if self.log else "")

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for this parameter's value."""
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))


def parse_search(specs: list[str] | tuple[str, ...], entry_point: str) -> tuple[SearchParam, ...]:
    """Parse `--search` values (each may hold several specs separated by spaces); raise
    SearchSpecError (a ConfigError, exit 2) on the first bad one."""
    items = [item for spec in specs for item in spec.split()]
    if not items:
        raise SearchSpecError("", f"at least one {SPEC_FORMS}")
    params: list[SearchParam] = []
    for item in items:
        param = parse_spec(item, entry_point)
        if any(p.name == param.name for p in params):
            raise SearchSpecError(item, f"each parameter searched once; {param.name} is given twice")
        params.append(param)
    return tuple(params)


def parse_spec(spec: str, entry_point: str) -> SearchParam:
    name, sep, body = spec.partition("=")
    fields = {f.name: f for f in training_params(entry_point) if f.name not in NOT_SEARCHABLE}
    if not sep or not body:
        raise SearchSpecError(spec, SPEC_FORMS)
    if name not in fields:
        raise SearchSpecError(spec, f"a {entry_point} training parameter: {', '.join(fields)}")
    field = fields[name]
    if "|" in body:
        return SearchParam(name, "choice", choices=_choices(spec, name, body))
    parts = body.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise SearchSpecError(spec, SPEC_FORMS)
    kind = field_kind(field)
    if not kind.numeric:
        raise SearchSpecError(spec, f"a choice a|b|c for {name} (a range needs a numeric parameter)")
    low, high = (_checked(spec, name, p) for p in parts[:2])
    log = len(parts) == 3
    if low > high:
        raise SearchSpecError(spec, f"low <= high for {name}")
    if log and low <= 0:
        raise SearchSpecError(spec, f"a positive low for a log range of {name}")
    if low == high:
        raise SearchSpecError(spec, f"low < high for {name} (a single value is not a search; set --{name.replace('_', '-')})")
    return SearchParam(name, kind.name, low, high, log)


def _choices(spec: str, name: str, body: str) -> tuple[Any, ...]:
    values = tuple(_checked(spec, name, raw) for raw in body.split("|"))
    if len(set(values)) != len(values):
        raise SearchSpecError(spec, f"distinct choices for {name}")
    return values


def _checked(spec: str, name: str, raw: str) -> Any:
    """The value parsed and checked by the parameter's own rule (ConfigError -> SearchSpecError)."""
    try:
        value = parse_value(name, raw)
    except ConfigError as exc:
        raise SearchSpecError(spec, f"{name} values that are {exc.allowed} (got {raw!r})") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SearchSpecError(spec, f"finite {name} values")
    return value


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def trial_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as TrainConfig keyword arguments (Optuna returns ints for int fields already)."""
    kinds = {f.name: field_kind(f) for f in dataclasses.fields(TrainConfig)}
    return {k: float(v) if kinds.get(k) is FLOAT else v for k, v in params.items()}


def sweep_metrics(base: TrainConfig, space: tuple[SearchParam, ...] = (), spec: SampleSpec = MNIST_SPEC) -> list[str]:
    """The final metrics (names.final_metric_names) every trial of the sweep logs on samples
    `spec`, plus its last `val_loss`: those of the base config, narrowed to what all searched
    architectures and exclusions log."""
    searched = {p.name: p.choices for p in space if p.kind == "choice"}
    architectures = searched.get("architecture") or (base.architecture,)
    # normal_labels, like an exclusion, makes the test split's other labels the anomalies.
    exclusions = (searched.get("exclude_labels") or searched.get("exclude_digits") or searched.get("normal_labels")
                  or (base.exclude_labels or base.exclude_digits or base.normal_labels,))
    common: list[str] | None = None
    for architecture in architectures:
        for excluded in exclusions:
            logged = [*final_metric_names(base.entry_point, architecture, bool(excluded), kind=spec.kind,
                                          bounded=spec.bounded), "val_loss"]
            common = logged if common is None else [m for m in common if m in logged]
    return common or []


def check_metric(metric: str, base: TrainConfig, space: tuple[SearchParam, ...] = (),
                 spec: SampleSpec = MNIST_SPEC) -> None:
    """Raise ConfigError unless every trial of the sweep on samples `spec` logs `metric`."""
    known = sweep_metrics(base, space, spec)
    if metric not in known:
        raise ConfigError("--metric", metric, f"a metric every {base.entry_point} trial logs: {', '.join(known)}")


def searches_data(space: tuple[SearchParam, ...]) -> bool:
    """Whether trials train on different data (so the worker cannot load it once for all)."""
    return any(p.name in DATA_FIELDS for p in space)
