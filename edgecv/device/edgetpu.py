"""Edge TPU readiness: compile with ``edgetpu_compiler`` when it is installed, else predict what it would map.

The static report follows Coral's published requirements: every tensor 8-bit, static shapes with batch 1,
at most 3 dimensions larger than 1, and only the supported operations (with their limits). The compiler
partitions once: at the first op it cannot map, that op and every op after it run on the CPU. A float-input
QUANTIZE at the start and a DEQUANTIZE at the end run on the CPU without splitting the graph.

Sources: Coral's "TensorFlow models on the Edge TPU" (supported operations and model requirements), its
compiler page, and compiler logs in google-coral/edgetpu issues. Minimum runtimes marked ``None`` below are
"all runtimes"; the ones for PRELU, REDUCE_MAX/MIN, RSQRT, SQUARED_DIFFERENCE and LSTM are from Coral's
table as remembered, not re-checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgecv.measure.benchmark import open_tflite
from edgecv.errors import DataError

# TFLite builtin -> the lowest Edge TPU runtime that maps it (None: every runtime)
SUPPORTED_OPS = {
    "ADD": None, "AVERAGE_POOL_2D": None, "CONCATENATION": None, "CONV_2D": None, "DEPTHWISE_CONV_2D": None,
    "EXPAND_DIMS": 13, "FULLY_CONNECTED": None, "L2_NORMALIZATION": None, "LOGISTIC": None, "MAXIMUM": None,
    "MAX_POOL_2D": None, "MEAN": None, "MINIMUM": None, "MUL": None, "PACK": 13, "PAD": None, "PRELU": 13,
    "QUANTIZE": 13, "REDUCE_MAX": 14, "REDUCE_MIN": 14, "RELU": None, "RELU6": None, "RELU_N1_TO_1": None,
    "RESHAPE": None, "RESIZE_BILINEAR": None, "RESIZE_NEAREST_NEIGHBOR": None, "RSQRT": 14, "SLICE": None,
    "SOFTMAX": None, "SPACE_TO_DEPTH": None, "SPLIT": None, "SQUARED_DIFFERENCE": 14, "SQUEEZE": None,
    "STRIDED_SLICE": None, "SUB": None, "SUM": 13, "TANH": None, "TRANSPOSE": 14, "TRANSPOSE_CONV": 13,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 14,
}
MAPPED = "Mapped to Edge TPU"
AFTER_CUT = "More than one subgraph is not supported"
NOT_SUPPORTED = "Operation not supported"
DATA_TYPE = "Operation is working on an unsupported data type"
UNSPECIFIED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
EIGHT_BIT = (np.int8, np.uint8)


@dataclass(frozen=True)
class OpStatus:
    index: int
    op: str
    status: str
    on_tpu: bool
    reason: str = ""  # why, beyond the compiler's own status words


@dataclass
class EdgeTpuReport:
    model: str
    method: str  # "compiler" (edgetpu_compiler ran) or "static" (predicted from Coral's op list)
    ops: list[OpStatus]
    target_runtime: int
    summary: dict = field(default_factory=dict)  # the compiler's memory and subgraph lines, when it ran
    compiled: str | None = None  # path of <name>_edgetpu.tflite

    @property
    def tpu_ops(self) -> int:
        return sum(o.on_tpu for o in self.ops)

    @property
    def cpu_ops(self) -> int:
        return len(self.ops) - self.tpu_ops

    @property
    def fully_mapped(self) -> bool:
        return self.cpu_ops == 0

    def table(self) -> list[tuple[str, int, str]]:
        """Rows as the compiler's log has them: operator, count, status."""
        counts = Counter((o.op, o.status) for o in self.ops)
        return [(op, n, status) for (op, status), n in counts.items()]

    def unmapped(self) -> list[OpStatus]:
        """The ops that stay on the CPU for a reason of their own (not merely for coming after the cut)."""
        return [o for o in self.ops if o.reason and not o.on_tpu and o.status != AFTER_CUT]

    def to_dict(self) -> dict:
        return {**asdict(self), "tpu_ops": self.tpu_ops, "cpu_ops": self.cpu_ops, "fully_mapped": self.fully_mapped}


