"""What a run logged as artifacts, read back from its store."""

from __future__ import annotations

import re

from mlflow.tracking import MlflowClient

# The file name MLflow's log_image(key=, step=) gives each full-resolution image.
STEP_IMAGE = re.compile(r"^images/(?P<key>[^+]+)\+step\+(?P<step>\d+)\+timestamp\+\d+\+[0-9a-f-]+\.png$")


def step_images(run_id: str, client=None) -> dict[str, dict[int, str]]:
    """{key: {step: artifact path}} of the run's step images; fails on two images for one step.
    `client`: an MlflowClient for another store than this process's."""
    found: dict[str, dict[int, str]] = {}
    for artifact in (client or MlflowClient()).list_artifacts(run_id, "images"):
        match = STEP_IMAGE.match(artifact.path)
        if match:
            steps = found.setdefault(match["key"], {})
            assert int(match["step"]) not in steps, f"two images for one step: {artifact.path}"
            steps[int(match["step"])] = artifact.path
    return found
