import dataclasses

import pytest
import yaml

from aetrack.config import ConfigError, SweepConfig, TrainConfig, parse_value, render_mlproject, training_params
from tests.helpers.processes import REPO


def test_defaults_are_the_seed_tutorials():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.code_size, c.learning_rate, c.loss) == (10, 64, 64, 0.001, "")
    # Defaults that serve any data: mnist's images are in [0, 1], so its empty loss is the tutorial's
    # bce; 0 samples are its 30,000 / 100 (tests/test_data.py reads them back).
    assert c.for_data(bounded=True).loss == "bce" and c.for_data(bounded=False).loss == "mse"
    assert TrainConfig(loss="mse").for_data(bounded=True).loss == "mse"
    assert (c.train_samples, c.test_samples, c.seed, c.dataset) == (0, 0, 0, "mnist")
    assert c.noise_factor == 0.4 and c.init_model == ""


def test_mlproject_on_disk_is_generated_from_config():
    on_disk = (REPO / "MLproject").read_text()
    assert on_disk == render_mlproject(), "MLproject drifted; regenerate: python -m aetrack.config > MLproject"


@pytest.mark.parametrize("group,entry_point,mlproject_name", [
    ("train", "basic", "main"), ("train", "basic", "basic"), ("train", "denoise", "denoise"),
    ("sweep", "basic", "sweep"), ("sweep", "denoise", "sweep_denoise")])
def test_mlproject_parameters_match_cli_options(group, entry_point, mlproject_name):
    from aetrack.cli import sweep, train

    spec = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"][mlproject_name]
    command = {"train": train, "sweep": sweep}[group].commands[entry_point]
    options = {p.name: p for p in command.params if p.name not in ("experiment_name", "no_pruning")}
    assert set(spec["parameters"]) == set(options)
    assert spec["command"].startswith(f"python -m aetrack {group} {entry_point} ")
    fields = {f.name: f for f in (*dataclasses.fields(TrainConfig), *dataclasses.fields(SweepConfig))}
    for name, param in spec["parameters"].items():
        expected_type = {"int": "int", "float": "float", "str": "string", "bool": "string"}[fields[name].type]
        assert param["type"] == expected_type, name
        default = fields[name].default
        assert str(param["default"]).lower() == str(default).lower(), name
        # Every parameter is passed through to the CLI option of the same name.
        assert f"--{name.replace('_', '-')} {{{name}}}" in spec["command"]


def test_noise_params_only_for_denoise():
    basic = {f.name for f in training_params("basic")}
    denoise = {f.name for f in training_params("denoise")}
    assert denoise - basic == {"noise_factor", "init_model"}


@pytest.mark.parametrize(
    "name,raw,value",
    [("epochs", "3", 3), ("learning_rate", "1e-3", 0.001), ("register", "False", False),
     ("register", "true", True), ("loss", "mse", "mse"), ("exclude_digits", "1,7", "1,7"),
     ("architecture", "vae", "vae"), ("architecture", "my_pkg.models:build", "my_pkg.models:build")],
)
def test_parse_value_accepts(name, raw, value):
    assert parse_value(name, raw) == value


@pytest.mark.parametrize(
    "name,raw,allowed",
    [("epochs", "0", "integer from 1"), ("epochs", "ten", "integer from 1"), ("batch_size", "-5", "integer"),
     ("learning_rate", "0", "> 0"), ("learning_rate", "nan", "> 0"), ("noise_factor", "-0.1", ">= 0"),
     ("noise_factor", "100", "<= 5"), ("loss", "hinge", "bce or mse"), ("register", "maybe", "true or false"),
     ("model_prefix", "has space", "letters"), ("exclude_digits", "12", "digits 0-9"),
     ("architecture", "models.build", "package.module:function"), ("architecture", "a:b:c", "one of dense"),
     ("architecture", "models:", "package.module:function"), ("architecture", "my-pkg:build", "(sample_shape, code_size)")],
)
def test_parse_value_rejects_with_the_rule(name, raw, allowed):
    with pytest.raises(ConfigError) as info:
        parse_value(name, raw)
    assert name in str(info.value) and repr(raw) in str(info.value) and allowed in str(info.value)


def test_validated_rejects_wrong_types():
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs="10").validated()
    with pytest.raises(ConfigError, match="entry_point"):
        TrainConfig(entry_point="vae").validated()


def test_params_and_prefix():
    c = TrainConfig(entry_point="denoise", exclude_digits="7,1")
    assert c.params()["noise_factor"] == 0.4
    assert "noise_factor" not in TrainConfig().params()
    assert c.validated().model_prefix == "aetrack-denoise"
    assert c.excluded_digits == (1, 7)


def test_kinds_and_rules_come_from_the_fields_not_their_annotations():
    """A field whose annotation is no plain type name (here `str | None`, evaluated: this file has no
    `from __future__ import annotations`) parses and validates by the Kind its metadata carries."""
    from aetrack import config, rules

    @dataclasses.dataclass(frozen=True)
    class WithNote(TrainConfig):
        note: str | None = config._param("", "A note.", rules.empty_or_name("none"), kind=rules.STR)
        widths: tuple[int, ...] = config._param(8, "A width.", rules.int_range(1, 9), kind=rules.INT)

    assert parse_value("note", "ok", WithNote) == "ok" and parse_value("widths", " 3 ", WithNote) == 3
    with pytest.raises(ConfigError, match=r"invalid widths 'x': expected an integer from 1 to 9"):
        parse_value("widths", "x", WithNote)
    with pytest.raises(ConfigError, match=r"invalid note 'a b': expected empty \(none\) or letters"):
        parse_value("note", "a b", WithNote)
    assert WithNote(note="n", widths=9).validated().widths == 9
    with pytest.raises(ConfigError, match=r"invalid widths True: expected an integer$"):
        WithNote(widths=True).validated()
    rule = rules.float_range(0.0, 1.0, low_open=True)
    assert rule.allowed == "a number > 0 and <= 1"
    assert [rule.check(v) for v in (0.0, 0.5, 1.0, float("nan"))] == [False, True, True, False]


def test_a_custom_architecture_is_checked_for_syntax_only():
    """module:function is not imported by the config (that would load TensorFlow before --help);
    aetrack/models/custom.py imports and checks it before a run (tests/test_custom_models.py)."""
    import sys

    assert TrainConfig(architecture="no_such_module_anywhere:build").validated().architecture == \
        "no_such_module_anywhere:build"
    assert "no_such_module_anywhere" not in sys.modules
