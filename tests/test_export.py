"""`aetrack export`: SavedModel, ONNX and TFLite (float32, float16, int8) exports of real tiny dense and conv models,
loaded back with their own runtimes and compared with Keras; --log-to-run read back from the
store; bad arguments refused in one line before anything is written."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from tests.helpers.errors import error_line
from tests.helpers.processes import aetrack_in_process

# Each export is a real conversion (TFLite, tf2onnx) and a load by its runtime: seconds apiece.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """A dense and a conv autoencoder (code size 8) and their encoders as .keras files, and seeded
    MNIST-shaped rows."""
    from aetrack.models import autoencoder_of, build_autoencoder, encoder_of

    import keras

    folder = tmp_path_factory.mktemp("export-models")
    paths = {}
    for architecture in ("dense", "conv"):
        keras.utils.set_random_seed(0)
        model = build_autoencoder(architecture, 8)
        for part, of in (("autoencoder", autoencoder_of), ("encoder", encoder_of)):
            paths[f"{architecture} {part}"] = folder / f"{architecture}-{part}.keras"
            of(model).save(paths[f"{architecture} {part}"])
    rows = np.random.default_rng(1).random((40, 784), dtype=np.float32)
    return paths, rows


def _keras_outputs(path, rows) -> np.ndarray:
    import keras

    return np.asarray(keras.saving.load_model(path)(rows, training=False)).reshape(len(rows), -1)


def _tflite_outputs(path, rows) -> np.ndarray:
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(rows.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, rows)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(len(rows), -1)


@pytest.mark.parametrize("part", ["dense autoencoder", "dense encoder", "conv autoencoder", "conv encoder"])
@pytest.mark.parametrize("fmt, quantize, tolerance", [("savedmodel", None, 1e-4), ("tflite", None, 1e-4),
                                                      ("tflite", "float16", 1e-2), ("onnx", None, 1e-4)])
def test_exports_match_keras(keras_files, tmp_path, part, fmt, quantize, tolerance):
    from aetrack.use.export import export_model

    paths, rows = keras_files
    output = tmp_path / f"{part.replace(' ', '-')}.{fmt}"
    result = export_model(str(paths[part]), fmt, str(output), quantize)
    assert result.max_abs_diff <= tolerance and result.samples == 256
    assert result.source == "seeded random inputs in the model's value range"
    # Read back independently of export_model, on other rows than its own check.
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(output))
        got = np.asarray(loaded.serve(tf.constant(rows))).reshape(len(rows), -1)
    elif fmt == "onnx":  # onnxruntime, the runtime the file is meant for
        import onnxruntime

        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: rows})[0].reshape(len(rows), -1)
        assert result.bytes == os.path.getsize(output)
    else:
        got = _tflite_outputs(output, rows)
        assert result.bytes == os.path.getsize(output)
    assert np.max(np.abs(got - _keras_outputs(paths[part], rows))) <= tolerance
    assert sorted(os.listdir(tmp_path)) == [output.name]  # no temporary folder left behind
    assert (result.metric is not None) == part.endswith("autoencoder")
    if quantize:  # half-size weights, and nearly the same reconstruction error
        assert result.bytes < 0.6 * os.path.getsize(paths[part])
    if result.metric:
        assert result.metric == "test_bce" and abs(result.metric_export - result.metric_keras) <= tolerance


def test_an_unbounded_table_model(tmp_path):
    """A model without a stored spec and not 784 wide is a table: N(0, 1) check rows, linear
    outputs, the mean per-sample MSE as its metric."""
    import keras

    from aetrack.data import SampleSpec
    from aetrack.models import autoencoder_of, build_autoencoder
    from aetrack.use import export_model

    keras.utils.set_random_seed(0)
    path = tmp_path / "table.keras"
    autoencoder_of(build_autoencoder("dense", 3, spec=SampleSpec("table", (10,), None))).save(path)
    result = export_model(str(path), "tflite", str(tmp_path / "table.tflite"), "float16")
    assert result.metric == "test_mse" and abs(result.metric_export - result.metric_keras) < 1e-2
    rows = np.random.default_rng(3).standard_normal((20, 10)).astype(np.float32)
    assert np.max(np.abs(_tflite_outputs(tmp_path / "table.tflite", rows) - _keras_outputs(path, rows))) <= 1e-2


def test_int8_from_a_run_logged_to_it(one_epoch_run):
    """int8 calibrates on the run's training samples and is checked on its test split; --log-to-run
    stores the file under exports/tflite/ and its size and difference as the run's metrics."""
    from mlflow.tracking import MlflowClient

    run_id = one_epoch_run.result.run_id
    output = one_epoch_run.folder / f"int8-{os.getpid()}.tflite"
    out = aetrack_in_process("export", "--model", f"runs:/{run_id}/autoencoder", "--format", "tflite",
                             "--quantize", "int8", "--output", output, "--log-to-run")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"the test split of run {run_id}" in out.stdout and "test_bce: Keras" in out.stdout
    client = MlflowClient()
    metrics = client.get_run(run_id).data.metrics
    assert metrics["export_tflite_int8_bytes"] == os.path.getsize(output)
    assert 0 < metrics["export_tflite_int8_max_abs_diff"] <= 0.1
    logged = [a.path for a in client.list_artifacts(run_id, "exports/tflite")]
    assert f"exports/tflite/{output.name}" in logged
    with open(output, "rb") as file:
        assert file.read(8)[4:8] == b"TFL3"  # the TFLite flatbuffer identifier
    # A SavedModel is a folder: logged whole under exports/savedmodel/<its name>/.
    folder = one_epoch_run.folder / f"encoder-{os.getpid()}"
    from aetrack.use.export import export_model

    result = export_model(f"runs:/{run_id}/encoder", "savedmodel", str(folder), log_to_run=True)
    assert result.logged["export_savedmodel_bytes"] == result.bytes
    assert result.logged["export_savedmodel_max_abs_diff"] <= 1e-4
    assert client.get_run(run_id).data.metrics["export_savedmodel_bytes"] == result.bytes
    inside = [a.path for a in client.list_artifacts(run_id, f"exports/savedmodel/{folder.name}")]
    assert f"exports/savedmodel/{folder.name}/saved_model.pb" in inside


