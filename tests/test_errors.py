"""Exit codes are declared once: the device script, which imports nothing of edgecv, repeats two of them."""

from __future__ import annotations

import pytest

from edgecv import runtime as rt
from edgecv.errors import ConfigError, DataError, ExitCode, GateFailed, Unsupported

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def test_each_error_exits_with_its_declared_code():
    assert (ConfigError.exit_code, DataError.exit_code) == (ExitCode.BAD_INPUT, ExitCode.BAD_INPUT) == (2, 2)
    assert GateFailed.exit_code == ExitCode.GATE_FAILED == 1
    assert Unsupported.exit_code == ExitCode.MISSING == 3


def test_the_device_script_uses_the_same_codes():
    assert (rt.EXIT_BAD_INPUT, rt.EXIT_MISSING) == (ExitCode.BAD_INPUT, ExitCode.MISSING)
