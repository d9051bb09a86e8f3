"""The pieces of a training recipe beyond the classic one: batched augmentation, a warm-up + cosine rate
schedule, label smoothing.

Augmentation runs on whole batches on the training graph (one gather per batch, no per-image Python), in a
wrapper that exists only while training. Random draws are stateless, keyed by the seed and a batch counter:
a rerun sees the same images.
"""

from __future__ import annotations

import numpy as np

from edgecv._tf import keras, tf
from edgecv.config import Optimizer, Schedule, TrainConfig


def augment_batch(images, seed, shift: int):
    """Random horizontal flip and a shift of up to ``shift`` pixels (reflect-padded) per image.

    ``images`` is (N, H, W, C) of any dtype; ``seed`` a shape-(2,) int tensor. Labels are untouched.
    """
    t = tf()
    n, h, w = t.shape(images)[0], t.shape(images)[1], t.shape(images)[2]
    seeds = t.random.experimental.stateless_split(t.cast(seed, t.int64), 3)
    flip = t.random.stateless_uniform([n], seeds[0]) < 0.5
    images = t.where(flip[:, None, None, None], t.reverse(images, [2]), images)
    if shift <= 0:
        return images
    padded = t.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]], mode="REFLECT")
    dy = t.random.stateless_uniform([n], seeds[1], 0, 2 * shift + 1, dtype=t.int32)
    dx = t.random.stateless_uniform([n], seeds[2], 0, 2 * shift + 1, dtype=t.int32)
    rows = dy[:, None] + t.range(h)[None, :]
    cols = dx[:, None] + t.range(w)[None, :]
    images = t.gather(padded, rows, axis=1, batch_dims=1)
    return t.gather(images, cols, axis=2, batch_dims=1)


def training_data(x: np.ndarray, y: np.ndarray, config: TrainConfig):
    """One epoch of seeded, shuffled batches (uint8 images), reshuffled each time ``fit`` iterates it; returns
    (dataset, steps per epoch). Batches are gathered by shuffled indices, as Keras does for arrays.

    Finite and with one map call at a time on purpose: stopping early inside an endless or parallel pipeline
    under op determinism stalled the end of ``fit`` for 10-17 s (Keras' own array path does that too).
    """
    t = tf()
    steps = -(-len(x) // config.batch_size)
    images, labels = t.constant(x), t.constant(y)
    order = t.data.Dataset.range(len(x)).shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    data = order.batch(config.batch_size).map(lambda i: (t.gather(images, i), t.gather(labels, i)))
    return data.prefetch(t.data.AUTOTUNE), steps


def with_augmentation(model, config: TrainConfig):
    """A training-only wrapper: the augmentation as the first layer of the graph, in front of ``model``
    (which shares its weights and is what gets saved). ``training_data`` feeds it uint8 batches, and the flips
    and shifts run in the same thread pool as the convolutions: on two cores an augmenting tf.data map beside
    them cost a third of the throughput."""
    k, t = keras(), tf()
    seed, shift = config.seed, config.shift

    class Augment(k.layers.Layer):
        def build(self, input_shape):
            self.step = self.add_weight(name="step", shape=(), dtype="int64", trainable=False,
                                        initializer="zeros")

        def call(self, images, training=None):
            if not training:
                return images
            key = self.step.assign_add(1)  # a new draw every batch; the same sequence on a rerun
            return augment_batch(images, t.stack([t.constant(seed, t.int64), key]), shift)

    inputs = k.Input(shape=model.input_shape[1:], name="train_pixels")
    return k.Model(inputs, model(Augment(name="augment")(inputs)), name=f"{model.name}_augmented")


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """The rate (or schedule) the optimizer gets: constant, or linear warm-up then cosine decay to zero."""
    if config.schedule is Schedule.CONSTANT:
        return config.learning_rate
    total = max(1, steps_per_epoch * config.epochs)
    warmup = min(total - 1, int(round(steps_per_epoch * config.warmup_epochs)))
    return keras().optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate, decay_steps=total - warmup, alpha=0.0,
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup,
    )


def make_optimizer(name: Optimizer | str, rate):
    """``rate``: a float or a schedule."""
    name = Optimizer(name)
    if name is Optimizer.SGD:
        return keras().optimizers.SGD(learning_rate=rate)
    if name is Optimizer.NESTEROV:
        return keras().optimizers.SGD(learning_rate=rate, momentum=0.9, nesterov=True)
    return keras().optimizers.Adam(learning_rate=rate)


def loss(label_smoothing: float = 0.0):
    """Categorical cross-entropy on one-hot labels; smoothing moves ``label_smoothing`` of the target's
    mass evenly onto all classes, which keeps logits of a small model from growing without bound."""
    return keras().losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
