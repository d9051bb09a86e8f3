"""Run and time TFLite models with whichever runtime is installed: the benchmark core and the device script.

This one file is both ``edgecv.runtime`` (the host benchmark builds on it) and ``tools/edgecv_bench.py``
(a byte-identical copy, checked by a test) that a device kit carries to a Raspberry Pi or a Coral board:

    python3 edgecv_bench.py                      # every .tflite beside it, on samples.npz beside it
    python3 edgecv_bench.py --edgetpu --models model_edgetpu.tflite --out coral.json
    python3 edgecv_bench.py --check              # what this device has: one line per fact, exit 0 or 3

It must run with only the standard library, numpy and one TFLite runtime (ai_edge_litert, tflite_runtime or
tensorflow.lite), on Python 3.7+ and numpy 1.x or 2.x. It imports nothing from edgecv and never imports
TensorFlow while a lighter runtime is installed. Keep it that way: no syntax or calls newer than 3.7.

Clocks time ``invoke()`` only; inputs are set outside them. The first inference (which includes lazy
initialisation, and on an Edge TPU loading the model onto the chip) is reported apart from the steady
state, and the tail is kept: p50, p90 and p99 with no outlier clipping.
"""

from __future__ import annotations

import argparse
import base64
import glob
import gzip
import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import numpy as np

RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
SCHEMA = "edgecv.report/1"  # the host's report.json and the device's result share it: one reader serves both
EDGETPU_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
EXIT_BAD_INPUT, EXIT_MISSING = 2, 3  # edgecv.errors.ExitCode; this file imports nothing of edgecv
# the distributions each runtime comes in (for versions read without importing, and "installed but broken")
RUNTIME_DISTS = {"ai_edge_litert": ("ai-edge-litert",), "tflite_runtime": ("tflite-runtime",),
                 "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64", "intel-tensorflow")}
# The CPU features that decide which kernels XNNPACK (and ruy, TFLite's own int8 GEMM) pick, in the spelling
# of Linux's /proc/cpuinfo. x86: AVX/AVX2/FMA (the float baseline), AVX-512, VNNI (int8 dot products, AVX-512
# or AVX encoded), BF16, FP16 and AMX (tile matrix multiply). ARM: NEON ("asimd" on arm64, "neon" on 32-bit
# kernels), fp16 arithmetic, dot product (int8), int8 matrix multiply, SVE/SVE2, BF16.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8",
             "amx_bf16", "neon", "asimd", "asimdhp", "asimddp", "i8mm", "sve", "sve2", "bf16")
# A one-op float model (RELU over 4 values, op version 1, no metadata): proof that a runtime can build and run
# an interpreter, which importing it is not (tflite-runtime built for numpy 1 imports under numpy 2, then fails)
PROBE_MODEL = (
    "GAAAAFRGTDMAAA4AFAAQAAwACAAAAAQADgAAABAAAAAoAAAAFAEAAAMAAAADAAAAFAAAAAwAAAAEAAAAIP///yT///8o////AQAA"
    "ABAAAAAMABQAEAAMAAgABAAMAAAAEAAAADwAAABAAAAARAAAAAEAAAAQAAAAAAAKAAwAAAAIAAQACgAAAAgAAAAMAAAAAQAAAAEA"
    "AAABAAAAAAAAAAEAAAABAAAAAQAAAAAAAAACAAAAUAAAAAQAAADO////AAAAARAAAAAQAAAAAgAAABAAAAC4////AQAAAHkAAAAC"
    "AAAAAQAAAAQAAAAAABYAGAAUAAAAEAAMAAgAAAAAAAAABwAWAAAAAAAAARQAAAAUAAAAAQAAABQAAAAEAAQABAAAAAEAAAB4AAAA"
    "AgAAAAEAAAAEAAAAAQAAABAAAAAMAAwACwAAAAAABAAMAAAAEwAAAAAAABM=")


class RuntimeMissing(Exception):
    """No TFLite runtime could be imported (the message lists why each one failed)."""


class DelegateMissing(Exception):
    """The Edge TPU delegate library or the device is not there."""


class Runtime(object):
    def __init__(self, name, version, interpreter_cls, load_delegate):
        self.name = name
        self.version = version
        self.interpreter_cls = interpreter_cls
        self.load_delegate = load_delegate

    def describe(self):
        return {"name": self.name, "version": self.version}


def find_runtime(preferred=None):
    """The first runtime of ``preferred`` (or all, in the order of ``RUNTIMES``) that imports and runs a model."""
    names = [preferred] if preferred else list(RUNTIMES)
    failures = []
    for name in names:
        try:
            runtime = _import_runtime(name)
        except Exception as e:  # tflite_runtime built for numpy 1 fails under numpy 2 with varied errors
            failures.append("%s: %s" % (name, _first_line(e)))
            continue
        problem = runs_a_model(runtime)
        if problem is None:
            return runtime
        failures.append("%s %s: imports, but cannot run a model (%s)" % (name, runtime.version, problem))
    raise RuntimeMissing("no TFLite runtime could be loaded (" + "; ".join(failures) + ")")


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_PROBED = {}  # runtime name -> None (runs) or why not: probed once per process


def runs_a_model(runtime):
    """None when ``runtime`` builds and runs an interpreter on ``PROBE_MODEL`` with the right answer, else why not."""
    if runtime.name not in _PROBED:
        _PROBED[runtime.name] = _probe(runtime)
    return _PROBED[runtime.name]


