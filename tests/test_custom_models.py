"""Your own encoder and decoder (aetrack/models/custom.py): `architecture=package.module:function`
and `aetrack.train(config, encoder=..., decoder=...)`, trained, tracked and registered like the
built-in architectures, loaded in a fresh process without the user's source, resumed after a kill,
swept, and trained by `mlflow run` of examples/custom_conv; each bad custom model refused in one
line before a run exists."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.data import write_image_folder
from tests.helpers.errors import error_line
from tests.helpers.processes import REPO, aetrack_in_process, subprocess_env
from tests.helpers.stores import mlflow_pointed_at, session_store

# The user's own module, written into the working directory of the runs. Module names are unique
# to this file: an imported module stays in sys.modules for the rest of the test process.
GOOD = textwrap.dedent('''
    import math

    import keras


    @keras.saving.register_keras_serializable(package="aetrack_test")
    class Scale(keras.layers.Layer):
        """A registered custom layer: its logged model ships this file."""

        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}


    def functional(sample_shape, code_size):
        image = keras.Input(sample_shape)
        code = keras.layers.Dense(code_size, activation="relu")(keras.layers.Flatten()(image))
        code_in = keras.Input((code_size,))
        flat = keras.layers.Dense(math.prod(sample_shape), activation="sigmoid")(code_in)
        return (keras.Model(image, code, name="my_encoder"),
                keras.Model(code_in, keras.layers.Reshape(sample_shape)(flat), name="my_decoder"))


    def sequential(sample_shape, code_size):
        encoder = keras.Sequential([keras.layers.Flatten(), Scale(0.5), keras.layers.Dense(code_size, "relu")])
        decoder = keras.Sequential([keras.layers.Dense(math.prod(sample_shape), "sigmoid"),
                                    keras.layers.Reshape(sample_shape)])
        return encoder, decoder
''')

BAD = textwrap.dedent('''
    import keras

    from ctm_good import functional

    NOT_CALLABLE = 3


    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x


    class Subclassed(keras.Model):
        def call(self, x):
            return x


    def one_model(shape, code_size):
        return functional(shape, code_size)[0]


    def not_models(shape, code_size):
        return 1, 2


    def raises(shape, code_size):
        raise ValueError("no GPU here")


    def wrong_input(shape, code_size):
        return functional((27, 27, 1), code_size)[0], functional(shape, code_size)[1]


    def wrong_output(shape, code_size):
        return functional(shape, code_size)[0], functional((28, 28, 3), code_size)[1]


    def wrong_code(shape, code_size):
        return functional(shape, code_size + 1)[0], functional(shape, code_size)[1]


    def with_lambda(shape, code_size):
        encoder, decoder = functional(shape, code_size)
        return keras.Sequential([keras.Input(shape), keras.layers.Lambda(lambda t: 2 * t), encoder]), decoder


    def unregistered(shape, code_size):
        encoder, decoder = functional(shape, code_size)
        return keras.Sequential([keras.Input(shape), Unregistered(), encoder]), decoder


    def unbuildable(shape, code_size):
        # No Input: built for the sample shape, which a Conv1D cannot take.
        return keras.Sequential([keras.layers.Conv1D(4, 3), keras.layers.Dense(code_size)]), functional(shape, code_size)[1]


    def subclassed(shape, code_size):
        return Subclassed(), functional(shape, code_size)[1]
''')

CODE_SIZE = 6


@pytest.fixture(scope="module")
def custom_runs(tmp_path_factory, tiny_config):
    """Two finished, registered runs in one store: `ctm_good:functional` (plain Keras layers, by
    name) and the Sequential pair of `ctm_good.sequential` (a registered custom layer) given to
    `aetrack.train` as objects."""
    import aetrack

    folder = tmp_path_factory.mktemp("custom-runs")
    (folder / "ctm_good.py").write_text(GOOD)
    with session_store(folder) as uri:
        functional = aetrack.train(tiny_config(architecture="ctm_good:functional", code_size=CODE_SIZE, epochs=1,
                                               register=True, model_prefix="cf"))
        import ctm_good

        encoder, decoder = ctm_good.sequential((28, 28, 1), CODE_SIZE)
        sequential = aetrack.train(tiny_config(code_size=CODE_SIZE, epochs=1, register=True, model_prefix="cs"),
                                   encoder=encoder, decoder=decoder)
    return types.SimpleNamespace(uri=uri, folder=folder, functional=functional, sequential=sequential)


@pytest.mark.slow
def test_custom_runs_are_tracked_and_registered_like_the_built_in_ones(custom_runs):
    from aetrack.models import decoder_of, encoder_of
    from aetrack.models.custom import file_sha256

    client = MlflowClient(custom_runs.uri)
    run = client.get_run(custom_runs.functional.run_id)
    assert run.info.status == "FINISHED" and run.data.params["architecture"] == "ctm_good:functional"
    assert run.data.tags["aetrack.custom_callable"] == "ctm_good:functional"
    assert run.data.tags["aetrack.custom_source"] == "ctm_good.py"
    assert run.data.tags["aetrack.custom_source_sha256"] == file_sha256(str(custom_runs.folder / "ctm_good.py"))
    objects = client.get_run(custom_runs.sequential.run_id)
    assert objects.data.params["architecture"] == "custom" and objects.data.tags["aetrack.custom_callable"] == "custom"
    for prefix, result in (("cf", custom_runs.functional), ("cs", custom_runs.sequential)):
        assert set(result.registered_versions) == {f"{prefix}-{p}" for p in ("autoencoder", "encoder", "decoder",
                                                                              "scorer")}
        model = result.model
        assert model.input_shape == (None, 784) and model.output_shape == (None, 784)
        assert encoder_of(model).output_shape == (None, CODE_SIZE) and decoder_of(model).output_shape == (None, 784)
        assert np.isfinite(result.metrics["test_bce"]) and "checkpoints" in {
            a.path for a in client.list_artifacts(result.run_id)}
    # Only the model with a registered custom layer carries its source (MLflow code_paths), and its
    # pyfunc loader imports it first.
    import mlflow

    with mlflow_pointed_at(custom_runs.uri):
        with_layer = Path(mlflow.artifacts.download_artifacts("models:/cs-autoencoder/1"))
        plain = Path(mlflow.artifacts.download_artifacts("models:/cf-autoencoder/1"))
    assert (with_layer / "code" / "ctm_good.py").read_text() == GOOD
    assert "import_module(_module)" in (with_layer / "code" / "aetrack_custom_pyfunc.py").read_text()
    assert sorted(p.name for p in (plain / "code").iterdir()) == ["aetrack_keras_pyfunc.py"]


_LOAD_WITHOUT_THE_SOURCE = """
import importlib.util, sys
import mlflow
import numpy as np
import aetrack
from aetrack.models.loading import load_model
assert importlib.util.find_spec("ctm_good") is None  # the user's source is not here
x = np.load(sys.argv[1])
out = {"functional": aetrack.load_model("models:/cf-autoencoder/1")(x, training=False).numpy(),
       "functional_scores": aetrack.load_model("models:/cf-scorer/1")(x, training=False).numpy(),
       "sequential": load_model("models:/cs-autoencoder/1")(x, training=False).numpy(),
       "sequential_codes": load_model("models:/cs-encoder/1")(x, training=False).numpy(),
       # What `mlflow models serve` answers with: the pyfunc, whose loader imports the shipped code.
       "sequential_pyfunc": mlflow.pyfunc.load_model("models:/cs-autoencoder/1").predict(x)}
