"""The benchmark core that also runs on devices: numpy and a TFLite runtime only, Python 3.7 syntax."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecv import runtime as rt

RUNTIME_FILE = Path(rt.__file__)


def test_runtime_module_is_python37_syntax():
    tree = ast.parse(RUNTIME_FILE.read_text(), feature_version=(3, 7))  # a SyntaxError fails the test
    assert any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def test_runtime_module_imports_nothing_from_edgecv_or_tensorflow():
    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('devrt', r'{RUNTIME_FILE}')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "r = m.find_runtime()\n"
        "print(r.name, 'tensorflow' in sys.modules, any(k.startswith('edgecv') for k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["ai_edge_litert", "False", "False"]


def test_unknown_runtime_is_named_in_the_error():
    with pytest.raises(rt.RuntimeMissing, match="nope"):
        rt.find_runtime("nope")


def test_inputs_are_quantized_with_the_models_own_parameters(tiny_tflite):
    model = rt.TFLiteModel(tiny_tflite["int8"])
    scale, zero_point = model.input["quantization"]
    pixels = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    q = model.prepare(pixels)
    assert q.dtype == np.int8
    expected = np.clip(np.round(pixels / scale + zero_point), -128, 127)
    assert np.array_equal(q, expected.astype(np.int8))
    float_model = rt.TFLiteModel(tiny_tflite["float32"])
    assert float_model.prepare(pixels).dtype == np.float32


def test_tflite_accuracy_matches_keras(tiny_tflite, tiny_trained, tiny_dataset):
    model = rt.TFLiteModel(tiny_tflite["float32"])
    accuracy, predictions = rt.measure_accuracy(model, model.prepare(tiny_dataset.x_test), tiny_dataset.y_test)
    keras_predictions = np.argmax(tiny_trained.model.predict(tiny_dataset.x_test, verbose=0), axis=1)
    assert np.mean(predictions == keras_predictions) >= 0.98
    assert accuracy == pytest.approx(tiny_trained.test_accuracy, abs=0.02)


def test_latency_summary_is_ordered_and_counts_runs(tiny_tflite, tiny_dataset):
    model = rt.TFLiteModel(tiny_tflite["int8"])
    steps = []
    latency = rt.measure_latency(model, model.prepare(tiny_dataset.x_test), warmup=3, runs=60,
                                 on_step=lambda d, t: steps.append((d, t)))
    assert latency["runs"] == 60 and latency["warmup"] == 3
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
    assert latency["first_ms"] > 0
    assert steps[-1] == (60, 60)


def test_weight_stats_skip_shape_constants_and_read_float16(tiny_dataset):
    from edgecv._tf import keras
    from edgecv.compress.quantize import calibration_images, convert

    L = keras().layers
    inputs = keras().Input((16, 16, 3))
    x = L.Conv2D(4, 3)(inputs)
    x = L.Cropping2D(2)(x)  # a STRIDED_SLICE or SLICE with begin/end/size constants
    x = L.ZeroPadding2D(1)(x)  # a PAD with a paddings constant of rank 2
    model = keras().Model(inputs, L.Dense(3)(L.Flatten()(x)))
    rng = np.random.default_rng(0)  # non-zero biases: the converter drops an all-zero bias
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    for mode in ("float32", "float16", "int8"):
        content = convert(model, mode, calibration_images(tiny_dataset, 10))
        params, _ = rt.weight_stats(rt.TFLiteModel(content=content, plain=True).interpreter)
        assert params == model.count_params(), mode


def test_weight_stats_count_the_keras_parameters(tiny_tflite, tiny_trained):
    for mode in ("float32", "int8"):
        params, sparsity = rt.weight_stats(rt.TFLiteModel(tiny_tflite[mode]).interpreter)
        assert params == tiny_trained.model.count_params(), mode
        assert 0 <= sparsity < 0.05


def test_benchmark_record_is_complete(tiny_tflite, tiny_dataset):
    record = rt.benchmark_tflite(tiny_tflite["int8"], tiny_dataset.x_test, tiny_dataset.y_test, warmup=2, runs=20)
    assert record["format"] == "tflite" and record["images"] == len(tiny_dataset.y_test)
    assert record["input"]["dtype"] == "int8"
    size = tiny_tflite["int8"].stat().st_size
    assert record["size_bytes"] == size and 0 < record["gzip_bytes"] < size
    assert record["runtime"]["name"] == "ai_edge_litert" and record["runtime"]["version"]


def test_records_carry_macs_and_peak_memory(tiny_tflite, tiny_dataset):
    records = {mode: rt.benchmark_tflite(tiny_tflite[mode], tiny_dataset.x_test, tiny_dataset.y_test, warmup=1, runs=5)
               for mode in ("float32", "int8")}
    macs = 14 * 14 * 32 * 27 + 5 * 5 * 64 * 288 + 256 * 128 + 128 * 3  # seed-cnn on 16x16 images, 3 classes
    for record in records.values():
        assert record["macs"] == macs
        assert record["details"]["macs_by_op"] == {"CONV_2D": macs - 256 * 128 - 128 * 3,
                                                   "FULLY_CONNECTED": 256 * 128 + 128 * 3}
    # int8 activations are one byte, float32 four
    assert records["int8"]["peak_activation_bytes"] * 4 == records["float32"]["peak_activation_bytes"] > 0


def test_device_script_is_a_copy_of_this_module():
    assert (RUNTIME_FILE.parents[1] / "tools" / "edgecv_bench.py").read_bytes() == RUNTIME_FILE.read_bytes(), (
        "cp edgecv/runtime.py tools/edgecv_bench.py")


def test_environment_records_what_it_reads():
    env = rt.environment(rt.find_runtime(), 1)
    assert env["python"] and env["numpy"] == np.__version__ and env["threads"] == 1
    assert env["runtime"]["name"] == "ai_edge_litert"
    assert rt.environment(None, None)["runtime"] is None
