"""Users' models as they built them: every keras.applications family, tiny, through each path.

Keras 3 lives beside tf-keras in this process, so the models are built here, with small widths and 32 px
inputs (untrained, with batch-norm statistics moved off their initial values so that a weight copied to the
wrong place shows). Each path must give what Keras 3 gives, or refuse with one line naming the layer.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.errors import DataError

FAMILIES = {  # name -> keyword arguments of keras.applications.<name>, at 32 x 32 and 3 classes
    "MobileNet": dict(alpha=0.25),
    "MobileNetV2": dict(alpha=0.35),
    "MobileNetV3Small": dict(alpha=0.75, include_preprocessing=True),
    "MobileNetV3Large": dict(alpha=0.75, include_preprocessing=True),
    "EfficientNetB0": dict(),
    "EfficientNetV2B0": dict(),
    "NASNetMobile": dict(),
}
# Converting one takes 17-120 s here, so the default tier converts MobileNet and rebuilds and cuts the others;
# the slow tier converts them all. NASNet's rebuild (16 s) is slow too: its cells are the other families' layers.
CONVERTED = [n if n == "MobileNet" else pytest.param(n, marks=pytest.mark.slow) for n in FAMILIES]
REBUILT = [pytest.param(n, marks=pytest.mark.slow) if n == "NASNetMobile" else n for n in FAMILIES]
CUT = [pytest.param(n, marks=pytest.mark.slow) if n == "EfficientNetV2B0" else n for n in FAMILIES]  # B0's blocks
CHANNEL_REFUSED = {"NASNetMobile": r"layer '\w+' \(Concatenate\) cannot be pruned by channel"}


def _calibrated(model, seed: int = 0):
    """Batch-norm statistics set to those of a batch, the rest of its weights as initialised: an untrained
    application's signal dies out or saturates through its depth, and a rebuild that got a weight wrong could not
    be told from one that got it right."""
    from edgecv._tf import keras3

    rng = np.random.default_rng(seed)
    norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    inputs = _inputs(16, seed)
    for norm, seen in zip(norms, keras3().Model(model.inputs, [n.input for n in norms])(inputs, training=True)):
        seen = np.asarray(seen)
        weights = norm.get_weights()
        weights[-2], weights[-1] = seen.mean(axis=tuple(range(seen.ndim - 1))), seen.var(axis=tuple(range(seen.ndim - 1))) + 1e-3
        if norm.scale:
            weights[0] = rng.uniform(0.8, 1.2, weights[0].shape)
        norm.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def families():
    from edgecv._tf import keras3

    keras3().utils.set_random_seed(0)
    apps = keras3().applications
    return {name: _calibrated(getattr(apps, name)(input_shape=(32, 32, 3), weights=None, classes=3, **kwargs))
            for name, kwargs in FAMILIES.items()}


@pytest.fixture(scope="module")
def images(tiny_dataset):
    return tiny_dataset.resized(32)


def _inputs(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)


@pytest.mark.parametrize("name", CONVERTED)
def test_family_converts_straight_from_keras3(families, images, name):
    from edgecv import runtime as rt
    from edgecv._tf import is_keras3_model
    from edgecv.compress.quantize import calibration_images, convert

    model = families[name]
    assert is_keras3_model(model)
    x = _inputs(8)
    float_file = rt.TFLiteModel(content=convert(model, "float32"), plain=True)
    assert np.abs(float_file.scores(x) - model.predict(x, verbose=0)).max() < 1e-4
    int8 = rt.TFLiteModel(content=convert(model, "int8", calibration_images(images, 16)), plain=True)
    assert int8.input["dtype"] == np.int8 and tuple(int8.input["shape"]) == (1, 32, 32, 3)


@pytest.mark.parametrize("name", REBUILT)
def test_family_rebuilds_in_tf_keras_for_tfmot(families, images, name):
    from edgecv.compress.keras3 import to_tf_keras

    model = families[name]
    rebuilt = to_tf_keras(model)
    assert type(rebuilt).__module__.startswith("tf_keras")
    x = _inputs(8)
    expected = model.predict(x, verbose=0)
    assert np.abs(rebuilt.predict(x, verbose=0) - expected).max() < 1e-5
    assert np.abs(expected - expected.mean(axis=0)).max() > 1e-4  # images the model tells apart


@pytest.mark.parametrize("name", CUT)
def test_family_is_channel_cut_in_keras3_or_refused_by_layer(families, images, name):
    from edgecv._tf import is_keras3_model
    from edgecv.compress.channels import shrink
    from edgecv.measure.macs import total_macs

    model = families[name]
    if name in CHANNEL_REFUSED:
        with pytest.raises(DataError, match=CHANNEL_REFUSED[name]):
            shrink(model, 0.25)
        return
    x = _inputs(4)
    same, _ = shrink(model, 0.0)
    assert np.abs(same.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-5
    smaller, counts = shrink(model, 0.25)
    assert is_keras3_model(smaller) and smaller.predict(x, verbose=0).shape == (4, 3)
    assert total_macs(smaller) < 0.8 * total_macs(model)
    assert any(c.after < c.before for c in counts) and counts[-1].after == counts[-1].before == 3


def test_macs_of_a_keras3_model_match_its_tflite_graph(families):
    from edgecv import runtime as rt
    from edgecv.compress.quantize import convert
    from edgecv.measure.macs import total_macs

    model = families["MobileNetV3Small"]
    graph = rt.graph_stats(rt.TFLiteModel(content=convert(model, "float32"), plain=True).interpreter)
    assert total_macs(model) == graph["macs"] > 0


def test_a_nested_application_is_converted_and_refused_for_channel_cuts_by_name(images):
    """Keras' transfer-learning layout: preprocessing in an outer model around the application."""
    from edgecv._tf import keras3
    from edgecv.compress.channels import shrink
    from edgecv.compress.keras3 import to_tf_keras
    from edgecv.compress.quantize import convert
    from edgecv import runtime as rt

    k = keras3()
    base = _calibrated(k.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False,
                                                  weights=None, pooling="avg"))
    inputs = k.Input((32, 32, 3))
    model = k.Model(inputs, k.layers.Dense(3)(base(k.layers.Rescaling(1 / 127.5, offset=-1)(inputs), training=False)))
    x = images.x_test[:4].astype(np.float32)  # raw pixels: the outer model rescales them
    expected = model.predict(x, verbose=0)
    assert np.abs(to_tf_keras(model).predict(x, verbose=0) - expected).max() < 1e-4  # logits near 2, not softmax
    tflite = rt.TFLiteModel(content=convert(model, "float32"), plain=True)
    assert np.abs(tflite.scores(x) - expected).max() < 1e-4
    with pytest.raises(DataError, match=r"layer 'mobilenetv2[\w.]*' \(Functional\) cannot be pruned by channel: it is "
                                        r"a nested model"):
        shrink(model, 0.25)


