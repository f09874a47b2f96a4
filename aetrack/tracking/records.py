"""Records of a run kept where MLflow's UI and API look for them: the data as MLflow datasets (with
aetrack's own digest), the run's description (MLflow's note), the Keras model summary and its
trainable parameter count, and the model a denoiser continued from (a model input of the run).

MLflow is imported inside the functions, like the rest of tracking/.
"""

from __future__ import annotations

from dataclasses import dataclass

from aetrack.data import Dataset, SampleSpec
from aetrack.data.streams import Streamed
from aetrack.names import DATA_KIND, NOTE_TAG, SAMPLE_SHAPE
from aetrack.tracking.conflicts import retry_conflicts

# Leading hex characters of aetrack's SHA-256 used as an MLflow dataset digest. MLflow caps a
# digest at 36 characters (mlflow.utils.validation.MAX_DATASET_DIGEST_SIZE); 32 hex = 128 bits.
# MLflow's own numpy digest hashes only the first 10,000 values (about 13 MNIST images), so two
# different subsets of the same file would share it.
DIGEST_LENGTH = 32
TRAINING = "training"
EVALUATION = "evaluation"
SUMMARY_ARTIFACT = "model_summary.txt"
TRAINABLE_PARAMS = "trainable_params"
LABEL_COLUMN = "label"  # a table dataset's label column (renamed when a feature has that name)


@dataclass(frozen=True)
class RunDatasets:
    """The run's MLflow datasets: what the model was fitted on and what its metrics were computed on."""

    training: "mlflow.data.dataset.Dataset"  # noqa: F821
    evaluation: "mlflow.data.dataset.Dataset"  # noqa: F821


def run_datasets(dataset: Dataset) -> RunDatasets:
    """MLflow datasets of the samples and labels (if any) actually used, digests from aetrack's
    SHA-256s, source the file, folder or URL they came from.

    Images are numpy datasets (a flat (-1, size) tensor schema, MLflow's shape profile); tables
    are pandas datasets, one named column per feature (and `label`), so the schema names the
    features and the profile counts rows. A streamed training split is recorded without decoding
    it: the same schema, a profile of its rows and shape. `dataset_tags` says the kind and shape.
    """
    import warnings

    import mlflow.data

    spec = dataset.spec

    def mlflow_dataset(split: str, x, y, sha256: str):
        name, digest, source = f"{dataset.name}-{split}", sha256[:DIGEST_LENGTH], dataset.source or None
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and warns that a path "can be
            # interpreted in multiple ways: LocalArtifactDatasetSource, LocalArtifactDatasetSource".
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            if isinstance(x, Streamed):
                return streamed_dataset(x, y, source, name, digest)
            if spec.is_image:
                return mlflow.data.from_numpy(x, targets=y, source=source, name=name, digest=digest)
            frame, target = table_frame(x, y, spec)
            return mlflow.data.from_pandas(frame, source=source, targets=target, name=name, digest=digest)

    return RunDatasets(
        training=mlflow_dataset("train", dataset.x_train, dataset.y_train, dataset.train_sha256),
        evaluation=mlflow_dataset("test", dataset.x_test, dataset.y_test, dataset.test_sha256),
    )


def streamed_dataset(x: Streamed, y, source: str | None, name: str, digest: str):
    """An MLflow numpy dataset of a streamed split without its arrays: the schema from one decoded
    row, the profile (`features_shape`, sizes, bytes) of all `len(x)` rows as float32."""
    import numpy as np
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.numpy_dataset import NumpyDataset

    rows, width = len(x), x.spec.size

    class StreamedNumpyDataset(NumpyDataset):
        @property
        def profile(self):
            profile = {"features_shape": (rows, width), "features_size": rows * width,
                       "features_nbytes": rows * width * 4}
            if y is not None:
                profile.update({"targets_shape": y.shape, "targets_size": y.size, "targets_nbytes": y.nbytes})
            return profile

    # One zero row stands in for the schema: (-1, size) float32 features, (-1,) int64 targets.
    features = np.zeros((1, width), np.float32)
    targets = None if y is None else y[:1]
    return StreamedNumpyDataset(features, resolve_dataset_source(source) if source else None, targets, name, digest)


def table_frame(x, y, spec: SampleSpec) -> tuple["pandas.DataFrame", str | None]:  # noqa: F821
    """(n, D) table rows as a DataFrame with the spec's feature names (`feature_<i>` when it has
    none) and the labels, if any, as a last column; its name (None without labels)."""
    import pandas as pd

    from aetrack.evaluation import feature_names

    columns = list(feature_names(spec))
    frame = pd.DataFrame(x, columns=columns)
    if y is None:
        return frame, None
    target = LABEL_COLUMN
    while target in columns:  # a feature already has the name
        target = f"_{target}"
    frame[target] = y
    return frame, target


def dataset_tags(dataset: Dataset, rows: int) -> dict[str, str]:
    """Tags of a dataset input: the data kind, the sample shape (`28x28x1`, `30`), its rows."""
    return {DATA_KIND: dataset.spec.kind, SAMPLE_SHAPE: dataset.spec.shape_text(), "rows": str(rows)}


def record_run_inputs(client, run_id: str, config, dataset: Dataset, run_name: str) -> RunDatasets:
    """Log the run's datasets (the runs table's Datasets column), its description and, for a run
    continued from a logged model, that model as an input; return the datasets."""
    import mlflow

    datasets = run_datasets(dataset)
    tags = [dataset_tags(dataset, dataset.train_count), dataset_tags(dataset, len(dataset.x_test))]
    # Concurrent runs on one dataset race to create its record; the loser's retry links the winner's.
    retry_conflicts(lambda: mlflow.log_inputs(datasets=[datasets.training, datasets.evaluation],
                                              contexts=[TRAINING, EVALUATION], tags_list=tags))
    client.set_tag(run_id, NOTE_TAG, run_note(config, dataset, run_name))
    if config.init_model:
        log_init_model_input(client, run_id, config.init_model)
    return datasets


def run_note(config, dataset: Dataset, run_name: str) -> str:
    """The run description: what was trained, on what, in two lines (Markdown). Images are
    counted as images, table rows as samples."""
    task = "a denoising autoencoder" if config.denoising else "an autoencoder"
    start = f", continued from `{config.init_model}`" if config.init_model else ""
    noise = f", noise factor {config.noise_factor:g}" if config.denoising else ""
    image = dataset.spec.is_image
    excluded = ""
    if config.exclude_labels or config.exclude_digits:
        excluded = f", without labels {config.exclude_labels or config.exclude_digits}"
    things = "images" if image else f"samples ({dataset.spec.describe()})"
    test_things = "images" if image else "samples"
    return (
        f"**{run_name}**: {task} (code size {config.code_size}{noise}{start}), "
        f"{config.epochs} epochs of {config.loss} loss.\n\n"
        f"Data: `{dataset.name}`, {dataset.train_count} training {things}{excluded} and "
        f"{len(dataset.x_test)} test {test_things} (digests {dataset.train_sha256[:DIGEST_LENGTH]} / "
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
