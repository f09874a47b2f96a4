"""Each architecture end to end on a few hundred real digits: each trained once (metrics, step
images, figures and registered versions read back from the store), one of them through the real
`mlflow run`, and the registered models loaded in a fresh process giving what the trained models
gave in memory. (A model served over HTTP: test_serve.py.) The module's tests share one store
(`trained`), so conftest schedules them as one unit."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack.config import ARCHITECTURES
from aetrack.names import ARCHITECTURE_TAG, ENTRY_POINT_TAG, PARTS, RUN_NAME_TAG
from tests.helpers.artifacts import step_images
from tests.helpers.processes import REPO, subprocess_env
from tests.helpers.stores import mlflow_pointed_at, session_store

pytestmark = pytest.mark.slow

# Small, so conv stays quick on 2 CPU cores; the vae uses a 2-number code to get latent_manifold.png.
CODE_SIZES = {"dense": 8, "conv": 8, "vae": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_mnist_small) -> types.SimpleNamespace:
    """Each architecture trained once in this process, into one store, registered under its own
    name as prefix: namespace uri, folder, results ({architecture: TrainResult}). The tests below
    only read it (promote moves each prefix's own champion alias)."""
    from aetrack.config import TrainConfig
    from aetrack.train import train

    folder = tmp_path_factory.mktemp("architectures")
    with session_store(folder) as uri:
        results = {architecture: train(TrainConfig(architecture=architecture, dataset=str(real_mnist_small), epochs=2,
                                                   train_samples=256, test_samples=32, image_samples=4,
                                                   code_size=CODE_SIZES[architecture], model_prefix=architecture))
                   for architecture in ARCHITECTURES}
    return types.SimpleNamespace(uri=uri, folder=folder, results=results)


def check_tracked_and_registered(uri: str, run_id: str, architecture: str, prefix: str) -> None:
    """What a finished 2-epoch run of `architecture` holds: params and tags, per-epoch metrics, step
    images, figures, registered versions under `prefix`, and a champion alias that promote sets."""
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["architecture"] == architecture
    assert run.data.tags[ARCHITECTURE_TAG] == architecture
    # The default architecture is left out of run names; the others come second.
    assert run.data.tags[RUN_NAME_TAG].startswith("basic-c" if architecture == "dense" else f"basic-{architecture}-c")
    assert run.data.tags[ENTRY_POINT_TAG] == "basic"

    per_epoch = ["loss", "val_loss"]
    if architecture == "vae":
        per_epoch += ["reconstruction_loss", "kl_loss", "val_reconstruction_loss", "val_kl_loss"]
    history = {key: client.get_metric_history(run_id, key) for key in per_epoch}
    for key, values in history.items():
        assert [m.step for m in values] == [1, 2], key
    if architecture == "vae":
        assert all(m.value > 0 for m in history["kl_loss"] + history["val_kl_loss"])
        # loss = reconstruction + kl_weight (1) * KL, epoch by epoch, as Keras reported them.
        for total, rec, kl in zip(history["val_loss"], history["val_reconstruction_loss"], history["val_kl_loss"]):
            assert total.value == pytest.approx(rec.value + kl.value, rel=1e-5)
        # test_elbo (numpy, from the encoder's mean and log-variance) is the final val_loss (z = mean).
        assert run.data.metrics["test_elbo"] == pytest.approx(history["val_loss"][-1].value, rel=1e-3)
    else:
        assert "kl_loss" not in run.data.metrics and "test_elbo" not in run.data.metrics
    assert {"test_bce", "test_mse", "test_psnr", "test_ssim"} <= set(run.data.metrics)

    images = {key: set(steps) for key, steps in step_images(run_id, client).items()}
    expected = {"reconstruction": {0, 1, 2}, "latent_codes": {0, 1, 2}}  # step 0: the untrained model
    if architecture == "vae":
        expected["samples"] = {0, 1, 2}
    assert images == expected
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    vae_figures = {"figures/samples.png", "figures/latent_manifold.png"}
    assert (vae_figures <= figures) == (architecture == "vae") and figures & vae_figures in (set(), vae_figures)

    for part in PARTS:
        version = client.get_model_version(f"{prefix}-{part}", "1")
        assert version.tags["architecture"] == architecture and version.run_id == run_id
        assert float(version.tags["test_bce"]) == pytest.approx(run.data.metrics["test_bce"])
    # The champion alias works the same for every architecture (`promote --if-better`).

    from aetrack.tracking.registry import promote

    with pytest.MonkeyPatch.context() as env:  # the environment first: mlflow_pointed_at writes it too
        env.setenv("MLFLOW_TRACKING_URI", uri)
        env.setenv("MLFLOW_REGISTRY_URI", uri)
        with mlflow_pointed_at(uri):
            promoted = promote(f"{prefix}-autoencoder", if_better=True)
    assert promoted.moved and str(promoted.version) == "1"
    assert str(client.get_model_version_by_alias(f"{prefix}-autoencoder", "champion").version) == "1"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_is_tracked_and_registered(trained, architecture):
    check_tracked_and_registered(trained.uri, trained.results[architecture].run_id, architecture, architecture)


def test_mlflow_run_tracks_and_registers_an_architecture(tmp_path, real_mnist_small):
    """The same through the real `mlflow run` (one architecture: the MLproject command is the same
    string for all). The vae, through `main`, the default entry point (an alias of basic)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "main", "--env-manager", "local",
            "--experiment-name", "aetrack", "-P", f"dataset={real_mnist_small}", "-P", "epochs=2",
            "-P", "train_samples=256", "-P", "test_samples=32", "-P", f"code_size={CODE_SIZES['vae']}",
            "-P", "architecture=vae", "-P", "image_samples=4", "-P", "model_prefix=arch"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=400, cwd=tmp_path, env=subprocess_env(uri))
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("aetrack").experiment_id])
    assert run.data.tags["mlflow.project.entryPoint"] == "main"
    check_tracked_and_registered(uri, run.info.run_id, "vae", "arch")


_LOAD_IN_A_FRESH_PROCESS = """
import json, sys
import mlflow
import numpy as np
import aetrack
from aetrack.cli import main
from aetrack.use import sample
images, folder = sys.argv[1:3]
x = np.load(images)
for prefix in sys.argv[3:]:
    np.savez(f"{folder}/{prefix}.npz",
             autoencoder=aetrack.load_model(f"models:/{prefix}-autoencoder/1").predict(x, verbose=0),
             encoder=aetrack.load_model(f"models:/{prefix}-encoder/1").predict(x, verbose=0),
             samples=sample(f"models:/{prefix}-decoder@candidate", f"{folder}/{prefix}.samples.npy", count=5, seed=3))
# What `mlflow models serve` answers with: the pyfunc flavor's predict.
np.save(f"{folder}/vae.pyfunc.npy", mlflow.pyfunc.load_model("models:/vae-autoencoder/1").predict(x[:4]))
try:  # the `aetrack sample` command itself, from the registered vae decoder
    main(["sample", "--model", "models:/vae-decoder/1", "--count", "20", "--seed", "1", "--output",
          f"{folder}/grid.png"])
except SystemExit as exc:
    print("sample exit", exc.code)
print(json.dumps(sorted(sys.modules.keys() & {"aetrack.models.vae"})))
"""


def test_registered_models_load_in_a_fresh_process_as_trained(trained, tmp_path, real_mnist_small):
    """Every architecture's registered models, loaded in one fresh process, give what the trained
    models gave in memory; the vae's decoder samples through `aetrack sample` and its autoencoder
    predicts through the pyfunc flavor that `mlflow models serve` runs."""
    from PIL import Image

    from aetrack.data import load_dataset
    from aetrack.models import decoder_of, encoder_of

    models = {architecture: result.model for architecture, result in trained.results.items()}
    x = load_dataset(str(real_mnist_small), 1, 16).x_test
    np.save(tmp_path / "x.npy", x)
    child = subprocess.run([sys.executable, "-c", _LOAD_IN_A_FRESH_PROCESS, str(tmp_path / "x.npy"), str(tmp_path),
                            *ARCHITECTURES], capture_output=True, text=True, timeout=300,
                           env=subprocess_env(trained.uri), cwd=tmp_path)
    assert child.returncode == 0, child.stderr[-3000:]
    lines = child.stdout.strip().splitlines()
    # Loading never needed aetrack's vae training code: the logged models are plain Keras layers.
    assert json.loads(lines[-1]) == []
    for architecture, model in models.items():
        loaded = np.load(tmp_path / f"{architecture}.npz")
        code_size = CODE_SIZES[architecture]
        np.testing.assert_allclose(loaded["autoencoder"], model(x, training=False).numpy(), atol=1e-5)
        np.testing.assert_allclose(loaded["encoder"], encoder_of(model)(x, training=False).numpy(), atol=1e-5)
        codes = np.random.default_rng(3).standard_normal((5, code_size)).astype(np.float32)
        np.testing.assert_allclose(loaded["samples"], decoder_of(model)(codes, training=False).numpy(), atol=1e-5)
        assert loaded["autoencoder"].shape == (16, 784) and loaded["encoder"].shape == (16, code_size)

    # `aetrack sample`: a PNG grid of 20 images, 8 to a row.
    assert "sample exit 0" in lines and any("wrote 20 sampled images" in line for line in lines), child.stdout
    with Image.open(tmp_path / "grid.png") as grid:
        pixels = np.asarray(grid)
    assert pixels.shape == (3 * 30 + 2, 8 * 30 + 2)  # 3 rows of 28-pixel tiles, 2-pixel separators
    assert pixels[2:30, 2:30].std() > 0  # a decoded image, not a blank tile

    served = np.asarray(np.load(tmp_path / "vae.pyfunc.npy"), dtype=np.float32)
    np.testing.assert_allclose(served, models["vae"](x[:4], training=False).numpy(), atol=1e-5)