np.savez(sys.argv[2], **out)
"""


@pytest.mark.slow
def test_registered_custom_models_load_in_a_fresh_process_without_the_source(custom_runs, tmp_path):
    from aetrack.models import encoder_of

    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    child = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_THE_SOURCE, str(tmp_path / "x.npy"),
                            str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300,
                           env=subprocess_env(custom_runs.uri), cwd=tmp_path)
    assert child.returncode == 0, child.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    functional, sequential = custom_runs.functional.model, custom_runs.sequential.model
    np.testing.assert_allclose(out["functional"], functional(x, training=False).numpy(), atol=1e-5)
    mse = ((out["functional"] - x) ** 2).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out["functional_scores"], mse, rtol=1e-4)
    np.testing.assert_allclose(out["sequential"], sequential(x, training=False).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["sequential_pyfunc"], out["sequential"], atol=1e-5)
    np.testing.assert_allclose(out["sequential_codes"], encoder_of(sequential)(x, training=False).numpy(), atol=1e-5)
    assert out["sequential_codes"].shape == (5, CODE_SIZE)


@pytest.fixture
def bad_module(tmp_path, monkeypatch):
    """The working directory holds ctm_good.py and ctm_bad.py (one function per bad case)."""
    (tmp_path / "ctm_good.py").write_text(GOOD)
    (tmp_path / "ctm_bad.py").write_text(BAD)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("architecture,says", [
    ("ctm_nowhere:build", "cannot import module ctm_nowhere (ModuleNotFoundError"),
    ("ctm_bad:missing", "module ctm_bad ("),
    ("ctm_bad:NOT_CALLABLE", "NOT_CALLABLE is a int, not callable"),
    ("ctm_bad:one_model", "it returned a Functional, not two Keras models"),
    ("ctm_bad:not_models", "its encoder is a int, not a Keras model"),
    ("ctm_bad:raises", "raised ValueError: no GPU here"),
    ("ctm_bad:wrong_input", "its encoder takes samples of shape (27, 27, 1), the data's are (28, 28, 1)"),
    ("ctm_bad:wrong_output", "its decoder gives samples of shape (28, 28, 3), its encoder takes (28, 28, 1)"),
    ("ctm_bad:wrong_code", f"its encoder gives codes of shape ({CODE_SIZE + 1},), code_size is {CODE_SIZE}"),
    ("ctm_bad:with_lambda", "uses a Lambda layer"),
    ("ctm_bad:unregistered", "uses layer class Unregistered, which is not registered"),
    ("ctm_bad:subclassed", "its encoder is a subclassed model (Subclassed)"),
    ("ctm_bad:unbuildable", "building its encoder for inputs of shape (28, 28, 1) raised ValueError"),
])
def test_each_bad_custom_architecture_is_one_line(bad_module, architecture, says):
    from aetrack.data.spec import MNIST_SPEC
    from aetrack.errors import ModelError
    from aetrack.models import build_autoencoder

    with pytest.raises(ModelError) as caught:
        build_autoencoder(architecture, CODE_SIZE, spec=MNIST_SPEC)
    message = str(caught.value)
    assert message.startswith(f"invalid architecture {architecture!r}: ") and says in message, message
    assert "\n" not in message and "; expected " in message
    if architecture == "ctm_bad:with_lambda":
        assert "register_keras_serializable" in message  # what to use instead


def test_a_bad_custom_architecture_fails_before_a_run_exists(bad_module, tracking, tiny_npz):
    """Through the CLI: exit 2, one line, no run in the store."""
    out = aetrack_in_process("train", "basic", "--dataset", tiny_npz, "--architecture", "ctm_bad:wrong_code",
                             "--code-size", CODE_SIZE, "--epochs", 1, cwd=bad_module)
    assert "its encoder gives codes of shape" in error_line(out)
    client = MlflowClient()
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_bad_objects_are_one_line(bad_module, tracking, tiny_config):
    import aetrack
    from aetrack.errors import ArgumentError, ConfigError, ModelError

    sys.path.insert(0, str(bad_module))
    try:
        import ctm_good
    finally:
        sys.path.remove(str(bad_module))
    encoder, decoder = ctm_good.functional((28, 28, 1), CODE_SIZE)
    with pytest.raises(ModelError, match=r"^invalid encoder 'my_encoder': its encoder gives codes of shape \(6,\), "
                                         r"code_size is 16; expected"):
        aetrack.train(tiny_config(), encoder=encoder, decoder=decoder)
    with pytest.raises(ArgumentError, match="^invalid decoder: encoder was given without a decoder"):
        aetrack.train(tiny_config(), encoder=encoder)
    with pytest.raises(ConfigError, match="^invalid strategy 'mirrored': expected default with encoder and decoder"):
        aetrack.train(tiny_config(strategy="mirrored"), encoder=encoder, decoder=decoder)
    client = MlflowClient()
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


@pytest.mark.slow
def test_a_killed_custom_run_resumes_and_a_changed_source_is_refused(bad_module, tracking, tiny_config, monkeypatch):
    """Killed after epoch 1 of 2 (in-process, as tests/test_resume.py does): an edited source file
    is refused in one line; resumed from the checkpoint, it trains epoch 2 alone and finishes
    registered. (That a resume gives the uninterrupted run's losses is tests/test_resume.py's.)"""
    from aetrack.errors import ResumeError
    from aetrack.resume import resume
    from tests.test_resume import _killed_run

    # Its own module name and registered package: ctm_good may be imported from elsewhere already.
    good = GOOD.replace('package="aetrack_test"', 'package="aetrack_test_resume"')
    source = bad_module / "ctm_resume.py"
    source.write_text(good)
    config = tiny_config(architecture="ctm_resume:functional", code_size=CODE_SIZE, epochs=2, image_every=0,
                         register=True, model_prefix="cr")
    client = MlflowClient()
    run_id = _killed_run(client, config, monkeypatch, after=1)
    killed_losses = [m.value for m in client.get_metric_history(run_id, "loss")]
    source.write_text(good + "\n# edited\n")
    with pytest.raises(ResumeError, match="the source of ctm_resume:functional .* has changed since the run started"):
        resume(run_id)
    source.write_text(good)
    resumed = resume(run_id)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["aetrack.custom_callable"] == "ctm_resume:functional"
    assert len(killed_losses) == 1 and resumed.history["loss"][0] == pytest.approx(killed_losses[0])
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2]
    assert set(resumed.registered_versions) == {f"cr-{p}" for p in ("autoencoder", "encoder", "decoder", "scorer")}


@pytest.mark.slow
def test_a_sweep_over_code_size_and_learning_rate_of_a_custom_architecture(bad_module, tracking, tiny_config):
    from aetrack.config import SweepConfig
    from aetrack.search_space import parse_search
    from aetrack.sweep import run_sweep

    base = tiny_config(architecture="ctm_good:functional", epochs=1, image_every=0, checkpoint_every=0)
    settings = SweepConfig(trials=2, search="code_size=4:8 learning_rate=0.001:0.01:log", study_name="c1",
                           pruning=False)
    result = run_sweep(base, settings, parse_search([settings.search], "basic"))
    client = MlflowClient()
    children = client.search_runs([client.get_run(result.parent_run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        assert child.data.params["architecture"] == "ctm_good:functional"
        assert child.data.tags["aetrack.custom_callable"] == "ctm_good:functional"
        assert 4 <= int(child.data.params["code_size"]) <= 8


@pytest.mark.slow
def test_mlflow_run_of_the_custom_conv_example(tmp_path):
    """examples/custom_conv, a project of its own, trained by `mlflow run` on 64x64 RGB images: its
    models.py (module:function from the project directory) is recorded and the models registered."""
    write_image_folder(tmp_path / "photos", classes=(), per_class=20, size=(64, 64), channels=3)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "mlflow", "run", str(REPO / "examples" / "custom_conv"), "--env-manager", "local",
            "--experiment-name", "custom", "-P", f"data={tmp_path / 'photos'}", "-P", "epochs=1",
            "-P", "code_size=8", "-P", "batch_size=8", "-P", "image_samples=2", "-P", "model_prefix=conv64"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=400, cwd=tmp_path, env=subprocess_env(uri))
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("custom").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["architecture"] == "models:conv_autoencoder"
    assert run.data.tags["aetrack.custom_source"] == "models.py"
    assert run.data.tags["aetrack.sample_shape"] == "64x64x3"
    versions = {v.name for v in client.search_model_versions()}
    assert versions == {f"conv64-{p}" for p in ("autoencoder", "encoder", "decoder", "scorer")}
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [1] and np.isfinite(history[0].value)


def test_custom_parts_keep_the_flat_contract_for_images_and_tables(bad_module, tmp_path):
    """RGB images and a scaled table: flat rows in and out, named encoder and decoder sub-models,
    the table's raw-io scaling wraps them; init_model of the same callable fits, a conv one not."""
    from aetrack.data.spec import TABLE, SampleSpec, image_spec
    from aetrack.errors import ModelError
    from aetrack.models import build_autoencoder
    from aetrack.models.loading import load_init_model
    from aetrack.models.scaling import with_raw_io

    rgb = image_spec(8, 12, 3)
    model = build_autoencoder("ctm_good:functional", 5, spec=rgb)
    x = np.random.default_rng(1).random((3, rgb.size), dtype=np.float32)
    assert model(x).shape == (3, 288) and model.get_layer("encoder")(x).shape == (3, 5)
    assert model.get_layer("encoder").get_layer("to_8x12x3").output.shape[1:] == (8, 12, 3)

    table = SampleSpec(TABLE, (4,), None, feature_names=tuple("abcd"), feature_mean=(1.0, 2.0, 3.0, 4.0),
                       feature_std=(2.0, 2.0, 2.0, 2.0))
    trained = build_autoencoder("ctm_good:sequential", 2, spec=table)
    raw = with_raw_io("autoencoder", trained, table)
    rows = np.asarray([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)  # the mean: standardised to zeros
    np.testing.assert_allclose(raw(rows).numpy(), trained(np.zeros((1, 4), np.float32)).numpy() * 2.0 + rows,
                               rtol=1e-5)

    path = tmp_path / "custom.keras"
    build_autoencoder("ctm_good:functional", 5, spec=rgb).save(path)
    assert load_init_model(str(path), 5, "ctm_good:functional", spec=rgb).input_shape == (None, 288)
    with pytest.raises(ModelError, match="^invalid init_model .*this run's architecture is conv"):
        load_init_model(str(path), 5, "conv", spec=rgb)
