"""An interrupt that native code turned into an ordinary error still ends the run as an interrupt."""

from __future__ import annotations

import pytest

from edgecv import errors
from edgecv.errors import ConfigError


@pytest.fixture
def interrupted(monkeypatch):
    monkeypatch.setattr(errors, "_interrupts", [2])


def test_a_failed_stage_after_an_interrupt_raises_it(interrupted, tmp_path, tiny_dataset):
    from edgecv.config import CompressConfig
    from edgecv.pipeline import _tflite_stage

    def make():
        raise ConfigError("conversion failed")  # what the converter's wrapper says when its C++ saw the signal

    with pytest.raises(KeyboardInterrupt):
        _tflite_stage("x", tmp_path / "x.tflite", make, tiny_dataset, CompressConfig(out=tmp_path), None,
                      lambda p: None, {})


def test_without_an_interrupt_the_row_stays_failed(tmp_path, tiny_dataset):
    from edgecv.config import CompressConfig
    from edgecv.pipeline import _tflite_stage

    def make():
        raise ConfigError("conversion failed")

    row = _tflite_stage("x", tmp_path / "x.tflite", make, tiny_dataset, CompressConfig(out=tmp_path), None,
                        lambda p: None, {})
    assert row.status == "failed" and row.reason == "conversion failed"
