"""The one place where training parameters, their defaults and their rules live.

`TrainConfig` holds the defaults; each field's metadata says which entry points take it, its Kind
(type, parsing, wording) and its Rule (allowed values; see aetrack/rules.py). The CLI options and
the `MLproject` parameters are both generated from it, so they cannot drift (tests/test_config.py
checks the file on disk).

This module must stay free of TensorFlow and MLflow imports: the CLI validates with it before
anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from aetrack.anomaly import DEFAULT_CONTAMINATION, DEFAULT_RULE, THRESHOLD_RULES, contamination_ok
from aetrack.errors import ConfigError
from aetrack.rules import (COLOR_MODE, DATASET, DIGIT_LIST, IMAGE_SIZE, LABEL_LIST, RUN_ID, SEARCH, STR, Kind, Rule,
                           choice, empty_or_name, float_range, int_range, kind_of_default, label_tokens,
                           parse_image_size)

ENTRY_POINTS = ("basic", "denoise")
BOTH = ENTRY_POINTS
DENOISE = ("denoise",)
LOSSES = ("bce", "mse")
ARCHITECTURES = ("dense", "conv", "vae")
# architecture=package.module:function names the user's own callable (sample_shape, code_size) ->
# (encoder, decoder). Only its syntax is checked here (importing it would load TensorFlow before
# `aetrack --help`); aetrack/models/custom.py imports and checks it before a run exists.
CUSTOM_ARCHITECTURE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
# The architecture param of a run given encoder and decoder objects (`aetrack.train(config,
# encoder=..., decoder=...)`): nothing to rebuild them from, so not a value the CLI accepts.
CUSTOM_OBJECTS = "custom"
ARCHITECTURE_TEXT = ("one of dense, conv, vae, or package.module:function (a callable (sample_shape, code_size) -> "
                     "(encoder, decoder) importable from the working directory or an installed package)")
STRATEGIES = ("default", "mirrored")
SAMPLERS = ("tpe", "random")
KNOWN_DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits")
# train_samples/test_samples 0 (the default) means these for the tutorial's datasets (also for a
# local copy named mnist.npz or fashion_mnist.npz, the offline stand-in the download error suggests)...
TUTORIAL_SAMPLES = {"mnist": (30000, 100), "fashion_mnist": (30000, 100)}
# ...and for every other dataset the whole training split and at most this many test samples,
# since the evaluation split is held in memory and evaluated after every epoch.
DEFAULT_TEST_CAP = 10_000
DEFAULT_EXPERIMENT = "aetrack"
# The model URIs and files aetrack loads (`--model`, `init_model`, aetrack.load_model), described once.
MODEL_URI_FORMS = (
    "models:/<name>@<alias>, models:/<name>/<version>, models:/<name>/latest, "
    "runs:/<run id>/<autoencoder|encoder|decoder|scorer>, an MLflow model directory, or a .keras file"
)


# Params newer than some runs in existing stores: a run without them trained with these defaults
# (a Keras-layout .npz with both splits, no label filter but exclude_digits, the default threshold
# rule), so resuming it may assume them.
PARAMS_ADDED_LATER = ("validation_split", "image_size", "color_mode", "label_column", "exclude_labels",
                      "normal_labels", "contamination", "threshold_rule")


def is_custom_architecture(value: str) -> bool:
    """`value` has the form package.module:function (the user's own encoder and decoder)."""
    return isinstance(value, str) and bool(CUSTOM_ARCHITECTURE.match(value))


def _param(default: Any, help: str, rule: Rule | None = None, entry_points=BOTH, logged: bool = True,
           kind: Kind | None = None) -> Any:
    """A parameter field: its help, its kind (from the default unless given), its rule, and the
    entry points that take it."""
    return field(default=default, metadata={"help": help, "kind": kind or kind_of_default(default), "rule": rule,
                                            "entry_points": entry_points, "logged": logged})


def field_kind(f: dataclasses.Field) -> Kind:
    """The field's Kind (its type, parsing and wording), from its metadata."""
    return f.metadata["kind"]


def field_rule(f: dataclasses.Field) -> Rule | None:
    """The field's Rule (which values are allowed), or None when any value of its kind is."""
    return f.metadata.get("rule")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults are the tutorial's settings."""

    epochs: int = _param(10, "Training epochs.", int_range(1, 100_000))
    batch_size: int = _param(64, "Images per training step.", int_range(1, 65_536))
    code_size: int = _param(64, "Size of the encoder's code (the bottleneck).", int_range(1, 4096))
    architecture: str = _param(
        "dense", "Model family: dense (the tutorial's 784-code-784), conv (convolutional), vae (variational), "
        "or package.module:function, your own callable (sample_shape, code_size) -> (encoder, decoder).",
        Rule(ARCHITECTURE_TEXT, lambda value: value in ARCHITECTURES or is_custom_architecture(value)),
    )
    kl_weight: float = _param(
        1.0, "vae only: weight of the KL term in the loss (1 = the ELBO; other values: beta-VAE).",
        float_range(0.0, 1000.0),
    )
    learning_rate: float = _param(0.001, "Adam learning rate.", float_range(0.0, 10.0, low_open=True))
    loss: str = _param(
        "", "Training loss: bce (binary cross-entropy) or mse; empty: bce for data in [0, 1] (images, the "
        "tutorial's), mse for standardised tables.",
        Rule("empty (bce for data in [0, 1], mse for standardised tables), bce or mse",
             lambda value: value in ("", *LOSSES)),
    )
    train_samples: int = _param(
        0, "Training samples used (the first N); 0: 30000 for mnist and fashion_mnist (also a local "
        "mnist.npz or fashion_mnist.npz), else all of them.",
        int_range(0, 10_000_000),
    )
    test_samples: int = _param(
        0, f"Test samples used (the first N); 0: 100 for mnist and fashion_mnist, else all of them up to "
        f"{DEFAULT_TEST_CAP:,}.", int_range(0, 10_000_000),
    )
    validation_split: float = _param(
        0.1, "Fraction of the training data held out (seeded by seed) as the test split when the dataset "
        "has none.", float_range(0.0, 0.9, low_open=True),
    )
    seed: int = _param(0, "Seed for weights, noise and image samples.", int_range(0, 2**31 - 1))
    dataset: str = _param(
        "mnist", "mnist, fashion_mnist, cifar10 (Keras downloads), digits (scikit-learn's 8x8 digits: "
        "the first 1500 train, the other 297 test; no download), or a path to a .npz/.npy file, an image "
        "folder, or a .csv/.parquet table.", DATASET,
    )
    image_size: str = _param(
        "", "Image folders: resize every image to HxW, e.g. 28x28; empty: the images' own size (all must agree).",
        IMAGE_SIZE,
    )
    color_mode: str = _param(
        "", "Image folders: grayscale or rgb; empty: rgb if any image is in colour, else grayscale.", COLOR_MODE
    )
    label_column: str = _param("", "Tables: the column holding labels (class names or integers); empty: none.")
    noise_factor: float = _param(
        0.4, "Gaussian noise scale added to inputs (then clipped to [0, 1]).",
        float_range(0.0, 5.0), DENOISE,
    )
    init_model: str = _param(
        "", "Model to start from (a model URI or a .keras file, as --model takes); empty: fresh weights.",
        None, DENOISE,
    )
    exclude_labels: str = _param(
        "", "Comma-separated labels (integers or class names) left out of training, e.g. '7' or 'cat' "
        "(for anomaly detection).", LABEL_LIST,
    )
    exclude_digits: str = _param(
        "", "Alias of exclude_labels for digits 0-9, e.g. '7' (kept for older runs and scripts).", DIGIT_LIST,
    )
    normal_labels: str = _param(
        "", "Comma-separated labels (integers or class names) to train on alone, the one-class setting, "
        "e.g. '0' or 'benign'; the test split keeps every label and the others count as anomalies; "
        "empty: every label (unlabelled data is all normal).", LABEL_LIST,
    )
    contamination: float = _param(
        DEFAULT_CONTAMINATION, "Fraction of the training samples allowed above the anomaly threshold "
        "(threshold_rule quantile: the (1 - contamination) quantile of their scores), in (0, 0.5).",
        Rule("a number > 0 and < 0.5", contamination_ok),
    )
    threshold_rule: str = _param(
        DEFAULT_RULE, "How the anomaly threshold is set from the training samples' scores: quantile (the "
        "(1 - contamination) quantile) or mean_std (mean + one standard deviation).", choice(*THRESHOLD_RULES),
    )
    image_samples: int = _param(8, "Test images shown in per-epoch reconstruction images.", int_range(1, 64))
    image_every: int = _param(1, "Log images every N epochs; 0 turns per-epoch images off.", int_range(0, 100_000))
    checkpoint_every: int = _param(
        1, "Store a checkpoint to resume from every N epochs; 0 turns checkpoints off.", int_range(0, 100_000)
    )
    # Not a training parameter: it picks the run to continue (`mlflow run -P resume_run_id=...`), so it
    # is never logged as a param and the resumed run's own params decide everything else.
    resume_run_id: str = _param(
        "", "Continue this interrupted run from its last checkpoint instead of starting a new run; "
        "every other parameter is then read from that run.", RUN_ID, logged=False,
    )
    register: bool = _param(True, "Register the trained models in the MLflow model registry.")
    model_prefix: str = _param(
        "", "Registered model name prefix; empty means aetrack-<entry point>.", empty_or_name("aetrack-<entry point>")
    )
    system_metrics: bool = _param(
        False, "Log CPU, memory and GPU use as MLflow system metrics (psutil; costs a little fit time)."
    )
    # 200: the same losses as 1, with the Python overhead of one call spread over 200 steps
    # (benchmarks/RESULTS.md has the measurements).
    steps_per_execution: int = _param(
        200, "Training steps per compiled call (same math, less Python overhead).", int_range(1, 10_000)
    )
    strategy: str = _param(
        "default", "default (one device) or mirrored (tf.distribute.MirroredStrategy over the local devices; "
        "steps_per_execution 1).", choice(*STRATEGIES),
    )
    entry_point: str = field(default="basic", metadata={"kind": STR, "rule": choice(*ENTRY_POINTS)})
    experiment_name: str = field(default=DEFAULT_EXPERIMENT, metadata={"kind": STR})

    def validated(self) -> "TrainConfig":
        """Check every field (raise ConfigError naming the first bad one); return the config with
        an empty `model_prefix` resolved to `aetrack-<entry point>`."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not field_kind(f).accepts(value):
                raise ConfigError(f.name, value, field_kind(f).text)
            rule = field_rule(f)
            if rule is not None and not rule.check(value):
                raise ConfigError(f.name, value, rule.allowed)
        if self.exclude_digits and self.exclude_labels and \
                set(label_tokens(self.exclude_digits)) != set(label_tokens(self.exclude_labels)):
            raise ConfigError("exclude_labels", self.exclude_labels, f"the same labels as exclude_digits "
                              f"({self.exclude_digits!r}, its alias) or only one of the two set")
        if self.normal_labels and self.excluded_labels:
            raise ConfigError("normal_labels", self.normal_labels, "empty when exclude_labels is set "
                              f"({','.join(self.excluded_labels)!r}): train on these labels or on all but those, "
                              "not both")
        if not self.model_prefix:
            return dataclasses.replace(self, model_prefix=f"aetrack-{self.entry_point}")
        return self

    def for_data(self, bounded: bool) -> "TrainConfig":
        """The config with an empty `loss` resolved for the data: bce when its values lie in [0, 1]
        (`bounded`), mse otherwise. Whether the loss suits the data is models.check_loss_for's job."""
        if self.loss:
            return self
        return dataclasses.replace(self, loss="bce" if bounded else "mse")

    @property
    def denoising(self) -> bool:
        """Inputs are noisy and the targets clean (the `denoise` entry point)."""
        return self.entry_point == "denoise"

    @property
    def excluded_labels(self) -> tuple[str, ...]:
        """The labels left out of training as given (exclude_labels, or its alias exclude_digits);
        the dataset resolves class names to label indices (Dataset.excluded_labels)."""
        return label_tokens(self.exclude_labels or self.exclude_digits)

    @property
    def normal_label_tokens(self) -> tuple[str, ...]:
        """The labels trained on alone as given (normal_labels); the dataset resolves class names."""
        return label_tokens(self.normal_labels)

    @property
    def excluded_digits(self) -> tuple[int, ...]:
        """The integer labels among `excluded_labels`, sorted (class names need the dataset)."""
        return tuple(sorted({int(p) for p in self.excluded_labels if p.lstrip("-").isdigit()}))

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """`image_size` as (height, width); None when empty."""
        return parse_image_size(self.image_size)

    def params(self) -> dict[str, Any]:
        """The values logged as MLflow params: every field that applies to this entry point."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if self.entry_point in f.metadata.get("entry_points", ENTRY_POINTS) and f.metadata.get("logged", True)
        }


@dataclass(frozen=True)
class SweepConfig:
    """A sweep's own settings; the fixed training parameters are a TrainConfig beside it.

    Generated into `aetrack sweep` options and the MLproject `sweep` entry points like TrainConfig's.
    """

    trials: int = _param(10, "Trials in the study in all (shared by every worker on the same study).",
                         int_range(1, 100_000))
    search: str = _param(
        "code_size=16:128:log learning_rate=0.0001:0.01:log",
        "Search space: NAME=low:high, NAME=low:high:log or NAME=a|b|c over any training parameter; "
        "repeat the option or separate specs with spaces.", SEARCH,
    )
    metric: str = _param("test_bce", "Final metric to optimise (higher is better for psnr/ssim/auc/gain, "
                         "else lower).", None)
    sampler: str = _param("tpe", "Optuna sampler: tpe or random (seeded with --seed).", choice(*SAMPLERS))
    pruning: bool = _param(True, "Prune trials whose val_loss is worse than the median at the same epoch.")
    storage: str = _param("", "Optuna storage URL (shared by workers); empty: optuna.db beside the MLflow store.")
    study_name: str = _param("", "Optuna study (workers with the same name share it); empty: a new study.",
                             empty_or_name("a new study"))
    heartbeat_interval: int = _param(10, "Seconds between a running trial's heartbeats in the Optuna storage.",
                                     int_range(1, 3600))
    grace_period: int = _param(30, "A running trial with no heartbeat for this many seconds is lost: another worker "
                               "fails it and runs it again (more than --heartbeat-interval).", int_range(2, 86_400))

    def __post_init__(self):
        if self.grace_period <= self.heartbeat_interval:
            raise ConfigError("grace_period", self.grace_period, f"more than heartbeat_interval "
                              f"({self.heartbeat_interval}), or trials still running would be taken for lost")


def training_params(entry_point: str) -> list[dataclasses.Field]:
    """The fields an entry point exposes as CLI options and MLproject parameters, in order."""
    return [
        f for f in dataclasses.fields(TrainConfig)
        if "entry_points" in f.metadata and entry_point in f.metadata["entry_points"]
    ]


def sweep_params() -> list[dataclasses.Field]:
    """The sweep's own options, in order (after the entry point's training parameters)."""
    return list(dataclasses.fields(SweepConfig))


def parse_value(name: str, raw: str, config_class: type = TrainConfig) -> Any:
    """Parse one command-line string into the field's kind and check its rule; raise ConfigError."""
    f = {f.name: f for f in dataclasses.fields(config_class)}[name]
    kind, rule = field_kind(f), field_rule(f)
    try:
        value = kind.parse(raw)
    except ValueError:
        # The rule's text says what is allowed ("an integer from 1 to ..."); without one, the kind's.
        raise ConfigError(name, raw, rule.allowed if rule is not None else kind.text) from None
    if rule is not None and not rule.check(value):
        raise ConfigError(name, raw, rule.allowed)
    return value