def static_report(path: str | Path, target_runtime: int = 14) -> EdgeTpuReport:
    """Predicts the compiler's per-op verdict from the model's ops and tensors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    model = open_tflite(path, plain=True)
    interp = model.interpreter
    ops = interp._get_ops_details()
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    produced = {int(i) for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    result, cut = [], False
    for position, op in enumerate(ops):
        name = op["op_name"]
        reason = _why_not(op, tensors, produced, graph_inputs, target_runtime)
        float_in = np.issubdtype(np.dtype(tensors[int(op["inputs"][0])]["dtype"]), np.floating)
        if name == "QUANTIZE" and position == 0 and float_in:
            # float input quantized at the graph's start: CPU, but the graph stays in one piece
            result.append(OpStatus(position, name, UNSPECIFIED, False, "float input is quantized on the CPU"))
        elif name == "DEQUANTIZE" and position == len(ops) - 1:
            result.append(OpStatus(position, name, DATA_TYPE, False, "float output is dequantized on the CPU"))
        elif reason is None and not cut:
            result.append(OpStatus(position, name, MAPPED, True))
        elif cut:
            result.append(OpStatus(position, name, AFTER_CUT, False, "after the first op the Edge TPU cannot run"))
        else:
            cut = True
            result.append(OpStatus(position, name, reason[0], False, reason[1]))
    return EdgeTpuReport(str(path), "static", result, target_runtime)


def _why_not(op, tensors, produced, graph_inputs, target_runtime) -> tuple[str, str] | None:
    """(compiler status, reason) for an op the Edge TPU would not run, or None."""
    name = op["op_name"]
    if name not in SUPPORTED_OPS:
        return NOT_SUPPORTED, f"{name} is not in Coral's list of supported operations"
    needs = SUPPORTED_OPS[name]
    if needs is not None and needs > target_runtime:
        return NOT_SUPPORTED, f"{name} needs Edge TPU runtime {needs}, the target is {target_runtime}"
    for index in [int(i) for i in op["inputs"]] + [int(i) for i in op["outputs"]]:
        if index < 0:
            continue
        t = tensors[index]
        constant = index not in produced and index not in graph_inputs
        if not (np.dtype(t["dtype"]) in [np.dtype(d) for d in EIGHT_BIT] or (constant and t["dtype"] == np.int32)):
            return DATA_TYPE, f"tensor {t['name']!r} is {np.dtype(t['dtype']).name}, not 8-bit"
        signature = [int(d) for d in t.get("shape_signature", t["shape"])]
        if signature and min(signature) < 0:
            return DATA_TYPE, f"tensor {t['name']!r} has a dynamic shape {signature} (convert with batch 1)"
        shape = [int(d) for d in t["shape"]]
        if not constant and len(shape) > 3 and any(d > 1 for d in shape[:-3]):
            return RANK, f"tensor {t['name']!r} has shape {shape}: only the 3 innermost dimensions may exceed 1"
    if name == "SOFTMAX":
        size = int(np.prod(tensors[int(op["inputs"][0])]["shape"]))
        if size > 16000:
            return UNSPECIFIED, f"softmax over {size} elements (at most 16,000)"
    return None


# --- the real compiler ---------------------------------------------------------------------------

_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(.+?)\s*$")


def parse_log(text: str) -> list[tuple[str, int, str]]:
    """The Operator / Count / Status rows of ``<name>_edgetpu.log`` (or of ``-s`` output)."""
    rows, in_table = [], False
    for line in text.splitlines():
        if line.split()[:3] == ["Operator", "Count", "Status"]:
            in_table = True
            continue
        if in_table and line.strip():
            match = _ROW.match(line.strip())
            if match:
                rows.append((match.group(1), int(match.group(2)), match.group(3)))
    return rows


def parse_summary(stdout: str) -> dict:
    """The compiler's summary lines: memory used, subgraphs, and op counts."""
    keys = {
        "On-chip memory used for caching model parameters": "on_chip_memory",
        "On-chip memory remaining for caching model parameters": "on_chip_remaining",
        "On-chip memory available for caching model parameters": "on_chip_remaining",
        "Off-chip memory used for streaming uncached model parameters": "off_chip_memory",
        "Number of Edge TPU subgraphs": "subgraphs",
        "Total number of operations": "operations",
        "Number of operations that will run on Edge TPU": "tpu_ops",
        "Number of operations that will run on CPU": "cpu_ops",
        "Edge TPU Compiler version": "compiler_version",
    }
    summary = {}
    for line in stdout.splitlines():
        for prefix, key in keys.items():
            if line.startswith(prefix):
                value = line[len(prefix):].lstrip(": ").strip()
                summary[key] = int(value) if value.isdigit() else value
    return summary


def compile_model(path: str | Path, out_dir: str | Path, target_runtime: int = 14,
                  compiler: str = "edgetpu_compiler") -> EdgeTpuReport:
    """Runs the Edge TPU compiler and reads its verdict per op from the log it writes."""
    path, out_dir = Path(path), Path(out_dir)
    try:
        done = subprocess.run([compiler, "-s", "-m", str(target_runtime), "-o", str(out_dir), str(path)],
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise DataError(f"edgetpu_compiler did not finish {path} within 10 minutes") from None
    if done.returncode != 0:
        last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"edgetpu_compiler failed on {path}: {last[0]}")
    log = out_dir / f"{path.stem}_edgetpu.log"
    rows = parse_log(log.read_text()) if log.is_file() else parse_log(done.stdout)
    ops = [OpStatus(-1, op, status, status == MAPPED) for op, count, status in rows for _ in range(count)]
    return EdgeTpuReport(str(path), "compiler", ops, target_runtime, parse_summary(done.stdout),
                         str(out_dir / f"{path.stem}_edgetpu.tflite"))


def check_model(path: str | Path, out_dir: str | Path | None = None, target_runtime: int = 14) -> EdgeTpuReport:
    """The compiler's verdict when ``edgetpu_compiler`` is on PATH, else the static prediction."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    compiler = shutil.which("edgetpu_compiler")
    if compiler:
        return compile_model(path, out_dir or path.parent, target_runtime, compiler)
    return static_report(path, target_runtime)
