"""Checkpoints as run artifacts: everything needed to continue a run exactly from an epoch.

A checkpoint of epoch k is the folder `checkpoints/epoch-<k>/` of the run's artifacts:
  - `state.npz`: the model's weights and the optimizer's variables (Adam's step count, moments),
  - `state.json`, written last: the epoch, the run's params, the variables' names and shapes, the
    SHA-256 of state.npz, and Python's and numpy's random states.
Then `checkpoints/latest.json` points at the folder, and older epoch folders are deleted.

Artifact stores cannot rename, so "replace atomically" is done by order and verification: a
folder counts only when its state.json parses and state.npz has the recorded hash; the reader
follows latest.json when that folder is whole, else takes the newest whole folder. A crash at any
point of writing leaves the previous checkpoint readable (it is deleted only after the pointer has
moved past a whole newer one). Stores whose artifact repository cannot delete (MLflow's generic
API leaves it optional) keep the older folders.

The shuffle order is a function of (seed, epoch) (aetrack/batches.py) and noise a function of the
seed, so the epoch number restores them; Python's and numpy's global random states are stored and
restored too, for anything else that draws from them.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from aetrack.errors import ResumeError

CHECKPOINT_DIR = "checkpoints"
POINTER = f"{CHECKPOINT_DIR}/latest.json"
FOLDER_PATTERN = re.compile(r"^epoch-(\d+)$")


@dataclass
class Checkpoint:
    """A whole checkpoint read back from a run."""

    epoch: int  # epochs completed (1-based: the step of the last logged epoch)
    folder: str  # artifact path, e.g. checkpoints/epoch-3
    state: dict  # state.json
    arrays: dict[str, np.ndarray]  # state.npz


def checkpoint_state(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's weights and its optimizer's variables as named numpy arrays."""
    arrays = {f"weights/{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    for i, variable in enumerate(model.optimizer.variables):
        arrays[f"optimizer/{i}"] = np.asarray(variable)
    return arrays


def variable_names(model: keras.Model) -> list[str]:
    return [f"weights/{w.path}" for w in model.weights] + [f"optimizer/{v.path}" for v in model.optimizer.variables]


@dataclass(frozen=True)
class CheckpointSnapshot:
    """A checkpoint captured in memory at the end of an epoch, not yet stored."""

    epoch: int
    folder: str
    data: bytes  # state.npz
    state: dict  # state.json


def capture_checkpoint(model: keras.Model, epoch: int, params: dict[str, str]) -> CheckpointSnapshot:
    """The model's, optimizer's and random generators' state after `epoch` epochs, in memory."""
    arrays = checkpoint_state(model)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    state = {
        "epoch": epoch,
        "params": params,
        "variables": variable_names(model),
        "shapes": [list(a.shape) for k, a in arrays.items() if k.startswith("weights/")],
        "state_sha256": hashlib.sha256(data).hexdigest(),
        "python_random": _python_state(),
        "numpy_random": _numpy_state(),
    }
    return CheckpointSnapshot(epoch, f"{CHECKPOINT_DIR}/epoch-{epoch}", data, state)


def store_checkpoint(repository, snapshot: CheckpointSnapshot) -> str:
    """Store a captured checkpoint in the run's artifacts; return its folder. The pointer
    `latest.json` is written last and older folders are deleted only after it moved."""
    folder = snapshot.folder
    with tempfile.TemporaryDirectory(prefix="aetrack-ckpt-") as tmp:
        (Path(tmp) / "state.npz").write_bytes(snapshot.data)
        (Path(tmp) / "state.json").write_text(json.dumps(snapshot.state))
        (Path(tmp) / "latest.json").write_text(json.dumps({"epoch": snapshot.epoch, "folder": folder}))
        repository.log_artifact(str(Path(tmp) / "state.npz"), folder)
        repository.log_artifact(str(Path(tmp) / "state.json"), folder)  # last: the folder is whole
        repository.log_artifact(str(Path(tmp) / "latest.json"), CHECKPOINT_DIR)
    delete_older(repository, keep=folder)
    return folder


def write_checkpoint(client, run_id: str, model: keras.Model, epoch: int, params: dict[str, str],
                     repository=None) -> str:
    """Capture and store the checkpoint of `epoch` (epochs completed) now; return its folder."""
    return store_checkpoint(repository or artifact_repository(client, run_id), capture_checkpoint(model, epoch, params))


def delete_older(repository, keep: str) -> None:
    """Delete the epoch folders other than `keep`, where the artifact store allows it."""
    for item in repository.list_artifacts(CHECKPOINT_DIR):
        if item.is_dir and item.path != keep and FOLDER_PATTERN.match(Path(item.path).name):
            try:
                repository.delete_artifacts(item.path)
            except NotImplementedError:
                return  # this store cannot delete: older checkpoints stay (the reader picks the newest)


def artifact_repository(client, run_id: str):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(client.get_run(run_id).info.artifact_uri)


def read_checkpoint(client, run_id: str) -> Checkpoint | None:
    """The run's newest whole checkpoint (the pointer's, else the newest whole folder); None if none."""
    with tempfile.TemporaryDirectory(prefix="aetrack-ckpt-") as tmp:
        pointed = _read_json(client, run_id, POINTER, tmp)
        candidates = []
        if pointed and isinstance(pointed.get("folder"), str):
            candidates.append(pointed["folder"])
        folders = [i.path for i in _list(client, run_id, CHECKPOINT_DIR) if i.is_dir]
        numbered = [(int(m.group(1)), f) for f in folders if (m := FOLDER_PATTERN.match(Path(f).name))]
        candidates += [f for _, f in sorted(numbered, reverse=True) if f not in candidates]
        for folder in candidates:
            checkpoint = _read_folder(client, run_id, folder, tmp)
            if checkpoint is not None:
                return checkpoint
    return None


def restore(model: keras.Model, checkpoint: Checkpoint, run_id: str) -> None:
    """Load the checkpoint's weights and optimizer variables into a freshly built, compiled model,
    and restore the random states. Raise ResumeError if they do not fit the model."""
    model_shapes = [tuple(w.shape) for w in model.get_weights()]
    weights = [checkpoint.arrays[k] for k in sorted((k for k in checkpoint.arrays if k.startswith("weights/")),
                                                    key=lambda k: int(k.split("/")[1]))]
    if [tuple(w.shape) for w in weights] != model_shapes:
        raise ResumeError(
            f"cannot resume run {run_id}: its checkpoint ({checkpoint.folder}) holds weights of shapes "
            f"{[tuple(s) for s in checkpoint.state['shapes']]}; the run's params build {model_shapes}"
        )
    model.set_weights(weights)
    model.optimizer.build(model.trainable_variables)
    variables = model.optimizer.variables
    saved = [checkpoint.arrays.get(f"optimizer/{i}") for i in range(len(variables))]
    if any(s is None or tuple(s.shape) != tuple(v.shape) for s, v in zip(saved, variables)):
        raise ResumeError(f"cannot resume run {run_id}: its checkpoint's optimizer state does not fit the model")
    for variable, value in zip(variables, saved):
        variable.assign(value)
    random.setstate(_tuples(checkpoint.state["python_random"]))
    kind, keys, pos, has_gauss, gauss = checkpoint.state["numpy_random"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))