def _probe(runtime):
    stderr, sys.stderr = sys.stderr, io.StringIO()  # numpy prints a page about modules built for numpy 1
    try:
        model = TFLiteModel(content=base64.b64decode(PROBE_MODEL), runtime=runtime, plain=True)
        model.set_input(np.array([-1.0, 0.0, 2.0, -3.0], dtype=np.float32))
        model.invoke()
        if not np.array_equal(model.output_scores(), np.array([0.0, 0.0, 2.0, 0.0], dtype=np.float32)):
            return "a one-op model gave a wrong answer"
    except Exception as e:  # SystemError, ImportError, ValueError: whatever the binding raises
        while e.__cause__ is not None:  # "SystemError: ... returned a result with an exception set" hides why
            e = e.__cause__
        return _first_line(e) + (" (tflite-runtime is built for numpy 1.x; this is numpy %s)" % np.__version__
                                 if runtime.name == "tflite_runtime" and _major(np.__version__) >= 2 else "")
    finally:
        sys.stderr = stderr
    return None


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
        from importlib.metadata import version  # novermin (3.8+, guarded: 3.7 falls back below)
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

    def __init__(self, path=None, content=None, threads=1, runtime=None, delegates=None, plain=False,
                 delegate_name=None):
        """``plain``: no default delegate (XNNPACK), so that every op and tensor of the graph stays visible.
        ``delegate_name`` names ``delegates`` in the delegation record ("Edge TPU"); ``self.delegate`` is what
        the interpreter was asked to use: that name, "XNNPACK" (the runtime's default delegate) or None (plain)."""
        self.runtime = runtime or find_runtime()
        kwargs = {"num_threads": threads}
        self.delegate = "XNNPACK"
        if delegates:
            kwargs["experimental_delegates"] = delegates
            self.delegate = delegate_name or "external delegate"
        if plain:
            resolver = getattr(sys.modules[self.runtime.interpreter_cls.__module__], "OpResolverType", None)
            if resolver is not None:
                kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                self.delegate = None if not delegates else self.delegate
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

    def scores(self, images):
        """Each image's output scores (N, classes), one invoke per image as on a device."""
        out = []
        for one in self.prepare(images):
            self.set_input(one)
            self.invoke()
            out.append(self.output_scores())
        return np.stack(out)

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


def measure_latency_in_turns(models, prepared, rounds=10, runs=200, warmup=50):
    """Several models timed in turns, so that a ratio between them is fair on a host whose speed drifts.

    A shared or throttled CPU can run one file 1.7x slower in one process than in the next (measured: the
    MLPerf int8 file at 0.082 and 0.146 ms p50), so timing A, then B, then dividing can mislead. Here each
    round times every model for ``runs`` invokes, in an order rotated from round to round, and a ratio is
    taken round by round (see ``turn_ratio``). ``prepared[i]`` are inputs in ``models[i]``'s layout.

    Returns one summary per model over all its timed runs, each with ``round_p50_ms``.
    """
    if len(models) != len(prepared) or not models:
        raise ValueError("one prepared input array per model, and at least one model")
    for model, inputs in zip(models, prepared):
        for i in range(warmup):
            model.set_input(inputs[i % len(inputs)])
            model.invoke()
    times = [[] for _ in models]
    p50s = [[] for _ in models]
    for r in range(rounds):
        order = [(r + j) % len(models) for j in range(len(models))]
        for m in order:
            model, inputs = models[m], prepared[m]
            one = []
            for i in range(runs):
                model.set_input(inputs[i % len(inputs)])
                start = time.perf_counter()
                model.invoke()
                one.append(time.perf_counter() - start)
            times[m].extend(one)
            p50s[m].append(float(np.percentile(one, 50)) * 1000.0)
    out = []
    for m in range(len(models)):
        result = summarize(times[m])
        result.update(warmup=int(warmup), rounds=int(rounds), round_p50_ms=p50s[m])
        out.append(result)
    return out


def turn_ratio(candidate, reference):
    """``candidate``'s p50 over ``reference``'s, both from ``measure_latency_in_turns``: the median of the
    per-round ratios, with their lowest and highest, which say how much the host drifted."""
    ratios = np.asarray(candidate["round_p50_ms"]) / np.asarray(reference["round_p50_ms"])
    return {"ratio": float(np.median(ratios)), "lowest": float(ratios.min()), "highest": float(ratios.max()),
            "rounds": int(len(ratios))}


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


WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D",
              "UNIDIRECTIONAL_SEQUENCE_LSTM")


