"""Your own encoder and decoder: `architecture=package.module:function`, a callable
`(sample_shape, code_size) -> (encoder, decoder)`, or the two Keras models given to
`aetrack.train(config, encoder=..., decoder=...)`.

The user's models see samples in their own shape (`spec.shape`: (64, 64, 3) for RGB images, (D,)
for tables; a flat (spec.size,) input is taken too) and aetrack wraps them into the outside contract
of the built-in architectures: named `encoder` and `decoder` sub-models with flat float32
(-1, spec.size) rows in and out (Reshape layers around the user's), so scoring, serving, the
registry and table scaling (models/scaling.py) work unchanged. Custom means a deterministic
autoencoder; the vae stays built-in.

Everything that can be wrong is checked before a run exists, one line each (ModelError, exit 2):
the import, the callable, two Functional or Sequential models, no `Lambda` (Keras safe mode stays
on), registered custom layer classes, and the shapes chaining sample -> code -> sample.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Callable

import keras

from aetrack.config import ARCHITECTURE_TEXT, CUSTOM_OBJECTS, is_custom_architecture
from aetrack.data.spec import SampleSpec
from aetrack.errors import ArgumentError, ConfigError, ModelError, first_line, one_line
from aetrack.models.spec_checks import input_name
from aetrack.names import CALLABLE_TAG, CODE_METADATA, SOURCE_SHA256_TAG, SOURCE_TAG

LAMBDA_REMEDY = ("a custom layer class decorated with @keras.saving.register_keras_serializable() in place of the "
                 "Lambda (Keras safe mode refuses Lambda layers: loading one runs arbitrary code)")


def custom_callable(architecture: str) -> Callable[..., Any]:
    """Import `package.module:function` (the working directory first on sys.path); ModelError if it
    cannot be imported or is not callable."""
    module_name, _, function_name = architecture.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:  # `mlflow run` of a user's project: its modules sit in the working directory
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module means: cannot import it
        raise ModelError("architecture", architecture,
                         f"cannot import module {module_name} ({type(exc).__name__}: {one_line(first_line(exc))})",
                         f"package.module:function importable from the working directory ({cwd}) or an "
                         "installed package") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ModelError("architecture", architecture, f"module {module_name} ({module.__file__}) has no "
                         f"{function_name!r}", ARCHITECTURE_TEXT)
    if not callable(function):
        raise ModelError("architecture", architecture, f"{function_name} is a {type(function).__name__}, not "
                         "callable", ARCHITECTURE_TEXT)
    return function


def source_file(architecture: str) -> str | None:
    """The file that defines the callable (None for one without a source file)."""
    try:
        return inspect.getsourcefile(custom_callable(architecture))
    except TypeError:
        return None


def custom_tags(architecture: str) -> dict[str, str]:
    """The run tags of a custom architecture: the callable, its source file and that file's SHA-256."""
    if architecture == CUSTOM_OBJECTS:
        return {CALLABLE_TAG: CUSTOM_OBJECTS}
    if not is_custom_architecture(architecture):
        return {}
    path = source_file(architecture)
    tags = {CALLABLE_TAG: architecture}
    if path:
        tags.update({SOURCE_TAG: os.path.basename(path), SOURCE_SHA256_TAG: file_sha256(path)})
    return tags


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_custom_autoencoder(architecture: str, code_size: int, spec: SampleSpec) -> keras.Model:
    """Call the user's callable with (spec.shape, code_size), check what it returns and wrap it."""
    function = custom_callable(architecture)
    try:
        parts = function(tuple(spec.shape), code_size)
    except Exception as exc:  # noqa: BLE001 - the user's code failed: say how, in one line
        raise ModelError("architecture", architecture, f"calling it with ({tuple(spec.shape)}, {code_size}) raised "
                         f"{type(exc).__name__}: {one_line(first_line(exc))}", ARCHITECTURE_TEXT) from None
    if not (isinstance(parts, (tuple, list)) and len(parts) == 2):
        raise ModelError("architecture", architecture, f"it returned {_kind(parts)}, not two Keras models",
                         "a callable returning (encoder, decoder), two Functional or Sequential keras.Model")
    return autoencoder_from_parts(parts[0], parts[1], spec, code_size, architecture)


