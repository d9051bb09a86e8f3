"""``compress``: train (or load) a classifier, prune it, convert it in every asked mode, and measure each step.

The stages run top to bottom; each writes its model under the output folder (atomically) and adds one row
to the report. A stage that cannot convert or run keeps its row, marked failed with the reason
(``flows.stages.tflite_stage`` is the boundary).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from functools import cache, partial
from typing import Callable

from edgecv import __version__
from edgecv.measure.benchmark import benchmark_keras, find_runtime, host_environment, now
from edgecv.config import CompressConfig, QuantMode
from edgecv.data.datasets import load
from edgecv.compress.export import load_keras, save_keras
from edgecv.fsutil import run_dir, write_text
from edgecv.flows.manifest import RunManifest, run_key
from edgecv.progress import Progress, ProgressFn, ignore
from edgecv.flows.stages import tflite_stage
from edgecv.measure.report import Report, StageResult, StageStatus, plot_pareto


def compress(config: CompressConfig, on_progress: ProgressFn = ignore) -> Report:
    """Runs the whole pipeline and writes models, ``report.json``, ``report.md`` and ``pareto.png``.

    Rerun into the same folder with the same options and data, it reuses every stage that finished
    (``run.json`` holds their files' hashes) and runs the rest.
    """
    with run_dir(config.out) as out:
        return _compress(config, out, on_progress)


def _compress(config: CompressConfig, out, on_progress: ProgressFn) -> Report:
    start = time.perf_counter()
    (out / "report.json").unlink(missing_ok=True)  # a report says the run finished: not an old one, not yet
    for stale in out.glob(".*.part*"):  # temporary files of a run that was killed outright
        stale.unlink()
    runtime = find_runtime()  # fail before training, not after, when no runtime is there
    if config.npu:  # nor without Vela or TFLite Micro, when their columns are asked for (exit 3)
        from edgecv.device.vela import vela_command

        vela_command()
    if config.micro:
        from edgecv.device.micro import check_installed

        check_installed()
    if config.imx500:  # the IMX500 converter's backend is Java
        from edgecv.device.imx500 import java_runtime

        java_runtime()

    # 1. data: the test split is only ever measured on; calibration comes from the train split
    dataset = load(config.data, on_progress).subset(config.train_limit, config.test_limit, config.train.seed).resized(
        config.image_size)
    manifest = RunManifest(out, run_key(asdict(config), dataset.full_fingerprint()))

    # 2. the float baseline: trained here (recorded as soon as it is saved), or the user's model
    baseline = out / "baseline.keras"
    done = manifest.get("baseline")
    if done:
        model, details = load_keras(baseline, trust=config.trust_model), done["result"]
    else:
        manifest.drop()  # everything downstream was built from another baseline
        details = {}
        if config.model is not None:
            model = load_keras(config.model, dataset, trust=config.trust_model)
        else:
            from edgecv.train.fit import train

            trained = train(dataset, config.train, on_progress, started=start)  # a budget counts the data too
            model = trained.model
            details["train"] = {"seconds": trained.seconds, "history": trained.history}
            if trained.plan is not None:
                details["train"]["budget"] = asdict(trained.plan)
        manifest.put("baseline", [save_keras(model, baseline)], details)
    done = manifest.get("keras float")
    if done:
        stages = [StageResult.from_dict(done["result"])]
    else:
        stages = [benchmark_keras(model, dataset, config.bench, on_progress, "keras float", baseline)]
        stages[0].details.update(details)
        manifest.put("keras float", [baseline], asdict(stages[0]))

    from edgecv.compress.quantize import calibration_images, convert, converter_name, make_tflite

    calibration = calibration_images(dataset, config.calibration_samples, config.train.seed)
    modes = [QuantMode.FLOAT32] + [m for m in config.modes if m is not QuantMode.FLOAT32]
    finetune = replace(config.finetune, seed=config.train.seed)

    def stage(name: str, make: Callable[[], bytes], details: dict) -> StageResult:
        """One TFLite row: reused when finished before, else made (``make`` may add to ``details``)."""
        done = manifest.get(name)
        if done:
            return StageResult.from_dict(done["result"])
        path = out / f"{name.replace(' ', '_').replace(':', '-')}.tflite"

        def made() -> bytes:
            content = make()
            details.setdefault("made_by", converter_name())  # a mixed row has said the quantizer already
            return content

        result = tflite_stage(name, path, made, dataset, config.bench, runtime, on_progress, details,
                              plain_fallback=bool(details.get("sparse")))
        if result.status is StageStatus.OK:
            manifest.put(name, [path], asdict(result))
        return result

    def mode_stages(keras_model: Callable, prefix: str) -> list[StageResult]:
        def row(mode: QuantMode) -> StageResult:
            details = {"mode": mode.value}
            return stage(f"{prefix}{mode.value}", lambda: make_tflite(
                keras_model(), mode, calibration, config.io_type, details, dataset, config.mixed, config.train.seed,
                on_progress=on_progress), details)

        return [row(mode) for mode in modes]

    # 3. every asked mode on the unpruned model: what quantization alone costs
    stages += mode_stages(lambda: model, "tflite ")

    # 4. the techniques that fine-tune or inspect the float model, each against the same baseline; a
    #    fine-tune runs only when its row is not already finished. TFMOT's (QAT, clustering, pruning) take
    #    tf-keras models: a Keras 3 model is rebuilt for them, once, and a refusal fails only their rows.
    from edgecv.compress.keras3 import to_tf_keras

    tfmot_model = cache(lambda: to_tf_keras(model))
    if config.qat:
        details = {"mode": "int8"}
        stages.append(stage("qat int8", _qat_maker(tfmot_model, dataset, finetune, calibration, config, on_progress, False,
                                                   details), details))
    if config.keep_float or config.keep_float_worst:
        stages.append(_keep_float_stage(model, dataset, config, calibration, stage, manifest, on_progress))
    if config.clusters is not None:
        from edgecv.compress.cluster import cluster, cluster_finetune

        clustered = cache(lambda: cluster(tfmot_model(), dataset, config.clusters, cluster_finetune(finetune), on_progress))
        for mode in (QuantMode.FLOAT32, QuantMode.INT8):
            details = {"mode": mode.value, "clusters": config.clusters}

            def make(mode=mode, details=details) -> bytes:
                details.update(unique_values=clustered().unique_values, keras_accuracy=clustered().test_accuracy)
                return convert(clustered().model, mode, calibration, config.io_type)

            stages.append(stage(f"clustered {mode.value}", make, details))

    # 5. pruned, then every mode again: what pruning adds on top
    if config.prune.sparsity > 0:
        pruned_model = _pruned(tfmot_model, dataset, config, manifest, out, on_progress)
        pruned_stages = mode_stages(lambda: pruned_model()[0], "pruned ")
        if pruned_stages[0].status is StageStatus.OK:  # a failed prune has said why in its row
            pruned_stages[0].details.setdefault("pruning", pruned_model()[1])
        stages += pruned_stages
        if config.qat:  # TFMOT's collaborative optimization: the zeros survive quantization-aware training
            details = {"mode": "int8"}
            stages.append(stage("pruned qat int8", _qat_maker(lambda: pruned_model()[0], dataset, finetune, calibration,
                                                              config, on_progress, True, details), details))
        if config.sparse:
            stages.append(stage("pruned int8 sparse", lambda: convert(pruned_model()[0], QuantMode.INT8, calibration,
                                                                      config.io_type, sparse=True),
                                {"mode": "int8", "sparse": True}))
    else:
        stages += [StageResult(f"pruned {m.value}", status=StageStatus.SKIPPED, reason="sparsity 0") for m in modes]

    # 5b. the int8 rows on an Ethos-U NPU (Vela's estimate) and on TFLite Micro, when asked
    if config.npu or config.micro:
        _npu_and_micro(stages, out, dataset, config, on_progress)

    # 5c. the float model for the Raspberry Pi AI Camera (Sony's MCT and converter), when asked
    if config.imx500:
        stages.append(_imx500_row(baseline, out, dataset, config, on_progress))

    # 6. the gate, when asked: a CI run fails when its own compressed models drop too much
    gate = None
    if config.max_drop is not None:
        from edgecv.measure.gate import gate_report

        gate = gate_report(stages, config.max_drop)
        if config.imx500:
            _gate_imx500(gate, stages, config.max_drop)

    # 7. the report, in three forms
    on_progress(Progress("report", 0, 1))
    report = Report(
        stages=stages, environment=host_environment(runtime, config.bench.threads), data=dataset.describe(),
        config=asdict(config), edgecv=__version__, created=now(), seconds=time.perf_counter() - start, gate=gate,
        resumed=manifest.reused,
    )
    write_text(out / "report.md", report.to_markdown())
    plot_pareto(report, out / "pareto.png")
    report.save(out / "report.json")  # last: its presence says the run finished
    on_progress(Progress("report", 1, 1))
    return report


def _npu_and_micro(stages: list[StageResult], out, dataset, config: CompressConfig, on_progress: ProgressFn) -> None:
    """Each measured int8 row gets ``details["npu"]`` (Vela, per configuration) and ``details["micro"]`` (TFLite
    Micro against LiteRT on a seeded 1,000 test images, and the arena); a row either cannot take says why."""
    rows = [(out / s.model, s) for s in stages if s.status is StageStatus.OK and s.format == "tflite" and s.model
            and s.details.get("mode") == QuantMode.INT8.value]
    if config.npu:
        from edgecv.device.vela import estimate_into

        estimate_into(rows, config.npu, on_progress)
    if config.micro:
        from edgecv.config import BenchConfig
        from edgecv.device.micro import MICRO_IMAGES, measure_into
        from edgecv.measure.benchmark import scoring_images

        x, y = scoring_images(dataset, BenchConfig(limit=MICRO_IMAGES))
        measure_into(rows, x, y, on_progress)


def _qat_maker(get_model, dataset, finetune, calibration, config, on_progress, preserve_sparsity, details):
    """The ``make`` of a QAT row: the fine-tune (on ``get_model()``), then int8."""
    from edgecv.compress.qat import qat
    from edgecv.compress.quantize import convert

    def make() -> bytes:
        aware = qat(get_model(), dataset, finetune, on_progress, preserve_sparsity)
        details.update(keras_accuracy=aware.test_accuracy, seconds=aware.seconds)
        return convert(aware.model, QuantMode.INT8, calibration, config.io_type)

    return make


def _pruned(get_model, dataset, config, manifest, out, on_progress):
    """A callable giving (pruned model, pruning details): loaded when a rerun finds it, else pruned once (from
    ``get_model()``, a tf-keras model)."""

    @cache
    def pruned():
        done = manifest.get("pruned")
        if done:
            return load_keras(out / "pruned.keras"), done["result"]
        from edgecv.compress.prune import prune

        manifest.drop("pruned")  # the rows made from an earlier pruned model
        result = prune(get_model(), dataset, config.prune, on_progress)
        path = save_keras(result.model, out / "pruned.keras")
        details = {
            "target_sparsity": config.prune.sparsity, "measured_sparsity": result.sparsity,
            "keras_accuracy": result.test_accuracy, "seconds": result.seconds, "end_step": result.end_step,
            "frequency": result.frequency, "layers": [asdict(s) | {"sparsity": s.sparsity} for s in result.layers],
        }
        manifest.put("pruned", [path], details)
        return result.model, details

    return pruned


def _keep_float_stage(model, dataset, config, calibration, stage, manifest, on_progress) -> StageResult:
    """int8 with the named (or the K most sensitive) layers left float; the per-layer table goes in details."""
    from edgecv.compress.sensitivity import convert_keep_float, sensitivity

    done = manifest.get("sensitivity")
    if done:
        table = done["result"]
    else:
        found = sensitivity(model, dataset, calibration, images=config.bench.limit or 2000, on_progress=on_progress)
        table = {"layers": [asdict(s) | {"nodes": len(s.nodes)} for s in found.layers], "images": found.images,
                 "int8_accuracy": found.int8_accuracy}
        manifest.put("sensitivity", [], table)
    layers = list(config.keep_float) or [s["layer"] for s in table["layers"][: config.keep_float_worst]]
    return stage(f"int8 float:{'+'.join(layers)}", partial(convert_keep_float, model, calibration, layers),
                 {"mode": "int8", "keep_float": layers, "sensitivity": table["layers"],
                  "sensitivity_images": table["images"], "sensitivity_int8_accuracy": table["int8_accuracy"]})


def _imx500_row(baseline, out, dataset, config: CompressConfig, on_progress: ProgressFn) -> StageResult:
    """The ``imx500`` row: the float baseline through ``edgecv imx500`` (MCT PTQ, imxconv-tf) into ``imx500/``,
    its fake-quant top-1 on the same test images as the TFLite rows; a model the toolchain refuses or that does
    not fit the chip's 8 MB keeps its row, with why."""
    from edgecv.device.imx500 import quantize_for_imx500
    from edgecv.errors import DataError, first_line

    images = config.bench.limit or len(dataset.y_test)  # scoring_images: the same seeded sample as every row
    try:
        result = quantize_for_imx500(baseline, dataset, out / "imx500", calibration=config.calibration_samples,
                                     test_images=images, max_drop=None, trust=config.trust_model,
                                     on_progress=on_progress)
    except DataError as e:
        return StageResult("imx500", status=StageStatus.FAILED, reason=first_line(e), format="imx500")
    return result.row("imx500", out)


def _gate_imx500(gate, stages: list[StageResult], max_drop: float) -> None:
    """The ``imx500`` row against the Keras float model (its drop) and against the chip (its fit): a refused or
    unfit model fails, as an unmeasured stage does."""
    from edgecv.device.imx500 import memory_criterion
    from edgecv.measure.gate import GateConfig, Reference, criteria
    from edgecv.measure.verdict import StageCriterion

    parent = next(s for s in stages if s.stage == gate.reference)
    row = next(s for s in stages if s.stage == "imx500")
    for c in criteria(row, Reference("model", gate.reference, parent.accuracy), GateConfig(max_drop=max_drop)):
        gate.criteria.append(StageCriterion("imx500", c))
    used = (row.details.get("imx500") or {}).get("memory_bytes")
    gate.criteria.append(StageCriterion("imx500", memory_criterion(used)))
