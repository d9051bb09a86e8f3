"""The accuracy-regression gate: does a compressed model stay within what was allowed?

A model is compared with a reference, either its float parent measured in the same run on the same images,
or a stored baseline (JSON) that records what it was measured on. Comparing against a baseline made on
other test images is refused unless asked for: a drop measured across data sets means nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .benchmark import benchmark_file, host_environment, now, scoring_images
from .config import BenchConfig
from .data import Dataset, fingerprint
from .errors import ConfigError, DataError, first_line
from .fsutil import sha256, write_text
from .progress import ProgressFn, ignore
from .report import StageResult

BASELINE_SCHEMA = "edgecv.baseline/1"


@dataclass(frozen=True)
class GateConfig:
    max_drop: float | None = 1.0  # accuracy points the model may lose against the reference
    min_accuracy: float | None = None  # percent, absolute floor
    max_size_kb: float | None = None  # file size ceiling
    max_latency_ms: float | None = None  # p50 ceiling
    max_latency_ratio: float | None = None  # p50 against the reference's p50
    max_size_ratio: float | None = None  # file size against the reference's
    allow_other_data: bool = False  # compare with a baseline measured on other test images

    def __post_init__(self):
        for name in ("max_drop", "max_size_kb", "max_latency_ms", "max_latency_ratio", "max_size_ratio"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {value}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 100:
            raise ConfigError(f"min-accuracy is a percentage in [0, 100], got {self.min_accuracy}")


@dataclass(frozen=True)
class Criterion:
    name: str
    measured: float | None  # None: the candidate could not be measured
    op: str  # "<=" or ">="
    limit: float
    unit: str

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.op == "<=" else self.measured >= self.limit

    @property
    def excess(self) -> float | None:
        """By how much the limit is missed (positive) or kept (negative or zero)."""
        if self.measured is None:
            return None
        return self.measured - self.limit if self.op == "<=" else self.limit - self.measured

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "excess": self.excess}


@dataclass
class Reference:
    kind: str  # model | baseline
    name: str
    accuracy: float | None
    p50_ms: float | None = None
    size_bytes: int | None = None


@dataclass
class GateResult:
    candidate: StageResult
    reference: Reference
    criteria: list[Criterion]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reference": asdict(self.reference),
                "criteria": [c.to_dict() for c in self.criteria], "candidate": asdict(self.candidate)}


def criteria(candidate: StageResult, reference: Reference, config: GateConfig) -> list[Criterion]:
    """The limits that apply, each with the measured value; only the limits that were asked for."""
    acc = None if candidate.accuracy is None else 100 * candidate.accuracy
    out = []
    if config.max_drop is not None and reference.accuracy is not None:
        drop = None if acc is None else 100 * reference.accuracy - acc
        out.append(Criterion(f"accuracy drop vs {reference.name}", drop, "<=", config.max_drop, "points"))
    if config.min_accuracy is not None:
        out.append(Criterion("accuracy", acc, ">=", config.min_accuracy, "%"))
    if config.max_size_kb is not None:
        size = None if candidate.size_bytes is None else candidate.size_bytes / 1024
        out.append(Criterion("file size", size, "<=", config.max_size_kb, "KB"))
    if config.max_latency_ms is not None:
        out.append(Criterion("p50 latency", candidate.p50(), "<=", config.max_latency_ms, "ms"))
    for asked, have, what in ((config.max_latency_ratio, reference.p50_ms, "p50 latency"),
                              (config.max_size_ratio, reference.size_bytes, "file size")):
        if asked is not None and not have:
            raise ConfigError(f"{reference.name} records no {what}: a ratio against it cannot be checked")
    if config.max_latency_ratio is not None:
        ratio = None if candidate.p50() is None else candidate.p50() / reference.p50_ms
        out.append(Criterion(f"p50 latency / {reference.name}'s", ratio, "<=", config.max_latency_ratio, "x"))
    if config.max_size_ratio is not None:
        ratio = None if candidate.size_bytes is None else candidate.size_bytes / reference.size_bytes
        out.append(Criterion(f"file size / {reference.name}'s", ratio, "<=", config.max_size_ratio, "x"))
    if not out:
        raise ConfigError("no limit to check: give --max-drop, --min-accuracy or a size or latency ceiling")
    return out


# --- baselines -----------------------------------------------------------------------------------


@dataclass
class Baseline:
    accuracy: float
    model: dict  # file, sha256
    data: dict  # source, kind, test_images, test_fingerprint
    latency: dict | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    environment: dict = field(default_factory=dict)
    created: str = ""
    edgecv: str = ""

    def save(self, path: str | os.PathLike) -> Path:
        return write_text(path, json.dumps({"schema": BASELINE_SCHEMA, **asdict(self)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Baseline:
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise DataError(f"baseline {path} does not exist (write one with --update-baseline)") from None
        except OSError as e:
            raise DataError(f"cannot read baseline {path}: {e.strerror or e}") from None
        except ValueError as e:
            raise DataError(f"baseline {path} is not JSON: {first_line(e)}") from None
        if not isinstance(d, dict) or d.get("schema") != BASELINE_SCHEMA:
            raise DataError(f"{path} is not an edgecv baseline (no schema {BASELINE_SCHEMA!r})")
        accuracy, data = d.get("accuracy"), d.get("data")
        if not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1 or not isinstance(data, dict):
            raise DataError(f"baseline {path} is malformed: it needs an accuracy in [0, 1] and its data record")
        known = {"accuracy", "model", "data", "latency", "size_bytes", "gzip_bytes", "environment", "created", "edgecv"}
        return cls(**{k: v for k, v in d.items() if k in known and v is not None} | {"model": d.get("model") or {}})

    def reference(self, path: Path) -> Reference:
        return Reference("baseline", f"baseline {path.name}", self.accuracy, (self.latency or {}).get("p50_ms"),
                         self.size_bytes)


def measure(model_path: Path, dataset: Dataset, bench: BenchConfig, on_progress: ProgressFn) -> tuple[StageResult, dict]:
    """Benchmarks a model file and describes the exact test images it was scored on."""
    result = benchmark_file(model_path, dataset, bench, on_progress)
    x, y = scoring_images(dataset, bench)
    data = {"source": dataset.source, "kind": dataset.kind, "test_images": int(len(y)),
            "test_fingerprint": fingerprint(x, y)}
    return result, data


def update_baseline(model_path: str | os.PathLike, dataset: Dataset, path: str | os.PathLike,
                    bench: BenchConfig = BenchConfig(), on_progress: ProgressFn = ignore) -> Baseline:
    """Measures ``model_path`` and writes it as the new baseline (atomically: a failure leaves the old one)."""
    model_path = Path(model_path)
    result, data = measure(model_path, dataset, bench, on_progress)
    baseline = Baseline(
        accuracy=result.accuracy, model={"file": model_path.name, "sha256": sha256(model_path.read_bytes())},
        data=data, latency=result.latency, size_bytes=result.size_bytes, gzip_bytes=result.gzip_bytes,
        environment=host_environment(None, bench.threads) | {"runtime": result.runtime}, created=now(),
        edgecv=__version__,
    )
    baseline.save(path)
    return baseline


def check(
    model_path: str | os.PathLike, dataset: Dataset, config: GateConfig = GateConfig(), bench: BenchConfig = BenchConfig(),
    reference_model: str | os.PathLike | None = None, baseline: str | os.PathLike | None = None,
    on_progress: ProgressFn = ignore,
) -> GateResult:
    """Measures ``model_path`` and judges it against its parent model or a stored baseline.

    Raises:
        ConfigError: neither or both references given, or no limit asked for.
        DataError: an unreadable model or baseline, or a baseline measured on other data.
    """
    if (reference_model is None) == (baseline is None):
        raise ConfigError("give exactly one reference: --reference MODEL (the float parent) or --baseline FILE")
    stored = None
    if baseline is not None:
        stored = Baseline.load(baseline)  # read first: a bad baseline fails before minutes of measuring
    candidate, data = measure(Path(model_path), dataset, bench, on_progress)
    if stored is not None:
        if stored.data.get("test_fingerprint") != data["test_fingerprint"] and not config.allow_other_data:
            raise DataError(
                f"baseline {Path(baseline).name} was measured on other test images ({stored.data.get('test_images')} "
                f"from {stored.data.get('source')}) than these ({data['test_images']} from {data['source']}): "
                "pass --allow-other-data to compare anyway, or --update-baseline"
            )
        reference = stored.reference(Path(baseline))
    else:
        parent = benchmark_file(Path(reference_model), dataset, bench, on_progress)
        reference = Reference("model", Path(reference_model).name, parent.accuracy, parent.p50(), parent.size_bytes)
    return GateResult(candidate, reference, criteria(candidate, reference, config))


def gate_report(stages: list[StageResult], max_drop: float, reference: str = "keras float") -> dict:
    """``compress --max-drop``: every quantized stage against the run's own float Keras model."""
    parent = next((s for s in stages if s.stage == reference), None)
    if parent is None or parent.accuracy is None:
        raise ConfigError(f"no measured {reference!r} stage to gate against")
    ref = Reference("model", reference, parent.accuracy)
    results = []
    for stage in stages:
        if stage.format == "tflite" and stage.status != "skipped" and stage.details.get("mode") != "float32":
            for c in criteria(stage, ref, GateConfig(max_drop=max_drop)):
                results.append({"stage": stage.stage, **c.to_dict()})
    return {"max_drop": max_drop, "reference": reference, "passed": all(r["passed"] for r in results),
            "criteria": results}