def autoencoder_from_parts(encoder: keras.Model, decoder: keras.Model, spec: SampleSpec, code_size: int,
                           architecture: str = CUSTOM_OBJECTS) -> keras.Model:
    """The Functional autoencoder (flat rows in and out, named `encoder` and `decoder` sub-models)
    around the user's checked encoder and decoder; their weights are shared, not copied."""
    objects = {"encoder": encoder, "decoder": decoder}

    def bad(part: str, reason: str, allowed: str) -> ModelError:
        # One line naming what the user gave: the callable, or the encoder/decoder object itself.
        if architecture != CUSTOM_OBJECTS:
            return ModelError("architecture", architecture, reason, allowed)
        return ModelError(part, getattr(objects[part], "name", part), reason, allowed)

    flat = (spec.size,)
    for part, model in objects.items():
        _check_model(part, model, bad)
    encoder_in = _built_shape(encoder, spec.shape, "encoder", bad, inputs=True)
    if encoder_in not in (tuple(spec.shape), flat):
        raise bad("encoder", f"its encoder takes samples of shape {encoder_in}, the data's are {tuple(spec.shape)} "
                  f"({spec.describe()})", f"an encoder whose input is {tuple(spec.shape)} (or flat {flat})")
    encoder_out = _built_shape(encoder, encoder_in, "encoder", bad, inputs=False)
    if encoder_out != (code_size,):
        raise bad("encoder", f"its encoder gives codes of shape {encoder_out}, code_size is {code_size}",
                  f"an encoder whose output is ({code_size},): the callable is given code_size; honour it")
    decoder_in = _built_shape(decoder, (code_size,), "decoder", bad, inputs=True)
    if decoder_in != (code_size,):
        raise bad("decoder", f"its decoder takes codes of shape {decoder_in}, the encoder gives ({code_size},)",
                  f"a decoder whose input is ({code_size},)")
    decoder_out = _built_shape(decoder, decoder_in, "decoder", bad, inputs=False)
    if decoder_out not in (encoder_in, tuple(spec.shape), flat):
        raise bad("decoder", f"its decoder gives samples of shape {decoder_out}, its encoder takes {encoder_in}",
                  f"a decoder whose output is the encoder's input shape {encoder_in}")
    for part, model in objects.items():
        _check_layers(part, model, bad)

    sample = keras.Input(shape=flat, name=input_name(spec))
    x = sample if encoder_in == flat else keras.layers.Reshape(encoder_in, name=f"to_{spec.shape_text()}")(sample)
    outer_encoder = keras.Model(sample, encoder(x), name="encoder")
    code = keras.Input(shape=(code_size,), name="code")
    y = decoder(code)
    if decoder_out != flat:  # back to the flat layout every logged part keeps
        y = keras.layers.Reshape(flat, name="reconstruction")(y)
    outer_decoder = keras.Model(code, y, name="decoder")
    autoencoder_input = keras.Input(shape=flat, name=input_name(spec))
    return keras.Model(autoencoder_input, outer_decoder(outer_encoder(autoencoder_input)), name="autoencoder")


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _check_model(part: str, model: Any, bad) -> None:
    from keras.src.models.functional import Functional

    if not isinstance(model, keras.Model):
        raise bad(part, f"its {part} is {_kind(model)}, not a Keras model", "two keras.Model: (encoder, decoder)")
    if not isinstance(model, (Functional, keras.Sequential)):
        raise bad(part, f"its {part} is a subclassed model ({type(model).__name__})",
                  "Functional or Sequential models (a subclassed model has no input shape to check)")


def _built_shape(model: keras.Model, input_shape: tuple[int, ...], part: str, bad, inputs: bool) -> tuple:
    """The model's one input (or output) shape without the batch dimension; a Sequential without an
    Input is built for `input_shape` first."""
    if not model.built:
        try:
            model.build((None, *input_shape))
        except Exception as exc:  # noqa: BLE001 - its layers do not fit that input: one line
            raise bad(part, f"building its {part} for inputs of shape {input_shape} raised {type(exc).__name__}: "
                      f"{one_line(first_line(exc))[:300]}", f"an {part} that takes inputs of shape {input_shape}") \
                from None
    try:
        tensors = model.inputs if inputs else model.outputs
    except (AttributeError, ValueError):
        tensors = None
    if not tensors or len(tensors) != 1:
        side = "input" if inputs else "output"
        raise bad(part, f"its {part} has {len(tensors or ())} {side}s", f"an {part} with exactly one {side}")
    return tuple(tensors[0].shape[1:])


