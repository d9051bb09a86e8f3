"""Results of a run: one record per stage, the environment, and their renderings (JSON, Markdown, plot).

The columns are declared once here; the CLI's table, ``report.md`` and the plot all read them. A stage that
failed or was skipped keeps its row with a status and a reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path

from edgecv.errors import DataError, first_line
from edgecv.fsutil import atomic_path, json_text, write_text
from edgecv.measure.verdict import GateReport


SCHEMA = "edgecv.report/1"


class StageStatus(str, Enum):
    """A row's fate: rows never vanish, a failed or skipped stage keeps its row with a reason."""

    OK = "ok"
    SKIPPED = "skipped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass
class StageResult:
    stage: str
    status: StageStatus = StageStatus.OK
    reason: str = ""
    model: str | None = None  # file name, relative to the report
    format: str | None = None  # keras | tflite
    accuracy: float | None = None  # top-1 on the test images, 0-1
    images: int | None = None
    latency: dict | None = None  # p50_ms, p90_ms, p99_ms, mean_ms, first_ms, runs, warmup
    params: int | None = None
    sparsity: float | None = None  # share of zeros in kernels
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    runtime: dict | None = None  # name, version
    threads: int | None = None
    input: dict | None = None  # dtype, shape, scale, zero_point
    sha256: str | None = None  # of the model file measured
    macs: int | None = None  # multiply-accumulates of the weight layers, per image
    peak_memory_bytes: int | None = None  # estimated peak of live activations (TFLite's tensor arena)
    details: dict = field(default_factory=dict)  # stage-specific extras, e.g. per-layer sparsity

    def __post_init__(self):
        self.status = StageStatus(self.status)  # "failed" from JSON or a caller becomes the Enum; a typo fails here

    @classmethod
    def from_dict(cls, d: dict) -> StageResult:
        """Reads any writer's record: unknown keys are dropped, missing ones keep their defaults."""
        known = {f.name for f in fields(cls)}
        if "peak_memory_bytes" not in d and "peak_activation_bytes" in d:  # the runtime's own name for it
            d = {**d, "peak_memory_bytes": d["peak_activation_bytes"]}
        return cls(**{k: v for k, v in d.items() if k in known})

    def p50(self) -> float | None:
        return (self.latency or {}).get("p50_ms")


# (header, how to read it from a stage) -- the one declaration of the table
def _pct(v):
    return "" if v is None else f"{100 * v:.2f}"


def _ms(v):
    return "" if v is None else (f"{v:.4f}" if v < 1 else f"{v:.3f}")


def _kb(v):
    return "" if v is None else f"{v / 1024:,.1f}"


def _mmacs(v):
    return "" if v is None else f"{v / 1e6:,.2f}"


def drop_in_words(drop: float, than: str) -> str:
    """A drop in points said as one: "0.20 points below the parent", never a signed "+0.20" that reads as a gain."""
    if abs(drop) < 0.005:
        return f"as accurate as {than}"
    return f"{abs(drop):.2f} points {'below' if drop > 0 else 'above'} {than}"


def arm_instructions(stage) -> dict[str, float] | None:
    """An emulated stage's ARM cost as {cpu: instructions per inference} (``device emulate --arm-cost``): a
    count of emulated instructions, never a time."""
    cost = stage.details.get("arm_cost") if stage is not None else None
    if not cost:
        return None
    return {cpu: entry["instructions_per_inference"] for cpu, entry in cost.items() if isinstance(entry, dict)}


def npu_estimates(stage) -> dict[str, dict]:
    """A stage's Vela estimates (``compress --npu``), {accelerator: record}, in the order they were asked for."""
    record = stage.details.get("npu") if stage is not None else None
    return {name: entry for name, entry in (record or {}).items() if isinstance(entry, dict)}


def _npu(stage, show) -> str:
    """The first configuration's value; the others are in report.json and the notes below the table."""
    estimates = list(npu_estimates(stage).values())
    return show(estimates[0]) if estimates else ""


def _layer(tensor: str) -> str:
    """The Keras layer inside a converter's tensor name ("model/conv1/BiasAdd;model/conv1/Conv2D" -> "conv1")."""
    parts = tensor.split(";")[0].split("/")
    return parts[-2] if len(parts) >= 2 else parts[0]


def _delegated(record: dict | None) -> str:
    """How much of the graph the delegate took: "XNNPACK 6/7", "none 7/7" on TFLite's own kernels."""
    if not record:
        return ""
    total = record["delegated_ops"] + sum(record["fallback_ops"].values())
    return f"{record['delegate'] or 'none'} {record['delegated_ops'] if record['delegate'] else total}/{total}"


