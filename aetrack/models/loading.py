"""Loading a trained model: the model URIs and files aetrack accepts, checked cheaply first (no
TensorFlow, no MLflow, so a bad argument fails before anything heavy loads), then loaded in Keras
safe mode; and the init_model check a training run makes before its run exists."""

from __future__ import annotations

import os
import re
import zipfile

from aetrack.config import MODEL_URI_FORMS
from aetrack.data.spec import MNIST_SPEC, SampleSpec
from aetrack.errors import ModelError, first_line, one_line

# runs:/<run id>/<artifact path>
_RUNS_URI = re.compile(r"^runs:/[0-9a-fA-F]{32}/[^\s]+$")
# models:/<name>/<version>, models:/<name>@<alias>, or an MLflow 3 logged model id models:/m-<hex>
_MODELS_URI = re.compile(r"^models:/([^/@\s]+(/[^/\s]+|@[^/@\s]+)|m-[0-9a-f]{32})$")


def check_model_spec(value: str, option: str = "--model") -> None:
    """Cheap check of a model argument (no TensorFlow, no MLflow); raise ModelError."""
    def bad(reason: str) -> ModelError:
        return ModelError(option, value, reason, MODEL_URI_FORMS)

    if value.startswith("runs:"):
        if not _RUNS_URI.match(value):
            raise bad("malformed runs: URI")
        return
    if value.startswith("models:"):
        if not _MODELS_URI.match(value):
            raise bad("malformed models: URI")
        return
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", value):
        return  # another MLflow model URI (file://, s3://, mlflow-artifacts:/ ...): checked when loaded
    if not os.path.exists(value):
        raise bad("no such file or directory")
    if os.path.isdir(value):
        if not os.path.isfile(os.path.join(value, "MLmodel")):
            raise bad("a directory without an MLmodel file")
        return
    if not value.endswith(".keras"):
        raise bad("not a .keras file")
    if not zipfile.is_zipfile(value):
        raise bad("not a readable .keras (zip) file: truncated or corrupt")


def load_model(uri: str, option: str = "--model"):
    """Load a Keras model from an MLflow model URI or a `.keras` file, in Keras safe mode.

    Safe mode refuses models that would run arbitrary code when loaded (e.g. Lambda layers). Every
    failure (unknown run or registered model, truncated or tampered file, not a Keras model)
    becomes one ModelError naming `option`.
    """
    check_model_spec(uri, option)
    from aetrack.quiet import load_tensorflow

    load_tensorflow()  # quietly under the CLI (see aetrack/quiet.py)
    import keras

    try:
        if uri.endswith(".keras") and os.path.isfile(uri):
            model = keras.saving.load_model(uri, safe_mode=True)
        else:
            import mlflow.keras

            from aetrack.models.custom import with_shipped_code

            # A custom architecture's registered layers ship in the model's code/: imported first.
            model = mlflow.keras.load_model(with_shipped_code(uri), load_model_kwargs={"safe_mode": True})
    except KeyError:
        raise ModelError(option, uri, "cannot load it (not a Keras model: no keras flavor)", MODEL_URI_FORMS) from None
    except Exception as exc:  # noqa: BLE001 - MLflow and Keras raise many types; all mean "unusable"
        reason = one_line(getattr(exc, "message", None) or first_line(exc))[:300]
        raise ModelError(option, uri, f"cannot load it ({reason})", MODEL_URI_FORMS) from None
    if not hasattr(model, "get_weights"):  # e.g. an MLflow model logged as an exported SavedModel
        raise ModelError(option, uri, f"it loads as {type(model).__name__}, not a Keras model", MODEL_URI_FORMS)
    return model


def _width(tensors) -> int | None:
    shape = tensors[0].shape if tensors else None
    return None if shape is None or shape[-1] is None else int(shape[-1])


def load_init_model(value: str, code_size: int, architecture: str = "dense", *, spec: SampleSpec = MNIST_SPEC):
    """Load a training run's init_model and check it fits an `architecture` autoencoder of
    `code_size` for `spec`'s samples: its input width first (one line naming both shapes), then its
    weights (a model of another architecture is refused in one line naming both)."""
    from aetrack.models import build_autoencoder, copy_weights

    model = load_model(value, option="init_model")
    width = _width(getattr(model, "inputs", None))
    if width != spec.size:
        raise ModelError("init_model", value, f"it takes {width} values per sample, this run's samples are "
                         f"{spec.size} ({spec.describe()})", f"an init_model trained on {spec.describe()} samples")
    # copy_weights onto a throwaway model of the kind the run will build: same check, same message.
    copy_weights(model, build_autoencoder(architecture, code_size, spec=spec), value, architecture, code_size,
                 spec=spec)
    return model
