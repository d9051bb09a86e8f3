import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from edgecv import runtime as rt
from edgecv.config import BenchConfig
from edgecv.errors import ConfigError, DataError
from edgecv.measure.benchmark import scoring_images
from edgecv.measure.gate import (Baseline, Criterion, GateConfig, GateReport, GateResult, Reference, check,
                                 check_result, criteria, gate_report, update_baseline)
from edgecv.measure.junit import to_junit_xml
from edgecv.measure.paired import compare
from edgecv.measure.report import Report, StageResult

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

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
    assert isinstance(gate, GateReport)
    by_stage = {c.stage: c for c in gate.criteria}
    assert set(by_stage) == {"tflite int8", "pruned int8", "pruned float16"}  # float32 is not a quantized stage
    assert by_stage["tflite int8"].passed and not by_stage["pruned int8"].passed
    assert by_stage["pruned float16"].criterion.measured is None and not by_stage["pruned float16"].passed
    assert not gate.passed and gate.failed == ["pruned int8", "pruned float16"]


def test_gate_report_keeps_the_json_shape_of_report_json(tmp_path):
    stages = [StageResult("keras float", accuracy=0.60, format="keras"),
              StageResult("tflite int8", accuracy=0.58, format="tflite", details={"mode": "int8"})]
    d = gate_report(stages, max_drop=1.0).to_dict()
    assert list(d) == ["max_drop", "reference", "passed", "criteria"]
    assert list(d["criteria"][0]) == ["stage", "name", "measured", "op", "limit", "unit", "passed", "excess"]
    assert d["max_drop"] == 1.0 and d["reference"] == "keras float" and d["passed"] is False
    report = Report(stages=stages, gate=gate_report(stages, max_drop=1.0))
    saved = report.to_dict()
    assert saved["gate"] == d and list(saved).index("gate") == list(saved).index("seconds") + 1
    again = Report.from_dict(json.loads(json.dumps(saved)))
    assert isinstance(again.gate, GateReport) and again.to_dict() == saved
    assert "FAILED for tflite int8" in report.to_markdown()
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({**saved, "gate": {"max_drop": "x"}}))
    with pytest.raises(DataError, match="not an edgecv report"):
        Report.load(bad)


def test_a_ratio_against_a_reference_without_that_number_is_refused():
    ref = Reference("baseline", "b", accuracy=0.6, p50_ms=None, size_bytes=None)
    with pytest.raises(ConfigError, match="records no p50 latency"):
        criteria(_stage(0.6), ref, GateConfig(max_latency_ratio=1.2))


# --- units ---------------------------------------------------------------------------------------


def test_a_drop_is_in_points_and_so_is_the_gap_to_a_percentage_floor():
    ref = Reference("model", "parent", accuracy=0.90)
    got = {c.name: c for c in criteria(_stage(0.4887), ref, GateConfig(max_drop=1.0, min_accuracy=90))}
    drop, floor = got["accuracy drop vs parent"], got["accuracy"]
    assert drop.unit == "points" and drop.excess_unit == "points"
    assert floor.unit == "%" and floor.excess_unit == "points"  # 48.87 % misses 90 % by 41.13 points, not %
    assert floor.to_dict()["excess"] == pytest.approx(41.13) and floor.to_dict()["excess_unit"] == "points"
    assert Criterion("file size", 3.0, "<=", 2.0, "KB").excess_unit == "KB"


# --- paired criteria on constructed predictions --------------------------------------------------


def _paired_case(b: int, c: int, images: int = 400, classes: int = 4):
    """Labels of ``classes`` balanced classes. The candidate misses ``b`` images of class 0 the reference gets
    right, and gets right ``c`` images of class 1 the reference misses."""
    labels = np.arange(images) % classes
    reference = labels.copy()
    reference[classes * np.arange(c) + 1] = 0  # the reference misses c images of class 1
    candidate = labels.copy()
    candidate[classes * np.arange(b)] = 1  # the candidate misses b images of class 0
    return labels, reference, candidate


def _judge(labels, reference, candidate, config):
    paired = compare(labels, reference, candidate)
    stage = _stage(float(np.mean(candidate == labels)))
    ref = Reference("model", "parent", accuracy=float(np.mean(reference == labels)))
    return criteria(stage, ref, config, paired), paired


