"""Fidelity: does aetrack reproduce the tutorial's loss table on real MNIST?

    python benchmarks/fidelity.py                     # mlflow run -e basic, then -e denoise from it
    python benchmarks/fidelity.py --runner train      # the same through aetrack.train.train()

`basic` runs with the tutorial's settings (30,000 images, batch 64, 10 epochs, Adam, BCE); `denoise`
(noise 0.4) then continues from the basic model, as the tutorial does. The per-epoch training loss is
read back from the MLflow tracking store and printed beside the published values.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import harness

TARGET_PERCENT = 2.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(harness.DEFAULT_DATA), help="Keras-layout mnist.npz")
    p.add_argument("--runner", choices=("mlflow", "train"), default="mlflow",
                   help="`mlflow run` entry points (default) or aetrack.train.train() in this process")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-samples", type=int, default=30000)
    p.add_argument("--test-samples", type=int, default=100)
    p.add_argument("--noise-factor", type=float, default=0.4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="keep the tracking store here (default: temp dir)")
    return p.parse_args(argv)


def common_params(args) -> dict[str, str]:
    return {"dataset": args.data, "epochs": str(args.epochs), "train_samples": str(args.train_samples),
            "test_samples": str(args.test_samples), "seed": str(args.seed), "register": "false"}


def mlflow_run(entry_point: str, params: dict[str, str], uri: str, experiment: str) -> str:
    """`mlflow run <repo> -e <entry_point> --env-manager local`; returns the run id it made."""
    from mlflow.tracking import MlflowClient

    command = ["mlflow", "run", str(harness.REPO), "-e", entry_point, "--env-manager", "local",
               "--experiment-name", experiment]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    started = time.time()
    done = subprocess.run(command, env=harness.child_env(uri), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"fidelity: `mlflow run -e {entry_point}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], order_by=["attribute.start_time DESC"], max_results=1)
    if not runs or runs[0].info.start_time < started * 1000 - 5000:
        sys.exit(f"fidelity: no run found for `mlflow run -e {entry_point}`")
    return runs[0].info.run_id


def loss_history(client, run_id: str) -> list[float]:
    points = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    return [p.value for p in points]


def run_train(entry_point: str, params: dict[str, str]):
    from aetrack.config import TrainConfig, parse_value
    from aetrack.train import train

    values = {k: parse_value(k, v) for k, v in params.items()}
    return train(TrainConfig(entry_point=entry_point, experiment_name="fidelity", **values))


def main(argv=None) -> None:
    args = parse_args(argv)
    from mlflow.tracking import MlflowClient

    for line in harness.machine_lines():
        print(line)
    print(f"runner: {args.runner}; data: {args.data}; {args.train_samples} images, {args.epochs} epochs, "
          f"seed {args.seed}", flush=True)
    with harness.tracking_store(args.workdir) as (uri, root):
        client = MlflowClient(uri)
        if args.runner == "mlflow":
            basic_id = mlflow_run("basic", common_params(args), uri, "fidelity")
        else:
            basic_id = run_train("basic", common_params(args)).run_id
        # The tutorial's protocol: the denoiser continues the basic model, as logged by the basic run.
        init_model = f"runs:/{basic_id}/autoencoder"
        denoise_params = dict(common_params(args), noise_factor=str(args.noise_factor), init_model=init_model)
        if args.runner == "mlflow":
            denoise_id = mlflow_run("denoise", denoise_params, uri, "fidelity")
        else:
            denoise_id = run_train("denoise", denoise_params).run_id
        measured = {"basic": loss_history(client, basic_id), "denoise": loss_history(client, denoise_id)}

    print(f"\ninit_model for denoise: {init_model}")
    print(report(measured))


def percent(measured: float, published: float) -> float:
    return 100 * (measured - published) / published


def report(measured: dict[str, list[float]]) -> str:
    """The loss table beside the published one, then one verdict line per entry point."""
    lines = ["epoch  basic_published  basic_aetrack  diff_%  denoise_published  denoise_aetrack  diff_%"]
    epochs = max(len(v) for v in measured.values())
    for i in range(epochs):
        cells = [f"{i + 1:>5}"]
        for name in ("basic", "denoise"):
            published = harness.PUBLISHED_LOSS[name]
            ours = measured[name][i] if i < len(measured[name]) else None
            pub = published[i] if i < len(published) else None
            diff = f"{percent(ours, pub):+.1f}" if ours is not None and pub is not None else "-"
            cells += [f"{pub:.4f}" if pub is not None else "-", f"{ours:.4f}" if ours is not None else "-", diff]
        lines.append(f"{cells[0]}  {cells[1]:>15}  {cells[2]:>13}  {cells[3]:>6}  {cells[4]:>17}  "
                     f"{cells[5]:>15}  {cells[6]:>6}")
    for name, losses in measured.items():
        last = len(losses)
        published = harness.PUBLISHED_LOSS[name]
        if last and last <= len(published):
            diff = percent(losses[-1], published[last - 1])
            verdict = "PASS" if abs(diff) <= TARGET_PERCENT else "FAIL"
            lines.append(f"final_{name}: epoch {last} loss {losses[-1]:.4f} published {published[last - 1]:.4f} "
                         f"diff {diff:+.2f}% (target within {TARGET_PERCENT:g}%) {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
