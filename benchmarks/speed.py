"""Fit speed, side by side in one process: the tutorial's plain Keras loop against aetrack's training
with tracking on and with its callbacks off, alternating, several repetitions.

    python benchmarks/speed.py                       # 3 epochs x 3 repetitions on real MNIST
    python benchmarks/speed.py --setting spe100:steps_per_execution=100 --setting spe1:steps_per_execution=1
    python benchmarks/speed.py --architecture conv   # the same comparison for another architecture
    python benchmarks/speed.py --setting nockpt:checkpoint_every=0    # what checkpoints cost

Every aetrack variant goes through `aetrack.train.train(config)` (a real SQLite tracking store in
a temp dir); only the `keras.Model.fit` call inside it is timed. `--setting NAME:field=value,...`
adds aetrack variants with other TrainConfig values. It also times `aetrack --help` and a large
float32 matmul (this machine's practical peak) to say how far the fit is from the physical limit.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path

import harness

IMAGE_PIXELS = 784


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(harness.DEFAULT_DATA), help="Keras-layout mnist.npz")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-samples", type=int, default=30000)
    p.add_argument("--test-samples", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--code-size", type=int, default=64)
    p.add_argument("--architecture", default="dense", choices=("dense", "conv", "vae"),
                   help="model for every variant (the plain loop builds the same one)")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each variant (alternating)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME:FIELD=VALUE,...",
                   help="extra aetrack variant (tracked) with these TrainConfig values")
    p.add_argument("--no-plain", action="store_true", help="skip the plain Keras loop")
    p.add_argument("--help-reps", type=int, default=5, help="runs of `aetrack --help` to time")
    p.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak (0: skip)")
    return p.parse_args(argv)


def parse_setting(text: str) -> tuple[str, dict]:
    from aetrack.config import parse_value

    name, _, assignments = text.partition(":")
    values = {}
    for item in filter(None, assignments.split(",")):
        key, _, raw = item.partition("=")
        values[key.strip()] = parse_value(key.strip(), raw)
    return name, values


def plain_keras_fit(args, dataset, seed: int = 0) -> tuple[float, list[float]]:
    """The tutorial's loop: same model, same data, batch 64, default compile, no tracking."""
    import keras

    from aetrack.models import build_autoencoder

    keras.utils.set_random_seed(seed)
    model = build_autoencoder(args.architecture, args.code_size, seed=seed)
    if args.architecture == "vae":
        model.compile(optimizer="adam")  # its own loss (the ELBO); default steps_per_execution
    else:
        model.compile(optimizer="adam", loss="binary_crossentropy")
    started = time.perf_counter()
    history = model.fit(dataset.x_train, dataset.x_train, epochs=args.epochs, batch_size=args.batch_size,
                        shuffle=True, validation_data=(dataset.x_test, dataset.x_test), verbose=0)
    return time.perf_counter() - started, [float(v) for v in history.history["loss"]], 0.0, {}


def aetrack_fit(args, overrides: dict, tracked: bool) -> tuple[float, list[float], float, dict[str, float]]:
    """aetrack's real train(); only its model.fit call is timed (callbacks dropped if untracked)."""
    from aetrack.config import TrainConfig
    from aetrack.train import train

    values = dict(dataset=args.data, epochs=args.epochs, train_samples=args.train_samples,
                  test_samples=args.test_samples, batch_size=args.batch_size, code_size=args.code_size,
                  architecture=args.architecture, register=False, experiment_name="speed")
    values.update(overrides)
    # aetrack's console output (per-epoch lines, run summary) would bury the benchmark's own.
    with harness.FitTimer(drop_callbacks=not tracked) as timer, contextlib.redirect_stdout(io.StringIO()):
        train(TrainConfig(**values))
    return timer.seconds[0], timer.histories[0]["loss"], timer.callback_seconds[0], timer.seconds_by_callback[0]


def time_help(reps: int) -> float:
    """Median wall seconds of `aetrack --help` (the installed script, else `python -m aetrack`)."""
    script = Path(sys.executable).parent / "aetrack"
    command = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "aetrack", "--help"]
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run(command, env=harness.child_env(), capture_output=True, check=True)
        seconds.append(time.perf_counter() - started)
    return harness.median(seconds)


def matmul_peak_gflops(n: int) -> float:
    """Best of a few n x n float32 matmuls through TensorFlow: this machine's practical peak."""
    import tensorflow as tf

    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    matmul = tf.function(tf.linalg.matmul)
    matmul(a, b).numpy()
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        matmul(a, b).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - started) / 1e9)
    return best


