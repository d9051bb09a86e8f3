"""Edge TPU readiness: compile with ``edgetpu_compiler`` when it is installed, else predict what it would map.

The static report follows Coral's published requirements: every tensor 8-bit, static shapes with batch 1,
at most 3 dimensions larger than 1, and only the supported operations (with their limits). The compiler
partitions once: at the first op it cannot map, that op and every op after it run on the CPU. A float-input
QUANTIZE at the start and a DEQUANTIZE at the end run on the CPU without splitting the graph.

Each op's version is read from the file: compiler 16 refuses a whole model that holds an op version newer
than its TFLite knows (see ``MAX_OP_VERSIONS``).

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
from edgecv.errors import DataError, first_line

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
# The newest version of each builtin op that the Edge TPU compiler 16 (16.0.384591198, the last release) reads.
# Coral publishes no such table. The compiler parses the model with its own, mid-2021 TFLite: an op version it
# does not know stops it before any op is mapped ("ERROR: Didn't find op for builtin opcode 'CONV_2D' version
# '6' ... Model could not be parsed"), as reported for QUANTIZE v3 (google-coral/edgetpu#879), CONV_2D v6 (#631),
# TRANSPOSE_CONV v4 (#845) and EXP v2 (google-coral/libedgetpu#71). The rule used here: the newest version of
# each op in TensorFlow 2.5, the release the 16.0 stack is built on (libedgetpu 16.0, and pycoral's
# tflite-runtime 2.5.0.post1, which runs the CPU side of a compiled model), read from the table that maps each op
# version to the TF release that introduced it (tensorflow/lite/tools/versioning/runtime_version.cc). Every
# refusal reported above is a version from TF 2.7 or later (QUANTIZE v3: 2.7, CONV_2D v6: 2.9); versions
# introduced in TF 2.6 (ADD 4, MUL 5, PAD/PADV2 4, STRIDED_SLICE 6, ABS 4, REDUCE_PROD 2) are unconfirmed
# either way and flagged with the rest. Ops not in the table are not judged here.
MAX_OP_VERSIONS = {
    "ABS": 3, "ADD": 3, "ADD_N": 1, "ARG_MAX": 2, "ARG_MIN": 2, "AVERAGE_POOL_2D": 3, "BATCH_MATMUL": 4,
    "BATCH_TO_SPACE_ND": 3, "BIDIRECTIONAL_SEQUENCE_LSTM": 3, "BIDIRECTIONAL_SEQUENCE_RNN": 3, "BROADCAST_TO": 3,
    "CALL_ONCE": 1, "CAST": 1, "CEIL": 1, "COMPLEX_ABS": 1, "CONCATENATION": 3, "CONV_2D": 5, "CONV_3D": 1,
    "COS": 1, "CUMSUM": 1, "DENSIFY": 1, "DEPTH_TO_SPACE": 2, "DEPTHWISE_CONV_2D": 6, "DEQUANTIZE": 4, "DIV": 2,
    "ELU": 1, "EMBEDDING_LOOKUP": 3, "EMBEDDING_LOOKUP_SPARSE": 1, "EQUAL": 3, "EXP": 1, "EXPAND_DIMS": 1,
    "FAKE_QUANT": 2, "FILL": 3, "FLOOR": 1, "FLOOR_DIV": 2, "FLOOR_MOD": 1, "FULLY_CONNECTED": 9, "GATHER": 5,
    "GATHER_ND": 3, "GREATER": 2, "GREATER_EQUAL": 2, "HARD_SWISH": 1, "HASHTABLE": 1, "HASHTABLE_FIND": 1,
    "HASHTABLE_IMPORT": 1, "HASHTABLE_LOOKUP": 1, "HASHTABLE_SIZE": 1, "IF": 1, "IMAG": 1, "L2_NORMALIZATION": 2,
    "L2_POOL_2D": 1, "LEAKY_RELU": 2, "LESS": 2, "LESS_EQUAL": 2, "LOCAL_RESPONSE_NORMALIZATION": 1, "LOG": 1,
    "LOG_SOFTMAX": 2, "LOGICAL_AND": 1, "LOGICAL_NOT": 1, "LOGICAL_OR": 1, "LOGISTIC": 3, "LSH_PROJECTION": 1,
    "LSTM": 4, "MATRIX_DIAG": 1, "MATRIX_SET_DIAG": 1, "MAX_POOL_2D": 3, "MAXIMUM": 4, "MEAN": 3, "MINIMUM": 4,
    "MIRROR_PAD": 2, "MUL": 4, "NEG": 1, "NON_MAX_SUPPRESSION_V4": 1, "NON_MAX_SUPPRESSION_V5": 1, "NOT_EQUAL": 3,
    "ONE_HOT": 1, "PACK": 3, "PAD": 3, "PADV2": 3, "POW": 1, "PRELU": 1, "QUANTIZE": 2, "RANGE": 1, "RANK": 1,
    "REAL": 1, "REDUCE_ANY": 1, "REDUCE_MAX": 3, "REDUCE_MIN": 3, "REDUCE_PROD": 1, "RELU": 3, "RELU6": 3,
    "RELU_N1_TO_1": 1, "RESHAPE": 1, "RESIZE_BILINEAR": 4, "RESIZE_NEAREST_NEIGHBOR": 4, "REVERSE_SEQUENCE": 1,
    "REVERSE_V2": 3, "RFFT2D": 1, "RNN": 3, "ROUND": 1, "RSQRT": 2, "SCATTER_ND": 1, "SEGMENT_SUM": 1, "SELECT": 2,
    "SELECT_V2": 1, "SHAPE": 1, "SIN": 1, "SKIP_GRAM": 1, "SLICE": 5, "SOFTMAX": 3, "SPACE_TO_BATCH_ND": 3,
    "SPACE_TO_DEPTH": 2, "SPARSE_TO_DENSE": 3, "SPLIT": 4, "SPLIT_V": 2, "SQRT": 1, "SQUARE": 1,
    "SQUARED_DIFFERENCE": 2, "SQUEEZE": 2, "STRIDED_SLICE": 5, "SUB": 5, "SUM": 2, "SVDF": 4, "TANH": 3, "TILE": 2,
    "TOPK_V2": 2, "TRANSPOSE": 5, "TRANSPOSE_CONV": 3, "UNIDIRECTIONAL_SEQUENCE_LSTM": 3,
    "UNIDIRECTIONAL_SEQUENCE_RNN": 3, "UNIQUE": 1, "UNPACK": 4, "WHERE": 1, "WHILE": 1, "ZEROS_LIKE": 1,
}
COMPILER = "edgetpu_compiler 16"

MAPPED = "Mapped to Edge TPU"
AFTER_CUT = "More than one subgraph is not supported"
NOT_SUPPORTED = "Operation not supported"
DATA_TYPE = "Operation is working on an unsupported data type"
UNSPECIFIED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
VERSION = "Operation version not supported"
UNPARSED = "Model could not be parsed"  # the compiler's last words when its TFLite does not know an op version
EIGHT_BIT = (np.int8, np.uint8)


@dataclass(frozen=True)
class OpStatus:
    index: int
    op: str
    status: str
    on_tpu: bool
    reason: str = ""  # why, beyond the compiler's own status words
    version: int | None = None  # the op's version in the file (None: not read)


@dataclass
class EdgeTpuReport:
    model: str
    method: str  # "compiler" (edgetpu_compiler ran) or "static" (predicted from Coral's op list)
    ops: list[OpStatus]
    target_runtime: int
    summary: dict = field(default_factory=dict)  # the compiler's memory and subgraph lines, when it ran
    compiled: str | None = None  # path of <name>_edgetpu.tflite
    refused: str = ""  # why the compiler would refuse the whole file (op versions it cannot read), "" if not
    op_versions_note: str = ""  # how the op versions were read, or why they were not

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


def read_op_versions(path: str | Path) -> tuple[list[int] | None, str]:
    """Each op's version in the main subgraph, in op order, read from the flatbuffer with LiteRT's own reader
    (``ai_edge_litert.tools.flatbuffer_utils``); (None, why) when it is absent or cannot read the file."""
    try:
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError as e:
        return None, f"op versions not read: ai_edge_litert.tools.flatbuffer_utils is not importable ({first_line(e)})"
    try:
        model = flatbuffer_utils.read_model(str(path))
        codes = model.operatorCodes
        versions = [int(codes[op.opcodeIndex].version) for op in model.subgraphs[0].operators]
    except Exception as e:  # the reader's own errors for a file it cannot take apart
        return None, f"op versions not read: {first_line(e)}"
    return versions, "read from the file (ai_edge_litert.tools.flatbuffer_utils)"


def too_new_for_compiler(ops: list[tuple[str, int | None]]) -> dict[int, str]:
    """{position: reason} for the (op, version) pairs newer than compiler 16 reads (``MAX_OP_VERSIONS``)."""
    found = {}
    for position, (name, version) in enumerate(ops):
        limit = MAX_OP_VERSIONS.get(name)
        if version is not None and limit is not None and version > limit:
            found[position] = (f"{name} version {version} is newer than {COMPILER} reads (at most version {limit}, "
                               "the newest in TensorFlow 2.5)")
    return found


def static_report(path: str | Path, target_runtime: int = 14) -> EdgeTpuReport:
    """Predicts the compiler's per-op verdict from the model's ops, their versions and tensors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    model = open_tflite(path, plain=True)
    interp = model.interpreter
    ops = interp._get_ops_details()
    versions, how = read_op_versions(path)
    if versions is not None and len(versions) != len(ops):
        versions, how = None, f"op versions not read: the file lists {len(versions)} ops, the interpreter {len(ops)}"
    version_of = (lambda op: versions[int(op["index"])]) if versions is not None else (lambda op: None)
    too_new = too_new_for_compiler([(op["op_name"], version_of(op)) for op in ops])
    if too_new:
        # the compiler stops at the first op version it does not know: no op is mapped, nothing is written
        result = [OpStatus(position, op["op_name"], VERSION if position in too_new else UNPARSED, False,
                           too_new.get(position, ""), version_of(op)) for position, op in enumerate(ops)]
        refused = (f"{COMPILER} cannot parse this model (\"Didn't find op for builtin opcode\"): "
                   + "; ".join(too_new.values()) + ". Re-convert so that the op keeps an older version (the issue "
                   "threads do it with an older TensorFlow converter)")
        return EdgeTpuReport(str(path), "static", result, target_runtime, refused=refused, op_versions_note=how)
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    produced = {int(i) for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    result, cut = [], False
    for position, op in enumerate(ops):
        name, version = op["op_name"], version_of(op)
        reason = _why_not(op, tensors, produced, graph_inputs, target_runtime)
        float_in = np.issubdtype(np.dtype(tensors[int(op["inputs"][0])]["dtype"]), np.floating)
        if name == "QUANTIZE" and position == 0 and float_in:
            # float input quantized at the graph's start: CPU, but the graph stays in one piece
            result.append(OpStatus(position, name, UNSPECIFIED, False, "float input is quantized on the CPU", version))
        elif name == "DEQUANTIZE" and position == len(ops) - 1:
            result.append(OpStatus(position, name, DATA_TYPE, False, "float output is dequantized on the CPU", version))
        elif reason is None and not cut:
            result.append(OpStatus(position, name, MAPPED, True, version=version))
        elif cut:
            result.append(OpStatus(position, name, AFTER_CUT, False, "after the first op the Edge TPU cannot run",
                                   version))
        else:
            cut = True
            result.append(OpStatus(position, name, reason[0], False, reason[1], version))
    return EdgeTpuReport(str(path), "static", result, target_runtime, op_versions_note=how)


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
