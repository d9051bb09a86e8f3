"""Run and time TFLite models with whichever runtime is installed: the benchmark core.

This module must run on a Raspberry Pi or a Coral board with only the standard library, numpy and one
TFLite runtime, on Python 3.7+ and numpy 1.x or 2.x. It imports nothing from edgecv and never imports
TensorFlow while a lighter runtime is installed. Keep it that way: no syntax or calls newer than 3.7.

Clocks time ``invoke()`` only; inputs are set outside them. The first inference (which includes lazy
initialisation, and on an Edge TPU loading the model onto the chip) is reported apart from the steady
state, and the tail is kept: p50, p90 and p99 with no outlier clipping.
"""

from __future__ import annotations

import gzip
import os
import platform
import sys
import time

import numpy as np

RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


class RuntimeMissing(Exception):
    """No TFLite runtime could be imported (the message lists why each one failed)."""


class Runtime(object):
    def __init__(self, name, version, interpreter_cls, load_delegate):
        self.name = name
        self.version = version
        self.interpreter_cls = interpreter_cls
        self.load_delegate = load_delegate

    def describe(self):
        return {"name": self.name, "version": self.version}


def find_runtime(preferred=None):
    """The first importable runtime of ``preferred`` (or all, in the order of ``RUNTIMES``)."""
    names = [preferred] if preferred else list(RUNTIMES)
    failures = []
    for name in names:
        try:
            return _import_runtime(name)
        except Exception as e:  # tflite_runtime built for numpy 1 fails under numpy 2 with varied errors
            failures.append("%s: %s" % (name, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
    raise RuntimeMissing("no TFLite runtime could be loaded (" + "; ".join(failures) + ")")


def _import_runtime(name):
    if name == "ai_edge_litert":
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Runtime(name, _dist_version("ai-edge-litert"), Interpreter, load_delegate)
    if name == "tflite_runtime":
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return Runtime(name, getattr(tflite_runtime, "__version__", None) or _dist_version("tflite-runtime"),
                       Interpreter, load_delegate)
    if name == "tensorflow":
        import tensorflow as tf

        return Runtime(name, tf.__version__, tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    raise ValueError("unknown runtime %r (choose from %s)" % (name, ", ".join(RUNTIMES)))


def _dist_version(dist):
    try:
        from importlib.metadata import version  # Python 3.8+
    except ImportError:
        try:
            from importlib_metadata import version
        except ImportError:
            return None
    try:
        return version(dist)
    except Exception:
        return None


class TFLiteModel(object):
    """One interpreter with batch-1 input, and the conversion of raw pixels into its input layout."""

    def __init__(self, path=None, content=None, threads=1, runtime=None, delegates=None):
        self.runtime = runtime or find_runtime()
        kwargs = {"num_threads": threads}
        if delegates:
            kwargs["experimental_delegates"] = delegates
        if content is not None:
            kwargs["model_content"] = content
        else:
            kwargs["model_path"] = str(path)
        self.interpreter = self.runtime.interpreter_cls(**kwargs)
        self.interpreter.allocate_tensors()
        self.threads = threads
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def prepare(self, images):
        """Raw pixels (N, H, W, C) to the input dtype, quantized with the scale and zero point the model states."""
        dtype = np.dtype(self.input["dtype"])
        x = np.asarray(images, dtype=np.float32)
        if dtype.kind in "iu":
            scale, zero_point = self.input["quantization"]
            if scale:
                x = np.round(x / scale + zero_point)
            info = np.iinfo(dtype)
            x = np.clip(x, info.min, info.max)
        return x.astype(dtype)

    def set_input(self, prepared_one):
        self.interpreter.set_tensor(self.input["index"], prepared_one[np.newaxis])

    def invoke(self):
        self.interpreter.invoke()

    def output_scores(self):
        """The output as floats (dequantized when the model quantizes it)."""
        y = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero_point = self.output["quantization"]
        if np.dtype(self.output["dtype"]).kind in "iu" and scale:
            return (y.astype(np.float32) - zero_point) * scale
        return y.astype(np.float32)

    def describe_input(self):
        scale, zero_point = self.input["quantization"]
        return {"dtype": np.dtype(self.input["dtype"]).name, "shape": [int(d) for d in self.input["shape"]],
                "scale": float(scale), "zero_point": int(zero_point)}


def summarize(times_s):
    """Latency summary in milliseconds: median and tail, nothing clipped."""
    ms = np.asarray(times_s, dtype=np.float64) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "runs": int(len(ms)),
    }


def measure_latency(model, prepared, warmup=10, runs=200, on_step=None):
    """Times single-image ``invoke()`` calls over distinct inputs; returns the summary with first_ms."""
    n = len(prepared)
    model.set_input(prepared[0])
    start = time.perf_counter()
    model.invoke()
    first = time.perf_counter() - start
    for i in range(warmup):
        model.set_input(prepared[i % n])
        model.invoke()
    times = []
    for i in range(runs):
        model.set_input(prepared[i % n])
        start = time.perf_counter()
        model.invoke()
        times.append(time.perf_counter() - start)
        if on_step is not None and ((i + 1) % 50 == 0 or i + 1 == runs):
            on_step(i + 1, runs)
    result = summarize(times)
    result["first_ms"] = first * 1000.0
    result["warmup"] = int(warmup)
    return result


def measure_accuracy(model, prepared, labels, on_step=None):
    """Top-1 accuracy, one image at a time as on a device; returns (accuracy, predicted labels)."""
    predictions = np.empty(len(prepared), dtype=np.int64)
    for i in range(len(prepared)):
        model.set_input(prepared[i])
        model.invoke()
        predictions[i] = int(np.argmax(model.output_scores()))
        if on_step is not None and ((i + 1) % 500 == 0 or i + 1 == len(prepared)):
            on_step(i + 1, len(prepared))
    labels = np.asarray(labels)
    return float(np.mean(predictions == labels)) if len(labels) else float("nan"), predictions


def weight_stats(interpreter):
    """Parameters and kernel sparsity read from the model's constant tensors.

    Constants are the op inputs that no op produces and the graph does not take as input. Kernels are the
    constants of rank 2 or more; sparsity is their share of exact zeros. Returns (None, None) when the
    runtime hides its op list.
    """
    try:
        ops = interpreter._get_ops_details()
    except Exception:
        return None, None
    produced = set(int(i) for op in ops for i in op["outputs"])
    graph_inputs = set(d["index"] for d in interpreter.get_input_details())
    constants = set(int(i) for op in ops for i in op["inputs"] if i >= 0 and i not in produced and i not in graph_inputs)
    shape_ops = ("RESHAPE", "PAD", "PADV2", "MEAN", "STRIDED_SLICE", "TRANSPOSE", "CONCATENATION", "SUM")
    shape_constants = set(int(op["inputs"][-1]) for op in ops if op["op_name"] in shape_ops and len(op["inputs"]))
    params = weights = zeros = 0
    for index in constants - shape_constants:
        try:
            value = interpreter.get_tensor(index)
        except ValueError:
            continue
        params += int(value.size)
        if value.ndim >= 2:
            weights += int(value.size)
            zeros += int(np.sum(value == 0))
    return params, (zeros / weights if weights else 0.0)


def file_sizes(data):
    """(bytes, gzip bytes): pruning's zeros only pay off once the file is compressed."""
    return len(data), len(gzip.compress(data, 9))


def benchmark_tflite(path, images, labels, threads=1, warmup=10, runs=200, runtime=None, delegates=None,
                     name=None, on_step=None, model=None):
    """Benchmarks one ``.tflite`` file: accuracy over all ``images``, batch-1 latency, size and weights.

    ``images`` are raw pixels; each model gets them in its own input layout. Returns a JSON-ready record.
    ``on_step(phase, done, total)`` reports progress through the latency and accuracy loops. ``model`` is a
    ``TFLiteModel`` of ``path`` built by the caller (it must not have run yet: its first inference is timed).
    """
    with open(str(path), "rb") as f:
        content = f.read()
    if model is None:
        model = TFLiteModel(content=content, threads=threads, runtime=runtime, delegates=delegates)
    prepared = model.prepare(images)
    step = (lambda phase: (lambda d, t: on_step(phase, d, t))) if on_step else (lambda phase: None)
    latency = measure_latency(model, prepared, warmup, runs, step("latency"))
    accuracy, _ = measure_accuracy(model, prepared, labels, step("accuracy"))
    params, sparsity = weight_stats(model.interpreter)
    size, gz = file_sizes(content)
    return {
        "stage": name or os.path.splitext(os.path.basename(str(path)))[0],
        "model": str(path),
        "format": "tflite",
        "status": "ok",
        "accuracy": accuracy,
        "images": int(len(labels)),
        "latency": latency,
        "params": params,
        "sparsity": sparsity,
        "size_bytes": size,
        "gzip_bytes": gz,
        "runtime": model.runtime.describe(),
        "threads": threads,
        "input": model.describe_input(),
    }


def environment(runtime=None, threads=None):
    """What the numbers were measured on; a value that cannot be read is None, never a guess."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "runtime": runtime.describe() if runtime else None,
        "threads": threads,
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("model name", "hardware", "cpu model"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
