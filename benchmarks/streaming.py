"""Streamed image folders against arrays in memory, on images this script generates.

1. Throughput: the same images as a Keras-layout `.npz` (decoded into memory) and as a PNG folder
   (streamed: decoded batch by batch in the tf.data pipeline), trained alternately in one process;
   samples per second of the epochs after the first (MLflow's `samples_per_second`).
2. Memory: peak RSS of a folder run whose images, decoded as float32, are several times a stated
   limit (default 100,000 64x64 RGB PNGs: 4.9 GB as float32, against a 1.5 GB limit; the in-memory
   path would also hold them as uint8), beside a run on a small folder of the same kind (the
   process's own size: TensorFlow, MLflow and the model, about 1 GB). Runs first, so the arrays
   of part 1 are not in its peak.
3. Tables: peak RSS of loading a generated Parquet table (default 1,000,000 rows x 20 float
   columns: 153 MB as float64) and reading one epoch of its streamed batches through the tf.data
   pipeline (no model: the data path alone), beside the same on a table a tenth the size.

    python benchmarks/streaming.py                      # both parts, full size (minutes; disk ~1 GB)
    python benchmarks/streaming.py --part memory --images 50000   # 2.4 GB as float32
    python benchmarks/streaming.py --part throughput --throughput-images 5000 --epochs 3
    python benchmarks/streaming.py --part table --table-rows 2000000
    python benchmarks/streaming.py --tiny               # seconds: a smoke run of both parts

Every run goes through `aetrack.train.train(config)` (a real SQLite tracking store in a temp dir).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import harness

SIDE = 64


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("both", "throughput", "memory", "table"), default="both",
                   help="both: throughput and memory (images); table: the table part alone")
    p.add_argument("--images", type=int, default=100_000, help="memory part: images in the big folder")
    p.add_argument("--small-images", type=int, default=5_000,
                   help="memory part: images in the baseline folder (enough batches to fill the pipeline)")
    p.add_argument("--limit-mb", type=float, default=1536.0, help="memory part: the stated limit the peak is held to")
    p.add_argument("--side", type=int, default=SIDE, help="image height and width (RGB)")
    p.add_argument("--throughput-images", type=int, default=10_000, help="throughput part: images in both forms")
    p.add_argument("--epochs", type=int, default=3, help="throughput part: epochs (the first is not counted)")
    p.add_argument("--reps", type=int, default=2, help="throughput part: repetitions of each form (alternating)")
    p.add_argument("--table-rows", type=int, default=1_000_000, help="table part: rows of the big table")
    p.add_argument("--table-columns", type=int, default=20, help="table part: float columns")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--code-size", type=int, default=32)
    p.add_argument("--workdir", default="", help="where the images go (default: a temp dir, removed after)")
    p.add_argument("--tiny", action="store_true", help="a few seconds: tiny sizes for a smoke test")
    args = p.parse_args(argv)
    if args.tiny:
        args.images, args.small_images, args.throughput_images, args.table_rows = 96, 48, 64, 2000
        args.side, args.epochs, args.reps, args.batch_size, args.code_size = 8, 2, 1, 16, 2
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first epoch (tracing, warm-up) is not counted")
    return args


def generate(n: int, side: int, seed: int):
    """Yield n smooth uint8 RGB images (side, side, 3) and labels 0/1: a random 4x4 colour grid
    upsampled (PNG compresses it as it would a photo-like image, not as white noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for _ in range(n):
        grid = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        yield np.asarray(Image.fromarray(grid, "RGB").resize((side, side), Image.Resampling.BILINEAR)), \
            int(rng.integers(0, 2))


def write_folder(root: Path, n_train: int, n_test: int, side: int, seed: int = 0) -> Path:
    """PNGs in train/<class>/ and test/<class>/ (classes a, b), written one at a time."""
    from PIL import Image

    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        for label in "ab":
            (root / split / label).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(generate(n, side, seed + offset)):
            Image.fromarray(image, "RGB").save(root / split / "ab"[label] / f"{i:06d}.png")
    return root


def write_npz(path: Path, n_train: int, n_test: int, side: int, seed: int = 0) -> Path:
    """The images `write_folder` writes with the same seed, in the folder's sorted order."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        pairs = list(generate(n, side, seed + offset))
        order = sorted(range(n), key=lambda i: (pairs[i][1], i))  # class folder, then file name
        splits[f"x_{split}"] = np.stack([pairs[i][0] for i in order])
        splits[f"y_{split}"] = np.array([pairs[i][1] for i in order], np.int64)
    np.savez(path, **splits)
    return path


def pipeline_mb(args) -> float:
    from aetrack.batches import DECODE_PARALLEL, PREFETCH_BATCHES

    batch_bytes = args.batch_size * args.side * args.side * 3 * 5  # float32 rows and their uint8 pixels
    return (DECODE_PARALLEL + PREFETCH_BATCHES + 1) * batch_bytes / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def train_once(dataset: str, args, epochs: int, test_samples: int) -> tuple[str, object]:
    from aetrack.config import TrainConfig
    from aetrack.train import train

    config = TrainConfig(dataset=dataset, epochs=epochs, batch_size=args.batch_size, code_size=args.code_size,
                         test_samples=test_samples, image_samples=4, image_every=0, checkpoint_every=0,
                         register=False)
    return train(config)


def memory_part(args, work: Path) -> list[str]:
    decoded_mb = args.images * args.side * args.side * 3 * 4 / 2**20
    lines = [f"memory: {args.images} {args.side}x{args.side} RGB PNGs, {decoded_mb:.0f} MB as float32, "
             f"limit {args.limit_mb:.0f} MB"]
    started = time.perf_counter()
    small = write_folder(work / "small", args.small_images, 64, args.side)
    big = write_folder(work / "big", args.images, 64, args.side, seed=10)
    lines.append(f"generate_seconds: {time.perf_counter() - started:.1f}")
    train_once(str(small), args, 1, 64)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    result = train_once(str(big), args, 1, 64)
    peak = peak_rss_mb()
    lines += [f"big_run_seconds: {time.perf_counter() - started:.1f} (load, digest of the files, 1 epoch, log)",
              f"baseline_peak_rss_mb: {baseline:.0f} ({args.small_images} images)",
              f"peak_rss_mb: {peak:.0f} ({args.images} images)",
              f"rss_growth_mb: {peak - baseline:.0f} (peak over the baseline's)",
              f"decoded_float32_mb: {decoded_mb:.0f}",
              f"pipeline_bound_mb: {pipeline_mb(args):.0f} (batches in flight x a batch's float32 + uint8)",
              f"peak_over_limit: {peak / args.limit_mb:.2f}",
              f"decoded_over_limit: {decoded_mb / args.limit_mb:.2f}",
              f"big_run_loss: {result.history['loss'][-1]:.4f}"]
    return lines


def samples_per_second(run_id: str) -> float:
    from mlflow.tracking import MlflowClient

    history = sorted(MlflowClient().get_metric_history(run_id, "samples_per_second"), key=lambda m: m.step)
    later = [m.value for m in history[1:]]  # the first epoch traces the model and fills the pipeline
    return sum(later) / len(later)


def throughput_part(args, work: Path) -> list[str]:
    n = args.throughput_images
    npz = write_npz(work / "images.npz", n, 64, args.side, seed=20)
    folder = write_folder(work / "images", n, 64, args.side, seed=20)
    rates: dict[str, list[float]] = {"npz": [], "folder": []}
    losses: dict[str, float] = {}
    for _ in range(args.reps):
        for form, dataset in (("npz", npz), ("folder", folder)):
            result = train_once(str(dataset), args, args.epochs, 64)
            rates[form].append(samples_per_second(result.run_id))
            losses[form] = result.history["loss"][-1]
    best = {form: max(values) for form, values in rates.items()}
    return [f"throughput: {n} {args.side}x{args.side} RGB images, batch {args.batch_size}, epochs 2..{args.epochs}, "
            f"{args.reps} rep(s), best of reps",
            f"npz_samples_per_second: {best['npz']:.0f}",
            f"folder_samples_per_second: {best['folder']:.0f}",
            f"folder_over_npz: {best['folder'] / best['npz']:.2f}",
            # The same images in the same (seed, epoch) order: the same loss either way.
            f"npz_loss: {losses['npz']:.6f}",
            f"folder_loss: {losses['folder']:.6f}"]


def write_parquet(path: Path, rows: int, columns: int, seed: int = 0) -> Path:
    """Normal float columns f0.. in row groups of 100,000 rows, written a group at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(f"f{i}", pa.float64()) for i in range(columns)])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 100_000):
            block = rng.normal(size=(min(100_000, rows - start), columns))
            writer.write_table(pa.table({f"f{i}": block[:, i] for i in range(columns)}, schema=schema))
    return path


