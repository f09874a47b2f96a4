"""Streamed image folders (aetrack/data/streams.py, aetrack.batches.streamed_batches): the training
split is never decoded into memory, its batches come in the in-memory path's (seed, epoch) order,
a denoiser's noise belongs to the sample, and a file that breaks mid-training fails the run naming
it. Small folders the tests write; real runs in a temporary store."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from aetrack.config import TrainConfig
from aetrack.data import load_dataset
from aetrack.data.streams import StreamedImages
from aetrack.errors import DataError
from tests.helpers.data import write_image_folder

RUN = dict(epochs=2, code_size=2, batch_size=8, image_samples=2, image_every=0, checkpoint_every=0, register=False)


def folder(tmp_path, per_class: int = 10):
    root = tmp_path / "shapes"
    write_image_folder(root / "train", classes=("a", "b"), per_class=per_class, size=(6, 5), channels=3)
    write_image_folder(root / "test", classes=("a", "b"), per_class=2, size=(6, 5), channels=3, seed=7)
    return root


def epoch_batches(dataset, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    batches, order = dataset
    order.on_epoch_begin(epoch)
    return [(x.numpy(), y.numpy()) for x, y in batches]


@pytest.mark.slow  # two real trainings
def test_a_folder_run_streams_its_training_split_and_trains_as_the_same_arrays_in_memory(tracking, tmp_path):
    from aetrack.train import train

    data = load_dataset(str(folder(tmp_path)))
    assert data.streamed and isinstance(data.x_train, StreamedImages) and data.train_count == 20
    assert isinstance(data.x_test, np.ndarray) and data.x_test.shape == (4, 90)  # the test split is in memory
    config = TrainConfig(dataset=str(tmp_path / "shapes"), **RUN)
    streamed = train(config, data)
    assert isinstance(data.x_train, StreamedImages)  # still files: fitting decoded batch by batch
    # The same rows as an array in memory, the same (seed, epoch) batches: the same losses.
    in_memory = train(config, replace(data, x_train=np.asarray(data.x_train)))
    np.testing.assert_allclose(streamed.history["loss"], in_memory.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(streamed.history["val_loss"], in_memory.history["val_loss"], rtol=1e-6)

    run = MlflowClient(tracking).get_run(streamed.run_id)
    assert run.data.tags["aetrack.train_images"] == "20"
    training = next(d.dataset for d in run.inputs.dataset_inputs
                    if {t.key: t.value for t in d.tags}["mlflow.data.context"] == "training")
    assert training.name == "shapes-train" and json.loads(training.source)["uri"] == str(tmp_path / "shapes")
    assert training.digest == data.train_sha256[:32]
    profile = json.loads(training.profile)
    assert profile["features_shape"] == [20, 90] and profile["targets_shape"] == [20]
    assert "mlflow_tensorspec" in training.schema


def test_the_digest_hashes_the_files_and_the_size_they_are_decoded_to(tmp_path):
    root = folder(tmp_path, per_class=3)
    a, b = load_dataset(str(root)), load_dataset(str(root))
    assert a.train_sha256 == b.train_sha256 and a.sha256 == b.sha256
    assert load_dataset(str(root), image_size=(4, 4)).train_sha256 != a.train_sha256
    (root / "train" / "a" / "000.png").write_bytes((root / "train" / "b" / "000.png").read_bytes())
    assert load_dataset(str(root)).train_sha256 != a.train_sha256


def assert_streamed_order_is_in_memory_order(stream, sizes: list[int]) -> None:
    """Batches of 5, seed 4: a streamed split's epoch 0 and epoch 3 (opened straight away, as a run
    resumed there opens it) hold the rows the same data in memory gives, in the same order."""
    from aetrack.batches import shuffled_batches, streamed_batches

    rows = np.asarray(stream)
    for epoch in (0, 3):
        streamed = epoch_batches(streamed_batches(stream, 5, seed=4), epoch)
        in_memory = epoch_batches(shuffled_batches(rows, rows, 5, seed=4), epoch)
        assert [len(x) for x, _ in streamed] == sizes
        for (x, y), (x_mem, _) in zip(streamed, in_memory):
            np.testing.assert_array_equal(x, x_mem)
            np.testing.assert_array_equal(y, x_mem)


def test_streamed_batches_come_in_the_in_memory_order_of_each_epoch(tmp_path):
    data = load_dataset(str(folder(tmp_path, per_class=6)))
    assert_streamed_order_is_in_memory_order(data.x_train, [5, 5, 2])


def test_a_streamed_denoiser_gives_each_sample_the_same_noise_every_epoch(tmp_path):
    from aetrack.batches import epoch_permutation, streamed_batches
    from aetrack.noise import RunNoise

    data = load_dataset(str(folder(tmp_path, per_class=6)))
    clean = np.asarray(data.x_train)
    pipeline = streamed_batches(data.x_train, 4, seed=2, noise=RunNoise(2, 0.5))
    noisy_by_epoch = []
    for epoch in (0, 1):
        x = np.concatenate([x for x, _ in epoch_batches(pipeline, epoch)])
        y = np.concatenate([y for _, y in epoch_batches(pipeline, epoch)])
        order = epoch_permutation(len(clean), 2, epoch).numpy()
        np.testing.assert_array_equal(y, clean[order])  # targets stay clean
        noisy = np.empty_like(x)
        noisy[order] = x
        noisy_by_epoch.append(noisy)
    np.testing.assert_array_equal(noisy_by_epoch[0], noisy_by_epoch[1])
    assert noisy_by_epoch[0].min() >= 0.0 and noisy_by_epoch[0].max() <= 1.0  # clipped to the value range
    assert np.abs(noisy_by_epoch[0] - clean).mean() > 0.1
    assert not np.array_equal(noisy_by_epoch[0][0] - clean[0], noisy_by_epoch[0][1] - clean[1])


def test_a_file_that_fails_to_decode_mid_training_fails_the_run_naming_it(tracking, tmp_path):
    from aetrack.train import train

    root = folder(tmp_path)
    data = load_dataset(str(root))  # every header is checked up front
    broken = root / "train" / "b" / "004.png"
    broken.write_bytes(broken.read_bytes()[:60])  # then the file is cut off (a copy still arriving, a bad disk)
    with pytest.raises(DataError) as failed:
        train(TrainConfig(dataset=str(root), **RUN), data)
    message = str(failed.value)
    assert f"cannot read image {broken}" in message and "\n" not in message
    (run,) = MlflowClient(tracking).search_runs([MlflowClient(tracking).get_experiment_by_name("aetrack").experiment_id])
    assert run.info.status == "FAILED"


# Tables (aetrack/data/table_streams.py): one checked pass over the file into a row cache, rows read
# back per batch; the statistics, digest and losses are those of the same table in memory.

def table(tmp_path, suffix: str = ".csv", n: int = 40):
    from tests.helpers.data import table_frame, write_table

    frame = table_frame(n, seed=3)
    return write_table(tmp_path / f"rows{suffix}", frame), frame


def in_memory_split(frame, seed: int = 0, fraction: float = 0.1):
    """The training rows and labels as sources' hold-out cuts them from an array in memory."""
    n = len(frame)
    order = np.random.default_rng(seed).permutation(n)
    train = np.sort(order[int(round(fraction * n)):])
    labels = np.array([("ham", "spam").index(k) for k in frame["kind"]], np.int64)
    return frame[["a", "b", "c"]].to_numpy(np.float64)[train], labels[train]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_streams_with_the_statistics_and_digest_of_the_table_in_memory(tmp_path, suffix):
    import hashlib

    from aetrack.data.table_streams import StreamedTable

    path, frame = table(tmp_path, suffix)
    data = load_dataset(str(path), label_column="kind")
    assert data.streamed and isinstance(data.x_train, StreamedTable) and data.train_count == 36
    assert isinstance(data.x_test, np.ndarray) and data.x_test.shape == (4, 3)
    rows, labels = in_memory_split(frame)
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    std[std == 0] = 1.0
    np.testing.assert_allclose(data.spec.feature_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(data.spec.feature_std, std, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(data.x_train), ((rows - mean) / std).astype(np.float32))
    np.testing.assert_array_equal(data.y_train, labels)
    assert data.train_sha256 == hashlib.sha256(rows.tobytes() + labels.tobytes()).hexdigest()
    # Filtering and first-N apply to the stream's rows.
    kept = load_dataset(str(path), train_samples=5, normal_labels=("spam",), label_column="kind")
    np.testing.assert_array_equal(kept.x_train.stored(), rows[labels == 1][:5])
    assert kept.train_count == 5 and set(kept.y_train) == {1}


@pytest.mark.slow  # two real trainings
def test_a_table_run_streams_and_trains_as_the_same_rows_in_memory(tracking, tmp_path):
    from aetrack.train import train

    path, _ = table(tmp_path)
    data = load_dataset(str(path), label_column="kind")
    config = TrainConfig(dataset=str(path), label_column="kind", **RUN)
    streamed = train(config, data)
    in_memory = train(config, replace(data, x_train=np.asarray(data.x_train)))
    np.testing.assert_allclose(streamed.history["loss"], in_memory.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(streamed.history["val_loss"], in_memory.history["val_loss"], rtol=1e-6)


def test_streamed_table_batches_come_in_the_in_memory_order_and_the_cache_goes_with_the_stream(tmp_path):
    import gc
    import os

    data = load_dataset(str(table(tmp_path, ".parquet", n=15)[0]), label_column="kind")
    assert_streamed_order_is_in_memory_order(data.x_train, [5, 5, 3])
    # The cache file goes with the last stream of it (a pipeline keeps its stream: then at exit).
    other = load_dataset(str(tmp_path / "rows.parquet"), label_column="kind")
    cache = other.x_train.cache.path
    assert os.path.getsize(cache) == 15 * 3 * 8  # the whole file's features, float64
    del other
    gc.collect()
    assert not os.path.exists(cache)


@pytest.mark.parametrize("column, cell, expected", [
    ("b", "nan", "column 'b' row 11 of rows.csv is nan; expected finite numbers in every feature cell"),
    ("b", "x", "column 'b' is not numeric"),
    ("kind", None, "label column 'kind' row 11 of rows.csv is empty; expected a label in every row"),
])
def test_a_bad_cell_in_a_later_chunk_is_one_line_before_the_run(tmp_path, monkeypatch, column, cell, expected):
    from aetrack.data import tables

    monkeypatch.setattr(tables, "CHUNK_ROWS", 4)  # the cell lies in the third chunk
    path, frame = table(tmp_path, n=12)
    frame = frame.astype({column: object})
    frame.loc[10, column] = cell
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as failed:
        load_dataset(str(path), label_column="kind")
    assert expected in str(failed.value) and "\n" not in str(failed.value)


def test_class_names_read_chunk_by_chunk_are_the_whole_files_classes(tmp_path, monkeypatch):
    from aetrack.data import tables

    monkeypatch.setattr(tables, "CHUNK_ROWS", 3)
    path, frame = table(tmp_path, n=12)
    frame["kind"] = ["spam"] * 3 + ["ham", "eggs", "spam"] * 3  # the first chunk has one class
    frame.to_csv(path, index=False)
    data = load_dataset(str(path), label_column="kind", validation_split=0.25)
    everything = tables.read_table(str(path), "kind")
    assert data.spec.label_names == everything.spec.label_names == ("eggs", "ham", "spam")
    names = np.array(data.spec.label_names)[everything.y_train]
    np.testing.assert_array_equal(names, frame["kind"].to_numpy())
