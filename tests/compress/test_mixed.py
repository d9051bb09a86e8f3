"""Mixed precision with the LiteRT quantizer: int4 weights read back from the file, the greedy's choices, refusals."""

import sys

import numpy as np
import pytest

from edgecv.compress.mixed import (
    INT4_METHODS,
    StaticQuantizer,
    accuracy_scorer,
    quantize_mixed,
    with_signature,
)
from edgecv.compress.quantize import calibration_images
from edgecv.compress.tflite_bits import tflite_layout
from edgecv.errors import ConfigError, DataError, ExitCode, Unsupported
from edgecv.runtime import TFLiteModel, find_runtime, measure_accuracy

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


@pytest.fixture(scope="module")
def float_model(tiny_tflite):
    return tiny_tflite["float32"].read_bytes()


@pytest.fixture(scope="module")
def calibration(tiny_dataset):
    return calibration_images(tiny_dataset, 50)


@pytest.fixture(scope="module")
def tiny_quantizer(float_model, calibration):
    return StaticQuantizer(float_model, calibration)


def _kernel_sizes(model):
    return [int(np.prod(w.shape)) for w in model.weights if "kernel" in w.name]


def _accuracy(content, images, labels):
    model = TFLiteModel(content=content, runtime=find_runtime("ai_edge_litert"))
    accuracy, _ = measure_accuracy(model, model.prepare(images), labels)
    return accuracy


def test_layout_reads_each_layers_stored_type_from_the_file(tiny_tflite, tiny_trained, tmp_path):
    from edgecv.compress.quantize import convert

    kernels = _kernel_sizes(tiny_trained.model)
    files = {**tiny_tflite, "float16": tmp_path / "tiny_float16.tflite"}  # its weights reach the ops via DEQUANTIZE
    files["float16"].write_bytes(convert(tiny_trained.model, "float16"))
    for mode, dtype, width in (("float32", "FLOAT32", 4), ("float16", "FLOAT16", 2), ("int8", "INT8", 1)):
        layout = tflite_layout(files[mode])
        assert [layer.params for layer in layout.layers] == kernels
        assert [layer.op for layer in layout.layers] == ["CONV_2D", "CONV_2D", "FULLY_CONNECTED", "FULLY_CONNECTED"]
        assert all(layer.dtype == dtype and layer.bytes == width * layer.params for layer in layout.layers)
        assert set(layout.bits().values()) == {8 * width}
        parts = layout.breakdown()
        assert parts[f"weights {dtype.lower()}"] == width * sum(kernels)
        assert sum(parts.values()) == files[mode].stat().st_size and min(parts.values()) > 0


def test_int4_weights_are_stored_packed_though_the_interpreter_shows_int8(tiny_quantizer):
    fc1 = tiny_quantizer.candidates[2]
    int8, mixed = tiny_quantizer.quantize(), tiny_quantizer.quantize({fc1.name: "min-max"})
    layout = tflite_layout(mixed)
    assert layout.bits() == {layer.name: 4 if layer.name == fc1.name else 8 for layer in tiny_quantizer.layers}
    packed = next(layer for layer in layout.layers if layer.name == fc1.name)
    assert packed.dtype == "INT4" and packed.bytes == (fc1.params + 1) // 2
    assert len(int8) - len(mixed) >= 0.95 * fc1.params / 2
    interpreter = TFLiteModel(content=mixed, plain=True).interpreter
    kernel = interpreter.get_tensor(int(interpreter._get_ops_details()[packed.index]["inputs"][1]))
    assert kernel.dtype == np.int8 and kernel.size == fc1.params and np.abs(kernel).max() <= 8