def test_max_class_drop_fails_a_regression_confined_to_one_class():
    labels, reference, candidate = _paired_case(b=12, c=0)  # 12 of class 0's 100 images: 12 points there, 3 overall
    got, paired = _judge(labels, reference, candidate, GateConfig(max_drop=5.0, max_class_drop=5.0))
    overall, per_class = got
    assert overall.passed and overall.measured == pytest.approx(3.0)
    assert not per_class.passed and per_class.measured == pytest.approx(12.0) and per_class.unit == "points"
    assert "worst: 0" in per_class.name and per_class.p_value == pytest.approx(paired.per_class[0].p_value)
    spread = np.arange(400) % 4
    fine = spread.copy()
    fine[[0, 1, 2]] = 3  # three images of three classes: one point in each
    assert all(c.passed for c in _judge(spread, spread, fine, GateConfig(max_drop=5.0, max_class_drop=5.0))[0])


def test_significant_only_lets_noise_through_and_fails_a_real_drop():
    config = GateConfig(max_drop=0.25, significant_only=True)
    labels, reference, candidate = _paired_case(b=3, c=1)  # drop 0.5 points over the 0.25 limit, McNemar p = 0.625
    (noise,), paired = _judge(labels, reference, candidate, config)
    assert paired.p_value == pytest.approx(0.625)
    assert noise.measured == pytest.approx(0.5) and not noise.within and noise.passed
    assert not criteria(_stage(float(np.mean(candidate == labels))), Reference("model", "parent", 0.9975),
                        GateConfig(max_drop=0.25), paired)[0].passed  # without significant_only it fails
    labels, reference, candidate = _paired_case(b=12, c=0)  # 3 points, p = 2 / 2^12
    (real,), paired = _judge(labels, reference, candidate, config)
    assert paired.p_value == pytest.approx(2 / 4096) and not real.passed and real.excess == pytest.approx(2.75)


def test_significant_only_judges_each_class_on_its_own_images():
    config = GateConfig(max_drop=None, max_class_drop=2.0, significant_only=True)
    labels, reference, candidate = _paired_case(b=12, c=0)
    (class_drop,), _ = _judge(labels, reference, candidate, config)
    assert not class_drop.passed and class_drop.p_value < 0.05  # 12 of 100 images, all one way
    labels, reference, candidate = _paired_case(b=3, c=0)
    (class_drop,), _ = _judge(labels, reference, candidate, config)
    assert class_drop.measured == pytest.approx(3.0) and class_drop.passed  # 3 of 100 images, p = 0.25


def test_a_significant_class_drop_is_not_hidden_behind_a_larger_one_that_is_noise():
    labels = np.array([0] * 10 + [1] * 200)
    candidate = labels.copy()
    candidate[:3] = 1  # class 0: 30 points on 10 images, p = 0.25
    candidate[10:30] = 0  # class 1: 10 points on 200 images, p = 2 / 2^20
    (class_drop,), paired = _judge(labels, labels, candidate,
                                   GateConfig(max_drop=None, max_class_drop=5.0, significant_only=True))
    assert paired.worst_class.name == "0"
    assert not class_drop.passed and "worst: 1" in class_drop.name and class_drop.measured == pytest.approx(10.0)


def test_per_image_options_without_predictions_are_refused_not_guessed():
    ref = Reference("baseline", "b", accuracy=0.6)
    for config in (GateConfig(max_class_drop=1.0), GateConfig(significant_only=True)):
        with pytest.raises(ConfigError, match="top-1 per image"):
            criteria(_stage(0.6), ref, config)
    with pytest.raises(ConfigError, match="alpha"):
        GateConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="significant-only applies to a drop"):
        GateConfig(max_drop=None, min_accuracy=50, significant_only=True)
    with pytest.raises(ConfigError, match="max-class-drop"):
        GateConfig(max_class_drop=-1)


# --- paired comparison of real models ------------------------------------------------------------


def _top1(path, dataset):
    model = rt.TFLiteModel(path)
    x, y = scoring_images(dataset, FAST)
    return rt.measure_accuracy(model, model.prepare(x), y)[1], y


