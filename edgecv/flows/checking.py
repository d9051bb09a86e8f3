"""``check``: the measurements a gate's limits need, made before it judges.

The gate reads an ARM instruction count or Vela's estimate from each row, as it reads accuracy; making them
(an emulated Pi, the Vela compiler) is device work, so it is done here and handed to
:func:`edgecv.measure.gate.check`.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecv.config import BenchConfig
from edgecv.data.datasets import Dataset
from edgecv.errors import ConfigError
from edgecv.measure.gate import GateConfig, GateResult, Measurer, check
from edgecv.measure.report import StageResult
from edgecv.progress import ProgressFn, ignore


def check_models(
    model_path: str | os.PathLike, dataset: Dataset, config: GateConfig = GateConfig(),
    bench: BenchConfig = BenchConfig(), reference_model: str | os.PathLike | None = None,
    baseline: str | os.PathLike | None = None, on_progress: ProgressFn = ignore,
) -> GateResult:
    """:func:`~edgecv.measure.gate.check`, with the ARM count (``max_arm_cost_ratio``) and Vela's estimate
    (``max_npu_cycles_ratio``) of both models added first."""
    return check(model_path, dataset, config, bench, reference_model, baseline, on_progress,
                 measure_more=measurers(config))


def measurers(config: GateConfig) -> list[Measurer]:
    """What ``config``'s limits need beyond accuracy, latency and size."""
    more: list[Measurer] = []
    if config.max_arm_cost_ratio is not None:
        more.append(count_arm_cost)
    if config.max_npu_cycles_ratio is not None:
        vela_command_first()  # a missing Vela is exit 3 before anything is measured
        more.append(lambda rows, dataset, on_progress: estimate_npu(rows, config, on_progress))
    return more


def count_arm_cost(rows: list[tuple[Path, StageResult]], dataset: Dataset, on_progress: ProgressFn = ignore) -> None:
    """Both models in one emulated run, on the same 11 test images (one warm-up, ten counted)."""
    from edgecv.device.armcost import count_into

    _tflite_only(rows, "--max-arm-cost-ratio counts .tflite models on an emulated Pi")
    count_into(rows, dataset.x_test[:11], inferences=10, on_progress=on_progress)


def estimate_npu(rows: list[tuple[Path, StageResult]], config: GateConfig, on_progress: ProgressFn = ignore) -> None:
    from edgecv.device.vela import estimate_into

    _tflite_only(rows, "--max-npu-cycles-ratio compiles .tflite models with Vela")
    estimate_into(rows, config.npu, on_progress)


def vela_command_first() -> None:
    from edgecv.device.vela import vela_command

    vela_command()


def _tflite_only(rows: list[tuple[Path, StageResult]], why: str) -> None:
    for path, _ in rows:
        if path.suffix.lower() != ".tflite":
            raise ConfigError(f"{why}: {path.name} is not one")
