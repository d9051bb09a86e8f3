"""Distillation by soft targets: a teacher's predictions on the train images, mixed into the one-hot labels
before training starts.

Computed once, so each student step costs what it costs without a teacher (a teacher run beside the student
would add its forward pass to every step, on the same two cores). The price: a shifted view keeps the target
of the unshifted image. When the student trains on flips, the teacher scores each image and its mirror and the
two are averaged, so both views share one target; without flips (classes a mirror would change, like left and
right) the teacher scores the image alone.
"""

from __future__ import annotations

import numpy as np

from edgecv.errors import ConfigError


def soft_targets(teacher, x: np.ndarray, temperature: float = 1.0, mirror: bool = True,
                 batch_size: int = 500) -> np.ndarray:
    """(N, classes) targets: the teacher's probabilities (averaged with those of the mirror image when
    ``mirror``) raised to ``1 / temperature`` and normalised again. For one view that is
    softmax(logits / temperature): above 1 the runner-up classes carry more of the mass.

    Raises:
        ConfigError: the teacher's outputs are not probabilities (it ends in logits, not a softmax).
    """
    chunks = []
    for i in range(0, len(x), batch_size):
        batch = np.asarray(x[i : i + batch_size], dtype=np.float32)
        views = np.concatenate([batch, batch[:, :, ::-1]]) if mirror else batch
        scores = np.asarray(teacher.predict_on_batch(views), dtype=np.float64)
        chunks.append((scores[: len(batch)] + scores[len(batch) :]) / 2 if mirror else scores)
    probs = np.concatenate(chunks) if chunks else np.zeros((0, 0))
    if probs.size and (probs.min() < -1e-6 or np.abs(probs.sum(axis=1) - 1).max() > 1e-3):
        raise ConfigError("the teacher's outputs are not probabilities (rows must be >= 0 and sum to 1): "
                          "end it in a softmax")
    probs = np.clip(probs, 1e-12, 1.0) ** (1.0 / temperature)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def mix(one_hot: np.ndarray, soft: np.ndarray, weight: float) -> np.ndarray:
    """The labels a distilled student trains on: ``weight`` of the teacher's targets, the rest one-hot. The
    loss (cross-entropy) is linear in its targets, so this is the weighted sum of the two losses."""
    if soft.shape != one_hot.shape:
        raise ConfigError(f"the teacher predicts {soft.shape[1]} classes, the data set has {one_hot.shape[1]}")
    return ((1.0 - weight) * one_hot + weight * soft).astype(np.float32)