def weight_stats(interpreter):
    """Parameters and kernel sparsity read from the weights and biases of the model's weight ops.

    A weight is a constant input (after the first) of a convolution, fully-connected or LSTM op, or the
    constant behind the DEQUANTIZE (float16) or DENSIFY (sparse storage) that feeds one. Kernels are the weights of rank 2 or more;
    sparsity is their share of exact zeros. Returns (None, None) when the runtime hides its op list.
    """
    try:
        ops = interpreter._get_ops_details()
    except Exception:
        return None, None
    produced_by = dict((int(i), op) for op in ops for i in op["outputs"])
    graph_inputs = set(d["index"] for d in interpreter.get_input_details())
    weights_at = set()
    for op in ops:
        if op["op_name"] not in WEIGHT_OPS:
            continue
        for index in [int(i) for i in op["inputs"][1:] if i >= 0]:
            # back through the ops that only unpack a stored weight: float16 -> float, sparse -> dense
            while index in produced_by and produced_by[index]["op_name"] in ("DEQUANTIZE", "DENSIFY"):
                index = int(produced_by[index]["inputs"][0])
            if index not in produced_by and index not in graph_inputs:
                weights_at.add(index)
    details = dict((d["index"], d) for d in interpreter.get_tensor_details())
    params = weights = zeros = 0
    for index in weights_at:
        try:
            value = interpreter.get_tensor(index)
        except ValueError:
            continue
        shape = [int(d) for d in details[index]["shape"]] if index in details else list(value.shape)
        size = int(np.prod(shape)) if shape else int(value.size)
        # a tensor in TFLite's sparse format stores only its non-zeros: count it at its dense size
        sparse = index in details and bool(details[index].get("sparsity_parameters"))
        nonzero = int(np.count_nonzero(value))
        params += size
        if len(shape) >= 2:
            weights += size
            zeros += size - nonzero if sparse else int(value.size) - nonzero
    return params, (zeros / weights if weights else 0.0)


MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")


def _prod(dims):
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _op_macs(name, inputs, outputs, shape):
    """Multiply-accumulates of one op from its tensor shapes; 0 for an op without weights."""
    if name not in MAC_OPS or not outputs or len(inputs) < 2:
        return 0
    if name == "TRANSPOSE_CONV":  # inputs: output shape, weights (Cout, kh, kw, Cin), activations
        # every input pixel meets the whole kernel, as in the scatter form of the op
        return _prod(shape(inputs[2])[:-1]) * _prod(shape(inputs[1]))
    out, weights = _prod(shape(outputs[0])), shape(inputs[1])
    if name == "CONV_2D":  # weights (Cout, kh, kw, Cin per group)
        return out * _prod(weights[1:])
    if name == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, C * multiplier): one product per tap
        return out * _prod(weights[1:3])
    if name == "FULLY_CONNECTED":  # weights (units, in features); the output counts the batch rows
        return out * int(weights[-1])
    return out * _prod(weights[:-1])  # CONV_3D: weights (kd, kh, kw, Cin, Cout)


def graph_stats(interpreter):
    """MACs per op and in total, and the peak activation memory, read from the graph the interpreter holds.

    MACs count the weight ops only (convolutions, depthwise and transposed convolutions, fully-connected),
    the usual meaning of "MACs" (MLPerf Tiny's ResNet-8 has 12.5 M): pooling, MEAN, ADD, MUL and activations
    count 0. ``macs`` is None when the graph holds an op whose work cannot be seen, a custom op (an Edge
    TPU's compiled graph) above all; ``custom_ops`` names them.

    The peak is a liveness estimate of the tensor arena: a tensor produced by an op (graph inputs from the
    start) is live until its last consumer (graph outputs to the end); the peak is the largest sum of live
    bytes at any op. Constants are left out, and so are the outputs of ops that read constants only (the
    unpacked float16 or sparse weights): they are weights, whatever holds them. Op scratch buffers (im2col)
    and in-place sharing are not modelled.

    Returns ``{"macs", "peak_activation_bytes", "ops": [{"op", "macs"}], "custom_ops"}``, or None when the
    runtime hides its op list or only shows delegate nodes in place of the ops.
    """
    try:
        ops = interpreter._get_ops_details()
        details = dict((int(d["index"]), d) for d in interpreter.get_tensor_details())
        graph_inputs = [int(d["index"]) for d in interpreter.get_input_details()]
        graph_outputs = [int(d["index"]) for d in interpreter.get_output_details()]
    except Exception:
        return None
    # a delegate node (appended after the nodes it took over, which stay listed) repeats their outputs
    kept, seen = [], set()
    for op in ops:
        outputs = [int(i) for i in op["outputs"]]
        if op["op_name"] == "DELEGATE" or (outputs and all(i in seen for i in outputs)):
            continue
        seen.update(outputs)
        kept.append(op)
    ops = kept
    produced_at, last_use, live = {}, {}, set(graph_inputs)
    for step, op in enumerate(ops):
        inputs = [int(i) for i in op["inputs"] if i >= 0]
        for index in inputs:
            last_use[index] = step
        for index in op["outputs"]:
            produced_at.setdefault(int(index), step)
        # an op of constants alone (DEQUANTIZE of float16 weights, DENSIFY of sparse ones) makes a constant
        if any(i in live for i in inputs):
            live.update(int(i) for i in op["outputs"])
    if any(i not in produced_at and i not in graph_inputs for i in graph_outputs):
        return None  # the ops behind the outputs are hidden

    def shape(index):
        return [int(d) for d in details[int(index)]["shape"]]

    per_op, custom = [], []
    for op in ops:
        name = str(op["op_name"])
        inputs = [int(i) for i in op["inputs"]]
        outputs = [int(i) for i in op["outputs"]]
        try:
            macs = int(_op_macs(name, inputs, outputs, shape))
        except (KeyError, IndexError):  # a weight op of unexpected arity or shape: its work is unknown
            macs, name = 0, name + " (not counted)"
        if not name.isupper() or name == "CUSTOM":  # builtins are UPPER_CASE, custom ops go by their own name
            custom.append(name)
        per_op.append({"op": name, "macs": macs})
    end = max(len(ops) - 1, 0)
    delta = [0] * (end + 2)  # +bytes where a tensor's life starts, -bytes after it ends
    for index in live:
        if index not in details:
            continue
        start = produced_at.get(index, 0)
        stop = end if index in graph_outputs else max(last_use.get(index, start), start)
        size = _prod(shape(index)) * np.dtype(details[index]["dtype"]).itemsize
        delta[start] += size
        delta[stop + 1] -= size
    peak = now = 0
    for change in delta:
        now += change
        peak = max(peak, now)
    return {"macs": None if custom else sum(o["macs"] for o in per_op), "peak_activation_bytes": int(peak),
            "ops": per_op, "custom_ops": custom}


