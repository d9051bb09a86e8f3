"""MACs per layer (Keras) and per op (TFLite) agree, and the peak activation memory is the hand count."""

import numpy as np
import pytest

from edgecv import runtime as rt
from edgecv._tf import keras
from edgecv.measure.macs import layer_macs, total_macs
from edgecv.train.models import resnet8, seed_cnn
from edgecv.compress.quantize import convert


def _tflite_stats(model, plain=False):
    return rt.graph_stats(rt.TFLiteModel(content=convert(model, "float32"), plain=plain).interpreter)


def test_seed_cnn_layers_have_the_textbook_counts():
    rows = {r.name: r for r in layer_macs(seed_cnn((32, 32, 3), 10))}
    assert rows["conv1"].macs == 30 * 30 * 32 * 3 * 3 * 3 == 777_600
    assert rows["conv2"].macs == 13 * 13 * 64 * 3 * 3 * 32 == 3_115_008
    assert rows["fc1"].macs == 2304 * 128 == 294_912
    assert rows["classifier"].macs == 1280
    assert rows["conv2"].output_shape == (13, 13, 64) and rows["conv2"].type == "Conv2D"
    assert rows["fc1"].params == 2304 * 128 + 128
    assert all(rows[name].macs == 0 for name in ("rescale", "pool1", "pool2", "flatten"))
    assert total_macs(seed_cnn((32, 32, 3), 10)) == 4_188_800


def test_resnet8_keras_and_tflite_counts_agree():
    model = resnet8()
    stats = _tflite_stats(model)
    assert total_macs(model) == stats["macs"] == 12_501_632  # MLPerf Tiny quotes ~12.5 M
    assert rt.macs_by_op(stats) == {"CONV_2D": 12_500_992, "FULLY_CONNECTED": 640}
    assert {r.name: r.macs for r in layer_macs(model)}["s3_shortcut"] == 8 * 8 * 64 * 32


def test_every_kind_of_convolution_counts_alike_in_keras_and_tflite():
    k = keras()
    L = k.layers
    inputs = k.Input((16, 16, 8))
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(inputs)
    x = L.SeparableConv2D(12, 3, strides=2)(x)
    x = L.Conv2D(12, 3, groups=3, padding="same")(x)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same")(x)
    x = L.Dense(5)(x)  # on a rank-4 tensor: once per pixel
    x = L.Conv1D(4, 3)(L.Reshape((-1, 5))(x))
    model = k.Model(inputs, L.Dense(3)(L.GlobalAveragePooling1D()(x)))
    rows = {r.type: r.macs for r in layer_macs(model)}
    assert rows["DepthwiseConv2D"] == 16 * 16 * 16 * 3 * 3
    assert rows["SeparableConv2D"] == 7 * 7 * 16 * 3 * 3 + 7 * 7 * 16 * 12
    assert rows["Conv2D"] == 7 * 7 * 12 * 3 * 3 * 4  # 4 input channels per group
    assert rows["Conv2DTranspose"] == 7 * 7 * 12 * 3 * 3 * 6
    assert rows["Conv1D"] == 194 * 4 * 3 * 5
    stats = _tflite_stats(model)
    assert total_macs(model) == stats["macs"]
    assert set(rt.macs_by_op(stats)) == {"DEPTHWISE_CONV_2D", "CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED"}


def test_shared_and_nested_layers_count_every_call():
    k = keras()
    L = k.layers
    inner = k.Sequential([k.Input((4,)), L.Dense(6, name="hidden")], name="inner")
    inputs = k.Input((4,))
    shared = L.Dense(4, name="shared")
    x = shared(shared(inputs))
    model = k.Model(inputs, inner(x))
    rows = {r.name: r.macs for r in layer_macs(model)}
    assert rows["shared"] == 2 * 4 * 4 and rows["inner/hidden"] == 4 * 6
    assert total_macs(model) == _tflite_stats(model)["macs"] == 56


def test_a_model_of_any_image_size_has_no_count():
    k = keras()
    inputs = k.Input((None, None, 3))
    model = k.Model(inputs, k.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="static"):
        total_macs(model)


def test_peak_memory_of_seed_cnn_is_the_hand_count(tiny_tflite):
    # conv1 (14x14x32) is still live while pool1 (7x7x32) is written: the largest pair in the chain
    hand = 14 * 14 * 32 + 7 * 7 * 32
    for mode, itemsize in (("float32", 4), ("int8", 1)):
        for plain in (False, True):
            stats = rt.graph_stats(rt.TFLiteModel(tiny_tflite[mode], plain=plain).interpreter)
            assert stats["peak_activation_bytes"] == hand * itemsize, (mode, plain)
            assert stats["macs"] == 14 * 14 * 32 * 27 + 5 * 5 * 64 * 288 + 256 * 128 + 128 * 3


def test_unpacked_float16_weights_are_not_activations(tiny_trained):
    content = convert(tiny_trained.model, "float16")
    stats = rt.graph_stats(rt.TFLiteModel(content=content, plain=True).interpreter)
    assert "DEQUANTIZE" in [o["op"] for o in stats["ops"]]
    assert stats["peak_activation_bytes"] == (14 * 14 * 32 + 7 * 7 * 32) * 4  # as float32


def test_a_skip_connection_keeps_its_tensor_live_until_the_add():
    k = keras()
    L = k.layers
    inputs = k.Input((8, 8, 2))
    a = L.Conv2D(4, 1)(inputs)
    c = L.Conv2D(4, 1)(L.Conv2D(8, 1)(a))
    model = k.Model(inputs, L.Add()([a, c]))
    rng = np.random.default_rng(0)  # non-zero biases: every op survives the converter
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    stats = _tflite_stats(model)
    assert [o["op"] for o in stats["ops"]] == ["CONV_2D", "CONV_2D", "CONV_2D", "ADD"]
    # at the third convolution: a (8x8x4), its input (8x8x8) and its output (8x8x4), floats
    assert stats["peak_activation_bytes"] == (64 * 4 + 64 * 8 + 64 * 4) * 4
    assert stats == _tflite_stats(model, plain=True)


class FakeInterpreter:
    """The four calls graph_stats makes, over a hand-written graph: 0 in, 2 weights, 1 out."""

    def __init__(self, ops):
        self.ops = ops

    def _get_ops_details(self):
        return [{"op_name": name, "inputs": np.array(i), "outputs": np.array(o)} for name, i, o in self.ops]

    def get_tensor_details(self):
        shapes = {0: [1, 8], 1: [8, 8], 2: [1, 8], 3: [1, 8]}
        return [{"index": i, "shape": np.array(s), "dtype": np.float32} for i, s in shapes.items()]

    def get_input_details(self):
        return [{"index": 0}]

    def get_output_details(self):
        return [{"index": 2}]


def test_graphs_whose_work_is_hidden_have_no_mac_count():
    assert rt.graph_stats(object()) is None  # a runtime without _get_ops_details
    only_delegate = FakeInterpreter([("DELEGATE", [0, 1], [2])])
    assert rt.graph_stats(only_delegate) is None
    edgetpu = rt.graph_stats(FakeInterpreter([("edgetpu-custom-op", [0], [2])]))
    assert edgetpu["macs"] is None and edgetpu["custom_ops"] == ["edgetpu-custom-op"]
    assert edgetpu["peak_activation_bytes"] == 2 * 8 * 4
    visible = rt.graph_stats(FakeInterpreter([("FULLY_CONNECTED", [0, 1, -1], [2]), ("DELEGATE", [0, 1], [2])]))
    assert visible["macs"] == 64 and [o["op"] for o in visible["ops"]] == ["FULLY_CONNECTED"]
