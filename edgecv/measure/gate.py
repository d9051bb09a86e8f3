"""The accuracy-regression gate: does a compressed model stay within what was allowed?

A model is compared with a reference, either its float parent measured in the same run on the same images,
or a stored baseline (JSON) that records what it was measured on. Comparing against a baseline made on
other test images is refused unless asked for: a drop measured across data sets means nothing.

When both sides kept each image's top-1 class on the same images (a parent measured now, a baseline that
stored them, a device result file), the drop is also judged image by image (:mod:`edgecv.measure.paired`):
per-class drops, how many images changed their answer, McNemar's p-value and a bootstrap interval. Without
them the result says why there is no paired comparison; nothing is filled in.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence


from edgecv import __version__
from edgecv.config import BenchConfig, QuantMode
from edgecv.data.datasets import Dataset, fingerprint
from edgecv.errors import ConfigError, DataError, first_line
from edgecv.fsutil import json_text, sha256, write_text
from edgecv.measure.benchmark import benchmark_file, host_environment, now, scoring_images
from edgecv.measure.paired import PairedComparison, compare
from edgecv.measure.report import StageResult, StageStatus, arm_instructions, npu_estimates
from edgecv.measure.verdict import Criterion, GateReport, StageCriterion
from edgecv.progress import ProgressFn, ignore

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
    max_class_drop: float | None = None  # accuracy points any one class may lose (needs per-image predictions)
    significant_only: bool = False  # a drop over its limit fails only when McNemar's p < alpha
    alpha: float = 0.05  # significance level of significant_only
    max_arm_cost_ratio: float | None = None  # emulated ARM instructions per inference against the reference's
    max_npu_cycles_ratio: float | None = None  # Vela's cycles per inference against the reference's
    npu: tuple[str, ...] = ("ethos-u55-128",)  # the Ethos-U configurations max_npu_cycles_ratio compiles for
    max_imx500_memory_kb: float | None = None  # an IMX500 package's memory (the chip's 8 MB is always checked)

    def __post_init__(self):
        for name in ("max_drop", "max_size_kb", "max_latency_ms", "max_latency_ratio", "max_size_ratio",
                     "max_arm_cost_ratio", "max_npu_cycles_ratio", "max_imx500_memory_kb",
                     "max_class_drop"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {value}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 100:
            raise ConfigError(f"min-accuracy is a percentage in [0, 100], got {self.min_accuracy}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha is a significance level in (0, 1), e.g. 0.05, got {self.alpha}")
        if self.significant_only and self.max_drop is None and self.max_class_drop is None:
            raise ConfigError("significant-only applies to a drop: give --max-drop or --max-class-drop with it")

    @property
    def needs_paired(self) -> list[str]:
        """The options asked for that can only be judged image by image."""
        return [flag for flag, asked in (("--max-class-drop", self.max_class_drop is not None),
                                         ("--significant-only", self.significant_only)) if asked]


def npu_cycles(stage: StageResult | None) -> dict[str, int] | None:
    """A stage's Vela estimate as {accelerator: total cycles per inference}, or None when it has none."""
    found = {name: e["cycles_total"] for name, e in npu_estimates(stage).items() if "cycles_total" in e}
    return found or None


Measurer = Callable[[list[tuple[Path, StageResult]], Dataset, ProgressFn], None]
"""Adds a measurement to each (model file, its result) row in place."""


@dataclass
class Reference:
    kind: str  # model | baseline
    name: str
    accuracy: float | None
    p50_ms: float | None = None
    size_bytes: int | None = None
    arm_cost: dict[str, float] | None = None  # cpu model -> emulated instructions per inference
    npu_cycles: dict[str, int] | None = None  # Ethos-U configuration -> Vela's total cycles per inference


@dataclass
class GateResult:
    candidate: StageResult
    reference: Reference
    criteria: list[Criterion]
    paired: PairedComparison | None = None  # the image-by-image comparison, when both sides allow one
    paired_reason: str | None = None  # why there is none

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    def to_dict(self) -> dict:
        """Everything a CI system reads; the per-image predictions are summed up in ``paired``, not listed."""
        candidate = asdict(self.candidate)
        if isinstance(candidate["details"], dict):
            candidate["details"] = {k: v for k, v in candidate["details"].items()
                                    if k not in ("predictions", "float_predictions")}
        return {"passed": self.passed, "reference": asdict(self.reference),
                "criteria": [c.to_dict() for c in self.criteria],
                "paired": None if self.paired is None else self.paired.to_dict(), "paired_reason": self.paired_reason,
                "candidate": candidate}