COLUMNS = [
    ("stage", lambda s: s.stage),
    ("acc %", lambda s: _pct(s.accuracy)),
    ("p50 ms", lambda s: _ms(s.p50())),
    ("p90 ms", lambda s: _ms((s.latency or {}).get("p90_ms"))),
    ("p99 ms", lambda s: _ms((s.latency or {}).get("p99_ms"))),
    ("MMACs", lambda s: _mmacs(s.macs)),
    ("params", lambda s: "" if s.params is None else f"{s.params:,}"),
    ("sparse %", lambda s: "" if s.sparsity is None else f"{100 * s.sparsity:.1f}"),
    ("KB", lambda s: _kb(s.size_bytes)),
    ("gzip KB", lambda s: _kb(s.gzip_bytes)),
    ("peak KB", lambda s: _kb(s.peak_memory_bytes)),
    ("delegated ops", lambda s: _delegated(s.details.get("delegation"))),
    ("NPU kcyc", lambda s: _npu(s, lambda e: f"{e['cycles_total'] / 1e3:,.1f}")),
    ("SRAM KB", lambda s: _npu(s, lambda e: _kb(e["sram_bytes"]))),
    ("flash KB", lambda s: _npu(s, lambda e: _kb(e["flash_bytes"] + e["dram_bytes"]))),
    ("TFLM %", lambda s: _pct((s.details.get("micro") or {}).get("accuracy"))),
    ("arena KB", lambda s: _kb((s.details.get("micro") or {}).get("arena_bytes"))),
    ("status", lambda s: s.status.value),
]
# what fits an 80-column terminal; the rest is in report.md, report.json and behind --wide
COMPACT = ("stage", "acc %", "p50 ms", "KB", "gzip KB", "status")


def columns(wide: bool = True) -> list[tuple[str, object]]:
    return COLUMNS if wide else [c for c in COLUMNS if c[0] in COMPACT]


def pareto_front(costs: list[float], accuracies: list[float]) -> list[bool]:
    """Which points no other point beats: as cheap or cheaper and as accurate or more, better in one."""
    points = list(zip(costs, accuracies))
    return [not any(oc <= c and oa >= a and (oc < c or oa > a) for oc, oa in points) for c, a in points]