QUANTIZED_DTYPES = ("int8", "uint8", "int16")


def delegation(interpreter, delegate="XNNPACK"):
    """Which ops of the graph the delegate took and which stayed on TFLite's own (builtin) kernels.

    Read from the interpreter as built, so call it on the one that is timed. ai-edge-litert, tflite-runtime
    and tf.lite list every op of the model and, after them, one DELEGATE node per partition the delegate
    took, whose inputs and outputs are the partition's boundary; an op belongs to a partition when it lies
    between the two. ``delegate`` is what the interpreter was asked to use (None: none, a plain interpreter).

    Returns ``{"delegate", "partitions", "delegated_ops", "delegated_by_op", "fallback_ops", "quantized",
    "split"}``: ``fallback_ops`` counts the ops on the builtin kernels by op name; ``quantized`` is whether
    the activations are 8- or 16-bit integers; ``split`` is a quantized graph that runs partly in the
    delegate and partly outside it (each boundary hands tensors over, and the fallback kernels are slower).
    None when the runtime hides its op list, or only shows the delegate's nodes.
    """
    try:
        ops = interpreter._get_ops_details()
        dtypes = dict((int(d["index"]), np.dtype(d["dtype"]).name) for d in interpreter.get_tensor_details())
        graph_inputs = [int(d["index"]) for d in interpreter.get_input_details()]
    except Exception:
        return None
    nodes = [op for op in ops if op["op_name"] != "DELEGATE"]
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    producer = dict((int(t), op) for op in nodes for t in op["outputs"])
    taken = set()
    for part in partitions:
        boundary = set(int(t) for t in part["inputs"])
        todo = [int(t) for t in part["outputs"]]
        if any(t not in producer for t in todo):
            return None  # the ops inside the partition are not listed
        while todo:
            tensor = todo.pop()
            op = producer.get(tensor)
            if tensor in boundary or op is None or int(op["index"]) in taken:
                continue
            taken.add(int(op["index"]))
            todo.extend(int(t) for t in op["inputs"] if t >= 0)
    delegated, fallback = {}, {}
    for op in nodes:
        counts = delegated if int(op["index"]) in taken else fallback
        counts[str(op["op_name"])] = counts.get(str(op["op_name"]), 0) + 1
    activations = set(graph_inputs) | set(producer)
    quantized = any(dtypes.get(t) in QUANTIZED_DTYPES for t in activations)
    return {"delegate": delegate, "partitions": len(partitions), "delegated_ops": len(taken),
            "delegated_by_op": delegated, "fallback_ops": fallback, "quantized": quantized,
            "split": bool(quantized and taken and fallback)}


def _counted(ops):
    return ", ".join(op if n == 1 else "%s x%d" % (op, n) for op, n in sorted(ops.items()))


def delegation_summary(record):
    """One cell for a table: "XNNPACK 4/5 ops (1 partition); SOFTMAX on TFLite's kernels", "" when unknown."""
    if not record:
        return ""
    total = record["delegated_ops"] + sum(record["fallback_ops"].values())
    if record["delegate"] is None:
        return "no delegate: %d ops on TFLite's kernels" % total
    text = "%s %d/%d ops (%d partition%s)" % (record["delegate"], record["delegated_ops"], total,
                                             record["partitions"], "" if record["partitions"] == 1 else "s")
    if record["fallback_ops"] and record["delegated_ops"]:
        text += "; %s on TFLite's kernels" % _counted(record["fallback_ops"])
    return text


def delegation_warning(record):
    """One line for a quantized graph the delegate split (a ``delegation`` record), or None."""
    if not record or not record.get("split"):
        return None
    return ("quantized graph split: %s runs %d op(s) in %d partition(s), %s fall back to TFLite's own kernels"
            % (record["delegate"] or "the delegate", record["delegated_ops"], record["partitions"],
               _counted(record["fallback_ops"])))


def macs_by_op(stats):
    """Total MACs per op type, the op types that have any."""
    totals = {}
    for op in stats["ops"]:
        if op["macs"]:
            totals[op["op"]] = totals.get(op["op"], 0) + op["macs"]
    return totals


def file_sizes(data):
    """(bytes, gzip bytes): pruning's zeros only pay off once the file is compressed."""
    return len(data), len(gzip.compress(data, 9))


