"""Below int8: int4 weights on the layers that can take them, int8 everywhere else.

The TFLite converter stops at int8 (``keep_float`` only goes up). The LiteRT quantizer (``litert-quantizer``,
formerly ai-edge-quantizer) quantizes a float ``.tflite`` from a recipe chosen per layer and stores int4 weights
packed two to a byte, so a few large layers at 4 bits make the file markedly smaller. Which layers can take it is
measured, not guessed: each candidate layer alone at int4 is scored by the caller's held-out ``evaluate``, once
per rounding method (min-max: the scale spans the largest weight; mse: the scale is set from the weights' RMS,
clipping outliers, which suits most 4-bit kernels but not all); those that lose least per byte saved go first,
each with its better method, and each is kept only while the whole model stays within ``max_drop_points`` of the
plain int8 model that the quantizer builds from the same calibration.

The files have int8 activations (static, calibrated once by the running min/max over the images, the converter's
rule: the quantizer's default, a moving average of each image's range, narrowed the ranges and cost seed-cnn on
CIFAR-10 1.1 points), int8 per-channel weights, int8 input and output, as the converter's int8. What this path
cannot do: uint8 input and output (the Edge TPU's), and int4 on depthwise convolutions (the quantizer has no such
recipe); the Edge TPU compiler takes no int4 either, so the converter (:mod:`edgecv.compress.quantize`) stays the
path for the Edge TPU. The quantizer writes version 1 for every op, so a runtime cannot tell from the versions that
a file needs int4 or int8 kernels. XNNPACK leaves int4 layers to TFLite's own kernels: smaller, not faster. The
quantizer calibrates through a signature only: a float file without one (MLPerf Tiny's) gets ``serving_default``.
"""

from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np

from edgecv.compress.tflite_bits import TFLiteLayout, WeightLayer, read_flatbuffer, tflite_layout
from edgecv.errors import ConfigError, DataError, Unsupported, first_line
from edgecv.fsutil import captured_stderr
from edgecv.progress import Progress, ProgressFn, ignore

TASK = "mixed precision"
DISTRIBUTION = "litert-quantizer"
REQUIREMENT = "litert-quantizer==0.11.*"
SIGNATURE = "serving_default"
INT4_METHODS = {"min-max": "min_max_uniform_quantize", "mse": "MSE"}  # edgecv's names -> the quantizer's keys

Evaluate = Callable[[bytes], float]  # a .tflite file's accuracy (0-1) on held-out images


@dataclass(frozen=True)
class LayerChoice:
    name: str
    op: str
    params: int
    bits: int  # as stored in the mixed file
    method: str | None  # how its int4 weights were rounded (a key of INT4_METHODS); None when not int4
    int4_accuracy: dict[str, float]  # method -> held-out accuracy with only this layer at int4; {}: no int4 op


@dataclass(frozen=True)
class MixedResult:
    model: bytes
    layers: tuple[LayerChoice, ...]  # every weight layer, in graph order
    layout: TFLiteLayout  # of ``model``, read from the file
    int8_accuracy: float  # held-out, of the plain int8 model the quantizer builds
    accuracy: float  # held-out, of ``model``
    int8_bytes: int
    size_bytes: int
    max_drop_points: float
    evaluations: int  # models quantized and scored
    made_by: str  # "litert-quantizer 0.11.0"

    @property
    def int4_layers(self) -> dict[str, str]:
        """name -> rounding method of the layers stored at int4."""
        return {layer.name: layer.method for layer in self.layers if layer.bits == 4}

    @property
    def drop_points(self) -> float:
        return 100 * (self.int8_accuracy - self.accuracy)

    def to_dict(self) -> dict:
        return {"made_by": self.made_by, "max_drop_points": self.max_drop_points, "evaluations": self.evaluations,
                "int8_accuracy": self.int8_accuracy, "accuracy": self.accuracy, "drop_points": self.drop_points,
                "int8_bytes": self.int8_bytes, "size_bytes": self.size_bytes, "int4_layers": self.int4_layers,
                "layers": [asdict(layer) for layer in self.layers], "breakdown": self.layout.breakdown()}


def quantizer_version() -> str:
    """The installed LiteRT quantizer's version; Unsupported (exit 3) with the install line when it is missing."""
    from importlib import import_module
    from importlib.metadata import PackageNotFoundError, version

    try:
        import_module("litert_quantizer")
        return version(DISTRIBUTION)
    except (ImportError, PackageNotFoundError):
        raise Unsupported(f"mixed precision needs the LiteRT quantizer: pip install '{REQUIREMENT}'") from None


