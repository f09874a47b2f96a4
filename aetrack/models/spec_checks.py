"""Which architectures, losses and output layers fit a sample (`SampleSpec`), checked before a run
starts. Standard library only: the CLI and the config checks call it before TensorFlow loads."""

from __future__ import annotations

from aetrack.data.spec import SampleSpec
from aetrack.errors import ConfigError


def check_architecture_for(spec: SampleSpec, architecture: str) -> None:
    """Raise ConfigError unless `architecture` can model `spec`'s samples (conv needs images)."""
    if architecture == "conv" and not spec.is_image:
        raise ConfigError("architecture", architecture,
                          f"dense or vae for a {spec.describe()} (conv needs images)")


def check_loss_for(spec: SampleSpec, loss: str, architecture: str) -> None:
    """Raise ConfigError unless `loss` and `architecture` fit `spec`'s samples.

    bce needs values in [0, 1], so standardised tables take mse; a vae's reconstruction term is
    its decoder's likelihood: Bernoulli (bce) for bounded data, unit-variance Gaussian (mse) for
    standardised tables.
    """
    check_architecture_for(spec, architecture)
    if loss == "bce" and not spec.bounded:
        raise ConfigError("loss", loss, f"mse for a {spec.describe()} (its values are standardised, not in "
                                        "[0, 1], which bce needs)")
    if architecture == "vae" and spec.bounded and loss != "bce":
        raise ConfigError("loss", loss, f"bce with architecture vae for a {spec.describe()} (its decoder is "
                                        "Bernoulli: the ELBO's reconstruction term is a summed bce)")


def output_activation(spec: SampleSpec) -> str:
    """sigmoid when the values are bounded in [0, 1]; linear for standardised (unbounded) values."""
    return "sigmoid" if spec.bounded else "linear"


def likelihood(spec: SampleSpec) -> str:
    """A vae decoder's distribution: `bernoulli` for bounded values, `gaussian` otherwise."""
    return "bernoulli" if spec.bounded else "gaussian"


def input_name(spec: SampleSpec) -> str:
    """The models' input tensor name: `image` (as before specs existed) or `sample` for table rows."""
    return "image" if spec.is_image else "sample"
