"""Progress reporting: library code calls ``on_progress(Progress(...))`` and never prints.

The CLI turns these events into progress bars; a Python caller can log them or ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Progress:
    task: str  # what is running, e.g. "train", "benchmark int8"
    done: float  # units finished so far
    total: float | None = None  # units in all, when known
    message: str = ""  # a short status, e.g. "epoch 3/10 loss 1.21"


ProgressFn = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    """The default callback: report nothing."""
