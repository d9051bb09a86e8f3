"""Training and evaluation of Keras models, with progress reported per batch.

The defaults are the classic recipe: SGD, categorical cross-entropy on one-hot labels, 10 epochs, batch 64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgecv._tf import keras, keras_of, tf
from edgecv.config import Optimizer, TrainConfig
from edgecv.data.datasets import Dataset
from edgecv.errors import ConfigError, DataError
from edgecv.train.models import build
from edgecv.progress import Progress, ProgressFn, ignore

if TYPE_CHECKING:
    from edgecv.train.budget import BudgetPlan


@dataclass
class TrainResult:
    model: object  # tf_keras.Model
    history: dict[str, list[float]]
    test_accuracy: float
    seconds: float
    plan: BudgetPlan | None = None  # how a budgeted run fitted its epochs


def set_seed(seed: int) -> None:
    """Seeds Python, numpy and TensorFlow and asks TensorFlow for deterministic ops, so that a rerun with the
    same seed, data and versions gives the same weights (on the same CPU type: kernels differ across ISAs)."""
    import sys

    from edgecv._tf import keras3, tf

    keras().utils.set_random_seed(seed)
    if "keras" in sys.modules:  # a Keras 3 model is being trained: its layers draw from Keras 3's seed
        keras3().utils.set_random_seed(seed)
    tf().config.experimental.enable_op_determinism()


def compile_model(model, optimizer: Optimizer | str, learning_rate, label_smoothing: float = 0.0,
                  weight_decay: float = 0.0, ema: float = 0.0) -> None:
    """``learning_rate``: a float or a schedule of the model's Keras (tf-keras or Keras 3)."""
    from edgecv.train.recipe import loss, make_optimizer

    k = keras_of(model)
    model.compile(optimizer=make_optimizer(optimizer, learning_rate, weight_decay, ema, k),
                  loss=loss(label_smoothing, k) if label_smoothing else "categorical_crossentropy", metrics=["accuracy"])


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def train(
    dataset: Dataset, config: TrainConfig = TrainConfig(), on_progress: ProgressFn = ignore, model=None,
    started: float | None = None, track_test: int | None = None, teacher=None,
) -> TrainResult:
    """Trains ``config.arch`` (or the given model) on the train split and scores it on the test split.

    Augmentation runs in a training-only wrapper around the model (``recipe.with_augmentation``).
    With ``config.budget_minutes`` the epochs and the schedule are fitted to that wall clock, counted from
    ``started`` (a ``time.perf_counter()`` taken before the data was loaded; default: now). ``track_test``:
    score this many test images after every epoch (for a learning curve; the time counts). ``teacher``: a
    model whose soft targets (``distill.soft_targets``) make up ``config.distill`` of the labels; scoring the
    train images with it counts in the budget."""
    from edgecv.train.distribute import fit, get_strategy, scope
    from edgecv.train.recipe import learning_rate, training_data, whiten_stem, with_augmentation

    started = time.perf_counter() if started is None else started
    planned_steps = plan = None  # with a budget: the schedule's total steps, moved as the plan moves

    get_strategy(config.strategy)  # first: a multi-worker strategy must exist before other TensorFlow work
    set_seed(config.seed)
    x, y = dataset.x_train, one_hot(dataset.y_train, dataset.num_classes)
    if (teacher is None) != (config.distill == 0):
        raise ConfigError("distillation needs both a teacher and a weight above 0 (--teacher FILE --distill W)")
    if teacher is not None:
        from edgecv.train.distill import mix, soft_targets

        # flips in training mean the recipe holds the classes mirror-invariant: the teacher may average them
        y = mix(y, soft_targets(teacher, x, config.distill_temperature, mirror=config.augment), config.distill)
    n_train = len(x) - (max(1, int(len(x) * config.val_split)) if config.val_split > 0 else 0)
    with scope(config.strategy):
        built = model is None
        if built:
            model = build(config.arch, dataset.input_shape, dataset.num_classes, config.widths, config.late_pool,
                          config.separable)
        steps = -(-n_train // config.batch_size)
        if config.budget_minutes is not None:
            from edgecv.train.budget import BudgetPlan, schedule

            planned_steps = tf().Variable(steps * config.epochs, dtype=tf().int64, trainable=False)
            plan = BudgetPlan(config.budget_minutes * 60, steps, config.epochs)
            rate = schedule(config.learning_rate, planned_steps)
        else:
            rate = learning_rate(config, steps, keras_of(model))
        trainer = with_augmentation(model, config, steps) if config.augment else model
        compile_model(trainer, config.optimizer, rate, config.label_smoothing, config.weight_decay, config.ema)
    validation = None
    if config.val_split > 0:
        # a seeded shuffle first: image folders come sorted by class, and Keras' own split takes the tail
        order = np.random.default_rng(config.seed).permutation(len(x))
        n_val = max(1, int(len(x) * config.val_split))
        validation = (x[order[:n_val]], y[order[:n_val]])
        x, y = x[order[n_val:]], y[order[n_val:]]
    if config.whiten and built:  # a model passed in keeps its stem
        whiten_stem(model, x, config.seed)
    callbacks = [ProgressCallback("train", on_progress, config.epochs, len(x), config.batch_size, plan,
                                  keras_of(model))]
    epochs = config.epochs
    if plan is not None:
        from edgecv.train.budget import plan_callback

        sample = dataset.subset(test=track_test, seed=config.seed) if track_test else None
        evaluate_epoch = (lambda: evaluate_direct(model, sample.x_test, sample.y_test)) if sample is not None else None
        callbacks.insert(0, plan_callback(plan, started, planned_steps, evaluate_epoch))
        epochs = 100_000  # the plan stops it
    start = time.perf_counter()
    if config.augment or plan is not None:
        data, _ = training_data(x, y, config)
        history = trainer.fit(data, epochs=epochs, validation_data=validation, verbose=0, callbacks=callbacks)
    else:
        history = fit(model, x, y, batch_size=config.batch_size, epochs=epochs, validation=validation,
                      callbacks=callbacks, strategy=config.strategy, seed=config.seed)
    if plan is not None:
        plan.final_learning_rate = float(trainer.optimizer.learning_rate)
    seconds = time.perf_counter() - start
    return TrainResult(
        model=model,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        test_accuracy=evaluate(model, dataset.x_test, dataset.y_test),
        seconds=seconds,
        plan=plan,
    )


def fine_tune(model, wrap, dataset: Dataset, config, task: str, on_progress: ProgressFn = ignore,
              callbacks: tuple = ()):
    """Fine-tunes a copy of ``model`` whose layers went through ``wrap`` (pruning or clustering wrappers),
    under ``config.strategy``; returns (the wrapped copy, seconds). The model passed in is left untouched.
    ``config`` is a PruneConfig or FinetuneConfig: epochs, batch size, optimizer, rate, seed, strategy."""
    from edgecv.train.distribute import fit, get_strategy, scope

    get_strategy(config.strategy)  # first: a multi-worker strategy must exist before other TensorFlow work
    set_seed(config.seed)
    base = keras().models.clone_model(model)  # wrap() may share layers: never with the caller's model
    base.set_weights(model.get_weights())
    with scope(config.strategy):
        wrapped = keras().models.clone_model(base, clone_function=wrap)
        compile_model(wrapped, config.optimizer, config.learning_rate)
    start = time.perf_counter()
    fit(wrapped, dataset.x_train, one_hot(dataset.y_train, dataset.num_classes), batch_size=config.batch_size,
        epochs=config.epochs, strategy=config.strategy, seed=config.seed,
        callbacks=[*callbacks, ProgressCallback(task, on_progress, config.epochs, len(dataset.x_train),
                                                config.batch_size)])
    return wrapped, time.perf_counter() - start


def train_stream(root, config: TrainConfig = TrainConfig(), image_size: tuple[int, int] | None = None,
                 channels: int = 3, on_progress: ProgressFn = ignore, cache_dir: str | None = None) -> TrainResult:
    """Trains on an image folder streamed from disk (for folders larger than memory); ``cache_dir`` keeps the
    decoded images on disk after the first epoch."""
    import os
    from pathlib import Path

    from edgecv.train.distribute import get_strategy, scope
    from edgecv.data.stream import list_folder, stream_folder

    get_strategy(config.strategy)
    set_seed(config.seed)
    first = _first_readable(list_folder(Path(root), "train")[0])
    image_size = image_size or (first.height, first.width)  # the first image's, as for a uniform folder
    channels = 1 if first.mode in ("1", "L", "I;16", "I") else channels
    cache = {split: os.path.join(cache_dir, f"{split}.tfcache") if cache_dir else None for split in ("train", "test")}
    train_data = stream_folder(root, "train", image_size, channels, config.batch_size, True, config.seed, cache["train"])
    test_data = stream_folder(root, "test", image_size, channels, config.batch_size, False, cache_file=cache["test"])
    with scope(config.strategy):
        model = build(config.arch, train_data.input_shape, len(train_data.classes), config.widths,
                      config.late_pool, config.separable)
        compile_model(model, config.optimizer, config.learning_rate)
    start = time.perf_counter()
    history = model.fit(train_data.dataset, epochs=config.epochs, verbose=0, callbacks=[
        ProgressCallback("train", on_progress, config.epochs, train_data.files, config.batch_size)])
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(test_data.dataset, verbose=0)  # decode failures were skipped in the stream
    return TrainResult(model, {k: [float(v) for v in vs] for k, vs in history.history.items()}, float(accuracy),
                       seconds)


def _first_readable(files: list[str]):
    from PIL import Image, UnidentifiedImageError

    for path in files:
        try:
            with Image.open(path) as image:
                return image.copy()
        except (UnidentifiedImageError, OSError):
            continue
    raise DataError(f"no readable image among {len(files)} files, e.g. {files[0]}")


def top1(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Each image's predicted class."""
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=1)


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model on integer labels."""
    return float(np.mean(top1(model, x, batch_size) == y))


def evaluate_direct(model, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy by scoring array chunks: inside ``fit`` (a per-epoch learning curve), ``model.predict``
    and eager calls leave work behind that stalls the end of training for seconds."""
    hits = 0
    for i in range(0, len(x), batch_size):
        scores = model.predict_on_batch(x[i : i + batch_size].astype(np.float32))
        hits += int(np.sum(np.argmax(np.asarray(scores), axis=1) == y[i : i + batch_size]))
    return hits / len(x) if len(x) else float("nan")


def ProgressCallback(task: str, on_progress: ProgressFn, epochs: int, samples: int, batch_size: int, plan=None,
                     k=None):
    """A Keras callback (of ``k``, default tf-keras) that forwards batch ends to ``on_progress``; built lazily so
    Keras loads late. With a budget ``plan`` the epoch count is the plan's, which moves as the run measures
    itself."""

    steps = -(-samples // batch_size)

    class _Callback((k or keras()).callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            done = self.epoch * steps + batch + 1
            if batch % 10 == 0 or batch + 1 == steps:
                planned = plan.epochs if plan is not None and plan.epochs else epochs
                on_progress(
                    Progress(task, done, planned * steps,
                             f"epoch {self.epoch + 1}/{planned} loss {logs.get('loss', float('nan')):.3f}")
                )

    return _Callback()
