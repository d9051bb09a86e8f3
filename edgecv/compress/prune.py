"""Magnitude pruning with TFMOT: wrap the kernels, fine-tune while sparsity ramps up, strip the wrappers.

TFMOT only prunes every ``frequency`` steps and stops at ``end_step``; with its default frequency of 100 a
short fine-tune can finish at 0 % sparsity. The schedule here is fitted to the number of steps the
fine-tune really has, and the sparsity reported is the one measured in the weights afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecv._tf import tfmot
from edgecv.config import PruneConfig
from edgecv.data.datasets import Dataset
from edgecv.progress import ProgressFn, ignore
from edgecv.train.fit import evaluate, fine_tune

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


@dataclass(frozen=True)
class LayerSparsity:
    layer: str
    weights: int  # kernel weights (biases are never pruned)
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.weights if self.weights else 0.0


@dataclass
class PruneResult:
    model: object  # stripped tf_keras.Model, plain layers with zeros in the kernels
    layers: list[LayerSparsity]
    sparsity: float  # zeros over all kernel weights
    test_accuracy: float
    seconds: float
    end_step: int
    frequency: int


def schedule_steps(total_steps: int) -> tuple[int, int]:
    """Returns (end_step, frequency): at least ~20 pruning steps, the last a quarter before the end to recover."""
    frequency = max(1, min(100, total_steps // 20))
    end_step = max(frequency, int(total_steps * 0.75) // frequency * frequency)
    return end_step, frequency


def prune(model, dataset: Dataset, config: PruneConfig = PruneConfig(), on_progress: ProgressFn = ignore) -> PruneResult:
    """Prunes a copy of ``model`` to ``config.sparsity``; the model passed in is left untouched (a Keras 3 one is
    rebuilt in tf-keras first, for TFMOT)."""
    from edgecv.compress.keras3 import to_tf_keras

    model = to_tf_keras(model)
    steps = -(-len(dataset.x_train) // config.batch_size) * config.epochs
    end_step, frequency = schedule_steps(steps)
    sparsity_api = tfmot().sparsity.keras
    schedule = sparsity_api.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=config.sparsity, begin_step=0, end_step=end_step, frequency=frequency
    )

    def wrap(layer):
        if type(layer).__name__ in PRUNABLE:
            return sparsity_api.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    wrapped, seconds = fine_tune(model, wrap, dataset, config, "prune", on_progress,
                                 callbacks=(sparsity_api.UpdatePruningStep(),))
    stripped = sparsity_api.strip_pruning(wrapped)
    layers = kernel_sparsity(stripped)
    total = sum(s.weights for s in layers)
    return PruneResult(
        model=stripped,
        layers=layers,
        sparsity=sum(s.zeros for s in layers) / total if total else 0.0,
        test_accuracy=evaluate(stripped, dataset.x_test, dataset.y_test),
        seconds=seconds,
        end_step=end_step,
        frequency=frequency,
    )


def kernel_sparsity(model) -> list[LayerSparsity]:
    """Measured share of zeros in each prunable layer's kernel."""
    result = []
    for layer in model.layers:
        if type(layer).__name__ in PRUNABLE and layer.weights:
            kernel = np.asarray(layer.weights[0])
            result.append(LayerSparsity(layer.name, int(kernel.size), int(np.sum(kernel == 0))))
    return result


def count_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))


def model_sparsity(model) -> float:
    layers = kernel_sparsity(model)
    total = sum(s.weights for s in layers)
    return sum(s.zeros for s in layers) / total if total else 0.0
