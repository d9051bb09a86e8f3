"""Arm Ethos-U NPUs: compile an int8 ``.tflite`` with Vela and read its performance estimate.

Vela (``ethos-u-vela``, Arm's compiler for the Ethos-U55, U65 and U85 micro-NPUs beside Cortex-M55/M85 and
Cortex-A cores) places each op of the graph on the NPU or leaves it to the CPU (TFLite Micro's kernels), writes
the compiled ``*_vela.tflite`` (the NPU part is one ``ethos-u`` custom op) and a summary CSV with its
performance model: NPU cycles, total cycles with memory access, inferences per second at the system
configuration's clock, and the SRAM and off-chip (flash or DRAM) bytes the network needs.

An estimate is a compiler's model of the hardware, not a board: it is exact and repeatable (two runs give the
same numbers; a test holds it), so it ranks models and gates regressions, but it does not know the board's real
clock, bus contention, caches, the CPU ops' time or the driver's overhead.

Vela runs as a subprocess of this Python (``python -m ethosu.vela``; it is one of edgecv's dependencies, its
pins do not conflict with the TensorFlow stack), or of the executable named by ``$EDGECV_VELA``. Nothing is
printed: Vela's output is parsed, its files are written to a temporary folder and the compiled model is moved
beside the input atomically.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

from edgecv.config import NpuConfig
from edgecv.errors import DataError, Unsupported, first_line
from edgecv.progress import Progress, ProgressFn, ignore

UNIT = "Vela's performance estimate (a compiler's model of the NPU, not a measurement on a board)"
VELA_PIN = "ethos-u-vela==5.2.*"


DEFAULT_CONFIGS = (NpuConfig.U55_128, NpuConfig.U65_256)
# the boards whose vendors ship each configuration; the others are in Arm's Corstone reference designs and FVPs
BOARDS = {
    NpuConfig.U55_64: "Himax WE2 (Seeed Grove Vision AI V2)",
    NpuConfig.U55_128: "Alif Ensemble E3/E5/E7 (high-efficiency M55 subsystem); Arm Corstone-300",
    NpuConfig.U55_256: "Alif Ensemble E3/E5/E7 (high-performance M55 subsystem); Arm Corstone-300",
    NpuConfig.U65_256: "NXP i.MX 93 (beside Cortex-A55 cores)",
    NpuConfig.U85_256: "Arm Corstone-320 (reference design and FVP)",
}
WEIGHT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL", "CONV_3D"}


@dataclass(frozen=True)
class OpPlacement:
    index: int
    op: str  # TFLite builtin, e.g. CONV_2D
    output: str  # the op's first output tensor: what Vela's warnings name
    target: str  # "NPU" or "CPU"
    reason: str = ""  # Vela's words for a CPU op


@dataclass
class VelaEstimate:
    """One model compiled for one accelerator configuration."""

    model: str  # file name of the input
    accelerator: str  # e.g. ethos-u55-128
    system_config: str  # Vela's system configuration (clocks, memories): internal default for the accelerator
    memory_mode: str
    clock_hz: float  # the configuration's NPU clock: inferences_per_second is at this clock
    cycles_npu: int  # the NPU's own cycles
    cycles_total: int  # with memory access: what inference_seconds is made of
    inference_seconds: float
    inferences_per_second: float
    sram_bytes: int
    flash_bytes: int  # on-chip and off-chip flash (the weights, in the embedded configurations)
    dram_bytes: int  # the weights and spills in the client-server configurations (U65, U85)
    weights_in: str  # Vela's weights storage area, e.g. "Off-chip Flash" or "DRAM"
    macs: int  # Vela's count of the network's multiply-accumulates
    npu_ops: int  # Vela's own operator counts (after its graph rewriting: a SOFTMAX becomes many)
    cpu_ops: int
    ops: list[OpPlacement] = field(default_factory=list)  # the input graph's ops, each on the NPU or the CPU
    compiled: str | None = None  # where the *_vela.tflite went
    vela: str = ""  # Vela's version
    boards: str = ""
    unit: str = UNIT

    @property
    def cpu_placed(self) -> list[OpPlacement]:
        return [o for o in self.ops if o.target == "CPU"]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VelaEstimate:
        d = dict(d)
        d["ops"] = [OpPlacement(**o) for o in d.get("ops", [])]
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def vela_command() -> list[str]:
    """How Vela is started: ``$EDGECV_VELA``, or this Python's ``ethosu.vela``.

    Raises:
        Unsupported: neither is there.
    """
    given = os.environ.get("EDGECV_VELA")
    if given:
        path = shutil.which(given)
        if path is None:
            raise Unsupported(f"EDGECV_VELA={given} is not an executable: point it at a vela, or unset it to use "
                              f"the one installed with edgecv ({VELA_PIN})")
        return [path]
    if find_spec("ethosu") is None or find_spec("ethosu.vela") is None:
        raise Unsupported(f"Vela is not installed: pip install '{VELA_PIN}' (or set EDGECV_VELA to a vela executable)")
    return [sys.executable, "-m", "ethosu.vela"]


def vela_version() -> str:
    done = _run(vela_command() + ["--version"], 60)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "unknown"


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise Unsupported(f"cannot start Vela ({args[0]})") from None
    except subprocess.TimeoutExpired:
        raise Unsupported(f"Vela did not finish within {timeout} s") from None


def graph_ops(path: Path) -> list[tuple[int, str, str, list[str]]]:
    """The model's ops as (index, builtin, first output's name, the dtypes of its inputs), read by LiteRT.

    Raises:
        DataError: a file that is not a TFLite model.
    """
    from edgecv.measure.benchmark import open_tflite

    interpreter = open_tflite(path, plain=True).interpreter
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = []
    for op in interpreter._get_ops_details():
        outputs = [int(i) for i in op["outputs"] if int(i) >= 0]
        dtypes = [tensors[int(i)]["dtype"].__name__ for i in op["inputs"] if int(i) >= 0 and int(i) in tensors]
        ops.append((int(op["index"]), op["op_name"], tensors[outputs[0]]["name"] if outputs else "", dtypes))
    return ops


def check_integer(path: Path, ops: list[tuple[int, str, str, list[str]]]) -> None:
    """Vela compiles full-integer graphs: a model whose weight layers take float inputs is refused in one line.

    Raises:
        DataError: a float (or dynamic-range) model.
    """
    weighted = [dtypes for _, name, _, dtypes in ops if name in WEIGHT_OPS]
    inputs = [d for dtypes in (weighted or [d for *_, d in ops]) for d in dtypes[:1]]
    if inputs and not any(d in ("int8", "int16") for d in inputs):
        raise DataError(f"{path.name} is a float model ({inputs[0]} activations): Vela compiles int8 models; make one "
                        "with edgecv quantize --mode int8")


_WARNING = re.compile(r"^Warning \(supported operators\) operator: (\w+), ofm: '(.*)'$")
_COUNTS = re.compile(r"^(CPU|NPU) operators = (\d+)")


def parse_placement(stdout: str) -> tuple[dict[tuple[str, str], str], dict[str, int]]:
    """Vela's warnings as {(op, output tensor): reason}, and its own operator counts {"CPU": n, "NPU": n}."""
    reasons: dict[tuple[str, str], str] = {}
    counts: dict[str, int] = {}
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        found = _WARNING.match(line.strip())
        if found:
            text = []
            for follow in lines[i + 1:]:
                follow = follow.strip()
                if not follow or _WARNING.match(follow) or follow.startswith(("Network summary", "Warning", "Info")):
                    break
                text.append(follow.removeprefix("Reason: "))
            reasons[(found.group(1), found.group(2))] = " ".join(text) or "not supported on the NPU"
        counted = _COUNTS.match(line.strip())
        if counted:
            counts[counted.group(1)] = int(counted.group(2))
    return reasons, counts


