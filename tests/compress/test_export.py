"""Loading user models: tf-keras files as before, Keras 3 files rebuilt, and either kind checked against the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import ConfigError, DataError
from edgecv.compress.export import load_keras, save_keras
from test_keras3 import run_keras3

TESTS = Path(__file__).resolve().parents[1]  # where conftest.py is

# A Keras 3 CNN trained briefly on the same synthetic images as the ``tiny_dataset`` fixture, so that its
# batch-norm statistics are real and int8 calibration has something to keep; plus two that do not fit.
TRAINED = f"""
import os, sys
import numpy as np
import keras
from keras import layers
sys.path.insert(0, {str(TESTS)!r})
from conftest import synthetic_images
out = sys.argv[1]
keras.utils.set_random_seed(0)
x_train, y_train = synthetic_images(240, seed=1)
x_test, _ = synthetic_images(60, seed=2)

def cnn(shape, classes):
    return keras.Sequential([
        keras.Input(shape), layers.Rescaling(1 / 255.0),
        layers.Conv2D(8, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D(), layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(), layers.Flatten(), layers.Dense(classes, activation="softmax"),
    ])

model = cnn((16, 16, 3), 3)
model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
model.fit(x_train.astype("float32"), y_train, epochs=3, batch_size=32, verbose=0)
model.save(os.path.join(out, "cnn.keras"))
np.save(os.path.join(out, "cnn.npy"), model.predict(x_test.astype("float32"), verbose=0))
cnn((16, 16, 3), 4).save(os.path.join(out, "four_classes.keras"))
cnn((32, 32, 3), 3).save(os.path.join(out, "large_images.keras"))
"""


@pytest.fixture(scope="module")
def trained_keras3(tmp_path_factory) -> Path:
    return run_keras3(TRAINED, tmp_path_factory.mktemp("keras3-trained"))


def test_keras3_model_is_checked_against_the_data_set(trained_keras3, tiny_dataset):
    """What ``compress --model file.keras`` does with a Keras 3 file: rebuild, then check it fits."""
    model = load_keras(trained_keras3 / "cnn.keras", tiny_dataset)
    expected = np.load(trained_keras3 / "cnn.npy")
    assert np.abs(model.predict(tiny_dataset.x_test.astype(np.float32), verbose=0) - expected).max() < 1e-5
    with pytest.raises(ConfigError, match=r"four_classes\.keras predicts 4 classes but the data set has 3"):
        load_keras(trained_keras3 / "four_classes.keras", tiny_dataset)
    with pytest.raises(ConfigError, match=r"large_images\.keras takes \(32, 32, 3\) inputs "
                                          r"but the data set's images are \(16, 16, 3\)"):
        load_keras(trained_keras3 / "large_images.keras", tiny_dataset)


def test_rebuilt_keras3_model_converts_to_int8(trained_keras3, tiny_dataset):
    from edgecv.compress.quantize import calibration_images, convert
    from edgecv.runtime import TFLiteModel, find_runtime, measure_accuracy

    model = load_keras(trained_keras3 / "cnn.keras", tiny_dataset)
    tflite = TFLiteModel(content=convert(model, "int8", calibration_images(tiny_dataset, 50)), runtime=find_runtime())
    assert tflite.input["dtype"] == np.int8 and tflite.output["dtype"] == np.int8
    accuracy, predicted = measure_accuracy(tflite, tflite.prepare(tiny_dataset.x_test), tiny_dataset.y_test)
    float_predicted = np.argmax(np.load(trained_keras3 / "cnn.npy"), axis=1)
    float_accuracy = float(np.mean(float_predicted == tiny_dataset.y_test))
    assert float_accuracy >= 0.8  # the Keras 3 model learned something int8 could lose
    assert abs(accuracy - float_accuracy) <= 0.05 and np.mean(predicted == float_predicted) >= 0.95


def test_rebuilt_keras3_model_prunes_with_tfmot(trained_keras3, tiny_dataset):
    from edgecv.config import PruneConfig
    from edgecv.compress.prune import prune

    model = load_keras(trained_keras3 / "cnn.keras", tiny_dataset)
    result = prune(model, tiny_dataset, PruneConfig(sparsity=0.5, epochs=1, batch_size=64))
    assert result.sparsity == pytest.approx(0.5, abs=0.05)
    assert {layer.layer for layer in result.layers} >= {"conv2d", "conv2d_1", "dense"}


def test_tf_keras_files_load_as_before(tmp_path, tiny_dataset):
    from edgecv.train.models import build

    model = build("seed-cnn", (16, 16, 3), 3)
    path = save_keras(model, tmp_path / "ours.keras")
    x = tiny_dataset.x_test[:4].astype(np.float32)
    assert np.abs(load_keras(path, tiny_dataset).predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-6
    with pytest.raises(ConfigError, match="predicts 3 classes but the data set has 4"):
        load_keras(path, _with_classes(tiny_dataset, 4))


def test_bad_files_are_refused_in_one_line(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_keras(tmp_path / "missing.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.keras is not a loadable Keras model") as caught:
        load_keras(tmp_path / "junk.keras")
    assert "\n" not in str(caught.value)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(DataError, match="is not a Keras model"):
        load_keras(tmp_path / "model.onnx")


def _with_classes(dataset, n):
    from dataclasses import replace

    return replace(dataset, classes=tuple(f"c{i}" for i in range(n)))
