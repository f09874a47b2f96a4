"""Export benchmark: size and latency of each `aetrack export` format, and what quantizing costs.

Trains one `basic` run (aetrack's real `train`, a throwaway store), exports its autoencoder to a
SavedModel, TFLite float32 / float16 / int8 (and ONNX when the export extra is installed) with
`aetrack.use.export.export_model` (each checked against Keras as it is written), then times one
sample and a batch of 256 in each runtime (median of --repeats calls after a warm-up) and measures
the reconstruction metric (test_bce) on the run's test split. Prints a markdown table.

    python benchmarks/export.py                                   # 30,000 MNIST images, 10 epochs
    python benchmarks/export.py --epochs 1 --train-samples 512    # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(harness.DEFAULT_DATA), help="dataset (name or path)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-samples", type=int, default=30000)
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--code-size", type=int, default=64)
    p.add_argument("--architecture", default="dense")
    p.add_argument("--repeats", type=int, default=50, help="timed calls per latency (median)")
    p.add_argument("--workdir", default=None, help="keep the tracking store and exports here (default: temp dir)")
    return p.parse_args(argv)


def _median_ms(call, repeats: int) -> float:
    call()  # warm-up: tracing, allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _runner(fmt: str, path: str):
    """A function rows -> outputs in the export's own runtime, loaded once."""
    import numpy as np
    import tensorflow as tf

    if fmt == "savedmodel":
        loaded = tf.saved_model.load(path)
        return lambda rows: np.asarray(loaded.serve(tf.constant(rows)))
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda rows: session.run(None, {name: rows})[0]
    interpreters = {}

    def run(rows):
        interpreter = interpreters.get(len(rows))
        if interpreter is None:  # one interpreter per batch size, allocated once (as an app would)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                interpreter = tf.lite.Interpreter(model_path=path)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, list(rows.shape))
            interpreter.allocate_tensors()
            interpreters[len(rows)] = interpreter
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rows)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return run


def main(argv=None) -> None:
    args = parse_args(argv)
    import numpy as np

    from aetrack.config import TrainConfig
    from aetrack.data import dataset_for
    from aetrack.evaluation import binary_crossentropy
    from aetrack.train import train
    from aetrack.use.export import FORMATS, ONNX, export_model
    from aetrack.models.loading import load_model

    for line in harness.machine_lines():
        print(line)
    variants = [("savedmodel", None), ("tflite", None), ("tflite", "float16"), ("tflite", "int8")]
    try:
        from aetrack.use.export import check_onnx_available

        check_onnx_available()
        variants.insert(1, (ONNX, None))
    except Exception as exc:  # noqa: BLE001 - ONNX is optional: say why it is left out
        print(f"onnx left out: {exc}")
    assert all(fmt in FORMATS for fmt, _ in variants)
    with harness.tracking_store(args.workdir) as (uri, root):
        config = TrainConfig(epochs=args.epochs, train_samples=args.train_samples, test_samples=args.test_samples,
                             code_size=args.code_size, architecture=args.architecture, dataset=args.data,
                             register=False, image_every=0, checkpoint_every=0)
        result = train(config)
        model_uri = f"runs:/{result.run_id}/autoencoder"
        model = load_model(model_uri)
        test = np.asarray(dataset_for(config).x_test, np.float32)
        one, batch = test[:1], np.resize(test, (256, test.shape[1]))
        keras_call = lambda rows: np.asarray(model(rows, training=False))  # noqa: E731
        keras_bce = binary_crossentropy(test, keras_call(test))
        rows = [("keras (.keras)", _keras_bytes(root, model), _median_ms(lambda: keras_call(one), args.repeats),
                 _median_ms(lambda: keras_call(batch), args.repeats), keras_bce, 0.0)]
        for fmt, quantize in variants:
            name = fmt + (f"-{quantize}" if quantize else "")
            output = str(root / (f"autoencoder-{name}" + ("" if fmt == "savedmodel" else f".{fmt}")))
            exported = export_model(model_uri, fmt, output, quantize)
            run = _runner(fmt, output)
            bce = binary_crossentropy(test, np.asarray(run(test)).reshape(len(test), -1))
            rows.append((name, exported.bytes, _median_ms(lambda: run(one), args.repeats),
                         _median_ms(lambda: run(batch), args.repeats), bce, exported.max_abs_diff))
    print(f"\n{args.architecture}, code size {args.code_size}, {args.epochs} epochs on {args.train_samples} samples; "
          f"test_bce on {len(test)} test samples; latency: median of {args.repeats} calls, CPU\n")
    print("| format | bytes | 1 sample (ms) | batch 256 (ms) | test_bce | test_bce change | max abs diff vs Keras |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, size, single, batched, bce, diff in rows:
        print(f"| {name} | {size:,} | {single:.3f} | {batched:.3f} | {bce:.5f} | {bce - keras_bce:+.5f} | {diff:.2g} |")


def _keras_bytes(root: Path, model) -> int:
    path = root / "autoencoder-reference.keras"
    model.save(path)
    return os.path.getsize(path)


if __name__ == "__main__":
    main()
