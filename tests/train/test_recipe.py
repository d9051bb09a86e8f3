"""The edge recipe's pieces on tiny data: augmentation keeps shapes and labels, the schedule ends at zero,
label smoothing changes the loss as its definition says, and a recipe run trains."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.config import Arch, Optimizer, Recipe, Schedule, TrainConfig, recipe_config
from edgecv.errors import ConfigError


def test_augment_keeps_shapes_and_pixels_and_moves_them():
    from edgecv._tf import tf
    from edgecv.train.recipe import augment_batch

    x = np.random.default_rng(0).integers(0, 255, (16, 8, 8, 3)).astype(np.uint8)
    out = augment_batch(tf().constant(x), tf().constant([0, 1], tf().int64), shift=2).numpy()
    assert out.shape == x.shape and out.dtype == np.uint8
    changed = [not np.array_equal(out[i], x[i]) for i in range(len(x))]
    assert sum(changed) >= 8  # 1 in 50 images keep both flip and shift at zero
    again = augment_batch(tf().constant(x), tf().constant([0, 1], tf().int64), shift=2).numpy()
    assert np.array_equal(out, again)  # stateless: the same seed, the same batch
    other = augment_batch(tf().constant(x), tf().constant([0, 2], tf().int64), shift=2).numpy()
    assert not np.array_equal(out, other)


def test_augment_shift_is_a_translation_with_reflection():
    from edgecv._tf import tf
    from edgecv.train.recipe import augment_batch

    x = np.arange(1 * 6 * 6 * 1, dtype=np.int32).reshape(1, 6, 6, 1)
    seen = set()
    for step in range(40):
        out = augment_batch(tf().constant(x), tf().constant([3, step], tf().int64), shift=1).numpy()[0, :, :, 0]
        img = x[0, :, :, 0]
        candidates = {}
        for flip in (False, True):
            base = img[:, ::-1] if flip else img
            padded = np.pad(base, 1, mode="reflect")
            for dy in range(3):
                for dx in range(3):
                    candidates[(flip, dy, dx)] = padded[dy:dy + 6, dx:dx + 6]
        match = [k for k, v in candidates.items() if np.array_equal(v, out)]
        assert match, "the output is not a flip plus a reflect-padded shift of the input"
        seen.update(match)
    assert len(seen) >= 8  # flips and shifts in every direction occur


def test_training_data_keeps_labels_with_their_images():
    from edgecv.train.recipe import training_data

    x = np.zeros((10, 4, 4, 3), np.uint8)
    for i in range(10):
        x[i] = i * 20
    y = np.eye(10, dtype=np.float32)
    data, steps = training_data(x, y, TrainConfig(batch_size=4, seed=0))
    assert steps == 3
    epochs = []
    for _ in range(2):
        seen = []
        for images, labels in data:
            assert images.dtype.name == "uint8"
            for img, label in zip(images.numpy(), labels.numpy()):
                assert img.max() == img.min() == 20 * int(np.argmax(label))
                seen.append(int(np.argmax(label)))
        assert sorted(seen) == list(range(10))  # one epoch sees every image once
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # reshuffled each epoch


def test_augmentation_is_on_the_training_graph_only():
    from edgecv._tf import keras
    from edgecv.train.recipe import with_augmentation

    x = np.random.default_rng(0).integers(0, 255, (8, 6, 6, 3)).astype(np.float32)
    inner = keras().Sequential([keras().Input((6, 6, 3)), keras().layers.Flatten()])
    config = TrainConfig(augment=True, shift=2, seed=5)
    trainer = with_augmentation(inner, config)
    augment = trainer.get_layer("augment")
    assert np.array_equal(augment(x, training=False).numpy(), x)  # inference: untouched
    first, second = augment(x, training=True).numpy(), augment(x, training=True).numpy()
    assert first.shape == x.shape and not np.array_equal(first, second)  # a new draw every batch
    again = with_augmentation(inner, config).get_layer("augment")
    assert np.array_equal(again(x, training=True).numpy(), first)  # the same seed, the same sequence
    assert trainer.layers[-1] is inner  # the wrapper trains the model itself: its weights, not a copy


def test_cosine_schedule_warms_up_and_ends_at_zero():
    from edgecv.train.recipe import learning_rate

    config = TrainConfig(epochs=4, learning_rate=0.1, schedule=Schedule.COSINE, warmup_epochs=1)
    schedule = learning_rate(config, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in range(41)]
    assert rates[0] == pytest.approx(0.0)
    assert rates[10] == pytest.approx(0.1, rel=1e-4)  # the peak at the end of warm-up
    assert all(a <= b + 1e-9 for a, b in zip(rates[:10], rates[1:11]))
    assert all(a >= b - 1e-9 for a, b in zip(rates[10:40], rates[11:41]))
    assert rates[40] == pytest.approx(0.0, abs=1e-6)
    assert learning_rate(TrainConfig(learning_rate=0.05), 10) == 0.05


def test_label_smoothing_changes_the_loss_as_defined():
    from edgecv.train.recipe import loss

    probs = np.array([[0.7, 0.2, 0.1]], np.float32)
    target = np.array([[1.0, 0.0, 0.0]], np.float32)
    plain = float(loss(0.0)(target, probs))
    smooth = float(loss(0.3)(target, probs))
    assert plain == pytest.approx(-np.log(0.7), rel=1e-5)
    smoothed_target = target * 0.7 + 0.3 / 3
    assert smooth == pytest.approx(float(-(smoothed_target * np.log(probs)).sum()), rel=1e-5)


def test_recipe_presets_and_overrides():
    edge = recipe_config(Recipe.EDGE, arch=Arch.RESNET8, epochs=None)
    assert edge.augment and edge.label_smoothing > 0 and edge.schedule is Schedule.COSINE and edge.arch is Arch.RESNET8
    classic = recipe_config(Recipe.CLASSIC)
    assert classic == TrainConfig()  # the classic recipe is the default
    assert recipe_config(Recipe.EDGE, epochs=3).epochs == 3
    edge2 = recipe_config(Recipe.EDGE2, arch=Arch.PATCHNET)
    assert edge2.optimizer is Optimizer.NESTEROV and edge2.weight_decay > 0 and edge2.augment
    assert recipe_config(Recipe.EDGE2, weight_decay=0.0).weight_decay == 0.0  # an explicit 0 turns it off
    from edgecv.cli.options import recipe_for

    assert [recipe_for(None, a) for a in Arch] == [Recipe.CLASSIC, Recipe.EDGE, Recipe.EDGE, Recipe.EDGE2]
    assert recipe_for(Recipe.EDGE, Arch.PATCHNET) is Recipe.EDGE
    with pytest.raises(ConfigError, match="label smoothing"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="warm-up"):
        TrainConfig(epochs=2, warmup_epochs=2)


def test_edge_recipe_trains_every_arch(tiny_dataset):
    from edgecv.train.fit import train

    for arch in (Arch.SEED_CNN, Arch.DSCNN, Arch.RESNET8, Arch.PATCHNET):
        config = TrainConfig(arch=arch, epochs=4, batch_size=32, optimizer=Optimizer.ADAM, learning_rate=3e-3,
                             augment=True, shift=1, label_smoothing=0.1, schedule=Schedule.COSINE, warmup_epochs=1)
        result = train(tiny_dataset, config)
        assert result.history["loss"][-1] < result.history["loss"][0], arch


def test_alternating_flips_show_each_image_both_ways_every_two_epochs():
    from edgecv._tf import keras
    from edgecv.train.recipe import alternation_start, with_augmentation

    x = np.random.default_rng(0).integers(0, 255, (64, 6, 6, 3)).astype(np.uint8)
    start = alternation_start(x, seed=3)
    mirrored = [not np.array_equal(a, b) for a, b in zip(start, x)]
    assert all(np.array_equal(start[i], x[i, :, ::-1]) for i in np.flatnonzero(mirrored))
    assert 16 <= sum(mirrored) <= 48 and np.array_equal(start, alternation_start(x, seed=3))

    inner = keras().Sequential([keras().Input((6, 6, 3)), keras().layers.Flatten()])
    config = TrainConfig(augment=True, shift=0, alternate_flips=True)
    augment = with_augmentation(inner, config, steps_per_epoch=2).get_layer("augment")
    batch = start[:8].astype(np.float32)
    seen = [augment(batch, training=True).numpy() for _ in range(6)]  # three epochs of two steps
    for step, out in enumerate(seen):
        odd_epoch = (step // 2) % 2 == 1
        assert np.array_equal(out, batch[:, :, ::-1] if odd_epoch else batch), step


def test_weight_decay_shrinks_kernels_only():
    from edgecv._tf import keras, tf
    from edgecv.train.recipe import make_optimizer

    model = keras().Sequential([keras().Input((4, 4, 2)), keras().layers.Conv2D(3, 3, name="conv"),
                                keras().layers.BatchNormalization(name="bn"), keras().layers.Flatten(),
                                keras().layers.Dense(2, name="dense")])
    for v in model.trainable_variables:
        v.assign(tf().ones_like(v) * 0.5)
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    optimizer = make_optimizer(Optimizer.NESTEROV, 0.1, weight_decay=0.2)
    optimizer.apply_gradients([(tf().zeros_like(v), v) for v in model.trainable_variables])
    for v in model.trainable_variables:
        shrunk = "kernel" in v.name
        expected = before[v.name] * (1 - 0.1 * 0.2) if shrunk else before[v.name]
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, err_msg=v.name)


def test_ema_leaves_the_average_of_the_weights_after_fit():
    from edgecv._tf import keras
    from edgecv.train.fit import compile_model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype(np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 32)]
    keras().utils.set_random_seed(0)
    model = keras().Sequential([keras().Input((3,)), keras().layers.Dense(2, activation="softmax")])
    start = [w.copy() for w in model.get_weights()]
    compile_model(model, Optimizer.SGD, 0.5, ema=0.5)
    trail = []

    class Record(keras().callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            trail.append([w.copy() for w in self.model.get_weights()])

    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[Record()])
    average = start
    for weights in trail:  # momentum 0.5 per step, from the starting weights
        average = [0.5 * a + 0.5 * w for a, w in zip(average, weights)]
    for got, want, raw in zip(model.get_weights(), average, trail[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert not np.allclose(got, raw)  # the raw weights were replaced


def test_whiten_stem_decorrelates_the_patches():
    from edgecv.train.models import build
    from edgecv.train.recipe import whiten_stem

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (400, 17, 16, 3))
    # neighbours correlate along rows only, and the channels mix: a layout error would show as correlation
    rows = noise[:, 1:] + 0.8 * noise[:, :-1]
    mixed = rows @ np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.4], [0.0, 0.0, 1.0]])
    x = np.clip(128 + 30 * mixed, 0, 255).astype(np.uint8)
    model = build("patchnet", (16, 16, 3), 3)
    assert whiten_stem(model, x, seed=1)
    stem = model.get_layer("stem")
    responses = stem(x.astype(np.float32) / 255.0).numpy().reshape(-1, stem.filters)  # the layer itself
    np.testing.assert_allclose(responses[:, 1::2], -responses[:, 0::2], atol=1e-5)  # each filter's negative
    cov = np.cov(responses[:, 0::2], rowvar=False)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.03  # decorrelated
    assert 0.85 < np.diag(cov).min() and np.diag(cov).max() < 1.05  # unit variance, up to eps
    assert not whiten_stem(build("resnet8", (16, 16, 3), 3), x)  # a 3x3 stem is left as it is


def test_whiten_and_alternating_flips_are_refused_where_they_cannot_work():
    from edgecv._tf import keras
    from edgecv.train.recipe import with_augmentation

    with pytest.raises(ConfigError, match="patch stem"):
        TrainConfig(arch=Arch.RESNET8, whiten=True)
    with pytest.raises(ConfigError, match="alternating flips"):
        TrainConfig(alternate_flips=True)  # the classic recipe does not augment
    inner = keras().Sequential([keras().Input((6, 6, 3)), keras().layers.Flatten()])
    with pytest.raises(ValueError, match="steps_per_epoch"):
        with_augmentation(inner, TrainConfig(augment=True, alternate_flips=True))


def test_new_recipe_options_are_checked():
    with pytest.raises(ConfigError, match="weight decay"):
        TrainConfig(weight_decay=-1e-4)
    with pytest.raises(ConfigError, match="EMA"):
        TrainConfig(ema=1.0)


def test_every_recipe_option_together_trains_patchnet(tiny_dataset):
    from edgecv.train.fit import train

    config = TrainConfig(arch=Arch.PATCHNET, epochs=4, batch_size=32, optimizer=Optimizer.NESTEROV,
                         learning_rate=0.05, weight_decay=5e-4, augment=True, shift=2, alternate_flips=True,
                         label_smoothing=0.2, schedule=Schedule.COSINE, warmup_epochs=1, ema=0.9, whiten=True)
    result = train(tiny_dataset, config)
    assert result.history["loss"][-1] < result.history["loss"][0]
