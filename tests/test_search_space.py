"""Parsing `--search NAME=SPEC`: generic over TrainConfig's fields, checked by each field's own rule."""

import dataclasses

import pytest

from aetrack.config import ConfigError, TrainConfig
from aetrack.rules import choice
from aetrack.search_space import SearchParam, check_metric, parse_search


def test_parses_ranges_logs_and_choices_with_the_fields_types():
    space = parse_search(["code_size=8:128:log learning_rate=1e-4:1e-2:log", "loss=bce|mse", "epochs=1:3"], "basic")
    by_name = {p.name: p for p in space}
    assert by_name["code_size"] == SearchParam("code_size", "int", 8, 128, True)
    assert by_name["learning_rate"] == SearchParam("learning_rate", "float", 1e-4, 1e-2, True)
    assert by_name["loss"] == SearchParam("loss", "choice", choices=("bce", "mse"))
    assert by_name["epochs"] == SearchParam("epochs", "int", 1, 3, False)
    assert isinstance(by_name["code_size"].low, int) and isinstance(by_name["learning_rate"].low, float)
    # Round trip: the spec text stored on the study and the parent run parses back to the same space.
    assert parse_search([" ".join(p.spec() for p in space)], "basic") == space


def test_choices_are_parsed_by_the_fields_type():
    (batch,) = parse_search(["batch_size=16|32|64"], "basic")
    assert batch.choices == (16, 32, 64)
    (noise,) = parse_search(["noise_factor=0.2|0.4"], "denoise")
    assert noise.choices == (0.2, 0.4)


def test_a_field_added_to_trainconfig_is_searchable_with_its_own_rule(monkeypatch):
    """What makes `architecture=dense|conv|vae` work once that field exists: nothing sweep-specific."""
    from aetrack import config

    @dataclasses.dataclass(frozen=True)
    class WithArchitecture(TrainConfig):
        architecture: str = config._param("dense", "Model family.", choice("dense", "conv", "vae"))

    monkeypatch.setattr(config, "TrainConfig", WithArchitecture)
    import aetrack.search_space as search_space

    monkeypatch.setattr(search_space, "training_params", lambda ep: [
        f for f in dataclasses.fields(WithArchitecture) if ep in f.metadata.get("entry_points", ())])
    real_parse = config.parse_value
    monkeypatch.setattr(search_space, "parse_value", lambda n, raw: real_parse(n, raw, WithArchitecture))
    (arch,) = parse_search(["architecture=dense|conv|vae"], "basic")
    assert arch.choices == ("dense", "conv", "vae")
    with pytest.raises(ConfigError, match=r"architecture values that are one of dense, conv, vae \(got 'gan'\)"):
        parse_search(["architecture=dense|gan"], "basic")


@pytest.mark.parametrize("spec,entry_point,says", [
    ("widthx=1:2", "basic", "a basic training parameter: epochs, batch_size"),
    ("noise_factor=0.1:0.5", "basic", "a basic training parameter"),  # denoise only
    ("register=true|false", "basic", "a basic training parameter"),  # the sweep decides that
    ("code_size=128:8", "basic", "low <= high for code_size"),
    ("learning_rate=0:0.1:log", "basic", "learning_rate values that are a number > 0"),
    ("noise_factor=0:0.5:log", "denoise", "a positive low for a log range of noise_factor"),
    ("code_size=0:8", "basic", "code_size values that are an integer from 1 to 4096 (got '0')"),
    ("code_size=8:5000", "basic", "an integer from 1 to 4096 (got '5000')"),
    ("code_size=8.5:16", "basic", "code_size values that are an integer"),
    ("loss=bce|hinge", "basic", "loss values that are empty (bce for data in [0, 1], mse for standardised tables), bce or mse (got 'hinge')"),
    ("loss=bce:mse", "basic", "a choice a|b|c for loss"),
    ("code_size=8:16:ln", "basic", "NAME=low:high, NAME=low:high:log or NAME=a|b|c"),
    ("code_size", "basic", "NAME=low:high"),
    ("code_size=8:8", "basic", "low < high"),
    ("loss=bce|bce", "basic", "distinct choices"),
    ("code_size=8:16 code_size=32|64", "basic", "code_size is given twice"),
    ("", "basic", "at least one"),
])
def test_bad_specs_fail_with_one_line_naming_the_spec_and_the_rule(spec, entry_point, says):
    with pytest.raises(ConfigError) as info:
        parse_search([spec], entry_point)
    message = str(info.value)
    assert message.startswith("invalid --search ") and says in message and "\n" not in message


def test_metric_must_be_one_every_trial_logs():
    basic, denoise = TrainConfig(), TrainConfig(entry_point="denoise")
    check_metric("test_psnr", basic)
    check_metric("psnr_gain_db", denoise)
    check_metric("anomaly_auc", TrainConfig(exclude_digits="7"))
    check_metric("test_elbo", TrainConfig(architecture="vae"))
    with pytest.raises(ConfigError, match="psnr_gain_db.*a metric every basic trial logs: test_bce"):
        check_metric("psnr_gain_db", basic)
    with pytest.raises(ConfigError, match="anomaly_auc"):
        check_metric("anomaly_auc", basic)
    with pytest.raises(ConfigError, match="test_elbo"):
        check_metric("test_elbo", basic)
    # A searched architecture narrows the metrics to those every choice logs.
    with pytest.raises(ConfigError, match="test_elbo"):
        check_metric("test_elbo", TrainConfig(architecture="vae"), parse_search(["architecture=dense|vae"], "basic"))