def table_epoch(path: Path, batch_size: int) -> tuple[int, float]:
    """(rows read, seconds): load the table (streamed) and read one epoch of its batches."""
    from aetrack.batches import streamed_batches
    from aetrack.data import load_dataset

    started = time.perf_counter()
    data = load_dataset(str(path))
    batches, _ = streamed_batches(data.x_train, batch_size, seed=0)
    rows = sum(int(x.shape[0]) for x, _ in batches)
    return rows, time.perf_counter() - started


def table_part(args, work: Path) -> list[str]:
    float64_mb = args.table_rows * args.table_columns * 8 / 2**20
    small = write_parquet(work / "small.parquet", max(2, args.table_rows // 10), args.table_columns, seed=1)
    big = write_parquet(work / "big.parquet", args.table_rows, args.table_columns)
    table_epoch(small, args.batch_size)
    baseline = peak_rss_mb()
    rows, seconds = table_epoch(big, args.batch_size)
    peak = peak_rss_mb()
    return [f"table: {args.table_rows} rows x {args.table_columns} floats (Parquet), {float64_mb:.0f} MB as float64, "
            f"batch {args.batch_size}",
            f"table_epoch_seconds: {seconds:.1f} (one checked pass, statistics, digest, 1 epoch of {rows} rows)",
            f"table_baseline_peak_rss_mb: {baseline:.0f} (a tenth of the rows)",
            f"table_peak_rss_mb: {peak:.0f}",
            f"table_rss_growth_mb: {peak - baseline:.0f} (peak over the baseline's)"]


def main(argv=None) -> list[str]:
    args = parse_args(argv)
    lines = harness.machine_lines()
    with tempfile.TemporaryDirectory(prefix="aetrack-stream-", dir=args.workdir or None) as work, \
            harness.tracking_store(str(Path(work) / "store")):
        if args.part in ("both", "memory"):
            lines += memory_part(args, Path(work) / "memory")
        if args.part in ("both", "throughput"):
            lines += throughput_part(args, Path(work) / "throughput")
        if args.part == "table":
            lines += table_part(args, Path(work) / "table")
    print("\n" + "\n".join(lines), flush=True)
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