def mlproject_type(f: dataclasses.Field) -> str:
    return field_kind(f).mlproject


def mlproject_default(f: dataclasses.Field) -> str:
    return field_kind(f).shown(f.default)


def render_mlproject() -> str:
    """The MLproject file's text, generated from TrainConfig (run `python -m aetrack.config`)."""
    lines = [
        "# Generated by `python -m aetrack.config > MLproject` from aetrack/config.py; do not edit.",
        "name: aetrack",
        "",
        "conda_env: conda.yaml",
        "",
        "entry_points:",
    ]
    entries = [(name, "train", entry_point, training_params(entry_point))
               for name, entry_point in (("main", "basic"), ("basic", "basic"), ("denoise", "denoise"))]
    # `mlflow run . -e sweep`: the run mlflow makes becomes the sweep's parent run.
    entries += [(name, "sweep", entry_point, training_params(entry_point) + sweep_params())
                for name, entry_point in (("sweep", "basic"), ("sweep_denoise", "denoise"))]
    for name, command, entry_point, fields in entries:
        lines.append(f"  {name}:")
        lines.append("    parameters:")
        for f in fields:
            default = mlproject_default(f)
            quoted = '""' if default == "" else (f'"{default}"' if " " in default else default)
            lines.append(f"      {f.name}: {{type: {mlproject_type(f)}, default: {quoted}}}")
        options = " ".join(f"--{f.name.replace('_', '-')} {{{f.name}}}" for f in fields)
        lines.append(f"    command: \"python -m aetrack {command} {entry_point} {options}\"")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_mlproject(), end="")
