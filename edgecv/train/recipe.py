"""The pieces of a training recipe beyond the classic one: batched augmentation (random or alternating
flips, shifts), a warm-up + cosine rate schedule, label smoothing, decoupled weight decay, a weight average
(EMA) and a whitening start for a patch stem.

Augmentation runs on whole batches on the training graph (one gather per batch, no per-image Python), in a
wrapper that exists only while training. Random draws are stateless, keyed by the seed and a batch counter:
a rerun sees the same images.
"""

from __future__ import annotations

import numpy as np

from edgecv._tf import keras, tf
from edgecv.config import Optimizer, Schedule, TrainConfig


def augment_batch(images, seed, shift: int, flip: bool = True):
    """Random horizontal flip (unless ``flip`` is False) and a shift of up to ``shift`` pixels
    (reflect-padded) per image.

    ``images`` is (N, H, W, C) of any dtype; ``seed`` a shape-(2,) int tensor. Labels are untouched.
    """
    t = tf()
    n, h, w = t.shape(images)[0], t.shape(images)[1], t.shape(images)[2]
    seeds = t.random.experimental.stateless_split(t.cast(seed, t.int64), 3)
    if flip:
        flipped = t.random.stateless_uniform([n], seeds[0]) < 0.5
        images = t.where(flipped[:, None, None, None], t.reverse(images, [2]), images)
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
    if config.alternate_flips:
        x = alternation_start(x, config.seed)
    images, labels = t.constant(x), t.constant(y)
    order = t.data.Dataset.range(len(x)).shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    data = order.batch(config.batch_size).map(lambda i: (t.gather(images, i), t.gather(labels, i)))
    return data.prefetch(t.data.AUTOTUNE), steps


def alternation_start(x: np.ndarray, seed: int) -> np.ndarray:
    """Half the images, chosen by ``seed``, mirrored once. With alternating flips the training graph mirrors
    every batch of odd epochs, so each image is seen flipped every other epoch, from a random start (airbench's
    alternating flip): over any two consecutive epochs, both views of every image, where random flips repeat
    some."""
    mirror = np.random.default_rng(seed).random(len(x)) < 0.5
    return np.where(mirror[:, None, None, None], x[:, :, ::-1], x)


def with_augmentation(model, config: TrainConfig, steps_per_epoch: int | None = None):
    """A training-only wrapper: the augmentation as the first layer of the graph, in front of ``model``
    (which shares its weights and is what gets saved). ``training_data`` feeds it uint8 batches, and the flips
    and shifts run in the same thread pool as the convolutions: on two cores an augmenting tf.data map beside
    them cost a third of the throughput. ``steps_per_epoch`` tells alternating flips where epochs end."""
    from edgecv._tf import keras_of

    k, t = keras_of(model), tf()
    seed, shift, alternate = config.seed, config.shift, config.alternate_flips
    if alternate and not steps_per_epoch:
        raise ValueError("alternating flips need steps_per_epoch: the epoch decides the flip")

    class Augment(k.layers.Layer):
        def build(self, input_shape):
            self.step = self.add_weight(name="step", shape=(), dtype="int64", trainable=False,
                                        initializer="zeros")

        def call(self, images, training=None):
            if not training:
                return images
            key = self.step.assign_add(1)  # a new draw every batch; the same sequence on a rerun
            if alternate:
                odd = ((key - 1) // steps_per_epoch) % 2 == 1
                images = t.cond(odd, lambda: t.reverse(images, [2]), lambda: images)
            return augment_batch(images, t.stack([t.constant(seed, t.int64), key]), shift, flip=not alternate)

    inputs = k.Input(shape=model.input_shape[1:], name="train_pixels")
    return k.Model(inputs, model(Augment(name="augment")(inputs)), name=f"{model.name}_augmented")


def learning_rate(config: TrainConfig, steps_per_epoch: int, k=None):
    """The rate (or schedule, of Keras ``k``: default tf-keras) the optimizer gets: constant, or linear warm-up
    then cosine decay to zero."""
    if config.schedule is Schedule.CONSTANT:
        return config.learning_rate
    total = max(1, steps_per_epoch * config.epochs)
    warmup = min(total - 1, int(round(steps_per_epoch * config.warmup_epochs)))
    return (k or keras()).optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate, decay_steps=total - warmup, alpha=0.0,
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup,
    )


NO_DECAY = ["bias", "gamma", "beta"]  # variable names weight decay leaves alone: biases and BN's scale and shift


def make_optimizer(name: Optimizer | str, rate, weight_decay: float = 0.0, ema: float = 0.0, k=None):
    """``rate``: a float or a schedule. ``weight_decay`` is decoupled from the loss: each step shrinks the
    kernels by ``rate * weight_decay`` (tf-keras scales it with the rate). ``ema``: the optimizer keeps an
    exponential average of the weights with this momentum per step and writes it into the model when ``fit``
    ends, so the saved weights are the average (BN statistics stay those of the raw weights). ``k``: the
    model's Keras (default tf-keras)."""
    name, k = Optimizer(name), k or keras()
    options = dict(learning_rate=rate, weight_decay=weight_decay or None, use_ema=ema > 0,
                   ema_momentum=ema or 0.99)
    if name is Optimizer.SGD:
        optimizer = k.optimizers.SGD(**options)
    elif name is Optimizer.NESTEROV:
        optimizer = k.optimizers.SGD(momentum=0.9, nesterov=True, **options)
    else:
        optimizer = k.optimizers.Adam(**options)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


def loss(label_smoothing: float = 0.0, k=None):
    """Categorical cross-entropy on one-hot labels; smoothing moves ``label_smoothing`` of the target's
    mass evenly onto all classes, which keeps logits of a small model from growing without bound."""
    return (k or keras()).losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def whiten_stem(model, x: np.ndarray, seed: int = 0, eps: float = 5e-4, sample: int = 5000) -> bool:
    """Sets a 2x2 patch stem (a layer named ``stem`` with a 2x2 kernel on the raw pixels) to whiten the
    train patches: its filters are the patch covariance's eigenvectors scaled by 1/sqrt(eigenvalue + eps),
    each with both signs (ReLU follows), the strongest first. Patches come from a seeded random ``sample``
    of ``x`` (image folders load sorted by class), as the model sees them, scaled to 0-1. A start only:
    unlike airbench's frozen whitening layer, the stem keeps training and BN follows it. Returns whether
    the model had such a stem."""
    try:
        stem = model.get_layer("stem")
    except ValueError:
        return False
    kernel = stem.get_weights()[0]
    if kernel.shape[:2] != (2, 2):
        return False
    h, w, c, filters = kernel.shape
    pick = np.random.default_rng(seed).choice(len(x), min(sample, len(x)), replace=False)
    images = np.asarray(x[np.sort(pick)], dtype=np.float64) / 255.0
    n, rows, cols = len(images), images.shape[1] // 2 * 2, images.shape[2] // 2 * 2
    patches = images[:, :rows, :cols].reshape(n, rows // 2, 2, cols // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(-1, h * w * c)
    values, vectors = np.linalg.eigh(np.cov(patches, rowvar=False))
    order = np.argsort(values)[::-1]
    basis = (vectors[:, order] / np.sqrt(values[order] + eps)).T  # (12, 12): strongest direction first
    both = np.concatenate([basis, -basis], axis=0)
    order = np.resize(np.arange(len(both)).reshape(2, -1).T.ravel(), filters)  # +v1, -v1, +v2, -v2, ...
    stem.set_weights([both[order].reshape(filters, h, w, c).transpose(1, 2, 3, 0).astype(np.float32),
                      *stem.get_weights()[1:]])
    return True
