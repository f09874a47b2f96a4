"""Logging a trained model's parts to its run: the autoencoder, its encoder, its decoder and its
scorer (one anomaly score per sample, models/scorer.py), each an
MLflow LoggedModel with the Keras flavor (native `.keras` files), a tensor signature and pinned
requirements. Registering them is `aetrack.tracking.registry`; loading them back is
`aetrack.models.loading.load_model`.

TensorFlow and MLflow are imported inside the functions: `aetrack --help` imports this module's
callers without them.
"""

from __future__ import annotations

from aetrack.data import MNIST_SPEC, SampleSpec
from aetrack.names import (ANOMALY_KEY, ANOMALY_THRESHOLD, CODE_METADATA, DATA_KIND, NOTE_TAG, PART_METADATA, PARTS,
                           SAMPLE_SHAPE, SAMPLE_SPEC_KEY, SCORER)


def log_models(model, config, dataset, parts: dict | None = None,
               threshold=None) -> dict[str, "mlflow.models.model.ModelInfo"]:  # noqa: F821
    """Log autoencoder, encoder, decoder and scorer to the active run as `runs:/<run id>/<part>`:
    plain Functional models for every architecture (a vae's training wrapper is never logged).

    `parts` ({part: keras model}) replaces the parts taken from `model`, e.g. a scaled table's
    raw-io wrapped parts; they are logged as given, and a scorer built from `model` is added when
    they have none. Given the run's `threshold` (anomaly.RunThreshold), every part carries its
    threshold in its metadata (ANOMALY_KEY: on that part's own score) and the scorer's as the param
    `anomaly_threshold`. Each carries `dataset.spec` in its metadata
    (SAMPLE_SPEC_KEY), the data kind and sample shape as params, and a flat (-1, spec.size) signature.

    Each is an MLflow LoggedModel at step = `config.epochs`: MLflow links the run's metrics at that
    step (the last epoch's, and the final test metrics logged after this) to every model. The
    models keep the Keras flavor (`mlflow.keras.load_model` works); their pyfunc serves through
    `aetrack_keras_pyfunc` (a direct call: fast, no progress bars).
    """
    from mlflow.models import Model

    from aetrack.models import autoencoder_of, decoder_of, encoder_of
    from aetrack.models.custom import shipped_code
    from aetrack.models.scorer import build_scorer
    from aetrack.tracking import keras_flavor
    from aetrack.tracking.records import DIGEST_LENGTH

    spec = dataset.spec
    if parts is None:
        parts = dict(zip(PARTS, (autoencoder_of(model), encoder_of(model), decoder_of(model))))
    if SCORER not in parts:
        parts = {**parts, SCORER: build_scorer(model, spec)}
    requirements = pip_requirements()
    infos = {}
    for part, keras_model in parts.items():
        code = shipped_code(keras_model)  # registered custom layers: their source rides along in code/
        anomaly = {} if threshold is None else {ANOMALY_KEY: threshold.metadata(part)}
        anomaly_param = {} if threshold is None else {ANOMALY_THRESHOLD: repr(float(threshold.scorer))}
        # No input_example: in MLflow 3.17 the Keras flavor writes it before creating the model
        # directory and fails (mlflow/mlflow#16183). The signature carries the schema instead.
        infos[part] = Model.log(
            artifact_path=None,
            name=part,
            flavor=WithCode(code) if code else keras_flavor,
            flavor_name="keras",
            model=keras_model,
            signature=signature_for(part, config.code_size, spec=spec),
            pip_requirements=requirements,
            metadata={PART_METADATA: part, "code_size": config.code_size, "architecture": config.architecture,
                      SAMPLE_SPEC_KEY: spec.to_dict(), **anomaly, **({CODE_METADATA: list(code)} if code else {})},
            model_type=part,
            params={
                "part": part,
                "architecture": config.architecture,
                "layers": layer_widths(keras_model),
                "code_size": config.code_size,
                "entry_point": config.entry_point,
                "dataset_name": dataset.name,
                "dataset_digest": dataset.train_sha256[:DIGEST_LENGTH],
                DATA_KIND: spec.kind,
                SAMPLE_SHAPE: spec.shape_text(),
                **anomaly_param,
            },
            step=config.epochs,
        )
    return infos


