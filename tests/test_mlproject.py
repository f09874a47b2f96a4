"""MLproject and conda.yaml agree with aetrack: parameters generated from TrainConfig, pins in step
with requirements.txt. (`mlflow run` itself: test_architecture_runs.py runs `-e basic` and `-e main`,
test_team_stack.py `-e denoise`; bad -P values: test_reliability.py.)"""

from tests.helpers.processes import REPO


def test_conda_yaml_pins_what_the_entry_points_import():
    """`mlflow run` with conda, uv or virtualenv builds its environment from conda.yaml alone: every
    package aetrack imports at run time must be there, at the version requirements.txt pins."""
    import yaml

    environment = yaml.safe_load((REPO / "conda.yaml").read_text())
    [pip] = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    conda_pins = dict(line.split("==") for line in pip)
    requirement_pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                            if line and not line.startswith("#"))
    runtime = {"tensorflow", "mlflow", "numpy", "click", "matplotlib", "optuna", "psutil", "orjson", "scikit-learn",
               "pandas", "pyarrow", "pillow"}
    assert set(conda_pins) == runtime
    assert {name: requirement_pins[name] for name in runtime} == conda_pins