def with_signature(tflite: bytes) -> bytes:
    """The model as it is when it has a signature; else with ``serving_default`` over the main subgraph's inputs
    and outputs, named after their tensors: the quantizer calibrates through signatures only."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    fb = read_flatbuffer(tflite)
    if fb.signatureDefs:
        return bytes(tflite)
    graph = fb.subgraphs[0]

    def tensor_map(indices):
        return [schema.TensorMapT(name=graph.tensors[i].name.decode(), tensorIndex=int(i)) for i in indices]

    fb.signatureDefs = [schema.SignatureDefT(inputs=tensor_map(graph.inputs), outputs=tensor_map(graph.outputs),
                                             signatureKey=SIGNATURE, subgraphIndex=0)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(fb))


@contextmanager
def _quiet():
    """The quantizer's progress bars, logs and warnings go to a buffer, never through the caller's output."""
    with captured_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class StaticQuantizer:
    """A float ``.tflite`` calibrated once; :meth:`quantize` writes it with int8 activations and int8 weights,
    int4 weights on the layers named.

    ``calibration``: raw pixels (N, H, W, C) from the train split, as the model takes them (its own Rescaling
    layer scales them).

    Raises:
        Unsupported: the LiteRT quantizer is not installed.
        DataError: the file is not a float TFLite model, or the images do not fit its input.
        ConfigError: no calibration images.
    """

    def __init__(self, float_tflite: bytes, calibration: np.ndarray):
        self.made_by = f"{DISTRIBUTION} {quantizer_version()}"
        from ai_edge_litert.tools import flatbuffer_utils
        from litert_quantizer import calibrator, recipe, recipe_manager
        from litert_quantizer.utils import qsv_utils
        from litert_quantizer.utils import tfl_flatbuffer_utils as fbu

        self.float_model = with_signature(float_tflite)
        fb = read_flatbuffer(self.float_model)
        if not fbu.is_float_model(fb):
            raise DataError("mixed precision starts from a float32 .tflite (convert with mode float32), "
                            "not a quantized one")
        self.layers: tuple[WeightLayer, ...] = tflite_layout(self.float_model).layers
        graph = fb.subgraphs[0]
        self._int4 = {}  # name -> (scope regex, quantizer op name) of the layers that take int4 weights
        for layer in self.layers:
            op = graph.operators[layer.index]
            code = flatbuffer_utils.get_builtin_code_from_operator_code(fb.operatorCodes[op.opcodeIndex])
            op_name = fbu.TFL_OP_CODE_TO_NAME.get(code)
            regex = "^" + re.escape(fbu.get_op_scope(op, graph.tensors)) + "$"
            if op_name is not None and _takes_int4(regex, op_name):
                self._int4[layer.name] = (regex, op_name)
        self.candidates = tuple(layer for layer in self.layers if layer.name in self._int4)

        signature = fb.signatureDefs[0]
        inputs = signature.inputs or []
        if len(inputs) != 1:
            raise DataError(f"mixed precision takes models with one image input; this one has {len(inputs)}")
        images = np.asarray(calibration, dtype=np.float32)
        if len(images) == 0:
            raise ConfigError("mixed precision is calibrated on train images: none were given")
        expected = tuple(int(d) for d in graph.tensors[inputs[0].tensorIndex].shape[1:])
        if images.shape[1:] != expected:
            raise DataError(f"calibration images are {images.shape[1:]}, the model takes {expected}")
        data = {signature.signatureKey.decode(): [{inputs[0].name.decode(): images[i : i + 1]}
                                                  for i in range(len(images))]}
        # The quantizer's own calibrate() averages each image's min/max (a moving average), which narrows the
        # ranges and clips what the averaged images did not reach; the running min/max is the converter's rule.
        recipes = recipe_manager.RecipeManager()
        recipes.load_quantization_recipe(recipe.static_wi8_ai8())
        try:
            with _quiet():
                calibration_run = calibrator.Calibrator(
                    self.float_model, num_threads=os.cpu_count() or 1, qsv_update_func=qsv_utils.min_max_update,
                    mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
                calibration_run.calibrate(data, recipes)
                self._calibration = calibration_run.get_model_qsvs()
        except (ValueError, RuntimeError, KeyError) as e:
            raise DataError(f"the LiteRT quantizer cannot calibrate this model: {first_line(e)}") from None

    def quantize(self, int4: Mapping[str, str] | None = None) -> bytes:
        """The int8 model, with int4 weights on the layers named: ``{name: method}``, a name as in
        :attr:`candidates`, a method a key of :data:`INT4_METHODS`."""
        from litert_quantizer import quantizer, recipe

        int4 = dict(int4 or {})
        unknown = sorted(set(int4) - set(self._int4))
        if unknown:
            raise ConfigError(f"no int4 weights for {', '.join(unknown)}: the layers that take them are "
                              f"{', '.join(self._int4) or 'none'}")
        methods = sorted(set(int4.values()) - set(INT4_METHODS))
        if methods:
            raise ConfigError(f"unknown int4 method {', '.join(methods)}: choose from {', '.join(INT4_METHODS)}")
        qt = quantizer.Quantizer(self.float_model, recipe.static_wi8_ai8())
        for name, method in sorted(int4.items()):
            regex, op_name = self._int4[name]
            qt.add_static_config(regex, op_name, activation_num_bits=8, weight_num_bits=4,
                                 algorithm_key=INT4_METHODS[method])
        try:
            with _quiet():
                result = qt.quantize(self._calibration, enable_progress_report=False)
        except (ValueError, RuntimeError, KeyError) as e:
            raise DataError(f"the LiteRT quantizer failed on this model: {first_line(e)}") from None
        return bytes(result.quantized_model)


def _takes_int4(regex: str, op_name: str) -> bool:
    """Whether the quantizer has a static recipe with int4 weights for this op (it checks as it adds one)."""
    from litert_quantizer import recipe_manager

    try:
        recipe_manager.RecipeManager().add_static_config(regex, op_name, 8, 4)
    except ValueError:
        return False
    return True


def quantize_mixed(
    float_tflite: bytes, calibration: np.ndarray, evaluate: Evaluate, max_drop_points: float,
    on_progress: ProgressFn = ignore,
) -> MixedResult:
    """int4 weights where the held-out accuracy allows, int8 elsewhere; see the module docstring.

    ``evaluate`` scores a ``.tflite`` file on images kept apart from the test split, e.g. a slice of the train
    split (choosing on the test split would leave no honest test number); :func:`accuracy_scorer` makes one.
    ``max_drop_points``: how far, in percentage points, the mixed model may fall below the plain int8 one on
    those images; 0 keeps only layers that lose nothing.

    Scores the int8 model, then each candidate layer alone at int4 with each method (its sensitivity); the
    layers within the drop are tried, each with its better method, in order of points lost per byte saved, and
    each is kept if the model with it stays within the drop. At most 1 + 3 x candidates evaluations.
    """
    if not max_drop_points >= 0:
        raise ConfigError(f"the allowed accuracy drop must be >= 0 points, got {max_drop_points}")
    quantizer = StaticQuantizer(float_tflite, calibration)
    names = [layer.name for layer in quantizer.candidates]
    total = 1 + (len(INT4_METHODS) + 1) * len(names)
    scored: dict[frozenset, tuple[bytes, float]] = {}

    def score(int4: dict[str, str], message: str) -> tuple[bytes, float]:
        key = frozenset(int4.items())
        if key not in scored:
            model = quantizer.quantize(int4)
            scored[key] = (model, float(evaluate(model)))
            on_progress(Progress(TASK, len(scored), total, message))
        return scored[key]

    int8_model, int8_accuracy = score({}, "int8")

    def within(accuracy: float) -> bool:
        return 100 * (int8_accuracy - accuracy) <= max_drop_points + 1e-9

    alone = {name: {method: score({name: method}, f"{name} alone at int4 ({method})")
                    for method in INT4_METHODS} for name in names}
    best = {name: max(alone[name], key=lambda m: alone[name][m][1]) for name in names}  # ties: the first method
    saved = {name: len(int8_model) - len(alone[name][best[name]][0]) for name in names}
    cost = {name: max(0.0, int8_accuracy - alone[name][best[name]][1]) / saved[name] for name in names
            if saved[name] > 0 and within(alone[name][best[name]][1])}
    chosen: dict[str, str] = {}
    model, accuracy = int8_model, int8_accuracy
    for name in sorted(cost, key=lambda n: (cost[n], -saved[n])):
        trial, trial_accuracy = score({**chosen, name: best[name]}, f"{len(chosen) + 1} layers at int4")
        if within(trial_accuracy):
            chosen[name] = best[name]
            model, accuracy = trial, trial_accuracy
    on_progress(Progress(TASK, total, total, f"{len(chosen)} of {len(names)} layers at int4"))

    layout = tflite_layout(model)
    stored = layout.bits()
    layers = tuple(LayerChoice(layer.name, layer.op, layer.params, stored[layer.name], chosen.get(layer.name),
                               {method: acc for method, (_, acc) in alone.get(layer.name, {}).items()})
                   for layer in quantizer.layers)
    return MixedResult(model=model, layers=layers, layout=layout, int8_accuracy=int8_accuracy, accuracy=accuracy,
                       int8_bytes=len(int8_model), size_bytes=len(model), max_drop_points=max_drop_points,
                       evaluations=len(scored), made_by=quantizer.made_by)


def accuracy_scorer(images: np.ndarray, labels: np.ndarray, threads: int = 1) -> Evaluate:
    """An ``evaluate`` for :func:`quantize_mixed`: top-1 accuracy of a ``.tflite`` on these raw-pixel images, one
    image at a time in LiteRT with its default delegate, as deployed."""
    from edgecv import runtime as rt
    from edgecv.measure.benchmark import find_runtime

    if len(images) == 0 or len(images) != len(labels):
        raise ConfigError(f"the held-out scorer needs images with one label each, got {len(images)} images "
                          f"and {len(labels)} labels")
    runtime = find_runtime()

    def evaluate(model: bytes) -> float:
        with captured_stderr():  # LiteRT's "Created ... delegate" line
            tfl = rt.TFLiteModel(content=model, threads=threads, runtime=runtime)
        accuracy, _ = rt.measure_accuracy(tfl, tfl.prepare(images), labels)
        return accuracy

    return evaluate
