"""One stage of a flow: make a model, save it, measure it, and give its row. ``compress`` and ``search`` both
run their TFLite rows through here, so both keep a failed row the same way.

This is the failure boundary of a flow: an ``EdgecvError`` (the converter refused the model, the runtime
could not run it) ends the stage, not the run; its row stays, marked failed, with the reason. Anything else
is a bug and propagates, and an interrupt that native code turned into an ordinary error is re-raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgecv import runtime as rt
from edgecv.config import BenchConfig
from edgecv.data.datasets import Dataset
from edgecv.errors import DataError, EdgecvError, check_interrupt
from edgecv.progress import Progress, ProgressFn, ignore
from edgecv.measure.report import StageResult, StageStatus


def tflite_stage(name: str, path: Path, make: Callable[[], bytes], dataset: Dataset, bench: BenchConfig,
                 runtime: rt.Runtime | None = None, on_progress: ProgressFn = ignore, details: dict | None = None,
                 plain_fallback: bool = False) -> StageResult:
    """Converts (``make()``, which may add to ``details``), saves to ``path`` and benchmarks one model.

    ``plain_fallback``: when the default delegate refuses the model (XNNPACK and sparse int8), measure it on
    TFLite's own kernels and say so in the row, instead of failing it.
    """
    from edgecv.compress.export import save_tflite
    from edgecv.measure.benchmark import benchmark_tflite

    details = {} if details is None else details
    on_progress(Progress(f"convert {name}", 0, 1))
    try:
        save_tflite(make(), path)
        on_progress(Progress(f"convert {name}", 1, 1))
        try:
            result = benchmark_tflite(path, dataset, bench, on_progress, name=name, runtime=runtime)
        except DataError as e:
            if not plain_fallback:
                raise
            result = benchmark_tflite(path, dataset, bench, on_progress, name=name, runtime=runtime, plain=True)
            details["delegate"] = f"none: the default delegate refused the model ({e})"
    except EdgecvError as e:
        check_interrupt()
        return StageResult(name, status=StageStatus.FAILED, reason=str(e), format="tflite", details=details)
    result.details.update(details)
    return result