def epoch_gflop(train_samples: int, code_size: int) -> float:
    """Training FLOPs per epoch: forward 2*784*c*2 per image, backward about twice the forward."""
    forward = 2 * IMAGE_PIXELS * code_size * 2
    return 3 * forward * train_samples / 1e9


def main(argv=None) -> None:
    args = parse_args(argv)
    from aetrack.data import load_dataset

    dataset = load_dataset(args.data, args.train_samples, args.test_samples)
    variants: list[tuple[str, object]] = []
    if not args.no_plain:
        variants.append(("plain_keras", lambda: plain_keras_fit(args, dataset)))
    variants.append(("aetrack_tracked", lambda: aetrack_fit(args, {}, tracked=True)))
    variants.append(("aetrack_untracked", lambda: aetrack_fit(args, {}, tracked=False)))
    for text in args.setting:
        name, overrides = parse_setting(text)
        variants.append((name, lambda o=overrides: aetrack_fit(args, o, tracked=True)))

    for line in harness.machine_lines():
        print(line)
    print(f"config: {args.architecture}, {args.train_samples} images, batch {args.batch_size}, {args.epochs} epochs, "
          f"{args.reps} repetitions, variants alternate", flush=True)
    seconds: dict[str, list[float]] = {name: [] for name, _ in variants}
    callback_share: list[float] = []  # tracked runs: time inside callbacks / the rest of the fit
    checkpoint_share: list[float] = []  # tracked runs: time writing checkpoints / the rest of the fit
    losses: dict[str, list[float]] = {}
    with harness.tracking_store():
        for rep in range(args.reps):
            # Rotate the order so no variant always runs first (warm caches) or last.
            order = variants[rep % len(variants):] + variants[: rep % len(variants)]
            for name, run in order:
                fit_seconds, loss, in_callbacks, by_callback = run()
                seconds[name].append(fit_seconds)
                if name == "aetrack_tracked":
                    callback_share.append(in_callbacks / (fit_seconds - in_callbacks))
                    in_checkpoints = by_callback.get("CheckpointWriter", 0.0)
                    checkpoint_share.append(in_checkpoints / (fit_seconds - in_checkpoints))
                losses[name] = loss
                print(f"rep {rep + 1} {name}: fit {fit_seconds:.2f} s, loss {' '.join(f'{v:.4f}' for v in loss)}",
                      flush=True)

    medians = {name: harness.median(values) for name, values in seconds.items()}
    baseline = medians.get("plain_keras")
    # Contention from other processes only ever adds time, so the minimum is shown beside the median.
    print("\nvariant                median_fit_s  ratio_to_plain  final_loss  min_fit_s")
    for name, value in medians.items():
        ratio = f"{value / baseline:.3f}" if baseline else "-"
        print(f"{name:<22} {value:>12.3f}  {ratio:>14}  {losses[name][-1]:.4f}  {min(seconds[name]):>9.3f}")
    overhead = medians["aetrack_tracked"] / medians["aetrack_untracked"] - 1
    print(f"tracking_overhead_percent: {100 * overhead:.1f}")
    # The same overhead measured directly (time inside the callbacks), far less noisy on a busy machine.
    print(f"callback_time_percent: {100 * harness.median(callback_share):.1f}")
    # Of which checkpoints (default checkpoint_every=1: one per epoch), as a share of the fit without them.
    print(f"checkpoint_time_percent: {100 * harness.median(checkpoint_share):.1f}")
    if baseline:
        print(f"tracked_to_plain_ratio: {medians['aetrack_tracked'] / baseline:.3f}")

    help_seconds = time_help(args.help_reps)
    print(f"aetrack_help_seconds: {help_seconds:.3f}")
    if args.architecture != "dense":
        return  # the FLOP count below is the dense model's
    gflop = epoch_gflop(args.train_samples, args.code_size) * args.epochs
    best_name = min(medians, key=medians.get)
    achieved = gflop / medians[best_name]
    print(f"training_gflop: {gflop:.1f} ({args.epochs} epochs)")
    print(f"best_variant: {best_name} {achieved:.1f} GFLOP/s")
    if args.peak_size:
        peak = matmul_peak_gflops(args.peak_size)
        print(f"matmul_peak_gflops: {peak:.1f}")
        print(f"best_fraction_of_peak: {achieved / peak:.3f} (limit {gflop / peak:.2f} s vs best "
              f"{medians[best_name]:.2f} s)")


if __name__ == "__main__":
    main()
