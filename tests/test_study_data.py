"""Sweep workers share one study only when they train on the same kind of samples: the first
worker publishes its data's sample shape, and a worker with other data is refused in one line."""

import optuna
import pytest

from aetrack.config import SweepConfig
from aetrack.names import SAMPLE_SHAPE_ATTR
from aetrack.sweep.parent import join_parent, publish_parent
from aetrack.sweep.result import SweepError


def test_a_worker_with_samples_of_another_shape_cannot_join_the_study():
    study = optuna.create_study(study_name="shapes", storage=optuna.storages.InMemoryStorage())
    sweep = SweepConfig()
    publish_parent(study, "parent-run", sweep, "code_size=4|8", "28x28x1")
    assert study.user_attrs[SAMPLE_SHAPE_ATTR] == "28x28x1"
    assert join_parent(study, sweep, "code_size=4|8", "28x28x1") == "parent-run"
    assert join_parent(study, sweep, "code_size=4|8", "") == "parent-run"  # trials load their own data
    with pytest.raises(SweepError) as info:
        join_parent(study, sweep, "code_size=4|8", "8x8x1")
    assert str(info.value) == ("invalid dataset: its samples have shape 8x8x1 but study 'shapes' trains on samples "
                               "of shape 28x28x1; expected the same data as the study's first worker")
    assert info.value.exit_code == 2