def benchmark_tflite(path, images, labels, threads=1, warmup=10, runs=200, runtime=None, delegates=None,
                     name=None, on_step=None, model=None, prepared=None, keep_predictions=False):
    """Benchmarks one ``.tflite`` file: accuracy over all ``images``, batch-1 latency, size, weights, MACs
    and peak activation memory (see ``graph_stats``), and which ops the delegate ran (``details["delegation"]``,
    see ``delegation``), read from the interpreter that was timed.

    ``images`` are raw pixels; each model gets them in its own input layout. Returns a JSON-ready record.
    ``on_step(phase, done, total)`` reports progress through the latency and accuracy loops. ``model`` is a
    ``TFLiteModel`` of ``path`` built by the caller (it must not have run yet: its first inference is timed).
    ``prepared`` are ``images`` already in the model's input layout (a kit's sample file carries them).
    ``keep_predictions`` adds each image's top-1 class, so that two runtimes can be compared image by image.
    """
    with open(str(path), "rb") as f:
        content = f.read()
    if model is None:
        model = TFLiteModel(content=content, threads=threads, runtime=runtime, delegates=delegates)
    if prepared is None or np.dtype(prepared.dtype) != np.dtype(model.input["dtype"]):
        prepared = model.prepare(images)
    step = (lambda phase: (lambda d, t: on_step(phase, d, t))) if on_step else (lambda phase: None)
    latency = measure_latency(model, prepared, warmup, runs, step("latency"))
    accuracy, predictions = measure_accuracy(model, prepared, labels, step("accuracy"))
    params, sparsity = weight_stats(model.interpreter)
    stats = graph_stats(model.interpreter)
    if stats is None and hasattr(model.interpreter, "_get_ops_details"):
        try:  # a runtime that lists only the delegate's node: the plain interpreter shows every op
            stats = graph_stats(TFLiteModel(content=content, runtime=model.runtime, plain=True).interpreter)
        except (ValueError, RuntimeError):  # e.g. an Edge TPU graph cannot be opened without its delegate
            stats = None
    size, gz = file_sizes(content)
    record = {
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
        "sha256": hashlib.sha256(content).hexdigest(),  # which file these numbers belong to, not just its name
        "runtime": model.runtime.describe(),
        "threads": threads,
        "input": model.describe_input(),
        "macs": stats["macs"] if stats else None,
        "peak_activation_bytes": stats["peak_activation_bytes"] if stats else None,
        "details": {},
    }
    if stats and stats["macs"]:
        record["details"]["macs_by_op"] = macs_by_op(stats)
    # the interpreter that was timed, as it was built: its delegate, its partitions
    record["details"]["delegation"] = delegation(model.interpreter, getattr(model, "delegate", "XNNPACK"))
    if keep_predictions:
        record["details"]["predictions"] = [int(p) for p in predictions]
    return record


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
        "isa": isa_flags(),
    }


def parse_isa_flags(cpuinfo, machine=None):
    """The ``ISA_FLAGS`` a /proc/cpuinfo text names ("flags" on x86, "Features" on ARM), in that order, keeping
    those every CPU listed has; None when the text has no such line. With ``machine`` (``platform.machine()``),
    only the line of that architecture counts: under qemu-user an arm64 Python can read the x86 host's text."""
    keys = ("flags", "features")
    if machine:
        arm = machine.lower().startswith(("arm", "aarch64"))
        x86 = machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")
        keys = ("features",) if arm else ("flags",) if x86 else keys
    common = None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in keys:
            flags = set(value.split())
            common = flags if common is None else common & flags
    if common is None:
        return None
    return [flag for flag in ISA_FLAGS if flag in common]


def isa_flags(path="/proc/cpuinfo"):
    """The CPU flags that decide kernel choice (``ISA_FLAGS`` present here), or None where unreadable."""
    text = _read(path)
    return parse_isa_flags(text, platform.machine()) if text else None


def _major(version):
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


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


# --- the device side: Edge TPU, device facts, sample files, the command line ---------------------


def load_edgetpu_delegate(runtime, library=None):
    """The Edge TPU delegate, or DelegateMissing saying what is missing (the library, or the device)."""
    library = library or EDGETPU_LIBRARIES.get(platform.system())
    if library is None:
        raise DelegateMissing("there is no Edge TPU runtime for %s" % platform.system())
    # a failed load leaves a half-built Delegate whose __del__ raises when the exception is dropped; keep
    # that noise off the user's screen (Python 3.8+ lets a hook take it; on 3.7 it is printed)
    hook = getattr(sys, "unraisablehook", None)
    if hook is not None:
        sys.unraisablehook = lambda *_: None  # novermin (guarded above)
    try:
        try:
            return runtime.load_delegate(library)
        except (ValueError, OSError, RuntimeError) as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    finally:
        if hook is not None:
            sys.unraisablehook = hook  # novermin (guarded above)
    raise DelegateMissing(
        "the Edge TPU delegate %s could not be loaded (%s): install the Edge TPU runtime "
        "(libedgetpu1-std) and check that the Coral device is plugged in" % (library, detail))


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return None


def _command(args):
    try:
        done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode(errors="replace").strip() if done.returncode == 0 else None


THROTTLE_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit",
                 16: "under-voltage occurred", 17: "arm frequency capping occurred", 18: "throttling occurred",
                 19: "soft temperature limit occurred"}


def thermal_state():
    """CPU temperature and the Pi's throttling flags; None where the source is missing, never a guess."""
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    raw = _command(["vcgencmd", "get_throttled"])  # "throttled=0x50000" on a Raspberry Pi
    flags = None
    if raw and "=" in raw:
        try:
            value = int(raw.split("=", 1)[1], 16)
            flags = {"raw": hex(value), "active": [name for bit, name in sorted(THROTTLE_BITS.items()) if value >> bit & 1]}
        except ValueError:
            flags = {"raw": raw, "active": None}
    try:
        celsius = int(temp) / 1000.0 if temp is not None else None
    except ValueError:
        celsius = None
    return {"cpu_celsius": celsius, "throttled": flags}


