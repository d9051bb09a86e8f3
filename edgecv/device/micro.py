"""Microcontrollers: an int8 ``.tflite`` on TFLite Micro's kernels, its accuracy there, its arena, and C sources.

TFLite Micro (``tflite-micro``, one of edgecv's dependencies) is the runtime of Cortex-M parts, and the CPU
side of an Ethos-U model. Its Python interpreter runs the reference kernels that an MCU build compiles (not
CMSIS-NN's, which compute the same integers faster on Cortex-M), so accuracy measured here is the MCU runtime's:
it is compared with LiteRT's on the same images, the same int8 inputs, image by image.

The arena is what TFLite Micro's recording allocator reports after an inference: the bytes an MCU must reserve
for the tensors, the interpreter's persistent buffers and its bookkeeping. It is recorded on this 64-bit host:
the bookkeeping structs hold pointers, so a 32-bit Cortex-M needs a little less (the activation plan is the
same bytes).

The interpreter runs in a subprocess of this Python (its C++ log lines, the allocation record among them, are
written to the process's stderr, which is read here; a crash in the runtime stays out of edgecv's process).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecv.errors import DataError, Unsupported, first_line
from edgecv.fsutil import write_text
from edgecv.progress import Progress, ProgressFn, ignore

MICRO_PIN = "tflite-micro==0.dev20261023182759"
MICRO_IMAGES = 1000  # test images a flow (compress --micro) runs on both runtimes: a seeded sample
ARENA_NOTE = "TFLite Micro's recorded arena on a 64-bit host (a 32-bit Cortex-M needs a little less)"

# The worker, run by this Python: numpy and tflite_micro only. argv[1] is a job JSON.
WORKER = r'''
import json, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime

job = json.load(open(sys.argv[1]))
interpreter = runtime.Interpreter.from_file(job["model"], arena_size=job.get("arena_size"))
if job.get("probe"):
    sys.stdout.write(json.dumps({"loaded": True}))
    sys.exit(0)
x = np.load(job["inputs"])
out = []
for i in range(len(x)):
    interpreter.set_input(x[i:i + 1], 0)
    interpreter.invoke()
    out.append(np.asarray(interpreter.get_output(0)).reshape(-1))
    if i == 0:
        sys.stderr.flush()
        interpreter.print_allocations()
np.save(job["outputs"], np.stack(out))
sys.stdout.write(json.dumps({"images": int(len(x))}))
'''

_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '(\w+)'")
_CUSTOM_OP = re.compile(r"Didn't find op for custom opcode '([\w-]+)'")
_ARENA = re.compile(r"Arena allocation total (\d+) bytes")


def check_installed() -> None:
    """Raises Unsupported (exit 3) when TFLite Micro's interpreter is not importable here."""
    try:
        found = find_spec("tflite_micro") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise Unsupported(f"TFLite Micro is not installed: pip install '{MICRO_PIN}'")


def _work(job: dict, timeout: int = 1800) -> tuple[subprocess.CompletedProcess, dict | None]:
    check_installed()
    with tempfile.TemporaryDirectory(prefix="edgecv-micro-") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        try:
            done = subprocess.run([sys.executable, "-c", WORKER, str(job_path)], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Unsupported(f"TFLite Micro did not finish within {timeout} s") from None
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (ValueError, IndexError):
        result = None
    return done, result


def _refusal(model: Path, done: subprocess.CompletedProcess) -> Exception:
    """TFLite Micro's refusal as one line: an op it lacks names the op; a missing module is exit 3."""
    text = done.stderr or ""
    ops = _MISSING_OP.findall(text)
    if ops:
        return DataError(f"{model.name} has an op TFLite Micro lacks: {ops[0]} (no kernel in tflite-micro); "
                         "replace it in the model")
    custom = _CUSTOM_OP.findall(text)
    if custom:
        return DataError(f"{model.name} has a custom op TFLite Micro's Python interpreter lacks: {custom[0]}")
    if "No module named" in text:
        return Unsupported(f"TFLite Micro does not run here: {first_line(text.strip().splitlines()[-1])}")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("  ")]
    return DataError(f"TFLite Micro cannot run {model.name}: {lines[-1] if lines else 'no output'}")


def missing_ops(model: str | os.PathLike) -> list[str]:
    """The builtin ops of ``model`` that TFLite Micro has no kernel for (it names the first it meets)."""
    done, result = _work({"model": str(model), "probe": True}, 300)
    if result is not None:
        return []
    return _MISSING_OP.findall(done.stderr or "")


@dataclass
class MicroResult:
    """``edgecv micro``: one model on TFLite Micro against LiteRT, on the same int8 inputs."""

    model: str
    images: int
    accuracy: float  # top-1 on TFLite Micro, 0-1
    reference_accuracy: float  # top-1 on LiteRT (edgecv's runtime), same images
    agreement: float  # share of images whose top-1 is the same on both
    max_output_diff: float  # largest difference of a raw output value between the runtimes (quantized steps)
    arena_bytes: int
    runtime: str  # tflite-micro's version
    reference_runtime: str
    data: dict  # source, test_images
    sources: list[str] | None = None  # model_data.cc and .h, when exported
    arena_note: str = ARENA_NOTE

    @property
    def drop(self) -> float:
        """Accuracy points TFLite Micro loses against LiteRT (negative: it gains)."""
        return 100 * (self.reference_accuracy - self.accuracy)

    def to_dict(self) -> dict:
        return {"schema": "edgecv.micro/1", **asdict(self), "drop_points": self.drop}


