import numpy as np
import pytest

from edgecv.config import FinetuneConfig, Optimizer, PruneConfig
from edgecv.errors import ConfigError
from edgecv.compress.prune import prune
from edgecv.compress.qat import qat, quantize_aware
from edgecv.compress.quantize import calibration_images, convert
from edgecv.runtime import TFLiteModel, measure_accuracy, weight_stats

FAST = FinetuneConfig(epochs=1, batch_size=32, learning_rate=3e-4, optimizer=Optimizer.ADAM)


def _int8_accuracy(content, dataset):
    model = TFLiteModel(content=content)
    assert model.input["dtype"] == np.int8
    return measure_accuracy(model, model.prepare(dataset.x_test), dataset.y_test)[0]


def test_qat_converts_to_int8_and_keeps_its_accuracy(tiny_trained, tiny_dataset):
    before = [w.copy() for w in tiny_trained.model.get_weights()]
    result = qat(tiny_trained.model, tiny_dataset, FAST)
    content = convert(result.model, "int8", calibration_images(tiny_dataset, 50))
    accuracy = _int8_accuracy(content, tiny_dataset)
    # the converted file must score what the fake-quantized Keras model scores (a lost input range gave chance)
    assert accuracy == pytest.approx(result.test_accuracy, abs=0.05)
    assert accuracy > 0.7
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny_trained.model.get_weights()))


def test_pruning_preserving_qat_keeps_the_zeros(tiny_trained, tiny_dataset):
    pruned = prune(tiny_trained.model, tiny_dataset, PruneConfig(sparsity=0.6, epochs=2, batch_size=32))
    cal = calibration_images(tiny_dataset, 50)
    kept = qat(pruned.model, tiny_dataset, FAST, preserve_sparsity=True)
    plain = qat(pruned.model, tiny_dataset, FAST, preserve_sparsity=False)
    _, kept_sparsity = weight_stats(TFLiteModel(content=convert(kept.model, "int8", cal), plain=True).interpreter)
    _, plain_sparsity = weight_stats(TFLiteModel(content=convert(plain.model, "int8", cal), plain=True).interpreter)
    assert kept_sparsity >= 0.58  # the int8 weights are still 60 % zeros
    assert plain_sparsity < kept_sparsity  # plain QAT lets the zeros move


def test_a_layer_with_weights_that_tfmot_cannot_quantize_is_named():
    from edgecv._tf import keras

    L = keras().layers
    inputs = keras().Input((8, 8, 3))
    x = L.Conv2D(4, 3)(inputs)
    x = L.LayerNormalization(name="norm")(x)
    model = keras().Model(inputs, L.Dense(2)(L.Flatten()(x)))
    with pytest.raises(ConfigError, match="'norm'"):
        quantize_aware(model)


def test_an_input_normalization_passes_through_qat(tiny_dataset):
    """EfficientNet's layout: fixed mean and variance in front; they are constants, not weights to train."""
    import numpy as np

    from edgecv._tf import keras

    L = keras().layers
    norm = L.Normalization(name="norm")
    norm.adapt(tiny_dataset.x_train[:32].astype(np.float32))
    inputs = keras().Input((16, 16, 3))
    model = keras().Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(norm(inputs)))))
    aware = quantize_aware(model)
    x = tiny_dataset.x_test[:4].astype(np.float32)
    assert np.abs(aware.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 0.5  # fake-quant, not another model
    assert any("norm" in layer.name for layer in aware.layers)
