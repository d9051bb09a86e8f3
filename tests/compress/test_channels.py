"""Channel pruning rebuilds a smaller model that computes what the original computed without those channels."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.compress.channels import _trace, prune_channels, shrink
from edgecv.errors import DataError

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def _randomize(model, seed=0):
    """Non-trivial weights and BatchNormalization statistics, so that a wrong slice changes the output."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in weights])
        elif weights:
            layer.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in weights])


def _kill_half(model, seed=0):
    """Silences a random half of every prunable channel space: each layer writing or normalizing it outputs
    exactly 0 there. Those channels then carry nothing, and their L1 norm is 0, so shrink(0.5) removes them."""
    rng = np.random.default_rng(seed)
    spaces, _ = _trace(model)
    dead = {}
    for layer in model.layers:
        space = spaces.get(layer.name)
        weights = layer.get_weights()
        if not weights or not hasattr(space, "root") or space.root().frozen:
            continue
        root = space.root()
        if id(root) not in dead:
            dead[id(root)] = rng.choice(root.size, root.size // 2, replace=False)
        channels = dead[id(root)]
        kind = type(layer).__name__
        if kind == "BatchNormalization":  # gamma and beta 0: the output is 0 whatever the input
            weights[0][channels] = 0
            weights[1][channels] = 0
        elif kind == "SeparableConv2D":  # the pointwise kernel and the bias write the channels
            for w in weights[1:]:
                w[..., channels] = 0
        elif kind == "DepthwiseConv2D":
            weights[0][:, :, channels, :] = 0
            for b in weights[1:]:
                b[channels] = 0
        else:
            for w in weights:
                w[..., channels] = 0
        layer.set_weights(weights)
    return dead


@pytest.mark.parametrize("arch", ["seed-cnn", "resnet8", "dscnn", "patchnet"])
def test_shrink_removes_dead_channels_without_changing_the_output(arch):
    from edgecv.measure.macs import total_macs
    from edgecv.train.models import build

    model = build(arch, (32, 32, 3), 10)
    _randomize(model)
    images = np.random.default_rng(1).integers(0, 255, (8, 32, 32, 3)).astype(np.float32)
    same, _ = shrink(model, 0.0)
    assert np.allclose(same.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)

    _kill_half(model)
    smaller, layers = shrink(model, 0.5)
    assert np.allclose(smaller.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)
    assert smaller.output_shape == model.output_shape
    counts = {c.layer: (c.before, c.after) for c in layers}
    assert counts["classifier"] == (10, 10)  # the classes stay
    assert all(after == before // 2 for name, (before, after) in counts.items() if name != "classifier")
    assert smaller.count_params() < 0.4 * model.count_params()
    assert total_macs(smaller) < 0.4 * total_macs(model)


def test_residual_add_keeps_shortcut_and_branch_aligned():
    from edgecv.train.models import resnet8

    model = resnet8()
    _randomize(model, 3)
    smaller, _ = shrink(model, 0.5)
    for stack in (2, 3):  # the add needs equal widths; the channels kept are the same ones on both sides
        assert smaller.get_layer(f"s{stack}_shortcut").filters == smaller.get_layer(f"s{stack}_conv2").filters
    spaces, _ = _trace(model)
    assert spaces["s2_shortcut"].root() is spaces["s2_conv2"].root()
    assert spaces["stem"].root() is spaces["s1_conv2"].root()
    assert spaces["s1_conv1"].root() is not spaces["s1_conv2"].root()


def test_unprunable_layers_are_named():
    from edgecv._tf import keras

    L = keras().layers
    inputs = keras().Input((8, 8, 3))
    a = L.Conv2D(4, 3, name="left")(inputs)
    b = L.Conv2D(4, 3, name="right")(inputs)
    joined = L.Concatenate(name="joined")([a, b])
    model = keras().Model(inputs, L.Dense(2, name="out")(L.Flatten()(joined)))
    with pytest.raises(DataError, match=r"layer 'joined' \(Concatenate\) cannot be pruned by channel"):
        shrink(model, 0.5)

    grouped = keras().Sequential([keras().Input((8, 8, 4)), L.Conv2D(4, 3, groups=2, name="grouped"),
                                  L.Flatten(), L.Dense(2)])
    with pytest.raises(DataError, match="'grouped'.*grouped convolution"):
        shrink(grouped, 0.5)

    class Custom(keras().Model):
        def call(self, x):
            return x

    with pytest.raises(DataError, match="only Sequential and functional"):
        shrink(Custom(), 0.5)


def test_prune_channels_fine_tunes_and_reports(tiny_dataset):
    from edgecv.config import Optimizer, TrainConfig
    from edgecv.train.models import seed_cnn
    from edgecv.train.fit import train

    parent = train(tiny_dataset, TrainConfig(epochs=3, batch_size=32, optimizer=Optimizer.ADAM,
                                             learning_rate=3e-3)).model
    result = prune_channels(parent, tiny_dataset, 0.5, TrainConfig(epochs=2, batch_size=32,
                                                                   optimizer=Optimizer.ADAM, learning_rate=1e-3))
    assert result.macs_after < result.macs_before / 3 and result.params_after < result.params_before / 3
    assert result.test_accuracy is not None and result.test_accuracy > 0.5  # three classes: chance is 1/3
    assert result.model.count_params() == result.params_after
    assert parent.count_params() == seed_cnn((16, 16, 3), 3).count_params()  # the parent is untouched


def test_the_mlperf_reference_h5_shrinks(shared_cifar):
    """A model edgecv did not build: MLPerf Tiny's ResNet-8 .h5 (its own layer names and a Flatten before Dense)."""
    from pathlib import Path

    from edgecv.compress.export import load_keras
    from edgecv.measure.macs import total_macs

    reference = Path(shared_cifar).parents[1] / "models" / "mlperf-tiny-resnet8" / "pretrainedResnet.h5"
    if not reference.is_file():
        pytest.skip(f"the MLPerf Tiny reference is not at {reference}")
    model = load_keras(reference)
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype(np.float32)
    same, _ = shrink(model, 0.0)
    assert np.allclose(same.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)
    smaller, layers = shrink(model, 0.5)
    assert total_macs(smaller) < 0.3 * total_macs(model) and smaller.output_shape == model.output_shape
    assert sum(c.after for c in layers) < 0.55 * sum(c.before for c in layers)


def test_separable_convolutions_shrink_and_multipliers_are_refused():
    from edgecv._tf import keras

    L = keras().layers
    model = keras().Sequential([keras().Input((8, 8, 3)), L.Conv2D(8, 3, name="c"), L.SeparableConv2D(8, 3, name="s"),
                                L.GlobalAveragePooling2D(), L.Dense(2, name="out")])
    _randomize(model)
    _kill_half(model)
    images = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype(np.float32)
    smaller, layers = shrink(model, 0.5)
    assert {c.layer: c.after for c in layers} == {"c": 4, "s": 4, "out": 2}
    assert np.allclose(smaller.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)
    multiplied = keras().Sequential([keras().Input((8, 8, 3)), L.SeparableConv2D(8, 3, depth_multiplier=2, name="m"),
                                     L.Flatten(), L.Dense(2)])
    with pytest.raises(DataError, match="'m'.*depth multiplier 2"):
        shrink(multiplied, 0.5)