def _summary(folder: Path) -> dict:
    found = sorted(folder.glob("*_summary_*.csv"))
    if not found:
        raise DataError("Vela wrote no performance summary")
    with open(found[0], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError("Vela's performance summary is empty")
    return rows[0]


def _kib(value: str) -> int:
    return int(round(float(value) * 1024))


def compile_model(model: str | os.PathLike, accelerator: NpuConfig | str = NpuConfig.U55_128,
                  out_dir: str | os.PathLike | None = None, timeout: int = 600) -> VelaEstimate:
    """Compiles ``model`` with Vela for one accelerator configuration and reads its estimate.

    ``out_dir``: where ``<stem>_<accelerator>_vela.tflite`` goes (default: beside the model); None of Vela's
    other files are kept.

    Raises:
        DataError: no such file, not a TFLite model, a float model, or a model Vela refuses.
        Unsupported: Vela is not installed or does not run.
    """
    path = Path(model)
    accelerator = NpuConfig(accelerator)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    ops = graph_ops(path)
    check_integer(path, ops)
    command = vela_command()
    target_dir = Path(out_dir) if out_dir is not None else path.parent
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgecv-vela-", dir=target_dir) as work:
        work = Path(work)
        source = work / path.name  # Vela names its outputs after the input: a copy keeps the names known
        shutil.copyfile(path, source)
        done = _run(command + [str(source), "--accelerator-config", accelerator.value, "--output-dir",
                               str(work / "out")], timeout)
        if done.returncode != 0:
            text = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
            last = next((line for line in reversed(text) if "Error" in line), text[-1] if text else "no output")
            if "No module named" in last:
                raise Unsupported(f"Vela does not run here: {last}")
            raise DataError(f"Vela could not compile {path.name} for {accelerator}: {last}")
        summary = _summary(work / "out")
        compiled = work / "out" / f"{path.stem}_vela.tflite"
        kept = None
        if compiled.is_file():
            kept = target_dir / f"{path.stem}_{accelerator.value}_vela.tflite"
            os.replace(compiled, kept)  # same file system (the work folder is inside target_dir): atomic
    reasons, counts = parse_placement(done.stdout)
    placement = [OpPlacement(i, name, out, "CPU" if (name, out) in reasons else "NPU", reasons.get((name, out), ""))
                 for i, name, out, _ in ops]
    return VelaEstimate(
        model=path.name, accelerator=accelerator.value, system_config=summary["system_config"],
        memory_mode=summary["memory_mode"], clock_hz=float(summary["core_clock"]),
        cycles_npu=int(float(summary["cycles_npu"])), cycles_total=int(float(summary["cycles_total"])),
        inference_seconds=float(summary["inference_time"]),
        inferences_per_second=float(summary["inferences_per_second"]),
        sram_bytes=_kib(summary["sram_memory_used"]),
        flash_bytes=_kib(summary["off_chip_flash_memory_used"]) + _kib(summary["on_chip_flash_memory_used"]),
        dram_bytes=_kib(summary["dram_memory_used"]), weights_in=summary.get("weights_storage_area", ""),
        macs=int(float(summary.get("nn_macs") or 0)), npu_ops=counts.get("NPU", 0), cpu_ops=counts.get("CPU", 0),
        ops=placement, compiled=None if kept is None else str(kept), vela=_version_of_vela(command),
        boards=BOARDS.get(accelerator, "Arm's Corstone reference designs (no vendor board known to edgecv)"),
    )


_versions: dict[tuple[str, ...], str] = {}


def _version_of_vela(command: list[str]) -> str:
    key = tuple(command)
    if key not in _versions:
        done = _run(command + ["--version"], 60)
        _versions[key] = done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else "?"
    return _versions[key]


@dataclass
class NpuReport:
    """``edgecv npu``: one model on each configuration asked for."""

    model: str
    estimates: list[VelaEstimate]
    unrunnable: list[OpPlacement] = field(default_factory=list)  # CPU ops that TFLite Micro lacks too

    def to_dict(self) -> dict:
        return {"schema": "edgecv.npu/1", "model": self.model, "unit": UNIT,
                "estimates": [e.to_dict() for e in self.estimates],
                "unrunnable": [asdict(o) for o in self.unrunnable]}


def npu_report(model: str | os.PathLike, accelerators: Sequence[NpuConfig | str] = DEFAULT_CONFIGS,
               out_dir: str | os.PathLike | None = None, on_progress: ProgressFn = ignore) -> NpuReport:
    """Compiles ``model`` for each configuration. An op Vela leaves to the CPU must have a TFLite Micro kernel
    (the CPU side of an Ethos-U model is TFLite Micro): one that has none makes the model unrunnable.

    Raises:
        DataError: as :func:`compile_model`, or an op that neither the NPU nor TFLite Micro runs.
        Unsupported: Vela is not installed.
    """
    accelerators = list(dict.fromkeys(NpuConfig(a) for a in accelerators)) or list(DEFAULT_CONFIGS)
    path = Path(model)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    target = Path(out_dir) if out_dir is not None else path.parent
    target.mkdir(parents=True, exist_ok=True)
    estimates = []
    with tempfile.TemporaryDirectory(prefix=".edgecv-vela-", dir=target) as staged:  # moved once all is known
        for k, accelerator in enumerate(accelerators):
            on_progress(Progress("vela", k, len(accelerators), f"{path.name} on {accelerator}"))
            estimates.append(compile_model(path, accelerator, staged))
        on_progress(Progress("vela", len(accelerators), len(accelerators), "done"))
        cpu = {(o.index, o.op): o for e in estimates for o in e.cpu_placed}
        if cpu:
            from edgecv.device.micro import missing_ops

            lacking = set(missing_ops(path))
            unrunnable = [o for o in cpu.values() if o.op in lacking]
            if unrunnable:
                o = unrunnable[0]
                raise DataError(f"op {o.index} {o.op} of {path.name} runs neither on the Ethos-U NPU (Vela: "
                                f"{o.reason}) nor in TFLite Micro (no kernel): replace it in the model")
        for e in estimates:
            if e.compiled:
                kept = target / Path(e.compiled).name
                os.replace(e.compiled, kept)
                e.compiled = str(kept)
    return NpuReport(path.name, estimates)


def estimate_record(estimates: Sequence[VelaEstimate]) -> dict:
    """What a stage holds under ``details["npu"]``: the unit, then one compact entry per configuration."""
    keep = ("cycles_npu", "cycles_total", "inferences_per_second", "clock_hz", "sram_bytes", "flash_bytes",
            "dram_bytes", "weights_in", "npu_ops", "cpu_ops", "system_config", "vela")
    return {"unit": UNIT, **{e.accelerator: {k: getattr(e, k) for k in keep}
                             | {"cpu_placed": [f"{o.op}: {o.reason}" for o in e.cpu_placed]} for e in estimates}}


def estimate_into(rows: Sequence[tuple[Path, object]], accelerators: Sequence[NpuConfig | str],
                  on_progress: ProgressFn = ignore) -> None:
    """Compiles each ``(model path, StageResult)`` row's file and writes ``details["npu"]``: the one way a flow
    (compress, search, the gate) puts Vela's estimate into its rows. A row Vela cannot take (a float model, a
    refusal) gets ``details["npu_error"]`` instead; a missing Vela stops the flow (exit 3)."""
    rows = list(rows)
    for k, (path, row) in enumerate(rows):
        on_progress(Progress("vela", k, len(rows), Path(path).name))
        try:
            with tempfile.TemporaryDirectory(prefix=".edgecv-vela-out-", dir=Path(path).parent) as out:
                estimates = [compile_model(path, a, out) for a in accelerators]
                for e in estimates:
                    e.compiled = None  # a flow keeps the estimate, not another file per row and configuration
        except DataError as e:
            row.details["npu_error"] = first_line(e)
            continue
        row.details["npu"] = estimate_record(estimates)
    on_progress(Progress("vela", len(rows), len(rows), "done"))
