"""`aetrack export`: a trained Keras model written as a TensorFlow SavedModel, a TFLite flatbuffer
(float32, float16 or int8) or ONNX, checked as written.

Every export is loaded back with its own runtime (tf.saved_model.load, the TFLite Interpreter,
onnxruntime), run on held-out samples (the model's run's test split, else seeded random inputs in
the model's value range) and compared with the Keras model; only an export within tolerance is
moved into place (it is written to a temporary path beside the output first). `--log-to-run`
stores it under the run's `exports/<format>/` with its size and measured difference as metrics.

Arguments are checked (`check_export`) before TensorFlow or MLflow load.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np

from aetrack.config import MODEL_URI_FORMS
from aetrack.errors import ModelError, RunError, UsageError, one_line

SAVEDMODEL, ONNX, TFLITE = "savedmodel", "onnx", "tflite"
FORMATS = (SAVEDMODEL, ONNX, TFLITE)
QUANTIZATIONS = ("float16", "int8")
# Largest |export - keras| allowed on the check samples, as a fraction of `output_scale`. float32
# differs only by op order. float16 weights keep ~3 significant digits. int8 quantizes weights and
# activations to 256 levels per tensor and each layer's rounding adds up, most in deep conv stacks
# (a trained MNIST conv autoencoder's worst pixel of 200,704 is off by 0.16 while its test_bce moves
# by under 1 %): a quarter of the outputs' range, with the test metric printed beside it.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 0.25}
CHECK_SAMPLES = 256  # held-out samples each export is run on
REPRESENTATIVE_SAMPLES = 300  # training samples int8 calibrates activation ranges on
EXPORTS_ARTIFACT = "exports"  # the run's artifact folder: exports/<format>/<file>
ONNX_EXTRA = "pip install 'aetrack[export]'"


def metric_names(variant: str) -> tuple[str, str]:
    """The run metrics of one export variant (`tflite_int8`, `savedmodel`): its bytes and max |diff|."""
    return f"export_{variant}_bytes", f"export_{variant}_max_abs_diff"


@dataclass
class Exported:
    """What an export wrote and how close it came to the Keras model."""

    path: str
    format: str
    quantize: str | None
    bytes: int
    max_abs_diff: float
    tolerance: float
    samples: int
    source: str  # where the check samples came from: "test split of run <id>" or "seeded random inputs"
    metric: str | None = None  # e.g. "test_bce" (autoencoders only)
    metric_keras: float | None = None
    metric_export: float | None = None
    run_id: str | None = None
    logged: dict[str, float] = field(default_factory=dict)  # run metrics written by --log-to-run

    @property
    def variant(self) -> str:
        return self.format + (f"_{self.quantize}" if self.quantize else "")


def check_export(model_uri: str, fmt: str, output: str, quantize: str | None = None,
                 log_to_run: bool = False) -> None:
    """Cheap checks of every argument (no TensorFlow, no MLflow); raise UsageError in one line."""
    from aetrack.models.loading import check_model_spec

    if fmt not in FORMATS:
        raise UsageError(f"invalid --format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UsageError(f"invalid --quantize {quantize!r}: expected one of {', '.join(QUANTIZATIONS)}")
    if quantize is not None and fmt != TFLITE:
        raise UsageError(f"invalid --quantize {quantize!r}: --format {fmt} is not quantized; "
                         f"expected --quantize only with --format {TFLITE}")
    if os.path.lexists(output):
        raise UsageError(f"invalid --output {output!r}: it exists; expected a new path (nothing is overwritten)")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"invalid --output {output!r}: its folder {parent!r} is missing or not writable; "
                         "expected a path in a writable folder")
    check_model_spec(model_uri, "--model")
    if fmt == ONNX:
        check_onnx_available()
    if _is_keras_file(model_uri) and (log_to_run or quantize == "int8"):
        what = "--log-to-run" if log_to_run else "--quantize int8 (calibrated on the run's training samples)"
        raise UsageError(f"invalid --model {model_uri!r}: a .keras file has no run; {what} needs a model "
                         "logged by a run (runs:/..., models:/...)")


def check_onnx_available() -> None:
    """ONNX needs tf2onnx and onnx (the converter) and onnxruntime (the check), the `export` extra."""
    import importlib.util

    missing = [name for name in ("tf2onnx", "onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"invalid --format {ONNX!r}: {', '.join(missing)} not installed; expected the export "
                         f"extra ({ONNX_EXTRA}) or --format {SAVEDMODEL} or {TFLITE}")


def export_model(model_uri: str, fmt: str, output: str, quantize: str | None = None,
                 log_to_run: bool = False, seed: int = 0) -> Exported:
    """Export the model at `model_uri` to `output`, check it, move it into place; see the module doc."""
    check_export(model_uri, fmt, output, quantize, log_to_run)
    from aetrack.use.commands import load_with_spec

    model, spec = load_with_spec(model_uri, "--model")
    run_id = model_run_id(model_uri)
    if run_id is None and (log_to_run or quantize == "int8"):
        what = "--log-to-run" if log_to_run else "--quantize int8"
        raise UsageError(f"invalid --model {model_uri!r}: it was not logged by a run; expected a model of a run "
                         f"(runs:/..., models:/...) for {what}")
    width = int(model.inputs[0].shape[-1])
    held_out, train_rows, source = check_inputs(run_id, spec, width, seed)
    expected = _as_rows(model(held_out, training=False))  # a direct call: predict() retraces per model

    parent = os.path.dirname(os.path.abspath(output))
    work = tempfile.mkdtemp(prefix=".aetrack-export-", dir=parent)  # same filesystem: the move is a rename
    try:
        written = os.path.join(work, os.path.basename(output))
        try:
            got = _write_and_run(model, fmt, written, work, quantize, train_rows, held_out)
        except Exception as exc:  # noqa: BLE001 - converters and runtimes raise many types; all mean "failed"
            raise RunError(f"cannot export {model_uri} to {fmt}: {one_line(exc)[:300]}; nothing was written to "
                           f"{output}") from None
        diff = float(np.max(np.abs(got - expected)))
        tolerance = TOLERANCE[quantize or "float32"] * output_scale(expected, quantize)
        result = Exported(output, fmt, quantize, _size(written), diff, tolerance, len(held_out), source,
                          run_id=run_id)
        if width == spec.size and expected.shape[1] == spec.size:  # an autoencoder: its test metric
            result.metric, result.metric_keras, result.metric_export = _metric(spec, held_out, expected, got)
        if not np.isfinite(diff) or diff > tolerance:
            raise RunError(f"export to {fmt}{f' ({quantize})' if quantize else ''} differs from the Keras model "
                           f"by up to {diff:.3g} on {len(held_out)} samples (tolerance {tolerance:.3g}); "
                           f"nothing was written to {output}")
        os.replace(written, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if log_to_run:
        result.logged = log_export(run_id, result)
    return result


def output_scale(expected: np.ndarray, quantize: str | None) -> float:
    """What a tolerance is a fraction of: int8, the outputs' range (its levels span it); float32 and
    float16 (relative precision), the largest |output|, at least 1 (images, codes and standardised
    values keep the absolute tolerance; a raw table's large values get a relative one)."""
    if quantize == "int8":
        return max(float(np.ptp(expected)), 1e-6)
    return max(1.0, float(np.max(np.abs(expected))))


def model_run_id(model_uri: str) -> str | None:
    """The run that logged the model, or None (a .keras file, a model logged outside a run)."""
    if _is_keras_file(model_uri):
        return None
    if model_uri.startswith("runs:/"):
        return model_uri.split("/")[1]
    try:
        if os.path.isdir(model_uri):
            from mlflow.models import Model

            return Model.load(os.path.join(model_uri, "MLmodel")).run_id
        from mlflow.models import get_model_info

        return get_model_info(model_uri).run_id
    except Exception as exc:  # noqa: BLE001 - the model loaded, so its URI is good; its run is not readable
        raise ModelError("--model", model_uri, f"cannot read its run ({one_line(exc)[:200]})", MODEL_URI_FORMS) \
            from None


def check_inputs(run_id: str | None, spec, width: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(check samples, int8 calibration rows or None, where they came from). A model taking samples
    gets its run's test split (and training rows); codes and run-less models get seeded random
    inputs: in the value range for bounded samples, N(0, 1) for standardised ones, [0, 1) for codes."""
    rng = np.random.default_rng(seed)
    if run_id is not None:
        dataset = run_dataset(run_id)
        train = None if dataset.streamed else np.asarray(dataset.x_train[:REPRESENTATIVE_SAMPLES], np.float32)
        if width == spec.size:
            test = _raw(spec, np.asarray(dataset.x_test[:CHECK_SAMPLES], np.float32))
            train = test if train is None else _raw(spec, train)
            return test, train, f"the test split of run {run_id}"
        # A decoder takes codes: checked and calibrated on the same seeded random codes.
        codes = rng.random((CHECK_SAMPLES, width), dtype=np.float32)
        return codes, codes, "seeded random codes in [0, 1)"
    if width != spec.size:
        return rng.random((CHECK_SAMPLES, width), dtype=np.float32), None, "seeded random codes in [0, 1)"
    if spec.bounded:
        low, high = spec.value_range
        rows = (low + (high - low) * rng.random((CHECK_SAMPLES, width))).astype(np.float32)
    else:
        rows = _raw(spec, rng.standard_normal((CHECK_SAMPLES, width)).astype(np.float32))
    return rows, None, "seeded random inputs in the model's value range"


def _raw(spec, rows: np.ndarray) -> np.ndarray:
    """Rows as a logged model takes them: a scaled table's models standardise raw rows themselves."""
    if not spec.scaled:
        return rows
    return (rows * np.asarray(spec.feature_std, np.float32) + np.asarray(spec.feature_mean, np.float32)) \
        .astype(np.float32)


def run_dataset(run_id: str):
    """The dataset the run trained on, rebuilt from its params (as `aetrack resume` does)."""
    from aetrack.data import dataset_for
    from aetrack.errors import ResumeError
    from aetrack.resume import config_of
    from aetrack.tracking.resumption import experiment_name_of
    from aetrack.tracking.run import tracking_client

    client = tracking_client()
    run = client.get_run(run_id)
    try:
        config = config_of(run, experiment_name_of(client, run))
    except ResumeError as exc:
        raise UsageError(f"invalid --model: cannot rebuild the data of run {run_id} "
                         f"({str(exc).split(': ', 1)[-1]}); expected a model of an aetrack run") from None
    return dataset_for(config)


def log_export(run_id: str, result: Exported) -> dict[str, float]:
    """Store the export under the run's exports/<format>/ and its size and difference as metrics."""
    from aetrack.tracking.run import tracking_client

    client = tracking_client()
    folder = f"{EXPORTS_ARTIFACT}/{result.format}"
    if os.path.isdir(result.path):
        client.log_artifacts(run_id, result.path, f"{folder}/{os.path.basename(os.path.normpath(result.path))}")
    else:
        client.log_artifact(run_id, result.path, folder)
    size_key, diff_key = metric_names(result.variant)
    metrics = {size_key: float(result.bytes), diff_key: result.max_abs_diff}
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    return metrics


def _write_and_run(model, fmt: str, path: str, work: str, quantize, train_rows, rows: np.ndarray) -> np.ndarray:
    """Write the export at `path`, load it with its own runtime and return its outputs for `rows`."""
    if fmt == SAVEDMODEL:
        model.export(path, format="tf_saved_model", verbose=False)
        return _run_savedmodel(path, rows)
    if fmt == TFLITE:
        _write_tflite(model, path, work, quantize, train_rows)
        return _run_tflite(path, rows)
    model.export(path, format="onnx", verbose=False)
    return _run_onnx(path, rows)


def _write_tflite(model, path: str, work: str, quantize: str | None, train_rows) -> None:
    import tensorflow as tf

    saved = os.path.join(work, "savedmodel-for-tflite")
    model.export(saved, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        rows = np.asarray(train_rows, np.float32)
        # Inputs and outputs stay float32 (the same rows in and out as every other format).
        converter.representative_dataset = lambda: ([rows[i:i + 1]] for i in range(len(rows)))
    with open(path, "wb") as file:
        file.write(converter.convert())
    shutil.rmtree(saved, ignore_errors=True)


def _run_savedmodel(path: str, rows: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)  # held: its functions refer to variables the object owns
    return _as_rows(loaded.serve(tf.constant(rows)))


def _run_tflite(path: str, rows: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (LiteRT): still TF's own runtime
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=path)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(rows.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, rows)
    interpreter.invoke()
    return _as_rows(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def _run_onnx(path: str, rows: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return _as_rows(session.run(None, {session.get_inputs()[0].name: rows})[0])


def _metric(spec, rows: np.ndarray, keras_out: np.ndarray, export_out: np.ndarray):
    """(name, Keras value, export value) of the reconstruction metric: test_bce for bounded
    samples, else the mean per-sample MSE."""
    from aetrack.evaluation import binary_crossentropy, per_image_mse

    if spec.bounded:
        return "test_bce", binary_crossentropy(rows, keras_out), binary_crossentropy(rows, export_out)
    name = "raw_mse" if spec.scaled else "test_mse"  # a scaled table's models give raw rows back
    return (name, float(np.mean(per_image_mse(rows, keras_out))),
            float(np.mean(per_image_mse(rows, export_out))))


def _as_rows(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    return values.reshape(len(values), -1)


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def _is_keras_file(uri: str) -> bool:
    return uri.endswith(".keras") and os.path.isfile(uri)
