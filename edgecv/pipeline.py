"""``compress``: train (or load) a classifier, prune it, convert it in every asked mode, and measure each step.

The stages run top to bottom; each writes its model under the output folder (atomically) and adds one row
to the report. A stage that cannot convert or run keeps its row, marked failed with the reason.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from . import __version__
from .benchmark import benchmark_keras, benchmark_tflite, find_runtime, host_environment, now
from .config import CompressConfig, QuantMode
from .data import Dataset, load
from .errors import ConfigError, EdgecvError
from .export import load_keras, save_keras, save_tflite
from .fsutil import prepare_out_dir, write_text
from .progress import Progress, ProgressFn, ignore
from .report import Report, StageResult, plot_pareto


def compress(config: CompressConfig, on_progress: ProgressFn = ignore) -> Report:
    """Runs the whole pipeline and writes models, ``report.json``, ``report.md`` and ``pareto.png``."""
    start = time.perf_counter()
    out = prepare_out_dir(config.out)
    runtime = find_runtime()  # fail before training, not after, when no runtime is there

    # 1. data: the test split is only ever measured on; calibration comes from the train split
    dataset = load(config.data, on_progress).subset(config.train_limit, config.test_limit, config.train.seed)
    details: dict = {}

    # 2. the float baseline: trained here, or the user's model
    if config.model is not None:
        model = load_keras(config.model)
        check_compatible(model, dataset, config.model)
    else:
        from .train import train

        trained = train(dataset, config.train, on_progress)
        model = trained.model
        details["train"] = {"seconds": trained.seconds, "history": trained.history}
    stages = [benchmark_keras(model, dataset, config.bench, on_progress, "keras float", save_keras(model, out / "baseline.keras"))]
    stages[0].details.update(details)

    from .quantize import calibration_images

    calibration = calibration_images(dataset, config.calibration_samples, config.train.seed)
    modes = [QuantMode.FLOAT32] + [m for m in config.modes if m is not QuantMode.FLOAT32]

    def tflite_stages(keras_model, prefix: str) -> list[StageResult]:
        return [
            _tflite_stage(keras_model, mode, f"{prefix}{mode.value}", out / f"{prefix.replace(' ', '_')}{mode.value}.tflite",
                          dataset, config, calibration, runtime, on_progress)
            for mode in modes
        ]

    # 3. every asked mode on the unpruned model: what quantization alone costs
    stages += tflite_stages(model, "tflite ")

    # 4. pruned, then every mode again: what pruning adds on top
    if config.prune.sparsity > 0:
        from .prune import prune

        pruned = prune(model, dataset, config.prune, on_progress)
        save_keras(pruned.model, out / "pruned.keras")
        pruned_stages = tflite_stages(pruned.model, "pruned ")
        pruned_stages[0].details["pruning"] = {
            "target_sparsity": config.prune.sparsity, "measured_sparsity": pruned.sparsity,
            "keras_accuracy": pruned.test_accuracy, "seconds": pruned.seconds, "end_step": pruned.end_step,
            "frequency": pruned.frequency, "layers": [asdict(s) | {"sparsity": s.sparsity} for s in pruned.layers],
        }
        stages += pruned_stages
    else:
        stages += [StageResult(f"pruned {m.value}", status="skipped", reason="sparsity 0") for m in modes]

    # 5. the gate, when asked: a CI run fails when its own compressed models drop too much
    gate = None
    if config.max_drop is not None:
        from .gate import gate_report

        gate = gate_report(stages, config.max_drop)

    # 6. the report, in three forms
    on_progress(Progress("report", 0, 1))
    report = Report(
        stages=stages, environment=host_environment(runtime, config.bench.threads), data=dataset.describe(),
        config=asdict(config), edgecv=__version__, created=now(), seconds=time.perf_counter() - start, gate=gate,
    )
    write_text(out / "report.md", report.to_markdown())
    plot_pareto(report, out / "pareto.png")
    report.save(out / "report.json")  # last: its presence says the run finished
    on_progress(Progress("report", 1, 1))
    return report


def check_compatible(model, dataset: Dataset, path: Path) -> None:
    """A user's model must take the data set's images and predict its classes."""
    expected = tuple(model.input_shape[1:])
    if expected != dataset.input_shape:
        raise ConfigError(f"{path} takes {expected} inputs but the data set's images are {dataset.input_shape}")
    classes = model.output_shape[-1]
    if classes != dataset.num_classes:
        raise ConfigError(f"{path} predicts {classes} classes but the data set has {dataset.num_classes}")


def _tflite_stage(model, mode, name, path, dataset, config, calibration, runtime, on_progress) -> StageResult:
    from .quantize import convert

    on_progress(Progress(f"convert {name}", 0, 1))
    try:
        save_tflite(convert(model, mode, calibration, config.io_type), path)
        on_progress(Progress(f"convert {name}", 1, 1))
        result = benchmark_tflite(path, dataset, config.bench, on_progress, name=name, runtime=runtime)
    except EdgecvError as e:  # the stage boundary: the row stays, marked failed
        return StageResult(name, status="failed", reason=str(e), format="tflite", details={"mode": mode.value})
    result.details["mode"] = mode.value
    return result
