"""Where a run trains: one device (`strategy=default`) or `tf.distribute.MirroredStrategy`
(`strategy=mirrored`) over all local GPUs, the devices listed in `AETRACK_MIRRORED_DEVICES`, or,
without GPUs, the logical CPU devices.

`AETRACK_CPU_DEVICES=N` splits the CPU into N logical devices when a mirrored run sets up its
devices, to try (and test) mirrored training on a machine without GPUs. TensorFlow allows that only
before it has initialised its devices, so it works for a fresh process (`aetrack train`, `mlflow run`).

Keras 3's `fit` under MirroredStrategy fails with `steps_per_execution` > 1 (keras-team/keras#19246),
so a mirrored run uses 1 and records it. MultiWorkerMirroredStrategy does not work with Keras 3's
`fit` (keras-team/keras#20585) and is not offered.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager
from typing import Iterator

from aetrack.config import TrainConfig
from aetrack.errors import RunError

CPU_DEVICES_ENV = "AETRACK_CPU_DEVICES"
MIRRORED_DEVICES_ENV = "AETRACK_MIRRORED_DEVICES"
MIRRORED_STEPS_PER_EXECUTION = 1


def for_strategy(config: TrainConfig) -> TrainConfig:
    """The config a run really trains with: steps_per_execution 1 under MirroredStrategy."""
    if config.strategy == "mirrored" and config.steps_per_execution != MIRRORED_STEPS_PER_EXECUTION:
        return dataclasses.replace(config, steps_per_execution=MIRRORED_STEPS_PER_EXECUTION)
    return config


@contextmanager
def distribution_scope(config: TrainConfig) -> Iterator[list[str]]:
    """Build and compile the model inside this; yields the devices the run trains on."""
    import tensorflow as tf

    if config.strategy == "default":
        yield [(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name]
        return
    _split_cpu()
    listed = [d.strip() for d in os.environ.get(MIRRORED_DEVICES_ENV, "").split(",") if d.strip()]
    devices = listed or [d.name for d in tf.config.list_logical_devices("GPU")] or \
        [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    with strategy.scope():
        yield list(strategy.extended.worker_devices)


def _split_cpu() -> None:
    wanted = os.environ.get(CPU_DEVICES_ENV, "").strip()
    if not wanted:
        return
    import tensorflow as tf

    if not wanted.isdigit() or not 1 <= int(wanted) <= 64:
        raise RunError(f"invalid {CPU_DEVICES_ENV} {wanted!r}: expected a number of logical CPU devices, 1 to 64")
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [None]) == int(wanted):
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(wanted))
    except RuntimeError:
        raise RunError(f"{CPU_DEVICES_ENV}={wanted}: TensorFlow had already set up its devices in this "
                       "process; set it for a fresh process") from None
