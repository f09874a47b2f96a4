"""The real `aetrack` command in a subprocess: start-up cost, help, a tracked training run.
(Bad options and their one-line errors: test_reliability.py.)"""

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.imports import run_with_import_probe
from tests.helpers.processes import run_aetrack


def test_help_does_not_import_tensorflow():
    probed = run_with_import_probe("--help")
    assert probed.out.returncode == 0, probed.out.stderr
    assert probed.heavy == []
    assert "train" in probed.out.stdout


def test_train_help_lists_every_parameter():
    out = run_aetrack("train", "denoise", "--help", timeout=120)
    assert out.returncode == 0
    for option in ("--epochs", "--batch-size", "--noise-factor", "--init-model", "--dataset", "--seed"):
        assert option in out.stdout


# Markers of TensorFlow's C++ start-up lines (oneDNN, CPU features, CUDA probing, absl).
TF_STARTUP_MARKERS = ("oneDNN", "cpu_feature_guard", "tensorflow/core/", "absl::InitializeLog", "cuda")


def test_tensorflow_start_up_lines_are_off_unless_debug_or_set(monkeypatch):
    import os

    from aetrack.quiet import QUIET_TF_LOG_LEVEL, TF_LOG_LEVEL_VARIABLE, quiet_tensorflow

    monkeypatch.delenv(TF_LOG_LEVEL_VARIABLE, raising=False)
    quiet_tensorflow(debug=True)
    assert TF_LOG_LEVEL_VARIABLE not in os.environ
    quiet_tensorflow(debug=False)
    assert os.environ[TF_LOG_LEVEL_VARIABLE] == QUIET_TF_LOG_LEVEL
    monkeypatch.setenv(TF_LOG_LEVEL_VARIABLE, "0")  # the user's choice stands
    quiet_tensorflow(debug=False)
    assert os.environ[TF_LOG_LEVEL_VARIABLE] == "0"
    quiet_tensorflow(debug=True)  # leave this process as the other tests expect it


@pytest.mark.slow
def test_cli_trains_tracks_and_prints_no_tensorflow_start_up_line(tmp_path, tiny_npz):
    """`aetrack train` in a child process whose environment is a user's shell (no TF_CPP_MIN_LOG_LEVEL)
    and whose MPLBACKEND asks for a GUI backend (TkAgg) with no display: the run is tracked, none of
    TensorFlow's C++ start-up lines reach the terminal, and every figure is drawn on an Agg canvas
    with no GUI backend loaded."""
    import json
    import subprocess
    import sys
    import textwrap

    from tests.helpers.processes import subprocess_env

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = subprocess_env(uri)
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # as a user's shell has it
    env["MPLBACKEND"] = "TkAgg"
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    args = ["train", "basic", "--epochs", "2", "--train-samples", "128", "--test-samples", "16", "--code-size", "8",
            "--dataset", str(tiny_npz), "--register", "false", "--experiment-name", "cli"]
    # The command's own entry point (`aetrack.cli.main`, what `python -m aetrack` runs), with every
    # figure's canvas recorded on the way.
    probe = textwrap.dedent(f"""
        import json, sys
        import matplotlib.figure
        canvases = []
        original_savefig = matplotlib.figure.Figure.savefig
        def recording_savefig(self, *args, **kwargs):
            canvases.append(type(self.canvas).__module__ + "." + type(self.canvas).__name__)
            return original_savefig(self, *args, **kwargs)
        matplotlib.figure.Figure.savefig = recording_savefig
        from aetrack.cli import main
        try:
            main({args!r})
        except SystemExit as exc:
            code = exc.code
        import matplotlib.pyplot as plt
        print("PROBE" + json.dumps({{"code": code, "canvases": canvases, "pyplot_figures": plt.get_fignums(),
              "backend_modules": sorted(m for m in sys.modules if m.startswith("matplotlib.backends.backend_"))}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.split("PROBE", 1)[1])
    assert report["code"] == 0, out.stderr[-2000:]
    assert "Epoch 2/2" in out.stdout and "aetrack: run finished" in out.stdout
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].info.run_id in out.stdout
    assert runs[0].data.params["train_samples"] == "128"
    assert len(client.get_metric_history(runs[0].info.run_id, "val_loss")) == 2
    # Figures: reconstructions, loss curves, latent map, each on Agg; no pyplot figure, no GUI backend.
    assert report["canvases"] == ["matplotlib.backends.backend_agg.FigureCanvasAgg"] * 3
    assert report["pyplot_figures"] == [] and report["backend_modules"] == ["matplotlib.backends.backend_agg"]

    noisy = [line for line in (out.stdout + out.stderr).splitlines()
             if any(marker in line for marker in TF_STARTUP_MARKERS)]
    assert noisy == []
    # TensorFlow loaded plainly does print them, so this check can fail.
    plain = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
                           capture_output=True, text=True, timeout=240, env=env)
    assert [line for line in plain.stderr.splitlines() if any(m in line for m in TF_STARTUP_MARKERS)]
