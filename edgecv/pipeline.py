"""``compress``: train (or load) a classifier, prune it, convert it in every asked mode, and measure each step.

The stages run top to bottom; each writes its model under the output folder (atomically) and adds one row
to the report. A stage that cannot convert or run keeps its row, marked failed with the reason.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from functools import partial
from typing import Callable

from . import __version__
from .benchmark import benchmark_keras, benchmark_tflite, find_runtime, host_environment, now
from .config import CompressConfig, QuantMode
from .data import load
from .errors import DataError, EdgecvError
from .export import load_keras, save_keras, save_tflite
from .fsutil import prepare_out_dir, write_text
from .progress import Progress, ProgressFn, ignore
from .report import Report, StageResult, plot_pareto


def compress(config: CompressConfig, on_progress: ProgressFn = ignore) -> Report:
    """Runs the whole pipeline and writes models, ``report.json``, ``report.md`` and ``pareto.png``."""
    start = time.perf_counter()
    out = prepare_out_dir(config.out)
    (out / "report.json").unlink(missing_ok=True)  # a report says the run finished: not an old one, not yet
    runtime = find_runtime()  # fail before training, not after, when no runtime is there

    # 1. data: the test split is only ever measured on; calibration comes from the train split
    dataset = load(config.data, on_progress).subset(config.train_limit, config.test_limit, config.train.seed)
    details: dict = {}

    # 2. the float baseline: trained here, or the user's model
    if config.model is not None:
        model = load_keras(config.model, dataset)
    else:
        from .train import train

        trained = train(dataset, config.train, on_progress)
        model = trained.model
        details["train"] = {"seconds": trained.seconds, "history": trained.history}
    stages = [benchmark_keras(model, dataset, config.bench, on_progress, "keras float", save_keras(model, out / "baseline.keras"))]
    stages[0].details.update(details)

    from .quantize import calibration_images, convert

    calibration = calibration_images(dataset, config.calibration_samples, config.train.seed)
    modes = [QuantMode.FLOAT32] + [m for m in config.modes if m is not QuantMode.FLOAT32]
    finetune = replace(config.finetune, seed=config.train.seed)

    def stage(name: str, make: Callable[[], bytes], **details) -> StageResult:
        return _tflite_stage(name, out / f"{name.replace(' ', '_').replace(':', '-')}.tflite", make, dataset,
                             config, runtime, on_progress, details)

    def mode_stages(keras_model, prefix: str) -> list[StageResult]:
        return [stage(f"{prefix}{mode.value}", partial(convert, keras_model, mode, calibration, config.io_type),
                      mode=mode.value) for mode in modes]

    # 3. every asked mode on the unpruned model: what quantization alone costs
    stages += mode_stages(model, "tflite ")

    # 4. the techniques that fine-tune or inspect the float model, each against the same baseline
    if config.qat:
        from .qat import qat

        aware = qat(model, dataset, finetune, on_progress)
        stages.append(stage("qat int8", partial(convert, aware.model, QuantMode.INT8, calibration, config.io_type),
                            mode="int8", keras_accuracy=aware.test_accuracy, seconds=aware.seconds))
    if config.keep_float or config.keep_float_worst:
        stages.append(_keep_float_stage(model, dataset, config, calibration, stage, on_progress))
    if config.clusters is not None:
        from .cluster import cluster, cluster_finetune

        clustered = cluster(model, dataset, config.clusters, cluster_finetune(finetune), on_progress)
        for mode in (QuantMode.FLOAT32, QuantMode.INT8):
            stages.append(stage(f"clustered {mode.value}", partial(convert, clustered.model, mode, calibration,
                                                                  config.io_type), mode=mode.value,
                                clusters=config.clusters, unique_values=clustered.unique_values,
                                keras_accuracy=clustered.test_accuracy))

    # 5. pruned, then every mode again: what pruning adds on top
    if config.prune.sparsity > 0:
        from .prune import prune

        pruned = prune(model, dataset, config.prune, on_progress)
        save_keras(pruned.model, out / "pruned.keras")
        pruned_stages = mode_stages(pruned.model, "pruned ")
        pruned_stages[0].details["pruning"] = {
            "target_sparsity": config.prune.sparsity, "measured_sparsity": pruned.sparsity,
            "keras_accuracy": pruned.test_accuracy, "seconds": pruned.seconds, "end_step": pruned.end_step,
            "frequency": pruned.frequency, "layers": [asdict(s) | {"sparsity": s.sparsity} for s in pruned.layers],
        }
        stages += pruned_stages
        if config.qat:  # TFMOT's collaborative optimization: the zeros survive quantization-aware training
            from .qat import qat

            aware = qat(pruned.model, dataset, finetune, on_progress, preserve_sparsity=True)
            stages.append(stage("pruned qat int8", partial(convert, aware.model, QuantMode.INT8, calibration,
                                                           config.io_type), mode="int8",
                                keras_accuracy=aware.test_accuracy, seconds=aware.seconds))
        if config.sparse:
            stages.append(stage("pruned int8 sparse", partial(convert, pruned.model, QuantMode.INT8, calibration,
                                                              config.io_type, sparse=True), mode="int8", sparse=True))
    else:
        stages += [StageResult(f"pruned {m.value}", status="skipped", reason="sparsity 0") for m in modes]

    # 6. the gate, when asked: a CI run fails when its own compressed models drop too much
    gate = None
    if config.max_drop is not None:
        from .gate import gate_report

        gate = gate_report(stages, config.max_drop)

    # 7. the report, in three forms
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


def _keep_float_stage(model, dataset, config, calibration, stage, on_progress) -> StageResult:
    """int8 with the named (or the K most sensitive) layers left float; the per-layer table goes in details."""
    from .sensitivity import convert_keep_float, sensitivity

    found = sensitivity(model, dataset, calibration, images=config.bench.limit or 2000, on_progress=on_progress)
    layers = list(config.keep_float) or found.worst(config.keep_float_worst)
    table = [asdict(s) | {"nodes": len(s.nodes)} for s in found.layers]
    return stage(f"int8 float:{'+'.join(layers)}", partial(convert_keep_float, model, calibration, layers),
                 mode="int8", keep_float=layers, sensitivity=table, sensitivity_images=found.images,
                 sensitivity_int8_accuracy=found.int8_accuracy)


def _tflite_stage(name, path, make, dataset, config, runtime, on_progress, details) -> StageResult:
    """Converts (``make()``), saves and benchmarks one model; a failure keeps the row, marked failed."""
    on_progress(Progress(f"convert {name}", 0, 1))
    try:
        save_tflite(make(), path)
        on_progress(Progress(f"convert {name}", 1, 1))
        try:
            result = benchmark_tflite(path, dataset, config.bench, on_progress, name=name, runtime=runtime)
        except DataError as e:
            if not details.get("sparse"):
                raise
            # XNNPACK refuses sparse int8 models: measure with TFLite's own kernels, and say so
            result = benchmark_tflite(path, dataset, config.bench, on_progress, name=name, runtime=runtime, plain=True)
            details["delegate"] = f"none: the default delegate refused the model ({e})"
    except EdgecvError as e:  # the stage boundary: the row stays, marked failed
        return StageResult(name, status="failed", reason=str(e), format="tflite", details=details)
    result.details.update(details)
    return result
