"""The three architectures side by side on real MNIST: one row per architecture x entry point.

    python benchmarks/architectures.py                      # the tutorial's settings (slow on 2 cores: conv)
    python benchmarks/architectures.py --epochs 2 --train-samples 5000 --architectures dense conv

Each row is aetrack's real `train(config)` (a SQLite tracking store in a temp dir; per-epoch
images on, models logged, not registered): 30,000 training images, batch 64, 10 epochs, the first
100 test images for `val_loss`. The test metrics are computed afterwards on test images 100-1099
(`--holdout`), which training never saw, with the same functions the run uses: `test_bce`,
`test_psnr`, `psnr_gain_db` (denoise, noise 0.4), `test_elbo` (vae). `fit_s` is the wall time of
the `keras.Model.fit` call alone. Rows are printed as they finish (and appended to `--log`), so a
partial run still reports what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import time

import harness

COLUMNS = ("architecture", "entry", "test_bce", "test_psnr", "psnr_gain_db", "test_elbo", "fit_s", "params")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(harness.DEFAULT_DATA), help="Keras-layout mnist.npz")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-samples", type=int, default=30000)
    p.add_argument("--test-samples", type=int, default=100, help="validation images (val_loss)")
    p.add_argument("--holdout", type=int, default=1000, help="test images after the validation ones, for metrics")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--code-size", type=int, default=64)
    p.add_argument("--noise-factor", type=float, default=0.4)
    p.add_argument("--architectures", nargs="+", default=["dense", "conv", "vae"])
    p.add_argument("--entry-points", nargs="+", default=["basic", "denoise"])
    p.add_argument("--rows", nargs="+", default=None, metavar="ARCHITECTURE:ENTRY",
                   help="only these rows, e.g. dense:basic vae:denoise (default: every architecture x entry point)")
    p.add_argument("--log", default=None, help="also append each finished row to this file")
    return p.parse_args(argv)


def holdout_metrics(model, config, holdout) -> dict[str, float]:
    """The run's end-of-run metrics, recomputed on the held-out test images."""
    from aetrack.evaluation import final_metrics, negative_elbo
    from aetrack.models import latent_moments
    from aetrack.noise import RunNoise

    def reconstruct(x):
        return model.predict(x, batch_size=256, verbose=0)

    noise = RunNoise(config.seed, config.noise_factor) if config.denoising else None
    inputs = noise.validation(holdout.x_test) if noise else holdout.x_test
    metrics = final_metrics(reconstruct, holdout.x_test, inputs, holdout.y_test, noise)
    moments = latent_moments(model)
    if moments is not None:
        mean, log_var = (t.numpy() for t in moments(inputs, training=False))
        metrics["test_elbo"] = negative_elbo(holdout.x_test, reconstruct(inputs), mean, log_var)
    return metrics


def run_one(args, architecture: str, entry_point: str, holdout) -> dict[str, object]:
    from aetrack.config import TrainConfig
    from aetrack.models import autoencoder_of
    from aetrack.train import train

    config = TrainConfig(
        architecture=architecture, entry_point=entry_point, dataset=args.data, epochs=args.epochs,
        train_samples=args.train_samples, test_samples=args.test_samples, batch_size=args.batch_size,
        code_size=args.code_size, noise_factor=args.noise_factor, register=False, experiment_name="architectures",
    )
    with harness.FitTimer() as timer, contextlib.redirect_stdout(io.StringIO()):
        result = train(config)
    metrics = holdout_metrics(result.model, config.validated(), holdout)
    return {"architecture": architecture, "entry": entry_point, **metrics, "fit_s": timer.seconds[0],
            "params": autoencoder_of(result.model).count_params(), "final_loss": result.history["loss"][-1]}


def format_cell(row: dict, column: str) -> str:
    value = row.get(column)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if column in ("fit_s", "test_elbo") else f"{value:.4f}" if "bce" in column else f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv=None) -> None:
    args = parse_args(argv)
    from aetrack.data import load_dataset

    # The first `test_samples` test images validate; the next `holdout` ones score.
    full = load_dataset(args.data, 1, args.test_samples + args.holdout)
    holdout = dataclasses.replace(full, x_test=full.x_test[args.test_samples:], y_test=full.y_test[args.test_samples:])
    header = ["| " + " | ".join(COLUMNS) + " |", "| " + " | ".join("---" for _ in COLUMNS) + " |"]
    lines = harness.machine_lines() + [
        f"config: {args.train_samples} training images, batch {args.batch_size}, {args.epochs} epochs, code "
        f"{args.code_size}, val on test images 0-{args.test_samples - 1}, metrics on test images "
        f"{args.test_samples}-{args.test_samples + len(holdout.x_test) - 1}", ""] + header
    for line in lines:
        print(line, flush=True)
    _append(args.log, lines)
    rows = ([tuple(row.split(":", 1)) for row in args.rows] if args.rows else
            [(architecture, entry_point) for entry_point in args.entry_points for architecture in args.architectures])
    with harness.tracking_store():
        for architecture, entry_point in rows:
            started = time.perf_counter()
            row = run_one(args, architecture, entry_point, holdout)
            line = "| " + " | ".join(format_cell(row, c) for c in COLUMNS) + " |"
            print(line + f"  ({time.perf_counter() - started:.0f} s in all)", flush=True)
            _append(args.log, [line])


def _append(path: str | None, lines: list[str]) -> None:
    if path:
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
