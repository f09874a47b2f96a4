"""Model commands, `aetrack serve` and the pyfunc with models of other sample shapes than MNIST's:
an 8x8 RGB image model and a 4-feature table model, saved as MLflow model directories whose
MLmodel metadata holds their SampleSpec, and a spec-less .keras table model (read by its width)."""

import http.client
import io
import json
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aetrack.data import MNIST_SPEC, SampleSpec, image_spec
from aetrack.errors import ArgumentError, RequestError
from tests.helpers.errors import error_line
from tests.helpers.processes import aetrack_in_process

RGB = image_spec(8, 8, 3)
TABLE = SampleSpec("table", (4,), None, feature_names=("a", "b", "c", "d"))


def _save_mlflow_model(model, path, spec: SampleSpec) -> str:
    """An MLflow model directory as aetrack logs one (keras flavor, the direct-call pyfunc), with its spec."""
    from mlflow.models import Model

    from aetrack.tracking.keras_flavor import save_model
    from aetrack.use import SAMPLE_SPEC_KEY

    # Named requirements: inferring them would start a child process per model.
    save_model(model, str(path), Model(metadata={SAMPLE_SPEC_KEY: spec.to_dict()}), pip_requirements=["keras"])
    return str(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: (keras model, its URI)}: rgb and table autoencoders, the table decoder, a spec-less .keras."""
    import keras

    from aetrack.models import decoder_of
    from aetrack.models.dense import build_dense_autoencoder

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("shaped-models")
    rgb, table = build_dense_autoencoder(3, input_dim=RGB.size), build_dense_autoencoder(2, input_dim=4)
    bare = folder / "bare.keras"
    table.save(bare)
    return {"rgb": (rgb, _save_mlflow_model(rgb, folder / "rgb", RGB)),
            "table": (table, _save_mlflow_model(table, folder / "table", TABLE)),
            "table-decoder": (decoder_of(table), _save_mlflow_model(decoder_of(table), folder / "decoder", TABLE)),
            "bare": (table, str(bare))}


def _outputs(model, rows):
    return model(np.asarray(rows, np.float32), training=False).numpy()


def test_specs_come_from_the_metadata_or_the_widths(saved):
    from aetrack.use import fallback_spec, load_with_spec

    assert load_with_spec(saved["rgb"][1])[1] == RGB
    assert load_with_spec(saved["table-decoder"][1])[1] == TABLE
    assert load_with_spec(saved["bare"][1])[1] == SampleSpec("table", (4,), None)
    assert fallback_spec(784) == MNIST_SPEC


def test_a_logged_models_spec_is_read_through_its_uri(saved, tracking):
    import mlflow
    from mlflow.models import Model

    from aetrack.tracking import keras_flavor
    from aetrack.use import SAMPLE_SPEC_KEY, load_with_spec

    with mlflow.start_run(experiment_id="0") as run:  # Default: an earlier test may have left another active
        info = Model.log(artifact_path=None, name="autoencoder", flavor=keras_flavor, flavor_name="keras",
                         model=saved["rgb"][0], pip_requirements=["keras"], metadata={SAMPLE_SPEC_KEY: RGB.to_dict()})
    assert load_with_spec(f"runs:/{run.info.run_id}/autoencoder")[1] == RGB
    assert load_with_spec(info.model_uri)[1] == RGB


def test_rgb_model_reconstructs_npy_and_image_files_in_its_shape(saved, tmp_path):
    from aetrack.use import rows_grid, transform

    model, uri = saved["rgb"]
    pixels = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", pixels)
    np.save(tmp_path / "flat.npy", pixels[:1].reshape(1, 192) / np.float32(255))
    Image.fromarray(pixels[1]).save(tmp_path / "one.png")
    Image.fromarray(pixels[2, :, :, 0]).save(tmp_path / "gray.bmp")  # grayscale -> RGB
    Image.fromarray(np.repeat(np.repeat(pixels[0], 2, axis=0), 2, axis=1)).save(tmp_path / "big.png")
    inputs = [str(tmp_path / name) for name in ("u8.npy", "flat.npy", "one.png", "gray.bmp", "big.png")]

    outputs = transform(uri, inputs, str(tmp_path / "out.npy"), grid_path=str(tmp_path / "grid.png"), resize=True)
    gray = np.repeat(pixels[2, :, :, :1], 3, axis=-1)
    rows = np.concatenate([pixels, pixels[:1], pixels[1:2], gray[None]]).reshape(6, 192) / np.float32(255)
    np.testing.assert_allclose(outputs[:6], _outputs(model, rows), atol=1e-6)
    assert outputs.shape == (7, 192)
    written = np.load(tmp_path / "out.npy")
    assert written.shape == (7, 8, 8, 3) and written.dtype == np.float32
    np.testing.assert_array_equal(written.reshape(7, 192), outputs)
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.mode == "RGB" and grid.size == (7 * 10 + 2, 2 * 10 + 2)
        grid_pixels = np.asarray(grid)
    np.testing.assert_array_equal(grid_pixels[2:10, 2:10], pixels[0])  # top-left tile: the first input
    # For MNIST the grid is exactly aetrack.images' grid, as before.
    from aetrack.images import image_rows_grid

    digits = np.random.default_rng(1).random((18, 784), dtype=np.float32)
    np.testing.assert_array_equal(rows_grid(digits, 1 - digits), image_rows_grid(digits, 1 - digits, per_row=16))


def test_wrong_shapes_and_sizes_are_refused_naming_the_shape_expected(saved, tmp_path):
    from aetrack.use import score

    uri = saved["rgb"][1]
    np.save(tmp_path / "mnist.npy", np.zeros((2, 28, 28), np.uint8))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ArgumentError, match=r"^invalid input '.*mnist\.npy': shape \(2, 28, 28\); "
                                            r"expected \(N, 8, 8, 3\) or \(N, 192\) for a 8x8x3 image model$"):
        score(uri, [str(tmp_path / "mnist.npy")], str(tmp_path / "s.npy"))
    # Through the CLI: the same refusals, spelled with its flags.
    line = error_line(aetrack_in_process("score", "-m", uri, "-i", "big.png", "-o", "s.npy", cwd=tmp_path), 2)
    assert line.endswith("invalid --input 'big.png': image is 16x16; expected a 8x8 image (or --resize to fit it)")
    line = error_line(aetrack_in_process("reconstruct", "-m", saved["table"][1], "-i", "mnist.npy", "-o", "r.csv",
                                         "--grid", "g.png", cwd=tmp_path), 2)
    assert line.endswith("invalid --grid 'g.png': a grid shows images; expected none for a 4-feature table model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "mnist.npy"]  # nothing written


def test_table_model_reads_columns_by_name_and_writes_tables(saved, tmp_path):
    from aetrack.use import encode, sample, score, transform

    model, uri = saved["table"]
    rows = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    # Columns in another order, and one the model never saw: matched by name, the extra ignored.
    frame = pd.DataFrame({"d": rows[:, 3], "extra": ["x"] * 5, "b": rows[:, 1], "a": rows[:, 0], "c": rows[:, 2]})
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_parquet(tmp_path / "in.parquet")
    expected = _outputs(model, rows)

    out = transform(uri, [str(tmp_path / "in.csv")], str(tmp_path / "out.csv"))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    written = pd.read_csv(tmp_path / "out.csv")
    assert list(written.columns) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(written.to_numpy(), expected, atol=1e-6)
    transform(uri, [str(tmp_path / "in.parquet")], str(tmp_path / "out.parquet"))
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "out.parquet")[["a", "b", "c", "d"]].to_numpy(), expected,
                               atol=1e-6)
    np.save(tmp_path / "rows.npy", rows)
    scores = score(uri, [str(tmp_path / "rows.npy"), str(tmp_path / "in.csv")], str(tmp_path / "s.npy"))
    np.testing.assert_allclose(scores[:5], np.mean((rows - expected) ** 2, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(scores[:5], scores[5:])
    assert encode(uri, [str(tmp_path / "in.csv")], str(tmp_path / "codes.npy")).shape == (5, 2)
    generated = sample(saved["table-decoder"][1], str(tmp_path / "samples.csv"), count=3)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "samples.csv")[list("abcd")].to_numpy(), generated, atol=1e-6)

    frame.drop(columns=["c", "a"]).to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(ArgumentError, match=r"missing columns a, c; expected the training columns a, b, c, d"):
        transform(uri, [str(tmp_path / "partial.csv")], str(tmp_path / "r.npy"))
    # A spec-less table model takes its columns in order.
    bare = transform(saved["bare"][1], [str(tmp_path / "rows.npy")], str(tmp_path / "bare.csv"))
    np.testing.assert_allclose(bare, expected, atol=1e-6)
    assert list(pd.read_csv(tmp_path / "bare.csv").columns) == ["feature_0", "feature_1", "feature_2", "feature_3"]


def _post(port: int, body: bytes, content_type: str):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_serve_takes_and_answers_the_model_shape(saved):
    from aetrack.serve import answer, load_served_model, make_server

    model, uri = saved["rgb"]
    served = load_served_model(uri)
    assert served.spec == RGB and served.describe() == "8x8x3 images (192 values) -> 8x8x3 images (192 values)"
    x = np.random.default_rng(3).random((2, 8, 8, 3), dtype=np.float32)
    expected = _outputs(model, x.reshape(2, 192))
    server = make_server(served, "127.0.0.1", 0, log=lambda line: None)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        port = server.server_address[1]
        status, body = _post(port, json.dumps({"inputs": x.tolist()}).encode(), "application/json")
        assert status == 200
        np.testing.assert_allclose(np.asarray(json.loads(body)["predictions"]), expected.reshape(2, 8, 8, 3), atol=1e-6)
        buffer = io.BytesIO()
        np.save(buffer, x.reshape(2, 192))
        status, body = _post(port, buffer.getvalue(), "application/x-npy")
        assert status == 200
        np.testing.assert_allclose(np.load(io.BytesIO(body)), expected, atol=1e-6)  # flat in, flat out
        status, body = _post(port, json.dumps({"inputs": np.zeros((1, 28, 28)).tolist()}).encode(), "application/json")
        assert status == 400 and json.loads(body)["message"] == (
            "invalid inputs: shape (1, 28, 28); expected numbers of shape (N, 8, 8, 3) or (N, 192), N >= 1")
    finally:
        server.shutdown()
        server.server_close()

    table, table_uri = saved["table"]
    served = load_served_model(table_uri)
    rows = np.random.default_rng(4).normal(size=(2, 4))
    records = [{"c": r[2], "zz": 1.0, "a": r[0], "d": r[3], "b": r[1]} for r in rows]
    _, body, _ = answer(served, "application/json", json.dumps({"dataframe_records": records}).encode())
    np.testing.assert_allclose(np.asarray(json.loads(body)["predictions"]), _outputs(table, rows), atol=1e-6)
    split = {"columns": ["b", "a", "d"], "data": rows[:, [1, 0, 3]].tolist()}
    with pytest.raises(RequestError, match=r"^invalid inputs: missing column c; expected the training columns a, b"):
        answer(served, "application/json", json.dumps({"dataframe_split": split}).encode())


def test_pyfunc_flattens_shaped_inputs_and_reads_table_columns_by_name(saved):
    import mlflow.pyfunc

    model, uri = saved["rgb"]
    x = np.random.default_rng(5).random((2, 8, 8, 3), dtype=np.float32)
    pyfunc = mlflow.pyfunc.load_model(uri)
    shaped = pyfunc.predict(x)
    assert shaped.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(shaped.reshape(2, 192), _outputs(model, x.reshape(2, 192)), atol=1e-6)
    np.testing.assert_allclose(pyfunc.predict(x.reshape(2, 192)), _outputs(model, x.reshape(2, 192)), atol=1e-6)
    table, table_uri = saved["table"]
    rows = np.random.default_rng(6).normal(size=(3, 4)).astype(np.float32)
    frame = pd.DataFrame({"d": rows[:, 3], "c": rows[:, 2], "b": rows[:, 1], "a": rows[:, 0]})
    np.testing.assert_allclose(mlflow.pyfunc.load_model(table_uri).predict(frame), _outputs(table, rows), atol=1e-6)
