"""Training batches whose order is a pure function of (seed, epoch), so a resumed run sees exactly
the batches the same run never stopped would have seen.

Keras' own `shuffle=True` draws each epoch's order from TensorFlow's stateful random ops inside its
tf.data pipeline: the order depends on how the pipeline and the global seed were set up, not on
the epoch number, so a fit restarted at epoch k cannot reproduce epochs k+1.. (and with a global
seed it even repeats one order every epoch). Here each epoch's permutation comes from a stateless
draw keyed by (seed, epoch); a callback tells the pipeline which epoch begins.

Arrays in memory are gathered from a constant (`shuffled_batches`); a streamed split
(`Streamed`: an image folder's files, a table's rows) reads each batch in the pipeline (`streamed_batches`), in the same
order for the same (seed, epoch).
"""

from __future__ import annotations

import math
import os

import keras
import numpy as np
import tensorflow as tf

from aetrack.data.streams import Streamed
from aetrack.noise import RunNoise

# A streamed split's batches decoded at once, and decoded ahead of the one training: fixed, not
# AUTOTUNE, whose buffers may grow towards half the machine's memory while the model is the
# bottleneck; so at most DECODE_PARALLEL + PREFETCH_BATCHES + 1 batches are in memory.
DECODE_PARALLEL = max(1, min(8, os.cpu_count() or 1))
PREFETCH_BATCHES = 2


class EpochOrder(keras.callbacks.Callback):
    """Sets the epoch the batch pipeline shuffles for, before Keras opens that epoch's iterator."""

    def __init__(self, epoch: tf.Variable):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


def epoch_permutation(count: int, seed: int, epoch) -> tf.Tensor:
    """The order of `count` samples in `epoch` (0-based) of a run seeded `seed`."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.argsort(tf.random.stateless_uniform([count], seed=key))


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tuple[tf.data.Dataset, EpochOrder]:
    """(dataset of (x, y) batches, the callback fit needs to move it to each epoch's order).

    Keras makes a fresh iterator of the dataset every epoch (no steps_per_epoch is given), after
    `on_epoch_begin`; each iterator reads the epoch variable once and batches that permutation, the
    last batch partial, as Keras' own batching does.
    """
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="aetrack_epoch")
    count = len(x)
    inputs = tf.constant(x)
    targets = inputs if y is x else tf.constant(y)
    indices = tf.data.Dataset.range(1).map(lambda _: epoch_permutation(count, seed, epoch.read_value()))
    batches = indices.flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
    dataset = batches.map(lambda idx: (tf.gather(inputs, idx), tf.gather(targets, idx)),
                          num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(math.ceil(count / batch_size)))
    return dataset.prefetch(tf.data.AUTOTUNE), EpochOrder(epoch)


def streamed_batches(images: Streamed, batch_size: int, seed: int,
                     noise: RunNoise | None = None) -> tuple[tf.data.Dataset, EpochOrder]:
    """As `shuffled_batches`, for a split read from its files: each batch of sample indices (the same
    (seed, epoch) permutation) is decoded (images) or read (table rows) by `images.rows` in the pipeline, in parallel and in
    order, then prefetched; only a few batches are in memory at a time (see DECODE_PARALLEL).

    With `noise`, inputs get per-sample noise keyed by (seed, sample index) (RunNoise.training_rows)
    and targets stay clean. A file that fails to decode stops the pipeline; `images.failures` keeps
    its one-line message (runner.fit raises it as a DataError).
    """
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="aetrack_epoch")
    count, size = len(images), images.spec.size
    images.failures.clear()  # a failure an earlier fit of the same split met is not this one's

    def clean(idx: np.ndarray) -> np.ndarray:
        return images.rows(idx)

    def noisy(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = images.rows(idx)
        return noise.training_rows(rows, idx), rows

    def read(idx):
        if noise is None:
            x = tf.numpy_function(clean, [idx], tf.float32, name="aetrack_decode")
            x.set_shape([None, size])
            return x, x
        x, y = tf.numpy_function(noisy, [idx], (tf.float32, tf.float32), name="aetrack_decode_noisy")
        x.set_shape([None, size])
        y.set_shape([None, size])
        return x, y

    indices = tf.data.Dataset.range(1).map(lambda _: epoch_permutation(count, seed, epoch.read_value()))
    batches = indices.flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
    dataset = batches.map(read, num_parallel_calls=DECODE_PARALLEL, deterministic=True)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(math.ceil(count / batch_size)))
    return dataset.prefetch(PREFETCH_BATCHES), EpochOrder(epoch)
