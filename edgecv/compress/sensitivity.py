"""Which layer does int8 hurt? Per-layer quantization error from TFLite's quantization debugger, and the
accuracy bought back by keeping a layer in float.

The error of a layer is the RMSE between its float and int8 outputs on calibration images, divided by the
int8 scale of that output (so 1.0 means one quantization step of error). Keeping a layer float makes the
converter leave its ops unquantized, with quantize/dequantize ops around them: the model keeps float input
and output, and costs size and latency for what it gains.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecv import runtime as rt
from edgecv._tf import tf
from edgecv.data.datasets import Dataset
from edgecv.errors import ConfigError
from edgecv.fsutil import captured_output
from edgecv.progress import Progress, ProgressFn, ignore
from edgecv.compress.prune import PRUNABLE
from edgecv.compress.quantize import representative, with_batch


@dataclass
class LayerSensitivity:
    layer: str
    error: float  # RMSE / scale of the layer's int8 output, worst op of the layer
    nodes: list[str] = field(default_factory=list)  # TFLite tensor names of the layer's ops
    accuracy_kept_float: float | None = None  # test accuracy with only this layer left in float


@dataclass
class SensitivityResult:
    layers: list[LayerSensitivity]  # worst first
    int8_accuracy: float | None
    images: int

    def worst(self, k: int) -> list[str]:
        return [s.layer for s in self.layers[:k]]

    def to_dict(self) -> dict:
        return {"int8_accuracy": self.int8_accuracy, "images": self.images, "layers": [asdict(s) for s in self.layers]}


def quantizable_layers(model) -> list[str]:
    return [layer.name for layer in model.layers if type(layer).__name__ in PRUNABLE]


def _debugger(model, calibration: np.ndarray, denylist: list[str] | None = None):
    tf_ = tf()
    converter = tf_.lite.TFLiteConverter.from_keras_model(with_batch(model, 1))
    converter.optimizations = [tf_.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative(calibration)
    options = tf_.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylist) if denylist else None
    with warnings.catch_warnings(), captured_output():  # it runs tf.lite.Interpreter, deprecated and noisy
        warnings.simplefilter("ignore")
        return tf_.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative(calibration), debug_options=options)


def layer_errors(model, calibration: np.ndarray) -> list[LayerSensitivity]:
    """Per-layer RMSE/scale from the quantization debugger, worst first."""
    debugger = _debugger(model, calibration)
    with warnings.catch_warnings(), captured_output():
        warnings.simplefilter("ignore")
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    names = quantizable_layers(model)
    by_layer: dict[str, LayerSensitivity] = {}
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        layer = _layer_of(row["tensor_name"], names)
        scale = float(row["scale"])
        if layer is None or not scale:
            continue
        error = float(np.sqrt(float(row["mean_squared_error"]))) / scale
        entry = by_layer.setdefault(layer, LayerSensitivity(layer, 0.0))
        entry.error = max(entry.error, error)
        entry.nodes.append(row["tensor_name"])
    return sorted(by_layer.values(), key=lambda s: s.error, reverse=True)


def _layer_of(tensor: str, names: list[str]) -> str | None:
    """The layer a converted tensor came from: its name scope, which Keras 3 numbers (``conv_1`` for ``conv``)."""
    exact = next((n for n in names if f"/{n}/" in tensor), None)
    return exact or next((n for n in names if re.search(f"/{re.escape(n)}_[0-9]+/", tensor)), None)


def convert_keep_float(model, calibration: np.ndarray, layers: list[str]) -> bytes:
    """int8 everywhere but in ``layers``, which stay float.

    Raises:
        ConfigError: a layer name the model does not have, or one without quantizable ops.
    """
    known = quantizable_layers(model)
    unknown = [n for n in layers if n not in known]
    if unknown:
        raise ConfigError(f"no quantizable layer named {', '.join(unknown)}; the model has {', '.join(known)}")
    errors = {s.layer: s for s in layer_errors(model, calibration)}
    nodes = [node for name in layers for node in errors[name].nodes] if all(n in errors for n in layers) else None
    if not nodes:
        raise ConfigError(f"found no quantized ops of {', '.join(layers)} to keep in float")
    debugger = _debugger(model, calibration, nodes)
    with warnings.catch_warnings(), captured_output():
        warnings.simplefilter("ignore")
        return debugger.get_nondebug_quantized_model()


def sensitivity(model, dataset: Dataset, calibration: np.ndarray, images: int | None = 2000,
                on_progress: ProgressFn = ignore) -> SensitivityResult:
    """Each layer's error, and the test accuracy with that layer alone kept float (on ``images`` test images)."""
    from edgecv.compress.quantize import convert

    layers = layer_errors(model, calibration)
    sample = dataset.subset(test=images, seed=0)
    runtime = rt.find_runtime()

    def accuracy(content: bytes) -> float:
        with captured_output():
            m = rt.TFLiteModel(content=content, runtime=runtime)
        return rt.measure_accuracy(m, m.prepare(sample.x_test), sample.y_test)[0]

    total = len(layers) + 1
    on_progress(Progress("sensitivity", 0, total))
    int8 = accuracy(convert(model, "int8", calibration, "float32"))
    for i, entry in enumerate(layers):
        entry.accuracy_kept_float = accuracy(convert_keep_float(model, calibration, [entry.layer]))
        on_progress(Progress("sensitivity", i + 2, total, entry.layer))
    return SensitivityResult(layers, int8, len(sample.y_test))
