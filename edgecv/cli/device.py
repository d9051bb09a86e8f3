"""Commands of the device wing: ``device kit / merge / emulate``, ``edgetpu``, ``npu`` and ``micro``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgecv.cli import options as opt
from edgecv.cli import ui
from edgecv.device.emulate import PiCpu, PiOs, PiRuntime
from edgecv.device.vela import NpuConfig
from edgecv.errors import GateFailed


def kit(
    models: List[Path] = typer.Argument(..., help=".tflite models to carry."),
    data: Optional[str] = opt.Data,
    samples: int = typer.Option(500, min=1, help="Test images in the sample file (a seeded sample)."),
    out: Path = typer.Option(Path("edgecv-kit"), "--out", "-o", help="Kit folder."),
    archive: bool = opt.flag(help="Also pack the kit as <out>.tar.gz."),
    imx500: Optional[Path] = typer.Option(None, "--imx500", help="Also carry this packerOut.zip (edgecv imx500) "
                                          "and the AI Camera script, edgecv_imx500.py."),
):
    """Make a folder to copy to a device: models, samples.npz, edgecv_bench.py and a README."""
    from edgecv.device.kit import make_kit

    with ui.ProgressBars(True) as bars:
        made = make_kit(models, opt.load_data(data, None, None, 0, bars), out, samples, archive, imx500=imx500)
    ui.show(f"wrote {made.path}: {', '.join(made.models)} with {made.images} test images, and {made.host.name} "
            "(this host on the same images, to merge device results with); see its README.txt")


def merge(
    results: List[Path] = typer.Argument(..., help="Host report.json and device result JSON files."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for merged.json and merged.png."),
    as_json: bool = opt.Json,
):
    """Merge host and device results: one accuracy / latency / size table, a column group per device."""
    from edgecv.device.kit import merge as merge_results, save_merged

    merged = merge_results(results)
    if out is not None:
        save_merged(merged, out)
    if as_json:
        ui.show_json(merged.to_dict())
    else:
        ui.show_merged(merged)


def emulate(
    kit: Path = typer.Argument(..., help="A kit folder from 'edgecv device kit'."),
    runtime: Optional[List[PiRuntime]] = typer.Option(None, "--runtime", help="Runtime(s) to run under. Default: "
                                                      "ai_edge_litert; tflite_runtime (legacy) only on bookworm."),
    suite: PiOs = typer.Option(PiOs.TRIXIE, help="Raspberry Pi OS release to emulate: trixie (today's, Python "
                               "3.13) or bookworm (Python 3.11)."),
    cpu: PiCpu = typer.Option(PiCpu.CORTEX_A76, help="The core the emulated Pi presents, so XNNPACK picks its "
                              "kernels: cortex-a76 (Pi 5), cortex-a72 (Pi 4) or cortex-a53 (Pi 3, Zero 2 W)."),
    arm_cost: bool = opt.flag("--arm-cost", help="Also count each model's emulated aarch64 instructions per "
                              "inference on a Pi 4 (A72) and a Pi 5 (A76) core: exact and repeatable, not a time."),
    mirror: Optional[str] = typer.Option(None, "--mirror", metavar="URL", help="Debian mirror for the root. Default: this host's "
                                         "apt sources, or $EDGECV_APT_MIRROR."),
    runs: int = typer.Option(20, min=1, help="Timed runs (emulated latency is not meaningful: keep it small)."),
    out: Path = typer.Option(Path("emulated"), "--out", "-o", help="Folder for host.json and emulated-*.json."),
):
    """Run a kit on an emulated Raspberry Pi OS (arm64, qemu): real ARM runtimes, accuracy per runtime, and with
    --arm-cost a deterministic instruction count per inference."""
    from edgecv.device.armcost import PI_CPUS
    from edgecv.device.emulated_kit import emulate_kit

    with ui.ProgressBars(True) as bars:
        done = emulate_kit(kit, runtime, out, runs, bars, suite.value, mirror, PI_CPUS if arm_cost else (),
                           cpu=cpu.value)
    for run in done.runs:
        ui.note(f"{run.runtime}: Python {run.python} on {run.machine} -> {run.result}")
    ui.show_merged(done.merged)


def edgetpu(
    model: Path = typer.Argument(..., help="A full-integer .tflite (edgecv quantize --mode int8 --io-type uint8)."),
    runtime_version: int = typer.Option(14, "--runtime-version", help="Lowest Edge TPU runtime to target (-m)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where edgetpu_compiler writes, if installed."),
    as_json: bool = opt.Json,
):
    """Edge TPU readiness: compile with edgetpu_compiler if installed, else predict op by op what would map
    (exit 1 when nothing would)."""
    from edgecv.device.edgetpu import check_model

    report = check_model(model, out, runtime_version)
    if as_json:
        ui.show_json(report.to_dict())
    else:
        ui.show_edgetpu(report, model.name)
    if report.tpu_ops == 0:  # a float model, say: nothing to accelerate is a failed readiness check
        first = next((o.reason for o in report.ops if o.reason), "no op maps")
        raise GateFailed(f"no op of {model.name} would run on the Edge TPU ({first}): convert it with "
                         "edgecv quantize --mode int8 --io-type uint8")


def doctor(
    edgetpu: bool = opt.flag("--edgetpu", help="Require the Edge TPU library, a device and its delegate."),
    as_json: bool = opt.Json,
):
    """What this machine can run: Python, OS, numpy, each TFLite runtime, libedgetpu, known-bad pairings, CPU
    and ISA flags, the pinned stack; one line each, exit 3 when something needed is missing."""
    from edgecv.device.doctor import diagnose

    diagnosis = diagnose(edgetpu)
    if as_json:
        ui.show_json(diagnosis.to_dict())
    else:
        ui.show_diagnosis(diagnosis)
    if diagnosis.failed:
        raise typer.Exit(diagnosis.exit_code)


def npu(
    model: Path = typer.Argument(..., help="A full-integer .tflite (edgecv quantize --mode int8)."),
    accelerator: Optional[List[NpuConfig]] = typer.Option(
        None, "--accelerator", "-a", help="Vela's accelerator configuration(s). Default: ethos-u55-128 and "
        "ethos-u65-256."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for <model>_<accelerator>_vela.tflite. "
                                       "Default: beside the model."),
    as_json: bool = opt.Json,
):
    """Arm Ethos-U NPU: compile with Vela, each op on the NPU or the CPU (with Vela's reason), and Vela's
    estimate: cycles, inferences/s at the configuration's clock, SRAM and flash (a compiler's model, not a board)."""
    from edgecv.device.vela import DEFAULT_CONFIGS, npu_report

    with ui.ProgressBars(True) as bars:
        report = npu_report(model, accelerator or DEFAULT_CONFIGS, out, bars)
    if as_json:
        ui.show_json(report.to_dict())
    else:
        ui.show_npu(report)


def micro(
    model: Path = typer.Argument(..., help="An int8 .tflite for a microcontroller."),
    data: Optional[str] = opt.Data,
    samples: int = typer.Option(1000, min=1, help="Test images (a seeded sample) run on both runtimes."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for model_data.cc and model_data.h. "
                                       "Default: <model>_micro/ beside the model."),
    as_json: bool = opt.Json,
):
    """TFLite Micro: top-1 accuracy on the microcontroller runtime against LiteRT on the same images, the tensor
    arena, and the model as C sources (model_data.cc/.h, with kTensorArenaSize)."""
    from edgecv.config import BenchConfig
    from edgecv.device.micro import check_installed, export_c, measure_micro
    from edgecv.measure.benchmark import scoring_images

    check_installed()  # before the data set is decoded
    if not model.is_file():
        from edgecv.errors import DataError

        raise DataError(f"model file {model} does not exist")
    with ui.ProgressBars(True) as bars:
        dataset = opt.load_data(data, None, None, 0, bars)
        x, y = scoring_images(dataset, BenchConfig(limit=samples))
        result = measure_micro(model, x, y, {"source": dataset.source, "test_images": int(len(y))}, bars)
    folder = out if out is not None else model.parent / f"{model.stem}_micro"
    result.sources = [str(p) for p in export_c(model, folder, result.arena_bytes)]
    if as_json:
        ui.show_json(result.to_dict())
    else:
        ui.show_micro(result)
