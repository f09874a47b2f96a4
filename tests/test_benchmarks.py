"""Smoke tests: each benchmark script starts, runs one tiny configuration, and prints figures
that parse. (The benchmarks themselves are not tests; see benchmarks/README.md.)"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aetrack.names import ENTRY_POINT_TAG
from tests.helpers.processes import REPO, subprocess_env

BENCH = REPO / "benchmarks"
NUMBER = r"([-+]?\d+(?:\.\d+)?)"

pytestmark = pytest.mark.slow  # each one runs a benchmark script, which trains in child processes


def run_script(name, *args, timeout=300):
    done = subprocess.run([sys.executable, str(BENCH / name), *map(str, args)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def figure(text, key):
    match = re.search(rf"^{re.escape(key)}: {NUMBER}", text, re.MULTILINE)
    assert match, f"{key} missing in:\n{text}"
    return float(match.group(1))


def test_speed_tiny(tiny_npz):
    out = run_script("speed.py", "--data", tiny_npz, "--epochs", 1, "--train-samples", 128, "--test-samples", 16,
                     "--reps", 1, "--help-reps", 1, "--peak-size", 128, "--setting", "spe2:steps_per_execution=2")
    rows = {m[0]: m for m in re.findall(rf"^(\w+) +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$", out, re.MULTILINE)}
    assert set(rows) == {"plain_keras", "aetrack_tracked", "aetrack_untracked", "spe2"}
    for name, seconds, ratio, loss, fastest in rows.values():
        assert 0 < float(fastest) <= float(seconds) and 0 < float(loss) < 1
    # Dropping the callbacks or fusing steps must not change the math: the same final loss.
    assert rows["aetrack_tracked"][3] == rows["aetrack_untracked"][3] == rows["spe2"][3]
    # Each ratio is the variant's seconds over the plain loop's (both printed rounded to 3 decimals).
    plain = float(rows["plain_keras"][1])
    for name, seconds, ratio, loss, fastest in rows.values():
        assert float(ratio) == pytest.approx(float(seconds) / plain, rel=0.01, abs=0.002), name
    tracked, untracked = float(rows["aetrack_tracked"][1]), float(rows["aetrack_untracked"][1])
    assert figure(out, "tracked_to_plain_ratio") == pytest.approx(tracked / plain, rel=0.01, abs=0.002)
    # The printed seconds are rounded to 3 decimals, so the recomputed percentage is only close.
    assert figure(out, "tracking_overhead_percent") == pytest.approx(100 * (tracked / untracked - 1), abs=1.0)
    # Tracked runs log metrics and images to MLflow every epoch: time inside the callbacks is real.
    assert figure(out, "callback_time_percent") > 0
    # ... of which writing a checkpoint every epoch (the default) is a part.
    assert 0 < figure(out, "checkpoint_time_percent") < figure(out, "callback_time_percent")
    assert 0 < figure(out, "aetrack_help_seconds") < 30
    assert figure(out, "matmul_peak_gflops") > 0


def test_fidelity_tiny(tiny_npz, tmp_path):
    from mlflow.tracking import MlflowClient

    out = run_script("fidelity.py", "--runner", "train", "--data", tiny_npz, "--epochs", 2,
                     "--train-samples", 128, "--test-samples", 16, "--workdir", tmp_path)
    rows = re.findall(rf"^ +(\d+) +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$", out, re.MULTILINE)
    assert [r[0] for r in rows] == ["1", "2"]
    for _, pub_b, ours_b, diff_b, pub_d, ours_d, diff_d in rows:
        for pub, ours, diff in ((pub_b, ours_b, diff_b), (pub_d, ours_d, diff_d)):
            assert float(diff) == pytest.approx(100 * (float(ours) - float(pub)) / float(pub), abs=0.2)
    # "ours" is each run's per-epoch loss as the tracking store holds it; the denoiser continued
    # from the basic run's logged autoencoder.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {r.data.tags[ENTRY_POINT_TAG]: r
            for r in client.search_runs([client.get_experiment_by_name("fidelity").experiment_id])}
    assert set(runs) == {"basic", "denoise"}
    for column, entry_point in ((2, "basic"), (5, "denoise")):
        losses = sorted(client.get_metric_history(runs[entry_point].info.run_id, "loss"), key=lambda m: m.step)
        assert [row[column] for row in rows] == [f"{m.value:.4f}" for m in losses], entry_point
    init_model = f"runs:/{runs['basic'].info.run_id}/autoencoder"
    assert runs["denoise"].data.params["init_model"] == init_model
    assert f"init_model for denoise: {init_model}" in out
    # The verdict follows the rule it prints (|diff| within the target), checked from its own numbers:
    # synthetic digits land far from the published MNIST loss, so here the rule must say FAIL.
    verdicts = re.findall(rf"^final_(\w+): epoch (\d+) loss {NUMBER} published {NUMBER} diff {NUMBER}% "
                          rf"\(target within {NUMBER}%\) (PASS|FAIL)$", out, re.MULTILINE)
    assert [v[:2] for v in verdicts] == [("basic", "2"), ("denoise", "2")], out
    for (_, _, loss, published, diff, target, verdict), row in zip(verdicts, (rows[1][2], rows[1][5])):
        assert loss == row  # the last table row's own loss
        assert float(diff) == pytest.approx(100 * (float(loss) - float(published)) / float(published), abs=0.2)
        assert verdict == ("PASS" if abs(float(diff)) <= float(target) else "FAIL")
    assert verdicts[0][6] == "FAIL"


def test_end_to_end_tiny(tiny_npz):
    out = run_script("end_to_end.py", "--data", tiny_npz, "--epochs", 1, "--train-samples", 128,
                     "--test-samples", 16, "--register", "false")
    assert figure(out, "mlflow_run_seconds") > 0
    assert figure(out, "peak_rss_mib") > 100  # a TensorFlow process, not the small mlflow CLI alone
    phases = {name: (float(seconds), int(share))
              for name, seconds, share in re.findall(rf"^(.+?) +{NUMBER} +(\d+)%$", out, re.MULTILINE)}
    assert {"import tensorflow", "load data", "fit", "evaluate", "log models", "register models"} <= set(phases)
    # The phases account for the phase run: no phase counted twice (the sum would exceed the run),
    # none missing beyond the short untimed setup between imports and train(); each share is its
    # seconds over the run (printed rounded, to 0.01 s and 1%).
    total = figure(out, "phase_run_seconds")
    summed = sum(s for s, _ in phases.values())
    assert total - max(0.05 * total, 0.3) <= summed <= total + 0.01 * len(phases) + 0.05, (summed, total)
    for seconds, share in phases.values():
        assert share == pytest.approx(100 * seconds / total, abs=1)


def test_sweep_tiny(tiny_npz):
    trials = 1  # every variant still runs; each trial more is one more `mlflow run`
    out = run_script("sweep.py", "--data", tiny_npz, "--trials", trials, "--epochs", 1, "--train-samples", 128,
                     "--test-samples", 16, timeout=600)
    rows = {name: (float(seconds), float(per_minute))
            for name, seconds, per_minute in re.findall(rf"^(\w+) +{NUMBER} +{NUMBER}$", out, re.MULTILINE)}
    assert set(rows) == {"in_process_1_worker", "mlflow_run_per_trial", "in_process_2_workers"}
    for seconds, per_minute in rows.values():
        assert per_minute == pytest.approx(60 * trials / seconds, rel=0.01)
    ratio = rows["in_process_1_worker"][1] / rows["mlflow_run_per_trial"][1]
    assert figure(out, "in_process_speedup") == pytest.approx(ratio, abs=0.05)  # from rounded figures
    ratio = rows["in_process_2_workers"][1] / rows["mlflow_run_per_trial"][1]
    assert figure(out, "two_workers_speedup") == pytest.approx(ratio, abs=0.05)


def test_architectures_tiny(tiny_npz):
    # Two rows tell both columns that depend on the row apart: gain (denoise) and elbo (vae).
    out = run_script("architectures.py", "--data", tiny_npz, "--epochs", 1, "--train-samples", 128, "--test-samples",
                     16, "--holdout", 32, "--rows", "dense:basic", "vae:denoise")
    assert "metrics on test images 16-47" in out
    rows = {(m[0], m[1]): m[2:] for m in re.findall(r"^\| (\w+) \| (\w+) \| (.+) \|", out, re.MULTILINE)
            if m[0] != "architecture"}
    assert set(rows) == {("dense", "basic"), ("vae", "denoise")}
    for (architecture, entry), cells in rows.items():
        bce, psnr, gain, elbo, fit_s, params = (c.strip() for c in cells[0].split("|"))
        assert 0 < float(bce) < 1 and float(psnr) > 0 and float(fit_s) > 0
        assert (gain == "-") == (entry == "basic")
        assert (elbo == "-") == (architecture == "dense")
        if architecture == "vae":
            assert float(elbo) > 0
        assert params == ("101,200" if architecture == "dense" else "870,224")


@pytest.fixture(scope="module")
def bench_store(tmp_path_factory) -> Path:
    """One store folder for serving.py and load.py: the first to run trains and registers the `bench`
    model there, the other serves it (tests/conftest.py keeps both tests in one xdist unit)."""
    return tmp_path_factory.mktemp("bench-store")


def test_serving_tiny(tiny_npz, bench_store):
    import json

    # The `mlflow models predict` check (two more processes) is test_records' own test.
    out = run_script("serving.py", "--data", tiny_npz, "--requests", 3, "--train-samples", 128,
                     "--test-samples", 16, "--no-predict-check", "--workdir", bench_store, timeout=600)
    result = json.loads(re.search(r"^RESULT (.*)$", out, re.MULTILINE).group(1))
    assert set(result) == {"mlflow serve, aetrack (direct call)", "mlflow serve, mlflow.keras default (predict)",
                           "aetrack serve", "aetrack serve (.npy)"}
    for figures in result.values():
        assert set(figures) == {"p50_ms_1", "p90_ms_1", "p50_ms_256", "p90_ms_256"}
        assert 0 < figures["p50_ms_1"] <= figures["p90_ms_1"] and 0 < figures["p50_ms_256"] <= figures["p90_ms_256"]


def test_load_tiny(tiny_npz, bench_store):
    import json

    out = run_script("load.py", "--data", tiny_npz, "--seconds", 0.3, "--clients", 2, "--batches", 16,
                     "--train-samples", 128, "--test-samples", 16, "--workdir", bench_store, timeout=600)
    phases = json.loads(re.search(r"^RESULT (.*)$", out, re.MULTILINE).group(1))
    assert {p["server"] for p in phases} == {"aetrack serve (JSON)", "aetrack serve (.npy)",
                                             "mlflow models serve (JSON)", "aetrack serve, before orjson (JSON)"}
    for phase in phases:
        assert phase["errors"] == 0 and phase["requests"] > 0, phase
        assert 0 < phase["p50_ms"] <= phase["p99_ms"] and phase["batch"] == 16, phase
