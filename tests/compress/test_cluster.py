import numpy as np
import pytest

from edgecv.compress.cluster import cluster
from edgecv.config import FinetuneConfig, Optimizer
from edgecv.errors import ConfigError
from edgecv.compress.quantize import calibration_images, convert
from edgecv.runtime import file_sizes

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

FAST = FinetuneConfig(epochs=1, batch_size=32, learning_rate=3e-4, optimizer=Optimizer.ADAM)


def test_every_kernel_has_at_most_n_values_and_gzips_smaller(tiny_trained, tiny_dataset):
    result = cluster(tiny_trained.model, tiny_dataset, 8, FAST)
    assert set(result.unique_values) == {"conv1", "conv2", "fc1", "classifier"}
    for layer in result.model.layers:
        if layer.name in result.unique_values:
            assert len(np.unique(layer.get_weights()[0])) <= 8
    assert result.test_accuracy > 0.7
    cal = calibration_images(tiny_dataset, 50)
    plain_gz = file_sizes(convert(tiny_trained.model, "float32", cal))[1]
    clustered_gz = file_sizes(convert(result.model, "float32", cal))[1]
    assert clustered_gz < 0.6 * plain_gz


def test_cluster_count_below_two_is_refused(tiny_trained, tiny_dataset):
    with pytest.raises(ConfigError, match=">= 2"):
        cluster(tiny_trained.model, tiny_dataset, 1, FAST)
