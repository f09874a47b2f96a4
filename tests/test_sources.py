"""Datasets of any shape (aetrack/data): image folders, tables, .npz/.npy of other shapes and
scikit-learn's digits, read from small real files; the spec and the values read back."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aetrack.config import ConfigError, TrainConfig
from aetrack.data import check_dataset_spec, dataset_for, load_dataset
from aetrack.data.named import MAKE_TARGET_ENV
from aetrack.errors import DataError
from tests.helpers.data import offline, pixels, table_frame, write_image_folder, write_npz, write_table


def test_rgb_folder_with_class_subfolders_and_splits(tmp_path):
    train = write_image_folder(tmp_path / "pets" / "train", classes=("dog", "cat"), per_class=3)
    test = write_image_folder(tmp_path / "pets" / "test", classes=("cat", "dog"), per_class=1, seed=10)
    data = load_dataset(str(tmp_path / "pets"))
    assert data.spec.kind == "image" and data.spec.shape == (6, 5, 3) and data.spec.value_range == (0.0, 1.0)
    assert data.spec.label_names == ("cat", "dog") and data.name == "pets"
    np.testing.assert_array_equal(data.y_train, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(data.y_test, [0, 1])
    expected = np.stack(list(train.values())).reshape(6, -1).astype(np.float32) / 255.0
    np.testing.assert_array_equal(data.x_train, expected)
    np.testing.assert_array_equal(data.x_test[1], test["dog/000.png"].reshape(-1) / np.float32(255))
    # Class names exclude by name; the test split keeps them.
    without_dogs = load_dataset(str(tmp_path / "pets"), exclude_digits=("dog",))
    assert without_dogs.excluded_labels == (1,) and list(without_dogs.y_train) == [0, 0, 0]
    assert list(without_dogs.y_test) == [0, 1]


def test_unlabelled_grayscale_folder_holds_out_a_seeded_test_split(tmp_path):
    written = write_image_folder(tmp_path / "scans", classes=(), per_class=8, size=(4, 3), channels=1)
    a = load_dataset(str(tmp_path / "scans"), validation_split=0.25, seed=1)
    assert a.spec.shape == (4, 3, 1) and a.spec.label_names == () and a.y_train is None and a.y_test is None
    assert (len(a.x_train), len(a.x_test)) == (6, 2)
    every = np.stack(list(written.values())).reshape(8, -1).astype(np.float32) / 255.0
    rows = {r.tobytes() for r in np.concatenate([a.x_train, a.x_test])}
    assert rows == {r.tobytes() for r in every}  # each image once, in one split
    b = load_dataset(str(tmp_path / "scans"), validation_split=0.25, seed=1)
    assert a.test_sha256 == b.test_sha256
    assert a.test_sha256 != load_dataset(str(tmp_path / "scans"), validation_split=0.25, seed=2).test_sha256


def test_image_size_and_color_mode(tmp_path):
    write_image_folder(tmp_path / "mixed" / "a", classes=(), per_class=2, size=(6, 5))
    write_image_folder(tmp_path / "mixed" / "b", classes=(), per_class=2, size=(3, 3))
    with pytest.raises(DataError, match=r"different sizes \(3x3, 6x5\); expected one size, or set image_size"):
        load_dataset(str(tmp_path / "mixed"))
    config = TrainConfig(dataset=str(tmp_path / "mixed"), image_size="4x2", color_mode="grayscale")
    data = dataset_for(config)
    assert data.spec.shape == (4, 2, 1) and data.x_train.shape[1] == 8 and data.spec.label_names == ("a", "b")


def test_csv_with_string_labels_is_a_standardised_table(tmp_path):
    frame = table_frame(20)
    path = write_table(tmp_path / "mail.csv", frame)
    data = load_dataset(str(path), label_column="kind", validation_split=0.2, seed=3)
    spec = data.spec
    assert spec.kind == "table" and spec.shape == (3,) and spec.value_range is None
    assert spec.feature_names == ("a", "b", "c") and spec.label_names == ("ham", "spam")
    assert (len(data.x_train), len(data.x_test)) == (16, 4)
    assert spec.feature_std[2] == 1.0  # a constant column is not divided by 0
    # Rows read back: un-standardise and find them in the file, with their labels.
    raw = np.asarray(data.x_train, np.float64) * spec.feature_std + spec.feature_mean
    rows = frame[["a", "b", "c"]].to_numpy()
    index = [int(np.argmin(np.abs(rows - r).sum(axis=1))) for r in raw]
    np.testing.assert_allclose(raw, rows[index], atol=1e-5)
    np.testing.assert_array_equal(data.y_train, [("ham", "spam").index(k) for k in frame["kind"].iloc[index]])
    np.testing.assert_allclose(spec.feature_mean, rows[index].mean(axis=0))  # the training split's stats
    np.testing.assert_allclose(np.asarray(data.x_train).mean(axis=0), [0, 0, 0], atol=1e-6)


def test_parquet_folder_with_a_test_file_uses_training_stats(tmp_path):
    train, test = table_frame(12, labels=()), table_frame(5, seed=1, labels=())
    train["label"], test["label"] = np.arange(12) % 3, np.arange(5) % 3
    write_table(tmp_path / "t" / "train.parquet", train)
    write_table(tmp_path / "t" / "test.parquet", test[["label", "c", "b", "a"]])  # column order may differ
    data = load_dataset(str(tmp_path / "t"), label_column="label")
    mean, std = train[["a", "b", "c"]].mean().to_numpy(), train[["a", "b", "c"]].std(ddof=0).to_numpy().copy()
    std[2] = 1.0
    np.testing.assert_allclose(data.x_test, (test[["a", "b", "c"]].to_numpy() - mean) / std, rtol=1e-5)
    assert data.spec.label_names == () and list(data.y_test) == [0, 1, 2, 0, 1]


@pytest.mark.parametrize("x,value_range,scaled", [
    (np.arange(40, dtype=np.uint8).reshape(10, 4), (0.0, 1.0), False),
    (np.linspace(0, 1, 40).reshape(10, 4), (0.0, 1.0), False),
    (np.linspace(-5, 9, 40).reshape(10, 4), None, True),
])
def test_npz_rows_are_tables(tmp_path, x, value_range, scaled):
    path = tmp_path / "rows.npz"
    np.savez(path, x_train=x[:8], x_test=x[8:])
    data = load_dataset(str(path))
    assert data.spec.kind == "table" and data.spec.shape == (4,) and data.spec.value_range == value_range
    assert data.spec.scaled == scaled and data.y_train is None
    if x.dtype == np.uint8:
        np.testing.assert_array_equal(data.x_test, x[8:].astype(np.float32) / 255)
    elif not scaled:
        np.testing.assert_array_equal(data.x_test, x[8:].astype(np.float32))
    else:
        np.testing.assert_allclose(data.x_test, (x[8:] - x[:8].mean(0)) / x[:8].std(0), rtol=1e-5)


def test_npz_colour_images_and_npy(tmp_path):
    x = pixels(6, 4, 4, 3)
    np.savez(tmp_path / "colour.npz", x_train=x[:4], y_train=np.array([0, 1, 2, 1]), x_test=x[4:],
             y_test=np.array([2, 0]))
    data = load_dataset(str(tmp_path / "colour.npz"))
    assert data.spec.shape == (4, 4, 3) and data.x_train.shape == (4, 48)
    np.testing.assert_array_equal(data.x_test, x[4:].reshape(2, 48).astype(np.float32) / 255)
    np.save(tmp_path / "alone.npy", x)
    alone = load_dataset(str(tmp_path / "alone.npy"), validation_split=0.5)
    assert alone.spec.shape == (4, 4, 3) and (len(alone.x_train), len(alone.x_test)) == (3, 3)
    assert alone.y_train is None and alone.name == "alone"


def test_digits_come_with_scikit_learn():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    assert data.spec.shape == (8, 8, 1) and (len(data.x_train), len(data.x_test)) == (1500, 297)
    images = load_digits().images
    np.testing.assert_array_equal(data.x_test[-1], images[-1].reshape(64).astype(np.float32) / 16)
    assert data.x_train.max() == 1.0 and data.source == "sklearn.datasets.load_digits"
    assert load_dataset("digits", exclude_digits=(3,)).excluded_labels == (3,)


@pytest.mark.parametrize("target,entry_point", [("run", "basic"), ("denoise", "denoise")])
def test_offline_error_under_make_says_what_works_in_makes_terms(monkeypatch, tmp_path, target, entry_point):
    """`make run` without network: the one line names `make run DATASET=digits`, and the Makefile
    really turns that into the entry point's `-P dataset=digits` (its recipe, read by `make -n`)."""
    # make -n prints the recipe without running it; the outer make's flags (under `make test`) stay out.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    recipe = subprocess.run(["make", "-n", "-o", ".venv/.installed", target, "DATASET=digits"], env=env,
                            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True)
    words = shlex.split(recipe.stdout.replace("\\\n", " "))
    assert words[0] == f"{MAKE_TARGET_ENV}={target}" and words[1].endswith("/mlflow") and words[2] == "run"
    assert words[words.index("-e") + 1] == entry_point and "dataset=digits" in words
    monkeypatch.setenv(MAKE_TARGET_ENV, target)
    offline(monkeypatch, tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", 10, 10)
    text = str(info.value)
    assert text.startswith("could not download dataset 'mnist'") and "\n" not in text
    assert f"make {target} DATASET=digits (scikit-learn's bundled 8x8 digits" in text
    assert f"make {target} DATASET=/path/to/mnist.npz" in text
    assert "--dataset" not in text and "-P " not in text  # nothing make cannot pass
    # ...and what it names works: digits load with no download.
    assert load_dataset("digits", 10, 10).spec.shape == (8, 8, 1)


def test_default_sample_counts(tmp_path):
    tutorial = load_dataset(str(write_npz(tmp_path / "mnist.npz", n_train=40, n_test=120)))
    assert (len(tutorial.x_train), len(tutorial.x_test)) == (40, 100)  # mnist's 100 test images
    many = tmp_path / "many.npz"
    np.savez(many, x_train=np.zeros((5, 1), np.float32), x_test=np.zeros((10_001, 1), np.float32))
    assert len(load_dataset(str(many)).x_test) == 10_000  # the in-memory evaluation cap
    assert len(load_dataset(str(many), test_samples=10_001).x_test) == 10_001
    with pytest.raises(DataError, match=r"train_samples 6: .* has only 5 training rows; expected train_samples <= 5$"):
        load_dataset(str(many), train_samples=6)


@pytest.fixture
def rgb_folder(tmp_path):
    write_image_folder(tmp_path / "pics", classes=("a", "b"), per_class=2, size=(3, 3))
    return tmp_path / "pics"


def _message(spec, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(str(spec), **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_bad_image_folders(tmp_path, rgb_folder):
    (rgb_folder / "b" / "broken.png").write_bytes(b"not a png")
    assert f"cannot read image {rgb_folder / 'b' / 'broken.png'}" in _message(rgb_folder)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="folder holds no images"):
        check_dataset_spec(str(tmp_path / "empty"))
    write_image_folder(tmp_path / "split" / "train", classes=("a",), per_class=2)
    write_image_folder(tmp_path / "split" / "test", classes=("z",), per_class=1)
    assert "test class 'z' is not a training class" in _message(tmp_path / "split")
    assert "applies to image folders only" in _message(write_npz(tmp_path / "x.npz", 4, 2), image_size=(2, 2))


def test_bad_tables(tmp_path):
    frame = table_frame(6)
    frame["city"] = ["x"] * 6
    assert "column 'city' is not numeric (" in _message(write_table(tmp_path / "a.csv", frame),
                                                                 label_column="kind")
    frame = table_frame(6, labels=())
    frame.loc[3, "b"] = np.nan
    assert "column 'b' row 4 of b.csv is nan; expected finite numbers" in _message(write_table(tmp_path / "b.csv",
                                                                                                frame))
    text = _message(write_table(tmp_path / "c.csv", table_frame(6)), label_column="label")
    assert "no column 'label' for label_column; expected one of a, b, c, kind" in text
    write_table(tmp_path / "d" / "train.csv", table_frame(6, labels=()))
    write_table(tmp_path / "d" / "test.csv", table_frame(3, labels=()).rename(columns={"c": "z"}))
    assert "test.csv has columns a, b, z but train.csv a, b, c; expected the same columns" in _message(tmp_path / "d")


def test_exclude_labels_alias_and_conflict():
    assert TrainConfig(exclude_digits="7").excluded_labels == ("7",)
    assert TrainConfig(exclude_labels="cat, 7").excluded_labels == ("cat", "7")
    TrainConfig(exclude_labels="7", exclude_digits="7").validated()
    with pytest.raises(ConfigError, match="invalid exclude_labels '1': expected the same labels as exclude_digits"):
        TrainConfig(exclude_labels="1", exclude_digits="2").validated()
