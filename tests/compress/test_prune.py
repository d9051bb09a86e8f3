import numpy as np
import pytest

from edgecv.config import PruneConfig
from edgecv.compress.prune import kernel_sparsity, model_sparsity, prune, schedule_steps

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


@pytest.mark.parametrize("total", [1, 7, 32, 100, 1563, 7820])
def test_schedule_reaches_its_target_inside_the_fine_tune(total):
    end_step, frequency = schedule_steps(total)
    assert 1 <= frequency <= 100
    assert end_step % frequency == 0  # TFMOT prunes only on multiples of the frequency
    assert end_step <= max(total, frequency)
    assert end_step // frequency >= min(total, 10) or total < 20


def test_pruning_reaches_the_measured_target_and_leaves_the_parent_alone(tiny_trained, tiny_dataset):
    parent = tiny_trained.model
    before = [w.copy() for w in parent.get_weights()]
    result = prune(parent, tiny_dataset, PruneConfig(sparsity=0.5, epochs=2, batch_size=32))
    assert result.sparsity == pytest.approx(0.5, abs=0.02)
    for layer in result.layers:
        assert layer.sparsity == pytest.approx(0.5, abs=0.05), layer
    assert model_sparsity(result.model) == pytest.approx(result.sparsity)
    assert all(type(layer).__name__ != "PruneLowMagnitude" for layer in result.model.layers)  # stripped
    for w0, w1 in zip(before, parent.get_weights()):
        assert np.array_equal(w0, w1)
    assert result.test_accuracy > 0.6


def test_short_fine_tunes_still_prune(tiny_trained, tiny_dataset):
    """8 steps in all: TFMOT's default frequency (100) would leave every weight in place."""
    result = prune(tiny_trained.model, tiny_dataset.subset(128, 16), PruneConfig(sparsity=0.7, epochs=2, batch_size=32))
    assert result.sparsity == pytest.approx(0.7, abs=0.03)


def test_kernel_sparsity_counts_kernels_only(tiny_trained):
    layers = kernel_sparsity(tiny_trained.model)
    assert [s.layer for s in layers] == ["conv1", "conv2", "fc1", "classifier"]
    assert all(s.zeros == 0 for s in layers)
