"""Commands of the measure wing: ``benchmark`` and the regression gate ``check``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgecv.cli import options as opt
from edgecv.cli import ui
from edgecv.config import BenchConfig
from edgecv.device.vela import NpuConfig
from edgecv.errors import ConfigError, GateFailed


def benchmark(
    models: List[Path] = typer.Argument(..., help=".tflite or Keras model files."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    runs: int = typer.Option(200, min=1, help="Timed single-image runs."),
    warmup: int = typer.Option(10, min=0, help="Untimed runs before timing."),
    threads: int = typer.Option(1, min=1),
    limit: Optional[int] = typer.Option(None, min=1, help="Score accuracy on the first N test images only."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON here."),
    as_json: bool = opt.Json,
    wide: bool = opt.Wide,
    quiet: bool = opt.Quiet,
):
    """Measure accuracy, batch-1 latency (p50/p90/p99), parameters, sparsity and size of model files."""
    from edgecv.measure.benchmark import benchmark_files

    config = BenchConfig(warmup, runs, threads, limit)
    if output:
        opt.writable(output, (".json",))
    with ui.ProgressBars(not quiet) as bars:
        report = benchmark_files(models, opt.load_data(data, None, None, 0, bars, image_size), config, bars)
    if output:
        report.save(output)
    ui.show_report(report, as_json, wide=wide)


def check(
    model: Path = typer.Argument(..., help="The compressed model to judge (.tflite or Keras), or an IMX500 "
                                 "packerOut.zip with --measured-by its imx500.json or report.json."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Its float parent, measured now on the same "
                                             "images (an IMX500 package: its conversion's own float model, by "
                                             "default)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A stored baseline JSON to compare with."),
    update_baseline: bool = opt.flag("--update-baseline", help="Measure MODEL and write it as --baseline."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    max_drop: Optional[float] = typer.Option(1.0, help="Accuracy points MODEL may lose against the reference."),
    max_class_drop: Optional[float] = typer.Option(None, help="Accuracy points any one class may lose against the "
                                                   "reference (compared image by image)."),
    significant_only: bool = opt.flag("--significant-only", help="Fail a drop over --max-drop or --max-class-drop "
                                      "only when McNemar's exact test on the same images finds it significant "
                                      "(p < --alpha)."),
    alpha: float = typer.Option(0.05, help="Significance level for --significant-only."),
    min_accuracy: Optional[float] = typer.Option(None, help="Absolute accuracy floor, percent."),
    max_size_kb: Optional[float] = typer.Option(None, help="File size ceiling, KB."),
    max_latency_ms: Optional[float] = typer.Option(None, help="p50 latency ceiling, ms."),
    max_latency_ratio: Optional[float] = typer.Option(None, help="p50 latency ceiling relative to the reference's."),
    max_size_ratio: Optional[float] = typer.Option(None, help="File size ceiling relative to the reference's."),
    max_arm_cost_ratio: Optional[float] = typer.Option(None, help="Ceiling on emulated ARM instructions per "
                                                       "inference relative to the reference's, on a Pi 4 (A72) and "
                                                       "a Pi 5 (A76) core: a latency gate without timing noise."),
    max_npu_cycles_ratio: Optional[float] = typer.Option(None, help="Ceiling on Vela's estimated cycles per "
                                                         "inference relative to the reference's, on an Ethos-U NPU "
                                                         "(both int8 .tflite, compiled here)."),
    max_imx500_memory_kb: Optional[float] = typer.Option(None, "--max-imx500-memory-kb", help="Ceiling on an IMX500 "
                                                         "package's memory use, KB (its fit in the chip's 8 MB is "
                                                         "always checked)."),
    npu: List[NpuConfig] = typer.Option([], "--npu", help="Ethos-U configuration(s) for --max-npu-cycles-ratio. "
                                        "Default: ethos-u55-128."),
    allow_other_data: bool = opt.flag("--allow-other-data", help="Compare with a baseline measured on other test "
                                      "images."),
    measured_by: Optional[Path] = typer.Option(None, "--measured-by", help="Take MODEL's (and --reference's) "
                                               "numbers from this device result instead of measuring here."),
    limit: Optional[int] = typer.Option(None, min=1, help="Score on the first N test images only."),
    runs: int = typer.Option(200, min=1),
    threads: int = typer.Option(1, min=1),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Also write the verdict as JUnit XML here (one test "
                                         "case per limit), for a CI system's test report."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the verdict as JSON here."),
    as_json: bool = opt.Json,
    quiet: bool = opt.Quiet,
):
    """Gate a compressed model: exit 0 within the limits, 1 when it regresses, 2 for bad input."""
    from edgecv.flows.checking import check_measured, check_models
    from edgecv.measure.gate import GateConfig, update_baseline as write_baseline

    config = GateConfig(max_drop, min_accuracy, max_size_kb, max_latency_ms, max_latency_ratio, max_size_ratio,
                        allow_other_data, max_class_drop, significant_only, alpha, max_arm_cost_ratio,
                        max_npu_cycles_ratio, tuple(c.value for c in npu) or ("ethos-u55-128",), max_imx500_memory_kb)
    bench = BenchConfig(runs=runs, threads=threads, limit=limit)
    if update_baseline and (baseline is None or measured_by is not None):
        raise ConfigError("--update-baseline measures MODEL here and needs --baseline FILE to write; it does not "
                          "combine with --measured-by")
    for path, suffix in ((junit, ".xml"), (output, ".json")):
        if path is not None:
            opt.writable(path, (suffix,))
    with ui.ProgressBars(not quiet) as bars:
        dataset = opt.load_data(data, None, None, 0, bars, image_size) if measured_by is None or data else None
        if update_baseline:
            written = write_baseline(model, dataset, opt.writable(baseline, (".json",)), bench, bars)
            ui.show(f"wrote baseline {baseline}: accuracy {100 * written.accuracy:.2f} % on "
                    f"{written.data['test_images']} test images")
            return
        if measured_by is not None:  # the numbers of the runtime the devices run, from its result file
            result = check_measured(model, measured_by, config, reference, baseline, dataset)
        else:
            result = check_models(model, dataset, config, bench, reference, baseline, bars)
    ui.show_gate(result, model.name, as_json, junit, output)
    if not result.passed:
        raise GateFailed(f"{model.name} regressed: {', '.join(c.name for c in result.criteria if not c.passed)}")
