"""The one failure boundary of compress and search: an EdgecvError keeps the row, marked failed; a bug
propagates; an interrupt that native code turned into an ordinary error still ends the run as an interrupt."""

from __future__ import annotations

import pytest

from edgecv import errors
from edgecv.config import BenchConfig, QuantMode
from edgecv.errors import ConfigError
from edgecv.flows.stages import tflite_stage
from edgecv.measure.report import StageStatus

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def _refused():
    raise ConfigError("conversion failed")  # what the converter's wrapper says, also when its C++ saw a signal


def test_without_an_interrupt_the_row_stays_failed(tmp_path, tiny_dataset):
    row = tflite_stage("x", tmp_path / "x.tflite", _refused, tiny_dataset, BenchConfig(), details={"mode": "int8"})
    assert row.status is StageStatus.FAILED and row.reason == "conversion failed"
    assert row.details == {"mode": "int8"} and not (tmp_path / "x.tflite").exists()


def test_a_failed_stage_after_an_interrupt_raises_it(monkeypatch, tmp_path, tiny_dataset):
    monkeypatch.setattr(errors, "_interrupts", [2])
    with pytest.raises(KeyboardInterrupt):
        tflite_stage("x", tmp_path / "x.tflite", _refused, tiny_dataset, BenchConfig())


def test_a_bug_is_not_a_failed_row(tmp_path, tiny_dataset):
    def broken():
        raise TypeError("a bug, not a refusal")

    with pytest.raises(TypeError):
        tflite_stage("x", tmp_path / "x.tflite", broken, tiny_dataset, BenchConfig())


def test_a_file_the_runtime_cannot_run_keeps_its_row(tmp_path, tiny_dataset):
    row = tflite_stage("junk", tmp_path / "junk.tflite", lambda: b"not a flatbuffer", tiny_dataset, BenchConfig())
    assert row.status is StageStatus.FAILED and "not a runnable TFLite model" in row.reason


def test_a_made_model_is_saved_and_measured(tmp_path, tiny_dataset, tiny_trained):
    from edgecv.compress.quantize import calibration_images, convert

    calibration = calibration_images(tiny_dataset, 20)
    row = tflite_stage("int8", tmp_path / "m.tflite", lambda: convert(tiny_trained.model, QuantMode.INT8, calibration),
                       tiny_dataset, BenchConfig(warmup=1, runs=5), details={"mode": "int8"})
    assert row.status is StageStatus.OK and row.accuracy is not None and row.details["mode"] == "int8"
    assert (tmp_path / "m.tflite").is_file()