def criteria(candidate: StageResult, reference: Reference, config: GateConfig,
             paired: PairedComparison | None = None) -> list[Criterion]:
    """The limits that apply, each with the measured value; only the limits that were asked for.

    ``paired`` (the candidate against this reference, image by image) puts McNemar's p-value beside the
    accuracy drop and is needed for ``max_class_drop`` and ``significant_only``.
    """
    if paired is None:
        refuse_unpaired(config, "there is no image-by-image comparison with this reference")
    acc = None if candidate.accuracy is None else 100 * candidate.accuracy
    alpha = config.alpha if config.significant_only else None
    out = []
    if config.max_drop is not None and reference.accuracy is not None:
        drop = None if acc is None else 100 * reference.accuracy - acc
        out.append(Criterion(f"accuracy drop vs {reference.name}", drop, "<=", config.max_drop, "points",
                             None if paired is None else paired.p_value, alpha))
    if config.max_class_drop is not None:
        worst = _judged_class(paired, config)
        if worst is not None:  # a comparison with no classes has no per-class drop to judge
            out.append(Criterion(f"class drop vs {reference.name} (worst: {worst.name})", worst.drop, "<=",
                                 config.max_class_drop, "points", worst.p_value, alpha))
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
    if config.max_arm_cost_ratio is not None:
        mine = arm_instructions(candidate) or {}
        if not reference.arm_cost or not mine:
            raise ConfigError(f"no emulated ARM instruction count for {reference.name} and this model: "
                              "--max-arm-cost-ratio needs --reference MODEL, or a --measured-by result of "
                              "'edgecv device emulate --arm-cost'")
        for cpu, theirs in sorted(reference.arm_cost.items()):
            ratio = mine[cpu] / theirs if cpu in mine and theirs else None
            out.append(Criterion(f"ARM instructions / {reference.name}'s ({cpu}, emulated)", ratio, "<=",
                                 config.max_arm_cost_ratio, "x"))
    if config.max_npu_cycles_ratio is not None:
        mine = npu_cycles(candidate) or {}
        if not reference.npu_cycles or not mine:
            why = candidate.details.get("npu_error") or "no Vela estimate for it and the reference"
            raise ConfigError(f"--max-npu-cycles-ratio compares Vela's estimates of MODEL and --reference MODEL, "
                              f"both int8 .tflite files: {why}")
        for accelerator, theirs in reference.npu_cycles.items():
            ratio = mine[accelerator] / theirs if accelerator in mine and theirs else None
            out.append(Criterion(f"NPU cycles / {reference.name}'s ({accelerator}, Vela's estimate)", ratio, "<=",
                                 config.max_npu_cycles_ratio, "x"))
    if not out:
        raise ConfigError("no limit to check: give --max-drop, --min-accuracy or a size or latency ceiling")
    return out


def _judged_class(paired: PairedComparison, config: GateConfig):
    """The class the per-class criterion names: the worst one, or with significant_only the worst among
    those over the limit with a significant drop of their own (each class is tested on its own images, at
    ``alpha``, uncorrected for testing several), so that one significant failure is not hidden behind a
    larger drop that is only noise."""
    if config.significant_only:
        failing = [k for k in paired.per_class if k.drop > config.max_class_drop and k.p_value < config.alpha]
        if failing:
            return max(failing, key=lambda k: (k.drop, -k.label))
    return paired.worst_class


# --- per-image predictions -----------------------------------------------------------------------


def predictions_of(stage: StageResult | None) -> list[int] | None:
    """The top-1 class per image a result kept (``details["predictions"]``, as the device script and
    :func:`measure` write it), or None when it kept none or something else."""
    p = stage.details.get("predictions") if stage is not None and isinstance(stage.details, dict) else None
    return p if isinstance(p, list) and all(_class_index(v) for v in p) else None


def _class_index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def paired_comparison(labels, reference: list[int] | None, candidate: list[int] | None, classes,
            missing: str | None) -> tuple[PairedComparison | None, str | None]:
    """The comparison, or None and why not (``missing``: a reason already known)."""
    if missing is None and candidate is None:
        missing = "the candidate's result kept no per-image predictions"
    if missing is None and reference is None:
        missing = "the reference's result kept no per-image predictions"
    if missing is None and not len(reference) == len(candidate) == len(labels):
        missing = (f"the predictions cover different numbers of images (reference {len(reference)}, "
                   f"candidate {len(candidate)}, labels {len(labels)})")
    if missing is not None:
        return None, missing
    return compare(labels, reference, candidate, classes), None


def refuse_unpaired(config: GateConfig, reason: str) -> None:
    """A per-image limit without per-image predictions is refused, never judged on a guess."""
    flags = config.needs_paired
    if flags:
        verb = "need" if len(flags) > 1 else "needs"
        raise ConfigError(f"{' and '.join(flags)} {verb} both models' top-1 per image on the same images, but {reason}")