def run_micro(model: str | os.PathLike, images: np.ndarray, on_progress: ProgressFn = ignore) -> dict:
    """Runs ``images`` (raw pixels) through TFLite Micro and LiteRT. Returns the raw outputs of both, each
    top-1, and the arena.

    Raises:
        DataError: not a model, or an op TFLite Micro lacks.
        Unsupported: TFLite Micro is not installed.
    """
    from edgecv.measure.benchmark import open_tflite

    path = Path(model)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    check_installed()
    reference = open_tflite(path, plain=True)  # TFLite's own kernels, as TFLite Micro's reference ones
    wanted, given = [int(d) for d in reference.input["shape"][1:]], list(np.shape(images)[1:])
    if wanted != given:
        raise DataError(f"{path.name} takes {'x'.join(map(str, wanted))} images, these are "
                        f"{'x'.join(map(str, given))}: give the data set it was trained on")
    lacking = missing_ops(path)  # before a thousand images go through LiteRT
    if lacking:
        raise DataError(f"{path.name} has an op TFLite Micro lacks: {lacking[0]} (no kernel in tflite-micro); "
                        "replace it in the model")
    x = reference.prepare(images)
    on_progress(Progress("litert", 0, len(x), path.name))
    ours = []
    for i in range(len(x)):
        reference.set_input(x[i])
        reference.invoke()
        ours.append(reference.interpreter.get_tensor(reference.output["index"])[0].reshape(-1))
    on_progress(Progress("tflite-micro", 0, len(x), path.name))
    with tempfile.TemporaryDirectory(prefix="edgecv-micro-io-") as tmp:
        np.save(Path(tmp) / "x.npy", x)
        done, result = _work({"model": str(path), "inputs": str(Path(tmp) / "x.npy"),
                              "outputs": str(Path(tmp) / "y.npy")})
        if result is None:
            raise _refusal(path, done)
        theirs = np.load(Path(tmp) / "y.npy")
    on_progress(Progress("tflite-micro", len(x), len(x), "done"))
    arena = _ARENA.findall(done.stderr or "")
    if not arena:
        raise DataError(f"TFLite Micro ran {path.name} but recorded no arena size")
    return {"micro": theirs, "litert": np.stack(ours), "arena_bytes": int(arena[0]),
            "reference_runtime": reference.runtime.describe()}


def measure_micro(model: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                  data: dict | None = None, on_progress: ProgressFn = ignore) -> MicroResult:
    """Top-1 accuracy on TFLite Micro and on LiteRT for the same images, their agreement, and the arena."""
    ran = run_micro(model, images, on_progress)
    micro, litert = ran["micro"], ran["litert"]
    top_micro, top_litert = micro.argmax(axis=1), litert.argmax(axis=1)
    labels = np.asarray(labels).reshape(-1)
    reference = ran["reference_runtime"]
    return MicroResult(
        model=Path(model).name, images=int(len(labels)), accuracy=float(np.mean(top_micro == labels)),
        reference_accuracy=float(np.mean(top_litert == labels)), agreement=float(np.mean(top_micro == top_litert)),
        max_output_diff=float(np.max(np.abs(micro.astype(np.float64) - litert.astype(np.float64)))),
        arena_bytes=ran["arena_bytes"], runtime=_micro_version(),
        reference_runtime=f"{reference.get('name')} {reference.get('version')}" if isinstance(reference, dict)
        else str(reference),
        data=data or {"test_images": int(len(labels))},
    )


def _micro_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"tflite-micro {version('tflite-micro')}"
    except PackageNotFoundError:
        return "tflite-micro"


def c_identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)


def export_c(model: str | os.PathLike, out_dir: str | os.PathLike, arena_bytes: int,
             symbol: str = "g_model") -> list[Path]:
    """Writes ``model_data.cc`` (the model as a 16-byte aligned C array) and ``model_data.h`` (its declaration,
    its length and ``kTensorArenaSize``), each atomically."""
    path = Path(model)
    data = path.read_bytes()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    symbol = c_identifier(symbol)
    guard = "EDGECV_MODEL_DATA_H_"
    header = (
        f"// {path.name} for TFLite Micro, written by edgecv micro.\n"
        f"// kTensorArenaSize is {ARENA_NOTE}.\n"
        f"#ifndef {guard}\n#define {guard}\n\n#include <cstddef>\n\n"
        f"extern const unsigned char {symbol}[];\n"
        f"extern const unsigned int {symbol}_len;\n"
        f"constexpr size_t kTensorArenaSize = {int(arena_bytes)};\n\n#endif  // {guard}\n"
    )
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    source = (
        f"// {path.name} ({len(data)} bytes) for TFLite Micro, written by edgecv micro.\n"
        '#include "model_data.h"\n\n'
        f"alignas(16) const unsigned char {symbol}[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
        f"const unsigned int {symbol}_len = {len(data)};\n"
    )
    return [write_text(out / "model_data.h", header), write_text(out / "model_data.cc", source)]


def micro_record(result: MicroResult) -> dict:
    """What a stage holds under ``details["micro"]``."""
    return {"accuracy": result.accuracy, "reference_accuracy": result.reference_accuracy,
            "agreement": result.agreement, "images": result.images, "arena_bytes": result.arena_bytes,
            "runtime": result.runtime, "arena_note": ARENA_NOTE}


def measure_into(rows: Sequence[tuple[Path, object]], images: np.ndarray, labels: np.ndarray,
                 on_progress: ProgressFn = ignore) -> None:
    """Runs each ``(model path, StageResult)`` row's file on TFLite Micro and writes ``details["micro"]``; a row
    TFLite Micro cannot run gets ``details["micro_error"]`` (its one line). A missing TFLite Micro stops the flow."""
    check_installed()
    for path, row in rows:
        try:
            row.details["micro"] = micro_record(measure_micro(path, images, labels, on_progress=on_progress))
        except DataError as e:
            row.details["micro_error"] = first_line(e)