def test_plain_int8_has_the_converters_activation_ranges(tiny_quantizer, tiny_tflite):
    """Calibrated by running min/max as the converter is, not by the quantizer's default moving average of
    each image's range, which narrows the ranges and clips."""
    def ranges(content):
        details = TFLiteModel(content=content, plain=True).interpreter.get_tensor_details()
        return {d["name"]: d["quantization"] for d in details if d["quantization"][0] and len(d["shape"]) == 4}

    ours, converters = ranges(tiny_quantizer.quantize()), ranges(tiny_tflite["int8"].read_bytes())
    assert len(ours) == 5 and ours.keys() == converters.keys()
    for name, (scale, zero_point) in ours.items():
        assert scale == pytest.approx(converters[name][0], rel=1e-5) and zero_point == converters[name][1]


def test_int4_candidates_are_what_the_quantizer_supports():
    from edgecv._tf import keras
    from edgecv.compress.quantize import convert

    L = keras().layers
    model = keras().Sequential([keras().Input((8, 8, 3)), L.DepthwiseConv2D(3, name="dw"), L.Conv2D(4, 1, name="pw"),
                                L.Flatten(), L.Dense(2, name="out")])
    images = np.random.default_rng(0).integers(0, 255, (8, 8, 8, 3)).astype(np.float32)
    quantizer = StaticQuantizer(convert(model, "float32"), images)
    assert [layer.op for layer in quantizer.layers] == ["DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    assert [layer.op for layer in quantizer.candidates] == ["CONV_2D", "FULLY_CONNECTED"]
    mixed = quantizer.quantize({layer.name: "mse" for layer in quantizer.candidates})
    assert list(tflite_layout(mixed).bits().values()) == [8, 4, 4]


def test_mixed_model_runs_in_litert_within_the_drop(float_model, calibration, tiny_dataset, tiny_quantizer):
    evaluate = accuracy_scorer(tiny_dataset.x_test, tiny_dataset.y_test)
    result = quantize_mixed(float_model, calibration, evaluate, max_drop_points=2.0)
    assert result.int4_layers and result.size_bytes < result.int8_bytes
    assert result.made_by.startswith("litert-quantizer ")
    accuracy = _accuracy(result.model, tiny_dataset.x_test, tiny_dataset.y_test)
    assert accuracy == result.accuracy and 100 * (result.int8_accuracy - accuracy) <= 2.0
    assert result.int8_accuracy == _accuracy(tiny_quantizer.quantize(), tiny_dataset.x_test, tiny_dataset.y_test)
    assert result.layout.bits() == {layer.name: layer.bits for layer in result.layers}
    assert all(layer.method in INT4_METHODS for layer in result.layers if layer.bits == 4)
    assert sum(result.layout.breakdown().values()) == result.size_bytes == len(result.model)


def _penalized(penalties: dict[int, float]):
    """A scorer that reads the file: each layer (by position) at int4 costs its penalty in points."""
    def evaluate(model: bytes) -> float:
        bits = list(tflite_layout(model).bits().values())
        return 0.9 - sum(points / 100 for i, points in penalties.items() if bits[i] == 4)
    return evaluate


def test_zero_drop_keeps_exactly_the_layers_that_lose_nothing(float_model, calibration, tiny_quantizer):
    events = []
    result = quantize_mixed(float_model, calibration, _penalized({0: 1.0}), 0.0, events.append)
    names = [layer.name for layer in tiny_quantizer.layers]
    assert set(result.int4_layers) == set(names[1:])
    assert result.accuracy == result.int8_accuracy == 0.9
    done = [e.done for e in events]
    assert done == sorted(done) and events[-1].done == events[-1].total == 1 + 3 * len(names)
    assert result.evaluations <= events[-1].total


def test_layers_are_tried_by_points_lost_per_byte_saved():
    """d (10k weights) costs 0.8 points, c1 (2k) and c2 (9k) 0.3 each, and 0.8 are allowed: c2 and c1 together
    save more than d alone, and they go first, as they lose less per byte; the largest first would take d only."""
    from edgecv._tf import keras
    from edgecv.compress.quantize import convert

    L = keras().layers
    model = keras().Sequential([keras().Input((8, 8, 8)), L.Conv2D(32, 3, name="c1"), L.Conv2D(32, 3, name="c2"),
                                L.Flatten(), L.Dense(20, name="d")])
    images = np.random.default_rng(0).integers(0, 255, (8, 8, 8, 8)).astype(np.float32)
    result = quantize_mixed(convert(model, "float32"), images, _penalized({0: 0.3, 1: 0.3, 2: 0.8}), 0.8)
    assert [layer.params for layer in result.layers] == [2304, 9216, 10240]
    assert [layer.bits for layer in result.layers] == [4, 4, 8]
    assert result.drop_points == pytest.approx(0.6)
    assert result.layers[2].int4_accuracy == {"min-max": pytest.approx(0.892), "mse": pytest.approx(0.892)}
    assert {layer.method for layer in result.layers[:2]} == {"min-max"}  # a tie goes to the first method


def test_each_layer_keeps_its_better_rounding_method(float_model, calibration, tiny_quantizer):
    fc1 = tiny_quantizer.candidates[2].name
    preferred = tiny_quantizer.quantize({fc1: "mse"})
    assert preferred != tiny_quantizer.quantize({fc1: "min-max"})
    result = quantize_mixed(float_model, calibration, lambda model: 0.91 if model == preferred else 0.9, 0.0)
    assert result.int4_layers[fc1] == "mse"
    assert set(result.int4_layers.values()) == {"mse", "min-max"}  # the others tie: the first method


def test_a_float_file_without_a_signature_gets_one(float_model, calibration, tiny_dataset, tiny_quantizer):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    fb = flatbuffer_utils.read_model_from_bytearray(bytearray(float_model))
    fb.signatureDefs = None
    bare = bytes(flatbuffer_utils.convert_object_to_bytearray(fb))
    assert Interpreter(model_content=bare).get_signature_list() == {}
    signatures = Interpreter(model_content=with_signature(bare)).get_signature_list()
    assert list(signatures) == ["serving_default"] and len(signatures["serving_default"]["inputs"]) == 1
    assert with_signature(float_model) == float_model
    int8 = StaticQuantizer(bare, calibration).quantize()
    assert tflite_layout(int8).bits() == tflite_layout(tiny_quantizer.quantize()).bits()
    assert _accuracy(int8, tiny_dataset.x_test, tiny_dataset.y_test) == _accuracy(
        tiny_quantizer.quantize(), tiny_dataset.x_test, tiny_dataset.y_test)


def test_missing_quantizer_is_unsupported_with_the_install_line(monkeypatch, float_model, calibration):
    monkeypatch.setitem(sys.modules, "litert_quantizer", None)  # what `import` meets when it is not installed
    with pytest.raises(Unsupported, match=r"pip install 'litert-quantizer==") as error:
        quantize_mixed(float_model, calibration, _penalized({}), 0.2)
    assert error.value.exit_code == ExitCode.MISSING


def test_what_cannot_work_is_refused_in_one_line(float_model, calibration, tiny_tflite, tiny_quantizer):
    with pytest.raises(ConfigError, match=">= 0 points"):
        quantize_mixed(float_model, calibration, _penalized({}), -0.1)
    with pytest.raises(ConfigError, match="none were given"):
        StaticQuantizer(float_model, calibration[:0])
    with pytest.raises(DataError, match=r"\(8, 8, 3\), the model takes \(16, 16, 3\)"):
        StaticQuantizer(float_model, calibration[:, :8, :8])
    with pytest.raises(DataError, match="float32 .tflite"):
        StaticQuantizer(tiny_tflite["int8"].read_bytes(), calibration)
    with pytest.raises(DataError, match="not a TFLite flatbuffer"):
        StaticQuantizer(b"not a model at all", calibration)
    with pytest.raises(ConfigError, match="no int4 weights for pool1"):
        tiny_quantizer.quantize({"pool1": "mse"})
    with pytest.raises(ConfigError, match="unknown int4 method gptq"):
        tiny_quantizer.quantize({tiny_quantizer.candidates[0].name: "gptq"})
    with pytest.raises(ConfigError, match="one label each"):
        accuracy_scorer(calibration, np.zeros(3))