def test_a_model_with_two_inputs_is_refused_in_one_line(tmp_path):
    from edgecv._tf import keras3
    from edgecv.compress.export import load_keras

    k = keras3()
    a, b = k.Input((8, 8, 3)), k.Input((8, 8, 3))
    path = tmp_path / "two.keras"
    k.Model([a, b], k.layers.Dense(3)(k.layers.Flatten()(k.layers.Add()([a, b])))).save(path)
    with pytest.raises(DataError, match=r"two\.keras has 2 inputs and 1 outputs: edgecv takes image classifiers "
                                        r"with one input and one output$"):
        load_keras(path)


def test_resized_data_keeps_labels_and_refuses_sizes_it_cannot_make(tiny_dataset):
    from edgecv.errors import ConfigError

    big = tiny_dataset.resized(48)
    assert big.input_shape == (48, 48, 3) and big.x_train.dtype == np.uint8
    assert (big.y_test == tiny_dataset.y_test).all() and len(big.x_train) == len(tiny_dataset.x_train)
    assert tiny_dataset.resized(16) is tiny_dataset and tiny_dataset.resized(None) is tiny_dataset
    back = big.resized(16).x_test.astype(np.int16)  # the same pictures, not other pixels
    assert np.abs(back - tiny_dataset.x_test).mean() < 25
    with pytest.raises(ConfigError, match=r"--image-size must be 8 to 1024 pixels, got 4"):
        tiny_dataset.resized(4)
