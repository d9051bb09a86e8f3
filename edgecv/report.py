"""Results of a run: one record per stage, the environment, and their renderings (JSON, Markdown, plot).

The columns are declared once here; the CLI's table, ``report.md`` and the plot all read them. A stage that
failed or was skipped keeps its row with a status and a reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import DataError, first_line
from .fsutil import atomic_path, write_text

SCHEMA = "edgecv.report/1"


@dataclass
class StageResult:
    stage: str
    status: str = "ok"  # ok | skipped | failed
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


COLUMNS = [
    ("stage", lambda s: s.stage),
    ("acc %", lambda s: _pct(s.accuracy)),
    ("p50 ms", lambda s: _ms(s.p50())),
    ("p90 ms", lambda s: _ms((s.latency or {}).get("p90_ms"))),
    ("MMACs", lambda s: _mmacs(s.macs)),
    ("params", lambda s: "" if s.params is None else f"{s.params:,}"),
    ("sparse %", lambda s: "" if s.sparsity is None else f"{100 * s.sparsity:.1f}"),
    ("KB", lambda s: _kb(s.size_bytes)),
    ("gzip KB", lambda s: _kb(s.gzip_bytes)),
    ("peak KB", lambda s: _kb(s.peak_memory_bytes)),
    ("status", lambda s: s.status),
]


@dataclass
class Report:
    stages: list[StageResult]
    environment: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    edgecv: str = ""
    created: str = ""
    seconds: float | None = None
    gate: dict | None = None  # compress --max-drop: criteria per quantized stage, and whether all passed
    resumed: list[str] = field(default_factory=list)  # stages reused from an earlier, interrupted run

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)

    def rows(self) -> list[list[str]]:
        return [[read(s) for _, read in COLUMNS] for s in self.stages]

    def to_dict(self) -> dict:
        """Plain JSON types only (paths and numpy scalars converted), ready for ``json.dumps``."""
        return json.loads(json.dumps({"schema": SCHEMA, **asdict(self)}, default=_jsonable))

    def save(self, path: str | os.PathLike) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        if not isinstance(d, dict) or not isinstance(d.get("stages"), list):
            raise ValueError("no list of stages")
        if not all(isinstance(s, dict) and isinstance(s.get("stage"), str) for s in d["stages"]):
            raise ValueError("a stage that is not a record with a name")
        return cls(
            stages=[StageResult.from_dict(s) for s in d["stages"]],
            **{k: d[k] for k in ("environment", "data", "config", "edgecv", "created", "seconds", "gate", "resumed") if k in d},
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
        lines += [""] + [f"- {s.stage}: {s.status}: {s.reason}" for s in self.stages if s.reason]
        env = self.environment
        runtime = env.get("runtime") or {}
        meta = [
            f"- data: {self.data.get('source', '?')} ({self.data.get('train_images', '?')} train / "
            f"{self.data.get('test_images', '?')} test images)",
            f"- CPU: {env.get('cpu')}, {env.get('cores')} cores; latency: batch 1, {env.get('threads')} thread(s), "
            f"{runtime.get('name')} {runtime.get('version')}",
            f"- python {env.get('python')}, numpy {env.get('numpy')}, tensorflow {env.get('tensorflow')}, "
            f"edgecv {self.edgecv}",
            "- MMACs: millions of multiply-accumulates per image (convolution and dense layers); peak KB: the "
            "largest set of activations live at once, estimated from the TFLite graph",
        ]
        if self.seconds is not None:
            meta.append(f"- wall time: {self.seconds / 60:.1f} min")
        if self.gate is not None:
            failed = [c["stage"] for c in self.gate["criteria"] if not c["passed"]]
            meta.append(f"- gate (max drop {self.gate['max_drop']} points vs {self.gate['reference']}): "
                        + ("passed" if self.gate["passed"] else "FAILED for " + ", ".join(failed)))
        return "# edgecv report\n\n" + "\n".join(lines) + "\n\n" + "\n".join(meta) + "\n"


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def plot_pareto(report: Report, path: str | os.PathLike) -> Path | None:
    """Accuracy against p50 latency, marker area by file size; None when no stage has both numbers."""
    points = [s for s in report.stages if s.status == "ok" and s.accuracy is not None and s.p50() is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = [s.size_bytes or 0 for s in points]
    biggest = max(sizes) or 1
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, size in zip(points, sizes):
        area = 40 + 1200 * size / biggest  # points squared
        ax.scatter(s.p50(), 100 * s.accuracy, s=area, alpha=0.6, edgecolors="black")
        label = f"{s.stage}\n{_kb(size)} KB" + (f"\ngzip {_kb(s.gzip_bytes)} KB" if s.gzip_bytes else "")
        radius = (area / 3.1416) ** 0.5
        ax.annotate(label, (s.p50(), 100 * s.accuracy), fontsize=7, xytext=(0, -radius - 2),
                    textcoords="offset points", va="top", ha="center")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    lo, hi = min(s.p50() for s in points), max(s.p50() for s in points)
    ax.set_xlim(lo / 1.3, hi * 2.5)  # room on the right for the labels
    ax.margins(y=0.3)
    ax.set_xlabel("p50 latency, ms per image (batch 1, log scale)")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("accuracy vs latency (marker area = file size)")
    return save_png(fig, path)


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
