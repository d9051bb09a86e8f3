"""Training under a tf.distribute strategy: all local devices, or several machines described by TF_CONFIG.

``default`` keeps TensorFlow's own single-device path (and its numbers). ``mirrored`` replicates the model on
every local device. ``multi-worker`` runs one process per machine; each reads its role from ``TF_CONFIG``, and
the global batch is split across them. MultiWorkerMirroredStrategy must exist before other TensorFlow
work in the process, so it is made once, first, and reused.
"""

from __future__ import annotations

import contextlib
import json
import os
from functools import cache

import numpy as np

from edgecv._tf import tf
from edgecv.config import Strategy
from edgecv.errors import ConfigError


@cache
def get_strategy(name: Strategy | str):
    name = Strategy(name)
    if name is Strategy.DEFAULT:
        return None
    if name is Strategy.MIRRORED:
        return tf().distribute.MirroredStrategy()
    config = os.environ.get("TF_CONFIG")
    try:
        cluster = json.loads(config)["cluster"] if config else None
    except (ValueError, KeyError, TypeError):
        raise ConfigError("TF_CONFIG is not valid JSON with a 'cluster': see the two-machine example in docs/data.md") from None
    if not cluster:
        raise ConfigError("multi-worker needs TF_CONFIG describing the cluster and this worker's task")
    return tf().distribute.MultiWorkerMirroredStrategy()


def scope(name: Strategy | str):
    """Where models are built and compiled: the strategy's scope, or nothing for the default."""
    strategy = get_strategy(name)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def fit(model, x: np.ndarray, y: np.ndarray, *, batch_size: int, epochs: int, callbacks: list, strategy,
        seed: int = 0, validation=None):
    """``model.fit`` on in-memory arrays; under a strategy through a seeded, shuffled tf.data pipeline, which
    the strategy shards across workers."""
    if Strategy(strategy) is Strategy.DEFAULT:
        return model.fit(x, y, batch_size=batch_size, epochs=epochs, validation_data=validation, shuffle=True,
                         verbose=0, callbacks=callbacks)
    data = tf().data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(batch_size)
    if validation is not None:
        validation = tf().data.Dataset.from_tensor_slices(validation).batch(batch_size)
    return model.fit(data, epochs=epochs, validation_data=validation, verbose=0, callbacks=callbacks)
