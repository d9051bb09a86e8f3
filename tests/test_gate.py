import json

import pytest

from edgecv.config import BenchConfig
from edgecv.errors import ConfigError, DataError
from edgecv.gate import Baseline, Criterion, GateConfig, Reference, check, criteria, gate_report, update_baseline
from edgecv.report import StageResult

FAST = BenchConfig(warmup=1, runs=10)


def _stage(accuracy, p50=0.05, size=1000, **kw):
    return StageResult("c", accuracy=accuracy, latency={"p50_ms": p50}, size_bytes=size, format="tflite", **kw)


def test_criterion_passes_at_the_limit_and_reports_the_excess():
    assert Criterion("drop", 1.0, "<=", 1.0, "points").passed
    missed = Criterion("drop", 1.5, "<=", 1.0, "points")
    assert not missed.passed and missed.excess == pytest.approx(0.5)
    floor = Criterion("accuracy", 48.0, ">=", 50.0, "%")
    assert not floor.passed and floor.excess == pytest.approx(2.0)
    assert not Criterion("x", None, "<=", 1, "").passed


def test_each_asked_limit_becomes_a_criterion():
    ref = Reference("baseline", "b", accuracy=0.60, p50_ms=0.1, size_bytes=2000)
    config = GateConfig(max_drop=1.0, min_accuracy=55, max_size_kb=1.0, max_latency_ms=0.2, max_latency_ratio=0.4,
                        max_size_ratio=0.6)
    got = {c.name: c for c in criteria(_stage(0.585, p50=0.05, size=1000), ref, config)}
    assert got["accuracy drop vs b"].measured == pytest.approx(1.5) and not got["accuracy drop vs b"].passed
    assert got["accuracy"].passed
    assert got["file size"].measured == pytest.approx(1000 / 1024) and got["file size"].passed
    assert got["p50 latency / b's"].measured == pytest.approx(0.5) and not got["p50 latency / b's"].passed
    assert got["file size / b's"].passed
    with pytest.raises(ConfigError, match="no limit"):
        criteria(_stage(0.5), ref, GateConfig(max_drop=None))


@pytest.mark.parametrize("kwargs", [{"max_drop": -1}, {"min_accuracy": 120}, {"max_size_ratio": -0.1}])
def test_gate_options_are_range_checked(kwargs):
    with pytest.raises(ConfigError):
        GateConfig(**kwargs)


def test_check_against_the_float_parent(tiny_tflite, tiny_dataset):
    result = check(tiny_tflite["int8"], tiny_dataset, GateConfig(max_drop=5.0), FAST, reference_model=tiny_tflite["float32"])
    assert result.passed and result.reference.kind == "model"
    strict = check(tiny_tflite["int8"], tiny_dataset, GateConfig(max_drop=5.0, max_size_kb=0.5), FAST,
                   reference_model=tiny_tflite["float32"])
    assert not strict.passed and [c.passed for c in strict.criteria] == [True, False]


def test_baseline_round_trip_and_comparison(tiny_tflite, tiny_dataset, tmp_path):
    path = tmp_path / "baseline.json"
    written = update_baseline(tiny_tflite["int8"], tiny_dataset, path, FAST)
    saved = json.loads(path.read_text())
    assert saved["schema"] == "edgecv.baseline/1" and len(saved["model"]["sha256"]) == 64
    assert saved["data"]["test_images"] == 60 and saved["environment"]["tensorflow"]
    assert Baseline.load(path).accuracy == written.accuracy
    result = check(tiny_tflite["int8"], tiny_dataset, GateConfig(max_drop=0.0), FAST, baseline=path)
    assert result.passed  # the same model on the same images: no drop at all
    assert result.criteria[0].measured == pytest.approx(0.0)


def test_a_worse_model_against_a_baseline_regresses(tiny_tflite, tiny_dataset, tmp_path):
    path = tmp_path / "baseline.json"
    update_baseline(tiny_tflite["int8"], tiny_dataset, path, FAST)
    data = json.loads(path.read_text())
    data["accuracy"] = 1.0  # as if the model used to be perfect
    path.write_text(json.dumps(data))
    result = check(tiny_tflite["int8"], tiny_dataset, GateConfig(max_drop=1.0), FAST, baseline=path)
    assert not result.passed and result.criteria[0].excess > 0


def test_a_baseline_made_on_other_data_is_refused_unless_allowed(tiny_tflite, tiny_dataset, tmp_path):
    path = tmp_path / "baseline.json"
    update_baseline(tiny_tflite["int8"], tiny_dataset, path, FAST)
    other = tiny_dataset.subset(test=30, seed=5)
    with pytest.raises(DataError, match="other test images"):
        check(tiny_tflite["int8"], other, GateConfig(), FAST, baseline=path)
    assert check(tiny_tflite["int8"], other, GateConfig(max_drop=100, allow_other_data=True), FAST, baseline=path).passed


@pytest.mark.parametrize("content, message", [
    ("{broken", "not JSON"),
    ('{"accuracy": 0.5}', "not an edgecv baseline"),
    ('{"schema": "edgecv.baseline/1", "accuracy": 7, "data": {}}', "malformed"),
])
def test_malformed_baselines_are_refused_before_measuring(tmp_path, tiny_dataset, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        check(tmp_path / "never-read.tflite", tiny_dataset, GateConfig(), FAST, baseline=path)


def test_exactly_one_reference(tiny_tflite, tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        check(tiny_tflite["int8"], tiny_dataset, GateConfig(), FAST)


def test_a_model_that_does_not_load_leaves_the_baseline_untouched(tiny_tflite, tiny_dataset, tmp_path):
    path = tmp_path / "baseline.json"
    update_baseline(tiny_tflite["int8"], tiny_dataset, path, FAST)
    before = path.read_bytes()
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 32)
    with pytest.raises(DataError):
        update_baseline(broken, tiny_dataset, path, FAST)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_gate_report_judges_every_quantized_stage():
    stages = [
        StageResult("keras float", accuracy=0.60, format="keras"),
        StageResult("tflite float32", accuracy=0.50, format="tflite", details={"mode": "float32"}),
        StageResult("tflite int8", accuracy=0.598, format="tflite", details={"mode": "int8"}),
        StageResult("pruned int8", accuracy=0.58, format="tflite", details={"mode": "int8"}),
        StageResult("pruned float16", status="failed", reason="boom", format="tflite", details={"mode": "float16"}),
    ]
    gate = gate_report(stages, max_drop=1.0)
    by_stage = {c["stage"]: c for c in gate["criteria"]}
    assert set(by_stage) == {"tflite int8", "pruned int8", "pruned float16"}  # float32 is not a quantized stage
    assert by_stage["tflite int8"]["passed"] and not by_stage["pruned int8"]["passed"]
    assert by_stage["pruned float16"]["measured"] is None and not by_stage["pruned float16"]["passed"]
    assert not gate["passed"]


def test_a_ratio_against_a_reference_without_that_number_is_refused():
    ref = Reference("baseline", "b", accuracy=0.6, p50_ms=None, size_bytes=None)
    with pytest.raises(ConfigError, match="records no p50 latency"):
        criteria(_stage(0.6), ref, GateConfig(max_latency_ratio=1.2))