def test_check_against_the_parent_compares_image_by_image(tiny_tflite, tiny_dataset):
    result = check(tiny_tflite["int8"], tiny_dataset, GateConfig(max_drop=100, max_class_drop=100), FAST,
                   reference_model=tiny_tflite["float32"])
    paired = result.paired
    assert paired is not None and result.paired_reason is None and paired.images == 60
    mine, labels = _top1(tiny_tflite["int8"], tiny_dataset)
    theirs, _ = _top1(tiny_tflite["float32"], tiny_dataset)
    assert paired.changed == int(np.sum(mine != theirs))
    assert (paired.b, paired.c) == (int(np.sum((theirs == labels) & (mine != labels))),
                                    int(np.sum((theirs != labels) & (mine == labels))))
    assert paired.candidate_accuracy == pytest.approx(result.candidate.accuracy)
    assert paired.reference_accuracy == pytest.approx(result.reference.accuracy)
    assert result.criteria[0].measured == pytest.approx(paired.drop) and result.criteria[0].p_value == paired.p_value
    assert [k.name for k in paired.per_class] == list(tiny_dataset.classes)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["paired"]["changed"] == paired.changed and d["paired"]["p_value"] == paired.p_value
    assert "predictions" not in d["candidate"]["details"]  # summed up in "paired", not 60 numbers


def test_a_baseline_keeps_predictions_and_an_old_one_still_loads(tiny_tflite, tiny_dataset, tmp_path):
    path = tmp_path / "baseline.json"
    written = update_baseline(tiny_tflite["int8"], tiny_dataset, path, FAST)
    saved = json.loads(path.read_text())
    assert saved["predictions"] == written.predictions and len(saved["predictions"]) == 60
    assert sum(1 for line in path.read_text().splitlines() if "predictions" in line) == 1  # one line in a diff
    same = check(tiny_tflite["int8"], tiny_dataset, GateConfig(max_drop=0.0, significant_only=True), FAST,
                 baseline=path)
    assert same.passed and same.paired.changed == 0 and same.paired.p_value == 1.0
    other = check(tiny_tflite["float32"], tiny_dataset, GateConfig(max_drop=100), FAST, baseline=path)
    assert other.paired.changed == int(np.sum(_top1(tiny_tflite["int8"], tiny_dataset)[0]
                                              != _top1(tiny_tflite["float32"], tiny_dataset)[0]))
    del saved["predictions"]  # as edgecv wrote baselines before
    path.write_text(json.dumps(saved))
    old = check(tiny_tflite["int8"], tiny_dataset, GateConfig(max_drop=0.0), FAST, baseline=path)
    assert old.passed and old.paired is None and "--update-baseline" in old.paired_reason
    assert old.to_dict()["paired"] is None and old.to_dict()["paired_reason"] == old.paired_reason
    with pytest.raises(ConfigError, match="kept no per-image predictions"):  # refused before measuring
        check(tmp_path / "never-read.tflite", tiny_dataset, GateConfig(max_class_drop=1.0), FAST, baseline=path)


def test_a_baseline_with_predictions_of_the_wrong_length_is_refused(tiny_tflite, tiny_dataset, tmp_path):
    path = tmp_path / "baseline.json"
    update_baseline(tiny_tflite["int8"], tiny_dataset, path, FAST)
    saved = json.loads(path.read_text())
    for bad in (saved["predictions"][:-1], ["x"] * 60, [True] * 60):
        path.write_text(json.dumps({**saved, "predictions": bad}))
        with pytest.raises(DataError, match="predictions"):
            Baseline.load(path)


def test_a_device_result_is_compared_image_by_image_with_the_data_it_was_made_from(tiny_tflite, tiny_dataset,
                                                                                 tmp_path):
    from edgecv.device.kit import make_kit

    kit = make_kit([tiny_tflite["int8"], tiny_tflite["float32"]], tiny_dataset, tmp_path / "kit", samples=60).path
    manifest = json.loads((kit / "kit.json").read_text())
    models = [kit / "tiny_int8.tflite", kit / "tiny_float32.tflite"]
    report = rt.run_device(models, rt.load_samples(kit / "samples.npz"), rt.find_runtime(), warmup=1, runs=5,
                           manifest=manifest)
    result_path = tmp_path / "device.json"
    result_path.write_text(json.dumps(report))
    args = (tiny_tflite["int8"], result_path, GateConfig(max_drop=100))
    with_data = check_result(*args, reference_model=tiny_tflite["float32"], dataset=tiny_dataset)
    mine, labels = _top1(tiny_tflite["int8"], tiny_dataset)
    theirs, _ = _top1(tiny_tflite["float32"], tiny_dataset)
    assert with_data.paired.changed == int(np.sum(mine != theirs))
    assert with_data.paired.candidate_accuracy == pytest.approx(float(np.mean(mine == labels)))
    without = check_result(*args, reference_model=tiny_tflite["float32"])
    assert without.paired is None and "--data" in without.paired_reason and without.passed == with_data.passed
    wrong = check_result(*args, reference_model=tiny_tflite["float32"], dataset=tiny_dataset.subset(test=30, seed=5))
    assert wrong.paired is None and "fingerprint" in wrong.paired_reason
    with pytest.raises(ConfigError, match="--data"):
        check_result(tiny_tflite["int8"], result_path, GateConfig(max_class_drop=5), tiny_tflite["float32"])


