import json

import pytest

from edgecv.errors import DataError
from edgecv.measure.report import COLUMNS, Report, StageResult, plot_pareto

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def _report():
    return Report(
        stages=[
            StageResult("keras float", accuracy=0.58, latency={"p50_ms": 0.7, "p90_ms": 0.8}, params=315722,
                        sparsity=0.0, size_bytes=1_287_903, gzip_bytes=1_170_000, format="keras"),
            StageResult("tflite int8", accuracy=0.579, latency={"p50_ms": 0.045, "p90_ms": 0.05}, params=315722,
                        sparsity=0.006, size_bytes=326_064, gzip_bytes=312_000, format="tflite", macs=4_188_800,
                        peak_memory_bytes=36_000),
            StageResult("pruned int8", status="failed", reason="conversion failed: boom"),
        ],
        environment={"cpu": "x", "cores": 2, "threads": 1, "runtime": {"name": "ai_edge_litert", "version": "2.3.0"}},
        data={"source": "synthetic", "train_images": 10, "test_images": 5},
    )


def test_json_round_trip_keeps_every_stage(tmp_path):
    report = _report()
    path = report.save(tmp_path / "report.json")
    again = Report.load(path)
    assert again == report
    assert json.loads(path.read_text())["schema"] == "edgecv.report/1"


def test_failed_rows_stay_in_table_and_markdown():
    report = _report()
    rows = report.rows()
    assert len(rows) == 3 and rows[2][0] == "pruned int8" and rows[2][-1] == "failed"
    assert len(rows[0]) == len(COLUMNS)
    md = report.to_markdown()
    assert "| tflite int8 | 57.90 | 0.0450 |" in md
    assert "pruned int8: failed: conversion failed: boom" in md


def test_unknown_keys_from_other_writers_are_ignored():
    stage = StageResult.from_dict({"stage": "x", "accuracy": 0.5, "future_field": 1})
    assert stage.accuracy == 0.5


def test_macs_and_peak_memory_columns():
    headers = [h for h, _ in COLUMNS]
    assert headers.index("MMACs") < headers.index("params") and "peak KB" in headers
    row = dict(zip(headers, _report().rows()[1]))
    assert row["MMACs"] == "4.19" and row["peak KB"] == "35.2"
    assert dict(zip(headers, _report().rows()[2]))["MMACs"] == ""  # a failed stage leaves the cells empty
    assert "| 4.19 |" in _report().to_markdown()


def test_reports_from_before_macs_and_the_device_record_both_read():
    old = StageResult.from_dict({"stage": "x", "accuracy": 0.5, "params": 10})
    assert old.macs is None and old.peak_memory_bytes is None
    device = StageResult.from_dict({"stage": "x", "macs": 12_501_632, "peak_activation_bytes": 49_152})
    assert device.macs == 12_501_632 and device.peak_memory_bytes == 49_152


@pytest.mark.parametrize("content", ["{not json", "[]", '{"stages": 3}'])
def test_malformed_reports_are_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match="not an edgecv report"):
        Report.load(path)


def test_missing_report(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        Report.load(tmp_path / "none.json")


def test_pareto_plot_is_a_png_of_the_ok_stages(tmp_path):
    path = plot_pareto(_report(), tmp_path / "pareto.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_pareto(Report(stages=[StageResult("x", status="skipped")]), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
