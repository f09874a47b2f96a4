"""What one sample is: `SampleSpec`, read once from the data and stored with the run, its
checkpoints and its models; every other module asks it instead of assuming a shape.

Models and arrays use the flat layout: a batch is float32 (n, spec.size), each row one sample in
the model's space (images in [0, 1]; tables standardised with the training split's statistics).
`shape` says how a row unflattens. Standard library only (the CLI may read a spec before
TensorFlow loads).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

IMAGE = "image"
TABLE = "table"
KINDS = (IMAGE, TABLE)


@dataclass(frozen=True)
class SampleSpec:
    """One sample: its kind, its shape and how its values were brought into the model's space."""

    kind: str  # IMAGE or TABLE
    shape: tuple[int, ...]  # (height, width, channels) for images, (features,) for tables
    # (low, high) of the model's space when it is bounded, (0.0, 1.0) for images (sigmoid output,
    # bce allowed); None when values are unbounded (standardised tables: linear output, mse).
    value_range: tuple[float, float] | None = (0.0, 1.0)
    feature_names: tuple[str, ...] = ()  # tables: the columns, in order
    label_names: tuple[str, ...] = ()  # class names by label index; empty: integer labels, or none
    # Tables: x_model = (x_raw - mean) / std, per feature, from the training split; empty: no scaling.
    feature_mean: tuple[float, ...] = field(default=(), repr=False)
    feature_std: tuple[float, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == IMAGE and (len(self.shape) != 3 or self.shape[2] not in (1, 3)):
            raise ValueError(f"image shape {self.shape}; expected (height, width, 1 or 3)")
        if self.kind == TABLE and len(self.shape) != 1:
            raise ValueError(f"table shape {self.shape}; expected (features,)")

    @property
    def size(self) -> int:
        """Values per sample: the width of a flat row."""
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return self.kind == IMAGE

    @property
    def bounded(self) -> bool:
        """Values lie in `value_range` (sigmoid output and bce make sense)."""
        return self.value_range is not None

    @property
    def height(self) -> int:
        return self.shape[0] if self.is_image else 1

    @property
    def width(self) -> int:
        return self.shape[1] if self.is_image else self.shape[0]

    @property
    def channels(self) -> int:
        return self.shape[2] if self.is_image else 1

    @property
    def scaled(self) -> bool:
        """Features were standardised; a logged model undoes it with Keras layers."""
        return bool(self.feature_mean)

    def describe(self) -> str:
        """Short words for messages and tags: `28x28x1 image`, `30-feature table`."""
        if self.is_image:
            return f"{self.shape_text()} image"
        return f"{self.size}-feature table"

    def shape_text(self) -> str:
        """`28x28x1` or `30`: the shape as tags and params show it."""
        return "x".join(str(d) for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SampleSpec":
        value_range = data.get("value_range")
        return cls(
            kind=data["kind"],
            shape=tuple(int(d) for d in data["shape"]),
            value_range=None if value_range is None else (float(value_range[0]), float(value_range[1])),
            feature_names=tuple(data.get("feature_names", ())),
            label_names=tuple(data.get("label_names", ())),
            feature_mean=tuple(float(v) for v in data.get("feature_mean", ())),
            feature_std=tuple(float(v) for v in data.get("feature_std", ())),
        )

    @classmethod
    def from_json(cls, text: str) -> "SampleSpec":
        return cls.from_dict(json.loads(text))


def image_spec(height: int, width: int, channels: int = 1, label_names: tuple[str, ...] = ()) -> SampleSpec:
    """Images with pixel values in [0, 1]."""
    return SampleSpec(IMAGE, (height, width, channels), (0.0, 1.0), label_names=label_names)


# The tutorial's data: 28x28 grayscale digits. Models logged before specs existed are read as this
# when their input is 784 wide.
MNIST_SPEC = image_spec(28, 28, 1)
