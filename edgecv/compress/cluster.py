"""Weight clustering with TFMOT: each kernel keeps only N distinct values, which gzip then packs tightly.

Clustering does not change the file size by itself (every weight is still stored); it buys the compressed
size, like pruning does, and keeps accuracy better at the same gain for some layers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgecv._tf import tfmot
from edgecv.config import FinetuneConfig, Optimizer
from edgecv.data.datasets import Dataset
from edgecv.errors import ConfigError
from edgecv.progress import ProgressFn, ignore
from edgecv.compress.prune import PRUNABLE
from edgecv.train.fit import evaluate, fine_tune


@dataclass
class ClusterResult:
    model: object  # stripped tf_keras model
    unique_values: dict[str, int]  # distinct values in each clustered kernel
    test_accuracy: float
    seconds: float


def cluster_finetune(config: FinetuneConfig) -> FinetuneConfig:
    """Adam at 1e-5, as TFMOT's clustering guide has it. A centroid's gradient is the sum over every weight
    in its cluster (about 18,000 per centroid in seed-cnn's fc1), so SGD at 1e-3 moved fc1's 16 centroids
    onto 3 values and the model to chance (measured on CIFAR-10); Adam normalises the step."""
    return replace(config, optimizer=Optimizer.ADAM, learning_rate=1e-5)


def check_clusters(clusters: int) -> None:
    """Before any loading: one centroid per kernel is no clustering."""
    if clusters < 2:
        raise ConfigError(f"cluster count must be >= 2, got {clusters}")


def cluster(model, dataset: Dataset, clusters: int, config: FinetuneConfig = FinetuneConfig(),
            on_progress: ProgressFn = ignore) -> ClusterResult:
    """Clusters every kernel of a copy of ``model`` into ``clusters`` centroids (k-means++ start), fine-tunes,
    strips the wrappers (a Keras 3 model is rebuilt in tf-keras first, for TFMOT)."""
    from edgecv.compress.keras3 import to_tf_keras

    check_clusters(clusters)
    model = to_tf_keras(model)
    api = tfmot().clustering.keras

    def wrap(layer):
        if type(layer).__name__ in PRUNABLE:
            return api.cluster_weights(layer, number_of_clusters=clusters,
                                       cluster_centroids_init=api.CentroidInitialization.KMEANS_PLUS_PLUS)
        return layer

    wrapped, seconds = fine_tune(model, wrap, dataset, config, "cluster", on_progress)
    stripped = api.strip_clustering(wrapped)
    unique = {layer.name: int(len(np.unique(np.asarray(layer.weights[0]))))
              for layer in stripped.layers if type(layer).__name__ in PRUNABLE and layer.weights}
    return ClusterResult(stripped, unique, evaluate(stripped, dataset.x_test, dataset.y_test), seconds)