def _read_folder(client, run_id: str, folder: str, tmp: str) -> Checkpoint | None:
    state = _read_json(client, run_id, f"{folder}/state.json", tmp)
    if not state or "state_sha256" not in state:
        return None
    try:
        path = client.download_artifacts(run_id, f"{folder}/state.npz", tmp)
        data = Path(path).read_bytes()
    except Exception:  # noqa: BLE001 - a missing or unreadable file means: not a whole checkpoint
        return None
    if hashlib.sha256(data).hexdigest() != state["state_sha256"]:
        return None
    with np.load(io.BytesIO(data)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Checkpoint(int(state["epoch"]), folder, state, arrays)


def _read_json(client, run_id: str, path: str, tmp: str) -> dict | None:
    try:
        local = client.download_artifacts(run_id, path, tmp)
        value = json.loads(Path(local).read_text())
    except Exception:  # noqa: BLE001 - absent, half-written or not JSON: not usable
        return None
    return value if isinstance(value, dict) else None


def _list(client, run_id: str, path: str) -> list:
    try:
        return list(client.list_artifacts(run_id, path))
    except Exception:  # noqa: BLE001
        return []


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _tuples(value):
    version, internal, gauss = value
    return version, tuple(internal), gauss


def _numpy_state() -> list:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]