# The pyfunc loader of a model with custom layers, written into its code/ folder: it imports the
# shipped modules (registering their layer classes) before the usual loader reads the .keras file.
_CODE_LOADER = "aetrack_custom_pyfunc"
_CODE_LOADER_TEXT = """\"\"\"Written by aetrack: import this model's custom layer modules, then load it.\"\"\"
import importlib

for _module in {modules!r}:
    importlib.import_module(_module)

from aetrack_keras_pyfunc import _load_pyfunc  # noqa: E402,F401
"""


class WithCode:
    """The keras flavor plus MLflow code_paths: the source files of a model's registered custom
    layers copied into its code/ folder (beside the pyfunc loader), imported before it loads."""

    def __init__(self, files: dict[str, str]):
        self.files = files  # {module name: source file}

    def save_model(self, model, path: str, mlflow_model, **kwargs) -> None:
        import os
        import shutil

        from mlflow import pyfunc
        from mlflow.models.model import MLMODEL_FILE_NAME

        from aetrack.tracking import keras_flavor

        keras_flavor.save_model(model, path, mlflow_model, **kwargs)
        code = os.path.join(path, keras_flavor.CODE_DIR)
        for module, source in self.files.items():
            shutil.copyfile(source, os.path.join(code, f"{module}.py"))
        with open(os.path.join(code, f"{_CODE_LOADER}.py"), "w") as f:
            f.write(_CODE_LOADER_TEXT.format(modules=list(self.files)))
        mlflow_model.flavors[pyfunc.FLAVOR_NAME][pyfunc.MAIN] = _CODE_LOADER
        mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))


def describe_logged_models(logged: dict, config, spec: SampleSpec, run_name: str,
                           scorer_threshold: float | None = None) -> dict[str, str]:
    """Give each logged part ({part: ModelInfo}, as `log_models` returns) its description, the
    `mlflow.note.content` tag the MLflow UI shows on a logged model's page; {part: description}."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    texts = {part: logged_model_description(part, run_name, config.code_size, spec, config.architecture,
                                            scorer_threshold)
             for part in logged}
    for part, info in logged.items():
        client.set_logged_model_tags(info.model_id, {NOTE_TAG: texts[part]})
    return texts


def logged_model_description(part: str, run_name: str, code_size: int, spec: SampleSpec = MNIST_SPEC,
                             architecture: str = "dense", threshold: float | None = None) -> str:
    """What a logged part is, in one line: `The encoder of run X (dense): 28x28x1 images (784) ->
    code (64).` Sizes are the flat signature's widths; the scorer's line adds its threshold."""
    samples = f"{spec.shape_text()} images" if spec.is_image else f"{spec.size}-feature rows"
    flat = f"{samples} ({spec.size})"
    code = f"code ({code_size})"
    what = {"autoencoder": f"{flat} -> reconstructions ({spec.size})", "encoder": f"{flat} -> {code}",
            "decoder": f"{code} -> {samples} ({spec.size})", SCORER: f"{flat} -> anomaly score (1)"}[part]
    line = f"The {part} of run {run_name} ({architecture}): {what}."
    if part == SCORER and threshold is not None:
        line += f" A score above {threshold:.6g} is anomalous."
    return line


def layer_widths(model) -> str:
    """The input width and each Dense layer's units, e.g. `784-64-784` for the tutorial's model."""
    import keras

    dense = [layer for layer in _leaf_layers(model) if isinstance(layer, keras.layers.Dense)]
    return "-".join(map(str, [int(model.inputs[0].shape[-1]), *(int(layer.units) for layer in dense)]))


def _leaf_layers(model) -> list:
    leaves = []
    for layer in model.layers:
        leaves.extend(_leaf_layers(layer) if hasattr(layer, "layers") else [layer])
    return leaves


def signature_for(part: str, code_size: int,
                  spec: SampleSpec = MNIST_SPEC) -> "mlflow.models.ModelSignature":  # noqa: F821
    """float32 tensors with a free batch dimension: flat samples (spec.size, 784 for MNIST) in or
    out, codes (code_size), scores (1: the scorer's one column). Flat for every kind, so `(-1, 784)` requests stay valid under
    `mlflow models serve` (which enforces the signature's shapes)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    sizes = {"autoencoder": (spec.size, spec.size), "encoder": (spec.size, code_size),
             "decoder": (code_size, spec.size), SCORER: (spec.size, 1)}[part]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, sizes[0]))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, sizes[1]))]),
    )


def pip_requirements() -> list[str]:
    """The packages a logged model needs, pinned to what trained it.

    Given explicitly because MLflow otherwise infers them by loading each model again in a
    subprocess (a fresh TensorFlow start per logged part).
    """
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "tensorflow", "keras", "numpy")]