# --- baselines -----------------------------------------------------------------------------------


@dataclass
class Baseline:
    accuracy: float
    model: dict  # file, sha256
    data: dict  # source, kind, test_images, test_fingerprint (a hash of the test images and their labels)
    latency: dict | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    environment: dict = field(default_factory=dict)
    created: str = ""
    edgecv: str = ""
    predictions: list[int] | None = None  # top-1 class per test image, in the order test_fingerprint hashes

    def save(self, path: str | os.PathLike) -> Path:
        return write_text(path, json_text({"schema": BASELINE_SCHEMA, **asdict(self)}))  # predictions on one line

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
        predictions = d.get("predictions")
        if predictions is not None and (
            not isinstance(predictions, list) or not all(_class_index(v) for v in predictions)
            or (isinstance(data.get("test_images"), int) and len(predictions) != data["test_images"])
        ):
            raise DataError(f"baseline {path} is malformed: its predictions must be one class index per test image "
                            "(rewrite it with --update-baseline)")
        known = {"accuracy", "model", "data", "latency", "size_bytes", "gzip_bytes", "environment", "created", "edgecv",
                 "predictions"}  # a baseline written before predictions were kept loads without them
        return cls(**{k: v for k, v in d.items() if k in known and v is not None} | {"model": d.get("model") or {}})

    def reference(self, path: Path) -> Reference:
        return Reference("baseline", f"baseline {path.name}", self.accuracy, (self.latency or {}).get("p50_ms"),
                         self.size_bytes)


def measure(model_path: Path, dataset: Dataset, bench: BenchConfig, on_progress: ProgressFn) -> tuple[StageResult, dict]:
    """Benchmarks a model file, keeping its per-image top-1 classes (``details["predictions"]``), and
    describes the exact test images it was scored on."""
    result = benchmark_file(Path(model_path), dataset, bench, on_progress, keep_predictions=True)
    x, y = scoring_images(dataset, bench)
    data = {"source": dataset.source, "kind": dataset.kind, "test_images": int(len(y)),
            "test_fingerprint": fingerprint(x, y)}
    return result, data


def update_baseline(model_path: str | os.PathLike, dataset: Dataset, path: str | os.PathLike,
                    bench: BenchConfig = BenchConfig(), on_progress: ProgressFn = ignore) -> Baseline:
    """Measures ``model_path`` and writes it as the new baseline (atomically: a failure leaves the old one).

    The baseline keeps each test image's top-1 class, so that a later check can compare image by image."""
    model_path = Path(model_path)
    result, data = measure(model_path, dataset, bench, on_progress)
    baseline = Baseline(
        accuracy=result.accuracy, model={"file": model_path.name, "sha256": sha256(model_path.read_bytes())},
        data=data, latency=result.latency, size_bytes=result.size_bytes, gzip_bytes=result.gzip_bytes,
        environment=host_environment(None, bench.threads) | {"runtime": result.runtime}, created=now(),
        edgecv=__version__, predictions=predictions_of(result),
    )
    baseline.save(path)
    return baseline


def check(
    model_path: str | os.PathLike, dataset: Dataset, config: GateConfig = GateConfig(), bench: BenchConfig = BenchConfig(),
    reference_model: str | os.PathLike | None = None, baseline: str | os.PathLike | None = None,
    on_progress: ProgressFn = ignore, measure_more: Sequence[Measurer] = (),
) -> GateResult:
    """Measures ``model_path`` and judges it against its parent model or a stored baseline, image by image
    when the baseline kept its predictions (a parent measured now always does). ``measure_more`` add
    measurements to both rows before they are judged (an ARM count, Vela's estimate: see
    :mod:`edgecv.flows.checking`); the gate reads them, it does not make them.

    Raises:
        ConfigError: neither or both references given, no limit asked for, or a per-image limit
            (``max_class_drop``, ``significant_only``) against a baseline without predictions.
        DataError: an unreadable model or baseline, or a baseline measured on other data.
    """
    if (reference_model is None) == (baseline is None):
        raise ConfigError("give exactly one reference: --reference MODEL (the float parent) or --baseline FILE")
    stored = missing = None
    if baseline is not None:
        stored = Baseline.load(baseline)  # read first: a bad baseline fails before minutes of measuring
        if stored.predictions is None:
            missing = (f"baseline {Path(baseline).name} kept no per-image predictions (an older edgecv wrote it): "
                       "rewrite it with --update-baseline")
            refuse_unpaired(config, missing)
    candidate, data = measure(Path(model_path), dataset, bench, on_progress)
    labels = scoring_images(dataset, bench)[1]
    if stored is not None:
        if stored.data.get("test_fingerprint") != data["test_fingerprint"]:
            if not config.allow_other_data:
                raise DataError(
                    f"baseline {Path(baseline).name} was measured on other test images "
                    f"({stored.data.get('test_images')} from {stored.data.get('source')}) than these "
                    f"({data['test_images']} from {data['source']}): pass --allow-other-data to compare anyway, "
                    "or --update-baseline"
                )
            missing = f"baseline {Path(baseline).name} was measured on other test images"
        reference, theirs = stored.reference(Path(baseline)), stored.predictions
    else:
        parent = benchmark_file(Path(reference_model), dataset, bench, on_progress, keep_predictions=True)
        for add in measure_more:  # both rows at once: an ARM count runs them in one emulated run, on the same images
            add([(Path(model_path), candidate), (Path(reference_model), parent)], dataset, on_progress)
        reference = Reference("model", Path(reference_model).name, parent.accuracy, parent.p50(), parent.size_bytes,
                              arm_instructions(parent), npu_cycles(parent))
        theirs = predictions_of(parent)
    paired, reason = paired_comparison(labels, theirs, predictions_of(candidate), dataset.classes, missing)
    if paired is None:
        refuse_unpaired(config, reason)
    return GateResult(candidate, reference, criteria(candidate, reference, config, paired), paired, reason)


