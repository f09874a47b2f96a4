"""What a user sees in the MLflow UI, checked in a real browser: trains three small registered
`basic` runs into a fresh store (they differ in code size, epochs, learning rate and seed, as a
newcomer's runs do), starts a real `mlflow server` on 127.0.0.1, and has headless Chromium
(Debian's `chromium`) take screenshots of the runs table, the chart view with the image cards, a
run page, the logged models list and one logged model's page (with its registered versions).
A manual check (look at the PNGs), not a test: CI machines need not have Chromium.

    python benchmarks/ui_screenshots.py --out ui-shots/ [--data PATH] [--docs docs/images]

`--docs` also writes the documentation's pictures there, cropped and palette-compressed to stay
small: ui-runs.png (the runs table), ui-run-images.png (a run's image cards), ui-logged-model.png
(a logged model's page) and ui-logged-models.png (the logged models list).
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
# (code size, epochs, learning rate, seed): what differs between a newcomer's first runs.
RUNS = ((16, 2, 0.001, 0), (64, 3, 0.001, 0), (64, 3, 0.003, 1))
# The documentation's pictures: {file name: (the screenshot it is made from, the part kept: (left,
# top, right, bottom) pixels or None)}. The run page's third and fourth rows of cards hold the
# image cards of a `basic` run (11 cards: metrics in name order, `latent_codes`, `reconstruction`).
DOCS_PICTURES = {"ui-runs.png": ("runs_table", (0, 0, 1190, 420)),
                 "ui-run-images.png": ("run_model_metrics", (200, 975, 1200, 1740)),
                 "ui-logged-model.png": ("logged_model", (0, 0, 1190, 1000)),
                 "ui-logged-models.png": ("logged_models", (200, 0, 1930, 660))}
# Window sizes other than 1600x1000: the run page taller, to reach its image cards; the logged
# models list wider, to reach its Registered models column.
WINDOWS = {"run_model_metrics": (1600, 1800), "logged_models": (2600, 1000)}
DOCS_MAX_BYTES = 300_000


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Keras-layout mnist.npz")
    parser.add_argument("--browser", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--wait-ms", type=int, default=15000, help="virtual ms each page runs before its shot")
    parser.add_argument("--workdir", default=None, help="keep the store here (default: a temp dir)")
    parser.add_argument("--train-samples", type=int, default=1000)
    parser.add_argument("--docs", default=None, help="also write the docs' pictures (ui-*.png) into this folder")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    import mlflow

    from aetrack.config import TrainConfig
    from aetrack.train import train

    with tracking_store(args.workdir) as (uri, root):
        existing = mlflow.get_experiment_by_name("aetrack")
        runs = mlflow.search_runs([existing.experiment_id], output_format="list") if existing else []
        if len(runs) < len(RUNS):  # a --workdir from an earlier call keeps its runs: shoot them again
            for code_size, epochs, learning_rate, seed in RUNS:
                train(TrainConfig(epochs=epochs, train_samples=args.train_samples, test_samples=100,
                                  dataset=args.data, code_size=code_size, learning_rate=learning_rate,
                                  seed=seed))
            runs = mlflow.search_runs([mlflow.get_experiment_by_name("aetrack").experiment_id], output_format="list")
        experiment, run_id = runs[0].info.experiment_id, runs[0].info.run_id
        # The newest run's encoder: a logged model with a registered version.
        models = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")
        model_id = next((m.model_id for m in models if m.source_run_id == run_id and m.name == "encoder"),
                        models[0].model_id)
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
                         f"--screenshot={path}", "--window-size={},{}".format(*WINDOWS.get(name, (1600, 1000))), url],
                        check=True, capture_output=True, timeout=300,
                    )
                except subprocess.TimeoutExpired:
                    print(f"{name}: no screenshot within 300 s", flush=True)
                    continue
                shots.append(path)
                print(f"{name}: {path}  ({url})", flush=True)
        finally:
            stop_group(server)
    if args.docs:
        shots += write_docs_pictures(out, Path(args.docs))
    return shots


def write_docs_pictures(shots: Path, docs: Path) -> list[Path]:
    """Copy the docs' screenshots into `docs` as 256-colour PNGs (UI screenshots are flat colours:
    a palette keeps text sharp at a fraction of the size), cropped to what the page shows, and
    shrunk by a quarter at a time while over the limit."""
    from PIL import Image

    docs.mkdir(parents=True, exist_ok=True)
    written = []
    for picture, (shot, box) in DOCS_PICTURES.items():
        source = shots / f"{shot}.png"
        if not source.exists():
            print(f"{picture}: no {source.name} to make it from", flush=True)
            continue
        image = Image.open(source).convert("RGB")
        image = image.crop(box) if box else image
        target = docs / picture
        while True:
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
            if target.stat().st_size <= DOCS_MAX_BYTES or image.width < 800:
                break
            image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
        written.append(target)
        print(f"{picture}: {target} ({target.stat().st_size // 1000} KB)", flush=True)
    return written


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
