"""Errors that the CLI turns into one line and an exit code; the mapping lives here only."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries raise pages), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class EdgecvError(Exception):
    """Base of every error a user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class ConfigError(EdgecvError):
    """An option or combination of options that cannot work."""


class DataError(EdgecvError):
    """A data set, model or result file that is missing, empty or unreadable."""


class GateFailed(EdgecvError):
    """A compressed model regressed past what was allowed."""

    exit_code = 1


class Unsupported(EdgecvError):
    """Something the environment lacks: a runtime, a delegate, a compiler."""

    exit_code = 3


_interrupts: list[int] = []  # signals received since the process started (the CLI's handlers add to it)


def note_interrupt(signum: int) -> None:
    _interrupts.append(signum)


def check_interrupt() -> None:
    """Re-raises a Ctrl-C or SIGTERM that native code (the TFLite converter, an interpreter) turned into an
    ordinary error: a stage boundary that keeps failed rows must not swallow the user's interrupt."""
    if _interrupts:
        raise KeyboardInterrupt