# --- JUnit XML -----------------------------------------------------------------------------------


def test_junit_xml_has_a_case_per_criterion_and_a_failure_per_miss(tiny_tflite, tiny_dataset):
    result = check(tiny_tflite["int8"], tiny_dataset, GateConfig(max_drop=100, max_class_drop=100, max_size_kb=0.5,
                                                                 max_latency_ms=0.0), FAST,
                   reference_model=tiny_tflite["float32"])
    suite = ET.fromstring(to_junit_xml(result))
    assert suite.tag == "testsuite" and suite.get("name") == "edgecv check"
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests")) == len(result.criteria) == 4
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == int(suite.get("failures")) == sum(not c.passed for c in result.criteria) == 2
    assert {c.get("classname") for c in cases} == {"tiny_int8.tflite"}
    assert "FAIL by" in failed[0].find("failure").get("message")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert float(props["mcnemar_p"]) == pytest.approx(result.paired.p_value, rel=1e-5)
    assert int(props["top1_changed"]) == result.paired.changed


def test_junit_xml_of_a_floor_says_points_and_survives_awkward_names():
    stage = StageResult("c", model='a&b <"int8">.tflite', accuracy=0.4887, format="tflite")
    reference = Reference("baseline", "baseline b&<.json", 0.5)
    result = GateResult(stage, reference, criteria(stage, reference, GateConfig(max_drop=None, min_accuracy=90)),
                        None, "baseline b.json kept no per-image predictions")
    suite = ET.fromstring(to_junit_xml(result))
    (case,) = suite.findall("testcase")
    assert case.get("classname") == 'a&b <"int8">.tflite'
    assert case.find("failure").get("message").endswith("FAIL by 41.130 points")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["paired"].startswith("none: baseline b.json")


def test_junit_xml_of_a_compress_gate():
    stages = [StageResult("keras float", accuracy=0.60, format="keras"),
              StageResult("tflite int8", accuracy=0.598, format="tflite", details={"mode": "int8"}),
              StageResult("pruned int8", accuracy=0.58, format="tflite", details={"mode": "int8"})]
    suite = ET.fromstring(to_junit_xml(gate_report(stages, max_drop=1.0)))
    assert suite.get("name") == "edgecv compress" and suite.get("failures") == "1"
    assert [c.get("classname") for c in suite.findall("testcase")] == ["tflite int8", "pruned int8"]


def test_junit_xml_notes_a_drop_let_through_as_not_significant():
    labels, reference, candidate = _paired_case(b=3, c=1)
    got, _ = _judge(labels, reference, candidate, GateConfig(max_drop=0.25, significant_only=True))
    xml = to_junit_xml(GateResult(_stage(0.9975), Reference("model", "parent", 1.0), got))
    (case,) = ET.fromstring(xml).findall("testcase")
    assert case.find("failure") is None and "not significantly" in case.find("system-out").text


def test_a_keras_parent_is_compared_image_by_image_too(tiny_trained, tiny_tflite, tiny_dataset, tmp_path):
    from edgecv.compress.export import save_keras

    parent = save_keras(tiny_trained.model, tmp_path / "parent.keras")
    result = check(tiny_tflite["float32"], tiny_dataset, GateConfig(max_drop=100, max_class_drop=100), FAST,
                   reference_model=parent)
    keras_top1 = np.argmax(tiny_trained.model.predict(scoring_images(tiny_dataset, FAST)[0], verbose=0), axis=1)
    mine, _ = _top1(tiny_tflite["float32"], tiny_dataset)
    assert result.paired.changed == int(np.sum(keras_top1 != mine))
    assert result.paired.reference_accuracy == pytest.approx(result.reference.accuracy)
