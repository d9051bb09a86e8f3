"""``check``: the measurements a gate's limits need, made before it judges.

The gate reads an ARM instruction count or Vela's estimate from each row, as it reads accuracy; making them
(an emulated Pi, the Vela compiler) is device work, so it is done here and handed to
:func:`edgecv.measure.gate.check`. An IMX500 package (``packerOut.zip``) is not run here at all: it is judged
by the record of its own conversion, which scored the float and the fake-quant model on the same images.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecv.config import BenchConfig
from edgecv.data.datasets import Dataset, fingerprint
from edgecv.errors import ConfigError, DataError
from edgecv.fsutil import sha256
from edgecv.measure.benchmark import scoring_images
from edgecv.measure.gate import (Baseline, GateConfig, GateResult, Measurer, Reference, check, check_result, criteria,
                                 paired_comparison, predictions_of, refuse_unpaired)
from edgecv.measure.report import StageResult
from edgecv.progress import ProgressFn, ignore


def check_models(
    model_path: str | os.PathLike, dataset: Dataset, config: GateConfig = GateConfig(),
    bench: BenchConfig = BenchConfig(), reference_model: str | os.PathLike | None = None,
    baseline: str | os.PathLike | None = None, on_progress: ProgressFn = ignore,
) -> GateResult:
    """:func:`~edgecv.measure.gate.check`, with the ARM count (``max_arm_cost_ratio``) and Vela's estimate
    (``max_npu_cycles_ratio``) of both models added first."""
    if is_imx500_package(model_path):
        raise ConfigError(f"{Path(model_path).name} is an IMX500 package, which runs on the camera, not here: check it "
                          "--measured-by the imx500.json (or report.json) its conversion wrote")
    if config.max_imx500_memory_kb is not None:
        raise ConfigError("--max-imx500-memory-kb applies to an IMX500 package (packerOut.zip) --measured-by its "
                          "conversion's record")
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


def is_imx500_package(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".zip"


def check_measured(model_path: str | os.PathLike, result_path: str | os.PathLike, config: GateConfig = GateConfig(),
                   reference_model: str | os.PathLike | None = None, baseline: str | os.PathLike | None = None,
                   dataset: Dataset | None = None) -> GateResult:
    """``check --measured-by``: a device result (:func:`~edgecv.measure.gate.check_result`), or for an IMX500
    package the record of its conversion (:func:`check_imx500`)."""
    if is_imx500_package(model_path):
        return check_imx500(model_path, result_path, config, reference_model, baseline, dataset)
    if config.max_imx500_memory_kb is not None:
        raise ConfigError("--max-imx500-memory-kb applies to an IMX500 package (packerOut.zip)")
    return check_result(model_path, result_path, config, reference_model, baseline, dataset)


_NOT_ON_THE_HOST = (("max_latency_ms", "--max-latency-ms"), ("max_latency_ratio", "--max-latency-ratio"),
                    ("max_arm_cost_ratio", "--max-arm-cost-ratio"), ("max_npu_cycles_ratio", "--max-npu-cycles-ratio"))


def check_imx500(package: str | os.PathLike, record: str | os.PathLike, config: GateConfig = GateConfig(),
                 reference_model: str | os.PathLike | None = None, baseline: str | os.PathLike | None = None,
                 dataset: Dataset | None = None) -> GateResult:
    """Judges ``package`` by its conversion's record: MCT's fake-quant top-1 against the float model scored in
    the same run on the same test images (or against ``baseline``), and the converter's memory use against the
    chip's 8 MB (or ``config.max_imx500_memory_kb``). ``reference_model``, when given, must be the file that
    was quantized. ``dataset`` supplies the labels for the image-by-image comparison; the record keeps both
    models' top-1 per image but not the labels.

    Raises:
        ConfigError: a limit the record cannot answer (latency is the camera's: its script's result), or
            both a reference and a baseline.
        DataError: a record of another package or another model, a baseline of other test images.
    """
    from edgecv.device.imx500 import measured_row, memory_criterion

    asked = [flag for name, flag in _NOT_ON_THE_HOST if getattr(config, name) is not None]
    if asked:
        raise ConfigError(f"{', '.join(asked)}: an IMX500 package has no latency on this host (the camera script "
                          "in the device kit times it on the camera)")
    if reference_model is not None and baseline is not None:
        raise ConfigError("give at most one reference: the record's own float model, --reference MODEL (the same "
                          "file) or --baseline FILE")
    row = measured_row(package, record)
    made = row.details["imx500"]
    shown, images = made.get("data", {}).get("test_fingerprint"), row.images
    missing = None
    if baseline is not None:
        stored = Baseline.load(baseline)
        if stored.data.get("test_fingerprint") != shown:
            if not config.allow_other_data:
                raise DataError(f"baseline {Path(baseline).name} was measured on other test images than "
                                f"{Path(record).name}: pass --allow-other-data to compare anyway")
            missing = f"baseline {Path(baseline).name} was measured on other test images"
        reference, theirs = stored.reference(Path(baseline)), stored.predictions
    else:
        if reference_model is not None:
            if not Path(reference_model).is_file():
                raise DataError(f"model file {reference_model} does not exist")
            if sha256(Path(reference_model).read_bytes()) != made.get("model_sha256"):
                raise DataError(f"{Path(record).name} quantized another model than {Path(reference_model).name} "
                                f"(it quantized {made.get('model')}; the SHA-256 differs or was not recorded)")
        reference = Reference("model", f"{made.get('model')} (float, same images)", made.get("float_accuracy"))
        theirs = row.details.get("float_predictions")
    labels = classes = None
    if missing is None and dataset is None:
        missing = f"{Path(record).name} keeps predictions but not the labels: give the data set it was made from (--data)"
    elif missing is None:
        x, labels = scoring_images(dataset, BenchConfig(limit=images))  # the seeded sample edgecv imx500 scored
        if shown is None or fingerprint(x, labels) != shown:
            missing = (f"the data set given is not the one {Path(record).name} was measured on (its test images do "
                       "not match the record's fingerprint)")
        classes = dataset.classes
    paired, reason = paired_comparison(labels, theirs, predictions_of(row), classes, missing)
    if paired is None:
        refuse_unpaired(config, reason)
    judged = criteria(row, reference, config, paired) if _has_host_limit(config) else []
    judged.append(memory_criterion(made.get("memory_bytes"), config.max_imx500_memory_kb))
    return GateResult(row, reference, judged, paired, reason)


def _has_host_limit(config: GateConfig) -> bool:
    """Whether any limit besides the IMX500's memory was asked for (the gate refuses a check of nothing)."""
    return any(v is not None for v in (config.max_drop, config.max_class_drop, config.min_accuracy,
                                       config.max_size_kb, config.max_size_ratio))
