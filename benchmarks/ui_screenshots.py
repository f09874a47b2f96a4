"""What a user sees in the MLflow UI, checked in a real browser: trains two small `basic` runs into a
fresh store, starts a real `mlflow server` on 127.0.0.1, and has headless Chromium (Debian's
`chromium`) take screenshots of the runs table, the chart view, a run page and a logged model.
A manual check (look at the PNGs), not a test: CI machines need not have Chromium.

    python benchmarks/ui_screenshots.py --out ui-shots/ [--data PATH]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness import DEFAULT_DATA, child_env, free_port, stop_group, tracking_store

STARTUP_SECONDS = 120


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Keras-layout mnist.npz")
    parser.add_argument("--browser", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--wait-ms", type=int, default=15000, help="virtual ms each page runs before its shot")
    parser.add_argument("--workdir", default=None, help="keep the store here (default: a temp dir)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    import mlflow

    from aetrack.config import TrainConfig
    from aetrack.train import train

    with tracking_store(args.workdir) as (uri, root):
        existing = mlflow.get_experiment_by_name("aetrack")
        runs = mlflow.search_runs([existing.experiment_id], output_format="list") if existing else []
        if len(runs) < 2:  # a --workdir from an earlier call keeps its runs: shoot them again
            for code_size in (16, 64):
                train(TrainConfig(epochs=3, train_samples=1000, test_samples=100, dataset=args.data,
                                  code_size=code_size, register=False))
            runs = mlflow.search_runs([mlflow.get_experiment_by_name("aetrack").experiment_id], output_format="list")
        experiment, run_id = runs[0].info.experiment_id, runs[0].info.run_id
        model_id = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")[0].model_id
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT, env=child_env(uri), cwd=root,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        pages = {
            "runs_table": f"{base}/#/experiments/{experiment}/runs",
            "chart_view": f"{base}/#/experiments/{experiment}/runs?compareRunsMode=CHART",
            "run_page": f"{base}/#/experiments/{experiment}/runs/{run_id}",
            "run_model_metrics": f"{base}/#/experiments/{experiment}/runs/{run_id}/model-metrics",
            "logged_models": f"{base}/#/experiments/{experiment}/models",
            "logged_model": f"{base}/#/experiments/{experiment}/models/{model_id}",
        }
        shots = []
        try:
            _wait_for(f"{base}/health", server)
            for name, url in pages.items():
                path = out / f"{name}.png"
                # Virtual time: the shot is taken after the page has run `--wait-ms` of its own
                # timers and requests, however slow the machine is in real time.
                try:
                    subprocess.run(
                        [args.browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--no-first-run", f"--user-data-dir={root / 'chromium'}",
                         "--run-all-compositor-stages-before-draw", f"--virtual-time-budget={args.wait_ms}",
                         f"--screenshot={path}", "--window-size=1600,1400", url],
                        check=True, capture_output=True, timeout=300,
                    )
                except subprocess.TimeoutExpired:
                    print(f"{name}: no screenshot within 300 s", flush=True)
                    continue
                shots.append(path)
                print(f"{name}: {path}  ({url})", flush=True)
        finally:
            stop_group(server)
    return shots


def _wait_for(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server not up after {STARTUP_SECONDS}s")


if __name__ == "__main__":
    main()