def test_a_failed_check_writes_nothing(keras_files, tmp_path, monkeypatch):
    from aetrack.errors import RunError
    from aetrack.use import export

    paths, _ = keras_files
    monkeypatch.setitem(export.TOLERANCE, "float16", 1e-9)  # float16 weights cannot meet this
    with pytest.raises(RunError, match="differs from the Keras model by up to .* nothing was written"):
        export.export_model(str(paths["dense autoencoder"]), "tflite", str(tmp_path / "a.tflite"), "float16")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("options, words", [
    ({"--format": "pb"}, "invalid --format 'pb': expected one of savedmodel, onnx, tflite"),
    ({"--format": "savedmodel", "--quantize": "float16"}, "--format savedmodel is not quantized"),
    ({"--quantize": "int4"}, "invalid --quantize 'int4': expected one of float16, int8"),
    ({"--output": "EXISTS"}, "it exists; expected a new path"),
    ({"--output": "/no/such/folder/x.tflite"}, "missing or not writable"),
    ({"--model": "runs:/xyz/autoencoder"}, "malformed runs: URI"),
    ({"--quantize": "int8"}, "a .keras file has no run; --quantize int8"),
    ({"--log-to-run": None}, "a .keras file has no run; --log-to-run"),
])
def test_bad_arguments(keras_files, tmp_path, options, words):
    paths, _ = keras_files
    (tmp_path / "EXISTS").write_bytes(b"")
    given = {"--model": str(paths["dense autoencoder"]), "--format": "tflite", "--output": "new.tflite", **options}
    argv = [item for key, value in given.items() for item in (key, value) if item is not None]
    out = aetrack_in_process("export", *argv, cwd=tmp_path)
    assert words in error_line(out, 2)
    assert sorted(os.listdir(tmp_path)) == ["EXISTS"]


def test_bad_argument_in_a_real_child_fails_before_tensorflow(tmp_path):
    """The command itself: one line, exit 2, nothing else on stderr (TensorFlow never started)."""
    from tests.helpers.processes import run_aetrack

    out = run_aetrack("export", "--model", "runs:/xyz/autoencoder", "--format", "onnx", "--output",
                      tmp_path / "m.onnx", cwd=tmp_path)
    assert "invalid --model 'runs:/xyz/autoencoder': malformed runs: URI" in error_line(out, 2, only_line=True)