# --- compress --max-drop -------------------------------------------------------------------------


def gate_report(stages: list[StageResult], max_drop: float, reference: str = "keras float") -> GateReport:
    """``compress --max-drop``: every quantized stage against the run's own float Keras model."""
    parent = next((s for s in stages if s.stage == reference), None)
    if parent is None or parent.accuracy is None:
        raise ConfigError(f"no measured {reference!r} stage to gate against")
    ref = Reference("model", reference, parent.accuracy)
    results = []
    for stage in stages:
        if stage.format == "tflite" and stage.status is not StageStatus.SKIPPED and stage.details.get("mode") != QuantMode.FLOAT32.value:
            for c in criteria(stage, ref, GateConfig(max_drop=max_drop)):
                results.append(StageCriterion(stage.stage, c))
    return GateReport(max_drop, reference, results)


# --- device results ------------------------------------------------------------------------------


def check_result(model_path: str | os.PathLike, result_path: str | os.PathLike, config: GateConfig = GateConfig(),
                 reference_model: str | os.PathLike | None = None, baseline: str | os.PathLike | None = None,
                 dataset: Dataset | None = None) -> GateResult:
    """Judges ``model_path`` by the numbers a device (or emulated device) result file recorded for it.

    The reference is its parent in the same result file (same runtime, same images) or a baseline made on
    the same test images. A result file keeps each model's predictions but not the labels: ``dataset``, the
    data set the kit was made from, supplies them (checked against the file's fingerprint of its test
    images); without it there is no image-by-image comparison.
    """
    from edgecv.measure.report import Report

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
    shown = report.data.get("test_fingerprint")
    missing = None
    if baseline is not None:
        stored = Baseline.load(baseline)
        if stored.data.get("test_fingerprint") != shown:
            if not config.allow_other_data:
                raise DataError(f"baseline {Path(baseline).name} was measured on other test images than {result_path}: "
                                "pass --allow-other-data to compare anyway")
            missing = f"baseline {Path(baseline).name} was measured on other test images than {Path(result_path).name}"
        elif stored.predictions is None:
            missing = f"baseline {Path(baseline).name} kept no per-image predictions: rewrite it with --update-baseline"
        reference, theirs = stored.reference(Path(baseline)), stored.predictions
    else:
        parent = stage_of(reference_model)
        reference = Reference("model", f"{parent.model} on the same runtime", parent.accuracy, parent.p50(),
                              parent.size_bytes, arm_instructions(parent), npu_cycles(parent))
        theirs = predictions_of(parent)
    labels, classes = None, None
    if missing is None and dataset is None:
        missing = (f"{Path(result_path).name} keeps predictions but not the labels: give the data set its kit was "
                   "made from (--data)")
    elif missing is None:
        n = report.data.get("test_images")
        limit = n if _class_index(n) and n > 0 else None
        x, labels = scoring_images(dataset, BenchConfig(limit=limit))  # drawn as the kit drew them
        if shown is None or fingerprint(x, labels) != shown:
            missing = (f"the data set given is not the one {Path(result_path).name} was measured on (its test images "
                       "do not match the file's fingerprint)")
        classes = dataset.classes
    paired, reason = paired_comparison(labels, theirs, predictions_of(candidate), classes, missing)
    if paired is None:
        refuse_unpaired(config, reason)
    return GateResult(candidate, reference, criteria(candidate, reference, config, paired), paired, reason)
