"""Atomic writes: a target is whole or absent, never half-written."""

import pytest

from edgecv import errors
from edgecv.fsutil import atomic_path, write_text


def test_a_write_lands_whole_and_leaves_no_temporary_file(tmp_path):
    write_text(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_block_leaves_the_old_file(tmp_path):
    write_text(tmp_path / "report.json", "old")
    with pytest.raises(ValueError), atomic_path(tmp_path / "report.json") as tmp:
        tmp.write_text("half")
        raise ValueError
    assert (tmp_path / "report.json").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_nothing_lands_after_an_interrupt_that_native_code_swallowed(monkeypatch, tmp_path):
    # the CLI's handler noted the signal; the KeyboardInterrupt it raised never reached Python
    monkeypatch.setattr(errors, "_interrupts", [2])
    with pytest.raises(KeyboardInterrupt):
        write_text(tmp_path / "report.json", "{}")
    assert list(tmp_path.iterdir()) == []