@dataclass
class Report:
    stages: list[StageResult]
    environment: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    edgecv: str = ""
    created: str = ""
    seconds: float | None = None
    gate: GateReport | None = None  # compress --max-drop: criteria per quantized stage, and whether all passed
    resumed: list[str] = field(default_factory=list)  # stages reused from an earlier, interrupted run

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)

    def notes(self) -> list[str]:
        """What a reader must not miss below the table: failed or skipped stages, and quantized graphs that the
        delegate split (their fallback ops run on TFLite's slower kernels)."""
        from edgecv import runtime as rt

        notes = [f"{s.stage}: {s.status}: {s.reason}" for s in self.stages if s.reason]
        for s in self.stages:
            warning = rt.delegation_warning(s.details.get("delegation"))
            if warning:
                notes.append(f"{s.stage}: {warning}")
            for accelerator, e in npu_estimates(s).items():
                notes.append(f"{s.stage}: {accelerator} (Vela's estimate, {e['system_config']} at "
                             f"{e['clock_hz'] / 1e6:g} MHz): {e['cycles_total']:,} cycles, "
                             f"{e['inferences_per_second']:,.0f} inferences/s, SRAM {_kb(e['sram_bytes'])} KB, "
                             f"flash/DRAM {_kb(e['flash_bytes'] + e['dram_bytes'])} KB"
                             + (f"; on the CPU: {'; '.join(e['cpu_placed'])}" if e.get("cpu_placed") else ""))
            for key in ("npu_error", "micro_error"):
                if s.details.get(key):
                    notes.append(f"{s.stage}: {'Vela' if key == 'npu_error' else 'TFLite Micro'}: {s.details[key]}")
            micro = s.details.get("micro")
            if micro:
                notes.append(f"{s.stage}: TFLite Micro {100 * micro['accuracy']:.2f} % against LiteRT "
                             f"{100 * micro['reference_accuracy']:.2f} % on {micro['images']} images (same top-1 on "
                             f"{100 * micro['agreement']:.1f} %), arena {micro['arena_bytes']:,} bytes")
            mixed = s.details.get("mixed")
            if mixed:
                int4 = [_layer(layer["name"]) for layer in mixed["layers"] if layer["bits"] == 4]
                notes.append(f"{s.stage}: int4 weights on {len(int4)} of {len(mixed['layers'])} weight layers "
                             f"({', '.join(int4) or 'none'}), int8 elsewhere; made by {s.details.get('made_by')}")
        return notes

    def rows(self, wide: bool = True) -> list[list[str]]:
        return [[read(s) for _, read in columns(wide)] for s in self.stages]

    def to_dict(self) -> dict:
        """Plain JSON types only (paths and numpy scalars converted), ready for ``json.dumps``."""
        d = {"schema": SCHEMA, **asdict(self)}
        if self.gate is not None:
            d["gate"] = self.gate.to_dict()  # its own JSON shape (the stage beside each criterion), in its place
        return json.loads(json.dumps(d, default=_jsonable))

    def save(self, path: str | os.PathLike) -> Path:
        return write_text(path, json_text(self.to_dict()))

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        if not isinstance(d, dict) or not isinstance(d.get("stages"), list):
            raise ValueError("no list of stages")
        if not all(isinstance(s, dict) and isinstance(s.get("stage"), str) for s in d["stages"]):
            raise ValueError("a stage that is not a record with a name")
        return cls(
            stages=[StageResult.from_dict(s) for s in d["stages"]],
            **{k: d[k] for k in ("environment", "data", "config", "edgecv", "created", "seconds", "resumed") if k in d},
            gate=None if d.get("gate") is None else GateReport.from_dict(d["gate"]),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Report:
        """Reads a report written by ``edgecv compress``/``benchmark`` or by the device script."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except OSError as e:
            raise DataError(f"cannot read report {path}: {e.strerror or e}") from None
        except (ValueError, TypeError) as e:
            raise DataError(f"{path} is not an edgecv report: {first_line(e)}") from None

    def to_markdown(self) -> str:
        headers = [h for h, _ in COLUMNS]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        lines += [""] + [f"- {note}" for note in self.notes()]
        env = self.environment
        runtime = env.get("runtime") or {}
        meta = [
            f"- data: {self.data.get('source', '?')} ({self.data.get('train_images', '?')} train / "
            f"{self.data.get('test_images', '?')} test images)",
            f"- CPU: {env.get('cpu')}, {env.get('cores')} cores, ISA {' '.join(env.get('isa') or ['unknown'])}; "
            f"latency: batch 1, {env.get('threads')} thread(s), {runtime.get('name')} {runtime.get('version')}",
            f"- python {env.get('python')}, numpy {env.get('numpy')}, tensorflow {env.get('tensorflow')}, "
            f"edgecv {self.edgecv}",
            "- MMACs: millions of multiply-accumulates per image (convolution and dense layers); peak KB: the "
            "largest set of activations live at once, estimated from the TFLite graph",
            "- NPU kcyc, SRAM KB, flash KB (with --npu): Vela's estimate for the first Ethos-U configuration, thousands "
            "of total cycles, SRAM, and flash or DRAM for the weights; TFLM %, arena KB (with --micro): top-1 on "
            "TFLite Micro and its tensor arena",
        ]
        if self.seconds is not None:
            meta.append(f"- wall time: {self.seconds / 60:.1f} min")
        if self.gate is not None:
            meta.append(f"- gate (max drop {self.gate.max_drop} points vs {self.gate.reference}): "
                        + ("passed" if self.gate.passed else "FAILED for " + ", ".join(self.gate.failed)))
        return "# edgecv report\n\n" + "\n".join(lines) + "\n\n" + "\n".join(meta) + "\n"


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def plot_pareto(report: Report, path: str | os.PathLike) -> Path | None:
    """Accuracy against p50 latency with the Pareto front drawn, marker area by gzip size (what a device
    downloads, where pruning's zeros pay off); None when no stage has both numbers."""
    points = [s for s in report.stages if s.status is StageStatus.OK and s.accuracy is not None and s.p50() is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s.gzip_bytes or s.size_bytes or 0 for s in points]
    biggest = max(sizes) or 1
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for s, size in zip(points, sizes):
        area = 40 + 1200 * size / biggest  # points squared
        ax.scatter(s.p50(), 100 * s.accuracy, s=area, alpha=0.6, edgecolors="black")
        label = f"{s.stage}\ngzip {_kb(size)} KB"
        radius = (area / 3.1416) ** 0.5
        ax.annotate(label, (s.p50(), 100 * s.accuracy), fontsize=7, xytext=(0, -radius - 2),
                    textcoords="offset points", va="top", ha="center")
    on_front = pareto_front([s.p50() for s in points], [s.accuracy for s in points])
    front = sorted((s for s, on in zip(points, on_front) if on), key=lambda s: s.p50())
    ax.plot([s.p50() for s in front], [100 * s.accuracy for s in front], "--", color="tab:blue", alpha=0.7,
            label="Pareto front (faster or more accurate than every other)")
    lo, hi = min(s.p50() for s in points), max(s.p50() for s in points)
    latency_axis(ax, lo / 1.3, hi * 2.5)  # room on the right for the labels
    ax.margins(y=0.3)
    ax.set_xlabel("p50 latency, ms per image (batch 1, log scale)")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("accuracy vs latency (marker area = gzip size)")
    ax.legend(fontsize=7, loc="lower right")
    return save_png(fig, path)


def latency_axis(ax, lo: float, hi: float) -> None:
    """A log latency axis whose ticks read as plain milliseconds (0.034, not 3.4x10^-2), enough of them to read
    a value off even when the points span less than a decade."""
    import matplotlib.ticker as ticker

    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def save_png(fig, path: str | os.PathLike) -> Path:
    """Grid, layout and an atomic write: the last steps every edgecv plot shares."""
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
