"""Errors that the CLI turns into one line and an exit code; the mapping lives here only."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What the process's exit status means. ``edgecv/runtime.py`` (the device script, which imports nothing of
    edgecv) repeats BAD_INPUT and MISSING, and a test keeps the two equal."""

    OK = 0
    GATE_FAILED = 1  # a compressed model regressed past what was allowed, or a search found none within it
    BAD_INPUT = 2  # an option, data set, model or result file that cannot work
    MISSING = 3  # something the environment lacks: a runtime, a delegate, a compiler, root
    INTERRUPTED = 130  # Ctrl-C or SIGTERM, as a shell reports SIGINT


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries raise pages), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class EdgecvError(Exception):
    """Base of every error a user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = ExitCode.BAD_INPUT


class ConfigError(EdgecvError):
    """An option or combination of options that cannot work."""


class DataError(EdgecvError):
    """A data set, model or result file that is missing, empty or unreadable."""


class GateFailed(EdgecvError):
    """A compressed model regressed past what was allowed."""

    exit_code = ExitCode.GATE_FAILED


class Unsupported(EdgecvError):
    """Something the environment lacks: a runtime, a delegate, a compiler."""

    exit_code = ExitCode.MISSING


_interrupts: list[int] = []  # signals received since the process started (the CLI's handlers add to it)


def note_interrupt(signum: int) -> None:
    _interrupts.append(signum)


def interrupt_noted() -> bool:
    return bool(_interrupts)


def check_interrupt() -> None:
    """Re-raises a Ctrl-C or SIGTERM that native code (the TFLite converter, an interpreter) turned into an
    ordinary error: a stage boundary that keeps failed rows must not swallow the user's interrupt."""
    if interrupt_noted():
        raise KeyboardInterrupt