def check_result(model_path: str | os.PathLike, result_path: str | os.PathLike, config: GateConfig = GateConfig(),
                 reference_model: str | os.PathLike | None = None,
                 baseline: str | os.PathLike | None = None) -> GateResult:
    """Judges ``model_path`` by the numbers a device (or emulated device) result file recorded for it.

    The reference is its parent in the same result file (same runtime, same images) or a baseline made on
    the same test images.
    """
    from .report import Report

    if (reference_model is None) == (baseline is None):
        raise ConfigError("give exactly one reference: --reference MODEL (the float parent) or --baseline FILE")
    report = Report.load(result_path)

    def stage_of(path) -> StageResult:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"model file {path} does not exist")
        found = next((s for s in report.stages if s.model and Path(s.model).name == path.name), None)
        if found is None:
            raise DataError(f"{result_path} has no result for {path.name} "
                            f"(it has {', '.join(s.stage for s in report.stages)})")
        recorded = found.sha256
        if recorded is None or recorded != sha256(path.read_bytes()):
            raise DataError(f"{result_path} measured another {path.name} than this one (its SHA-256 differs "
                            "or was not recorded): run the kit with this model")
        return found

    candidate = stage_of(model_path)
    if baseline is not None:
        stored = Baseline.load(baseline)
        if stored.data.get("test_fingerprint") != report.data.get("test_fingerprint") and not config.allow_other_data:
            raise DataError(f"baseline {Path(baseline).name} was measured on other test images than {result_path}: "
                            "pass --allow-other-data to compare anyway")
        reference = stored.reference(Path(baseline))
    else:
        parent = stage_of(reference_model)
        reference = Reference("model", f"{parent.model} on the same runtime", parent.accuracy, parent.p50(),
                              parent.size_bytes)
    return GateResult(candidate, reference, criteria(candidate, reference, config))