def _os_name():
    text = _read("/etc/os-release")
    for line in (text or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def libedgetpu_version():
    for package in ("libedgetpu1-std", "libedgetpu1-max"):
        version = _command(["dpkg-query", "-W", "-f", "${Version}", package])
        if version:
            return {"package": package, "version": version}
    return None


def pairing_warning(runtime, libedgetpu):
    """Runtime pairings with libedgetpu that Coral's trackers show failing, said before the numbers are trusted."""
    if runtime.name == "tensorflow":
        return ("tf.lite.Interpreter from full TensorFlow with libedgetpu is known to fail ('Unsupported data "
                "type in custom op handler'); use tflite_runtime")
    if runtime.name == "tflite_runtime" and libedgetpu:
        lib = libedgetpu["version"]
        if lib.startswith("16.0") and not str(runtime.version).startswith("2.5.0") and "tf" not in lib:
            return ("libedgetpu %s is built against TensorFlow 2.5 (pycoral pins tflite-runtime 2.5.0.post1); "
                    "tflite-runtime %s with it is known to fail or crash" % (lib, runtime.version))
        if lib.startswith("15.0") and not str(runtime.version).startswith("2.5.0"):
            return "libedgetpu 15.0 pairs with tflite-runtime 2.5.0, not %s" % runtime.version
    if runtime.name == "ai_edge_litert":
        return "Coral documents libedgetpu with tflite-runtime 2.5.0.post1, not ai-edge-litert; results may differ"
    return None


def device_info(runtime, threads, edgetpu=False):
    env = environment(runtime, threads)
    env["device"] = {
        "hostname": socket.gethostname(),
        "board": _read("/proc/device-tree/model"),  # "Raspberry Pi 4 Model B Rev 1.4", "Coral Dev Board"
        "os": _os_name(),
        "edgetpu": bool(edgetpu),
        "libedgetpu": libedgetpu_version() if edgetpu else None,
    }
    if edgetpu:
        env["device"]["pairing_warning"] = pairing_warning(runtime, env["device"]["libedgetpu"])
    return env


# --- the device's own check (--check): one line per fact, exit 0, or 3 when no runtime can run -------

OK, WARN, FAIL = "ok", "warn", "fail"
# Coral's USB Accelerator before (Global Unichip) and after (Google) its firmware is loaded, as lsusb shows it
EDGETPU_USB_IDS = {("1a6e", "089a"): "USB Accelerator (firmware not loaded yet)", ("18d1", "9302"): "USB Accelerator"}


def _fact(name, status, value, note=""):
    return {"name": name, "status": status, "value": value, "note": note}


def installed_version(name):
    """The version of a runtime's distribution as installed (read without importing it), or None."""
    for dist in RUNTIME_DISTS.get(name, (name,)):
        version = _dist_version(dist)
        if version:
            return version
    return None


def runtime_facts(load_tensorflow=True, preferred=None):
    """(facts, runtimes that run a model): each runtime of ``RUNTIMES`` imported and probed with a one-op model.
    TensorFlow is only loaded when asked for by name (``preferred``), or when no lighter runtime runs and
    ``load_tensorflow`` (it takes seconds, and the host's doctor never loads it); otherwise its version is read
    from its distribution."""
    facts, usable = [], []
    for name in RUNTIMES:
        installed = installed_version(name)
        if name == "tensorflow" and preferred != name and (usable or not load_tensorflow):
            note = "not loaded: a lighter runtime runs" if usable else "not loaded"
            facts.append(_fact(name, OK, installed or "not installed", note if installed else ""))
            continue
        try:
            runtime = _import_runtime(name)
        except Exception as e:
            if installed is None and isinstance(e, ImportError):
                facts.append(_fact(name, OK, "not installed"))
            else:
                facts.append(_fact(name, WARN, "%s cannot be imported" % (installed or "installed"), _first_line(e)))
            continue
        problem = runs_a_model(runtime)
        if problem is None:
            usable.append(runtime)
            facts.append(_fact(name, OK, "%s runs a model" % runtime.version))
        else:
            facts.append(_fact(name, WARN, "%s imports, but cannot run a model" % runtime.version, problem))
    return facts, usable


def known_bad_pairings(python, numpy_version, tflite_runtime, pycoral=None, runtime=None, libedgetpu=None):
    """Known-bad pairings among what is installed (versions as strings, None where absent), one sentence each.
    ``runtime`` is the one that will drive an Edge TPU (pass it only when libedgetpu or --edgetpu is in play):
    its pairing with ``libedgetpu`` is judged by ``pairing_warning``."""
    bad = []
    if tflite_runtime and _major(numpy_version) >= 2:
        bad.append("tflite-runtime %s is built for numpy 1.x and fails under numpy %s: pip install 'numpy<2'"
                   % (tflite_runtime, numpy_version))
    if tflite_runtime and tuple(int(v) for v in python.split(".")[:2]) >= (3, 12):
        bad.append("tflite-runtime has no builds for Python 3.12+ (its last release, 2.14, stops at 3.11); "
                   "this is Python %s: use ai-edge-litert" % python)
    if pycoral and tflite_runtime and not str(tflite_runtime).startswith("2.5.0"):
        bad.append("pycoral %s pins tflite-runtime 2.5.0.post1, not %s" % (pycoral, tflite_runtime))
    if runtime is not None:
        warning = pairing_warning(runtime, libedgetpu)
        if warning:
            bad.append(warning)
    return bad


def edgetpu_devices():
    """Coral devices present: USB Accelerators by their USB ids, PCIe/M.2 ones by /dev/apex_N."""
    found = []
    for folder in sorted(glob.glob("/sys/bus/usb/devices/*")):
        ids = (_read(os.path.join(folder, "idVendor")), _read(os.path.join(folder, "idProduct")))
        if ids in EDGETPU_USB_IDS:
            found.append("%s %s:%s" % (EDGETPU_USB_IDS[ids], ids[0], ids[1]))
    return found + ["PCIe %s" % d for d in sorted(glob.glob("/dev/apex_*"))]


def _libedgetpu_file():
    try:
        import ctypes.util

        return ctypes.util.find_library("edgetpu")
    except Exception:  # find_library runs ldconfig or a compiler; neither may be there
        return None


def device_checks(edgetpu=False, preferred=None, load_tensorflow=True):
    """What this machine has for running TFLite models: a list of ``{"name", "status", "value", "note"}``,
    status "ok", "warn" or "fail". "fail" only when the benchmark cannot run here: no runtime runs a model
    (or ``preferred`` does not), or ``edgetpu`` is asked for and the Edge TPU library, device or delegate is
    missing."""
    isa = isa_flags()
    if isa is None:
        isa_value = "unknown (/proc/cpuinfo unreadable)"
    else:
        isa_value = " ".join(isa) if isa else "none of " + " ".join(ISA_FLAGS)
    facts = [
        _fact("python", OK, "%s (%s)" % (platform.python_version(), sys.executable)),
        _fact("os", OK, "%s; %s %s %s" % (_os_name(), platform.system(), platform.release(), platform.machine())),
        _fact("board", OK, _read("/proc/device-tree/model") or "none named (no /proc/device-tree/model)"),
        _fact("cpu", OK, "%s, %s cores" % (_cpu_model() or "unknown model", os.cpu_count())),
        _fact("isa", OK, isa_value),
        _fact("numpy", OK, np.__version__),
    ]
    runtimes, usable = runtime_facts(load_tensorflow, preferred)
    facts += runtimes
    chosen = [r for r in usable if r.name == preferred] if preferred else usable
    runtime = chosen[0] if chosen else None
    package = libedgetpu_version()
    library = _libedgetpu_file()
    found = (["%s %s" % (package["package"], package["version"])] if package else []) + ([library] if library else [])
    facts.append(_fact("libedgetpu", FAIL if edgetpu and not found else OK, ", ".join(found) or "not installed",
                       "needed for --edgetpu" if edgetpu and not found else ""))
    devices = edgetpu_devices()
    facts.append(_fact("edgetpu device", FAIL if edgetpu and not devices else OK, ", ".join(devices) or "none found"))
    pycoral = _dist_version("pycoral")
    facts.append(_fact("pycoral", OK, pycoral or "not installed"))
    bad = known_bad_pairings(platform.python_version(), np.__version__, installed_version("tflite_runtime"), pycoral,
                             runtime if (package or library or edgetpu) else None, package)
    facts += [_fact("pairing", WARN, sentence) for sentence in bad] or [_fact("pairing", OK, "no known-bad pairing")]
    if edgetpu and runtime is not None:
        try:
            load_edgetpu_delegate(runtime)
            facts.append(_fact("edgetpu delegate", OK, "loads with %s %s" % (runtime.name, runtime.version)))
        except DelegateMissing as e:
            facts.append(_fact("edgetpu delegate", FAIL, "does not load", str(e)))
    if runtime is not None:
        facts.append(_fact("runtime", OK, "%s %s will run the models" % (runtime.name, runtime.version)))
    elif not load_tensorflow and not preferred and installed_version("tensorflow"):
        facts.append(_fact("runtime", WARN, "tensorflow.lite, not probed (loading it takes seconds)",
                           "no lighter runtime runs a model; pip install ai-edge-litert"))
    else:
        facts.append(_fact("runtime", FAIL, "%s cannot run a model" % preferred if preferred else
                           "none of %s can run a model" % ", ".join(RUNTIMES),
                           "pip install ai-edge-litert, or tflite-runtime with numpy<2 on Python 3.11 or older"))
    return facts


def format_fact(fact):
    return "%-4s  %-16s %s%s" % (fact["status"], fact["name"], fact["value"],
                                 "  (%s)" % fact["note"] if fact["note"] else "")


def run_check(edgetpu=False, preferred=None):
    """``--check``: prints one line per fact; EXIT_MISSING when one failed, else 0."""
    facts = device_checks(edgetpu, preferred)
    for fact in facts:
        sys.stdout.write(format_fact(fact) + "\n")
    return EXIT_MISSING if any(f["status"] == FAIL for f in facts) else 0


def sample_key(model_path):
    """Name of a model's prepared inputs in a sample file: ``input__<file stem>``."""
    return "input__" + os.path.splitext(os.path.basename(str(model_path)))[0]


def load_samples(path):
    """A sample file written by ``edgecv device kit``: raw images, labels, and inputs prepared per model."""
    try:
        with np.load(str(path), allow_pickle=False) as z:
            names = list(getattr(z, "files", []))
            if "images" not in names or "labels" not in names:
                raise ValueError("it lacks 'images' or 'labels': not an edgecv sample file")
            return dict((name, z[name]) for name in names)
    except OSError:
        raise
    except Exception as e:  # a damaged zip raises zipfile's own errors, a bare .npy array has no names
        raise ValueError(str(e) or type(e).__name__)


def _atomic_write(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".result-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the result private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_device(models, samples, runtime, threads=1, warmup=10, runs=200, edgetpu=False, manifest=None,
               on_model=None):
    """Benchmarks each model on the sample file; returns a report dict in the host's schema."""
    delegates = [load_edgetpu_delegate(runtime)] if edgetpu else None
    before = thermal_state()
    images, labels = samples["images"], samples["labels"]
    stages = []
    for path in models:
        if on_model is not None:
            on_model(path)
        model = TFLiteModel(path, threads=threads, runtime=runtime, delegates=delegates,
                            delegate_name="Edge TPU" if edgetpu else None)
        # the kit's copy in this model's layout; without one, the raw pixels are converted here
        record = benchmark_tflite(path, images, labels, threads, warmup, runs, model=model,
                                  prepared=samples.get(sample_key(path)), keep_predictions=True)
        record["model"] = os.path.basename(str(path))
        stages.append(record)
    env = device_info(runtime, threads, edgetpu)
    env["device"]["before"], env["device"]["after"] = before, thermal_state()
    manifest = manifest or {}
    return {"schema": SCHEMA, "stages": stages, "environment": env, "data": manifest.get("data", {}),
            "config": {"warmup": warmup, "runs": runs, "threads": threads, "edgetpu": bool(edgetpu)},
            "edgecv": manifest.get("edgecv", ""), "created": datetime.now().astimezone().isoformat(timespec="seconds")}


def _parser():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description="Benchmark TFLite models on this device (edgecv device kit).")
    parser.add_argument("--models", nargs="+", help="model files (default: every .tflite beside this script)")
    parser.add_argument("--samples", default=os.path.join(here, "samples.npz"), help="sample file from the kit")
    parser.add_argument("--runtime", choices=RUNTIMES, help="default: the first of %s that runs" % ", ".join(RUNTIMES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--edgetpu", action="store_true", help="load the Edge TPU delegate")
    parser.add_argument("--out", help="result JSON (default: result-<host>-<runtime>.json in the current folder)")
    parser.add_argument("--check", action="store_true",
                        help="only say what this device has (Python, OS, numpy, runtimes, libedgetpu, CPU and its "
                             "ISA flags, known-bad pairings), one line each; exit 3 when no runtime can run")
    return parser


def _fail(code, message):
    sys.stderr.write("error: %s\n" % message)
    return code


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.check:
        return run_check(args.edgetpu, args.runtime)
    return _benchmark(args)


def _benchmark(args):
    here = os.path.dirname(os.path.abspath(__file__))
    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        return _fail(EXIT_BAD_INPUT, "threads and runs must be >= 1 and warm-up >= 0")
    models = args.models or sorted(os.path.join(here, f) for f in os.listdir(here) if f.endswith(".tflite"))
    if not models:
        return _fail(EXIT_BAD_INPUT, "no .tflite model given or found beside %s" % __file__)
    for path in models + [args.samples]:
        if not os.path.isfile(path):
            return _fail(EXIT_BAD_INPUT, "%s does not exist" % path)
    try:
        samples = load_samples(args.samples)
    except (OSError, ValueError) as e:
        return _fail(EXIT_BAD_INPUT, "cannot read sample file %s: %s" % (args.samples, e))
    manifest = {}
    manifest_path = os.path.join(os.path.dirname(os.path.abspath(args.samples)), "kit.json")
    if os.path.isfile(manifest_path):
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            return _fail(EXIT_BAD_INPUT, "cannot read %s: %s" % (manifest_path, e))
        if not isinstance(manifest, dict):
            return _fail(EXIT_BAD_INPUT, "%s is not a kit manifest" % manifest_path)
    out_dir = os.path.dirname(os.path.abspath(args.out)) if args.out else os.getcwd()
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        return _fail(EXIT_BAD_INPUT, "cannot write the result into %s" % out_dir)  # checked before the work
    try:
        runtime = find_runtime(args.runtime)
        report = run_device(models, samples, runtime, args.threads, args.warmup, args.runs, args.edgetpu, manifest,
                            on_model=lambda p: sys.stderr.write("benchmarking %s\n" % os.path.basename(p)))
    except (RuntimeMissing, DelegateMissing) as e:
        return _fail(EXIT_MISSING, str(e))
    except (ValueError, RuntimeError) as e:  # the interpreter's words for a model it cannot load or run
        return _fail(EXIT_BAD_INPUT, _first_line(e))
    out = args.out or "result-%s-%s.json" % (socket.gethostname(), runtime.name)
    _atomic_write(out, json.dumps(report, indent=2) + "\n")
    warnings = [report["environment"]["device"].get("pairing_warning")]
    warnings += ["%s: %s" % (stage["model"], delegation_warning(stage["details"].get("delegation")))
                 for stage in report["stages"] if delegation_warning(stage["details"].get("delegation"))]
    for warning in filter(None, warnings):
        sys.stderr.write("warning: %s\n" % warning)
    for stage in report["stages"]:
        sys.stdout.write("%-32s acc %6.2f %%  p50 %8.4f ms  p90 %8.4f ms  first %8.3f ms\n" % (
            stage["model"], 100 * stage["accuracy"], stage["latency"]["p50_ms"], stage["latency"]["p90_ms"],
            stage["latency"]["first_ms"]))
    sys.stdout.write("wrote %s\n" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
