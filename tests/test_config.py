import pytest

from edgecv.config import BenchConfig, CompressConfig, PruneConfig, QuantMode, TrainConfig
from edgecv.errors import ConfigError

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.2])
def test_sparsity_outside_zero_to_one_is_refused(sparsity):
    with pytest.raises(ConfigError, match=r"sparsity must be in \[0, 1\)"):
        PruneConfig(sparsity=sparsity)


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"batch_size": -1}, {"learning_rate": 0}, {"val_split": 1.0}])
def test_training_options_are_range_checked(kwargs):
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "resnet8", "late_pool": 1}, "lay out patchnet; resnet8"),
    ({"arch": "seed-cnn", "widths": (8, 16)}, "lay out patchnet; seed-cnn"),
    ({"arch": "patchnet", "widths": (24,)}, "a stem and at least one block"),
    ({"arch": "patchnet", "widths": (24, 0)}, "a stem and at least one block"),
    ({"arch": "patchnet", "late_pool": 3}, r"in \[0, 2\]"),
    ({"arch": "patchnet", "widths": (8, 16, 16, 16), "late_pool": 4}, r"in \[0, 3\]"),
    ({"arch": "dscnn", "separable": 1}, "lay out patchnet; dscnn"),
    ({"arch": "patchnet", "separable": 3}, r"--separable must be in \[0, 2\]"),
])
def test_patchnet_layout_options_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)
    assert TrainConfig(arch="patchnet", widths=(8, 16, 16, 16), late_pool=3).late_pool == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"distill": -0.1}, r"distillation weight must be in \[0, 1\]"),
    ({"distill": 1.5}, r"distillation weight must be in \[0, 1\]"),
    ({"distill": 0.5, "distill_temperature": 0.0}, "temperature must be > 0"),
])
def test_distillation_options_are_range_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)
    assert TrainConfig(distill=1.0, distill_temperature=4.0).distill == 1.0


def test_bench_and_compress_options_are_range_checked(tmp_path):
    with pytest.raises(ConfigError):
        BenchConfig(runs=0)
    with pytest.raises(ConfigError):
        CompressConfig(out=tmp_path, modes=())
    with pytest.raises(ConfigError):
        CompressConfig(out=tmp_path, train_limit=0)
    assert CompressConfig(out=tmp_path).modes == (QuantMode.INT8,)


def test_modes_are_closed_choices():
    with pytest.raises(ValueError):
        QuantMode("int4")