def leaf_layers(model) -> list:
    """Every layer inside `model`, nested models opened."""
    leaves = []
    for layer in model.layers:
        leaves.extend(leaf_layers(layer) if hasattr(layer, "layers") else [layer])
    return leaves


def _check_layers(part: str, model: keras.Model, bad) -> None:
    """No Lambda; every custom layer class registered and in a module a logged model can ship."""
    for layer in leaf_layers(model):
        cls = type(layer)
        if isinstance(layer, keras.layers.Lambda):
            raise bad(part, f"its {part} uses a Lambda layer ({layer.name!r})", LAMBDA_REMEDY)
        if _is_keras(cls):
            continue
        registered = keras.saving.get_registered_name(cls)
        if keras.saving.get_registered_object(registered) is not cls:
            raise bad(part, f"its {part} uses layer class {cls.__name__}, which is not registered (a logged model "
                      "could not be loaded)",
                      f"{cls.__name__} decorated with @keras.saving.register_keras_serializable()")
        if cls.__module__ == "__main__":
            raise bad(part, f"its {part}'s layer class {cls.__name__} is defined in __main__ (a script or notebook), "
                      "which a logged model cannot carry", f"{cls.__name__} in a module of its own, imported")


# Packages whose layers are registered on import and installed where the model loads (a pretrained
# backbone from keras_hub): their source is never shipped.
_INSTALLED_LAYER_PACKAGES = ("keras", "tensorflow", "tf_keras", "keras_hub", "keras_cv", "keras_nlp")


def _is_keras(cls: type) -> bool:
    return cls.__module__.split(".")[0] in _INSTALLED_LAYER_PACKAGES


def shipped_code(model: keras.Model) -> dict[str, str]:
    """{module name: source file} of the registered custom layer classes in `model`: what its
    logged model carries in code/ to load in a process without the user's source."""
    files = {}
    for layer in leaf_layers(model):
        cls = type(layer)
        if _is_keras(cls):
            continue
        path = inspect.getsourcefile(cls)
        if path:
            files[Path(path).stem] = path
    return dict(sorted(files.items()))


def import_shipped_code(model_dir: str) -> list[str]:
    """Import the custom layer modules a logged model ships (its MLmodel metadata names them) from
    its code/ folder, so their classes are registered before Keras loads the model; their names."""
    import yaml

    with open(os.path.join(model_dir, "MLmodel")) as f:
        modules = list((yaml.safe_load(f).get("metadata") or {}).get(CODE_METADATA) or [])
    code = os.path.join(model_dir, "code")
    if modules and code not in sys.path:
        sys.path.insert(0, code)
    for module in modules:
        importlib.import_module(module)
    return modules


def with_shipped_code(uri: str) -> str:
    """Download an MLflow model (a local model directory is used as it is) and import the custom
    layer modules it ships; its local directory, ready for Keras to load in safe mode."""
    from mlflow.tracking.artifact_utils import _download_artifact_from_uri

    local = uri if os.path.isdir(uri) else _download_artifact_from_uri(uri)
    import_shipped_code(local)
    return local


def is_custom(architecture: str) -> bool:
    """The user's own encoder and decoder: package.module:function, or objects (`custom`)."""
    return architecture == CUSTOM_OBJECTS or is_custom_architecture(architecture)


def with_objects(config, encoder: keras.Model | None, decoder: keras.Model | None):
    """(config, parts) for `train(config, encoder=..., decoder=...)`: both objects or neither; given,
    the config's architecture becomes `custom` (what the run logs) and parts is (encoder, decoder)."""
    import dataclasses

    if encoder is None and decoder is None:
        return config, None
    if encoder is None or decoder is None:
        given, missing = ("encoder", "decoder") if decoder is None else ("decoder", "encoder")
        raise ArgumentError(missing, None, f"{given} was given without a {missing}",
                            "give both encoder= and decoder= (Keras models), or neither")
    if config.strategy != "default":
        raise ConfigError("strategy", config.strategy, "default with encoder and decoder objects (they were built "
                          "outside a strategy's scope), or architecture=package.module:function (built inside it)")
    return dataclasses.replace(config, architecture=CUSTOM_OBJECTS), (encoder, decoder)
