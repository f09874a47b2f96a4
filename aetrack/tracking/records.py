"""Records of a run kept where MLflow's UI and API look for them: the data as MLflow datasets (with
aetrack's own digest), the run's description (MLflow's note), the Keras model summary and its
trainable parameter count, and the model a denoiser continued from (a model input of the run).

MLflow is imported inside the functions, like the rest of tracking/.
"""

from __future__ import annotations

from dataclasses import dataclass

from aetrack.data import Dataset
from aetrack.names import NOTE_TAG

# Leading hex characters of aetrack's SHA-256 used as an MLflow dataset digest. MLflow caps a
# digest at 36 characters (mlflow.utils.validation.MAX_DATASET_DIGEST_SIZE); 32 hex = 128 bits.
# MLflow's own numpy digest hashes only the first 10,000 values (about 13 MNIST images), so two
# different subsets of the same file would share it.
DIGEST_LENGTH = 32
TRAINING = "training"
EVALUATION = "evaluation"
SUMMARY_ARTIFACT = "model_summary.txt"
TRAINABLE_PARAMS = "trainable_params"


@dataclass(frozen=True)
class RunDatasets:
    """The run's MLflow datasets: what the model was fitted on and what its metrics were computed on."""

    training: "mlflow.data.dataset.Dataset"  # noqa: F821
    evaluation: "mlflow.data.dataset.Dataset"  # noqa: F821


def run_datasets(dataset: Dataset) -> RunDatasets:
    """MLflow datasets of the images and labels actually used, digests from aetrack's SHA-256s."""
    import warnings

    import mlflow.data

    def numpy_dataset(split: str, x, y, sha256: str):
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and warns that a path "can be
            # interpreted in multiple ways: LocalArtifactDatasetSource, LocalArtifactDatasetSource".
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            return mlflow.data.from_numpy(x, targets=y, source=dataset.source, name=f"{dataset.name}-{split}",
                                          digest=sha256[:DIGEST_LENGTH])

    return RunDatasets(
        training=numpy_dataset("train", dataset.x_train, dataset.y_train, dataset.train_sha256),
        evaluation=numpy_dataset("test", dataset.x_test, dataset.y_test, dataset.test_sha256),
    )


def record_run_inputs(client, run_id: str, config, dataset: Dataset, run_name: str) -> RunDatasets:
    """Log the run's datasets (the runs table's Datasets column), its description and, for a run
    continued from a logged model, that model as an input; return the datasets."""
    import mlflow

    datasets = run_datasets(dataset)
    mlflow.log_inputs(datasets=[datasets.training, datasets.evaluation], contexts=[TRAINING, EVALUATION],
                      tags_list=[None, None])
    client.set_tag(run_id, NOTE_TAG, run_note(config, dataset, run_name))
    if config.init_model:
        log_init_model_input(client, run_id, config.init_model)
    return datasets


def run_note(config, dataset: Dataset, run_name: str) -> str:
    """The run description: what was trained, on what, in two lines (Markdown)."""
    task = "a denoising autoencoder" if config.denoising else "an autoencoder"
    start = f", continued from `{config.init_model}`" if config.init_model else ""
    noise = f", noise factor {config.noise_factor:g}" if config.denoising else ""
    excluded = f", without digits {config.exclude_digits}" if config.exclude_digits else ""
    return (
        f"**{run_name}**: {task} (code size {config.code_size}{noise}{start}), "
        f"{config.epochs} epochs of {config.loss} loss.\n\n"
        f"Data: `{dataset.name}`, {len(dataset.x_train)} training images{excluded} and "
        f"{len(dataset.x_test)} test images (digests {dataset.train_sha256[:DIGEST_LENGTH]} / "
        f"{dataset.test_sha256[:DIGEST_LENGTH]})."
    )


def model_summary(model) -> str:
    """Keras' `model.summary()` as plain text (no colour codes)."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), expand_nested=True)
    return "\n".join(lines) + "\n"


def trainable_params(model) -> int:
    import numpy as np

    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def describe_model(client, run_id: str, model) -> None:
    """Log the model summary as a text artifact and its trainable parameter count as a param."""
    from mlflow.entities import Param

    client.log_text(run_id, model_summary(model), SUMMARY_ARTIFACT)
    client.log_batch(run_id, params=[Param(TRAINABLE_PARAMS, str(trainable_params(model)))])


def log_init_model_input(client, run_id: str, init_model: str) -> str | None:
    """Record the MLflow logged model a run continued from as a model input of the run (lineage).

    Returns its model id; None when `init_model` is a plain `.keras` file or the URI names no
    logged model (a model logged before MLflow 3).
    """
    from mlflow.entities import LoggedModelInput

    model_id = logged_model_id(client, init_model)
    if model_id is not None:
        client.log_inputs(run_id, models=[LoggedModelInput(model_id)])
    return model_id


def logged_model_id(client, uri: str) -> str | None:
    """The logged model behind a `runs:/`, `models:/` URI; None for a file or directory."""
    from mlflow.exceptions import MlflowException

    try:
        if uri.startswith("models:/m-"):
            return client.get_logged_model(uri[len("models:/"):].split("/")[0]).model_id
        if uri.startswith("models:/"):
            from mlflow.models import get_model_info

            return get_model_info(uri).model_id
        if uri.startswith("runs:/"):
            run_id, _, name = uri[len("runs:/"):].partition("/")
            name = name.strip("/")
            run = client.get_run(run_id)
            for output in run.outputs.model_outputs if run.outputs else []:
                if client.get_logged_model(output.model_id).name == name:
                    return output.model_id
    except MlflowException:
        return None
    return None
