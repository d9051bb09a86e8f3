import numpy as np
import pytest

from edgecv.errors import ConfigError
from edgecv.compress.quantize import calibration_images
from edgecv.runtime import TFLiteModel, measure_accuracy
from edgecv.compress.sensitivity import convert_keep_float, layer_errors, sensitivity


def test_every_quantizable_layer_gets_an_error_worst_first(tiny_trained, tiny_dataset):
    errors = layer_errors(tiny_trained.model, calibration_images(tiny_dataset, 30))
    assert {e.layer for e in errors} == {"conv1", "conv2", "fc1", "classifier"}
    assert [e.error for e in errors] == sorted((e.error for e in errors), reverse=True)
    assert all(e.error > 0 and e.nodes for e in errors)


def test_a_kept_layer_stays_float_and_the_rest_int8(tiny_trained, tiny_dataset):
    content = convert_keep_float(tiny_trained.model, calibration_images(tiny_dataset, 30), ["fc1"])
    model = TFLiteModel(content=content, plain=True)
    it = model.interpreter
    ops = it._get_ops_details()
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    fcs = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    kernel_types = [tensors[int(op["inputs"][1])]["dtype"] for op in fcs]
    assert np.float32 in kernel_types and np.int8 in kernel_types  # fc1 float, classifier int8
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert all(tensors[int(op["inputs"][1])]["dtype"] == np.int8 for op in convs)
    accuracy, _ = measure_accuracy(model, model.prepare(tiny_dataset.x_test), tiny_dataset.y_test)
    assert accuracy > 0.7


def test_sensitivity_measures_accuracy_per_kept_layer(tiny_trained, tiny_dataset):
    result = sensitivity(tiny_trained.model, tiny_dataset, calibration_images(tiny_dataset, 30), images=30)
    assert result.images == 30 and 0 < result.int8_accuracy <= 1
    assert all(0 < s.accuracy_kept_float <= 1 for s in result.layers)
    assert result.worst(2) == [s.layer for s in result.layers[:2]]


def test_unknown_layer_names_are_listed(tiny_trained, tiny_dataset):
    with pytest.raises(ConfigError, match="no quantizable layer named nope; the model has conv1"):
        convert_keep_float(tiny_trained.model, calibration_images(tiny_dataset, 10), ["nope"])


def test_layers_of_a_keras3_model_are_found_under_its_numbered_name_scopes():
    """Keras 3 names a layer's ops ``conv_1/...`` after ``conv``: each layer still gets its own error."""
    import numpy as np

    from edgecv._tf import keras3
    from edgecv.compress.sensitivity import layer_errors

    k = keras3()
    inputs = k.Input((16, 16, 3))
    h = k.layers.Conv2D(8, 3, activation="relu", name="c1")(k.layers.Rescaling(1 / 255.0)(inputs))
    h = k.layers.Conv2D(8, 3, activation="hard_silu", name="c2")(h)
    model = k.Model(inputs, k.layers.Dense(3, name="fc")(k.layers.GlobalAveragePooling2D()(h)))
    calibration = np.random.default_rng(0).uniform(0, 255, (16, 16, 16, 3)).astype(np.float32)
    found = {s.layer: s for s in layer_errors(model, calibration)}
    assert {"c1", "c2"} <= set(found) and all(found[n].error > 0 and found[n].nodes for n in ("c1", "c2"))
