"""``edgecv imx500``: a Keras model for the Raspberry Pi AI Camera (Sony IMX500), through Sony's MCT and converter
in their own venv; one row of accuracy, memory and tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgecv.cli import options as opt
from edgecv.cli import ui
from edgecv.device.imx500 import Gptq


def _shape(tensors) -> str:
    return ", ".join(f"{'x'.join(str(d) for d in t.shape)} {'u' if t.format == 'unsigned' else ''}int{t.bits}"
                     for t in tensors) or "?"


def show_imx500(result) -> None:
    table = ui._table("model", "method", "float %", "IMX500 %", "drop", "memory KB", "of KB", "fits", "input",
                      "output", "s", title=f"{result.model} for the IMX500 ({result.test_images} test images)")
    bits = "+".join(f"int{b}" for b in sorted(result.weight_bits, key=int)) or "int8"
    method = result.method + (f" mixed {bits}" if result.memory_kb_target else "")
    table.add_row(result.model, method, f"{100 * result.float_accuracy:.2f}", f"{100 * result.imx500_accuracy:.2f}",
                  f"{result.drop:+.2f}", f"{result.memory_bytes / 1024:,.1f}", f"{result.available_bytes / 1024:,.0f}",
                  "yes" if result.fits else "NO", _shape(result.inputs), _shape(result.outputs),
                  f"{result.toolchain_seconds:.0f}")
    ui.show(table)
    ui.show(f"model {result.model_bytes / 1024:,.1f} KB + runtime {result.runtime_bytes / 1024:,.1f} KB (the "
            f"converter's report); MCT {result.versions.get('model-compression-toolkit')}, imx500-converter "
            f"{result.versions.get('imx500-converter')}; converted in {result.convert_seconds:.0f} s")
    ui.show(f"wrote {', '.join(Path(f).name for f in result.files)} in {Path(result.files[0]).parent}; on the Pi: "
            "imx500-package -i packerOut.zip -o out (the AI Camera script in edgecv device kit --imx500 does it)")
    ui.show(f"accuracy is MCT's fake-quant model on this host, not the camera: {result.unit}")


def imx500(
    model: Path = typer.Argument(..., help="A Keras model (.h5 or .keras; Keras 3 goes over through the tf-keras "
                                 "rebuild) taking raw 0-255 pixels."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    calibration: int = typer.Option(200, "--calibration-images", min=1, help="Train images MCT calibrates on "
                                    "(a seeded sample)."),
    test_images: int = typer.Option(1000, "--test-images", min=1, help="Test images the float and the IMX500 "
                                    "model are scored on (a seeded sample, as every command takes)."),
    memory_kb: Optional[float] = typer.Option(None, "--imx500-memory-kb", help="MCT mixed precision: the weights "
                                              "(2, 4 or 8 bits per layer) within this many KB."),
    gptq: Gptq = typer.Option(Gptq.OFF, "--gptq", help="MCT's gradient-based PTQ: off, on, or auto (only when PTQ "
                             "loses more than --max-drop on 500 other train images, kept when it does better)."),
    gptq_epochs: int = typer.Option(5, "--gptq-epochs", min=1, help="GPTQ's epochs over the calibration images."),
    max_drop: float = typer.Option(1.0, "--max-drop", help="Fail (exit 1, nothing written) when the IMX500 model "
                                   "loses more than this many points of top-1 against the float model."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for packerOut.zip, dnnParams.xml, the "
                                       "memory report and imx500.json. Default: <model>_imx500/ beside the model."),
    trust_model: bool = opt.TrustModel,
    quiet: bool = opt.Quiet,
    as_json: bool = opt.Json,
):
    """Raspberry Pi AI Camera (Sony IMX500): MCT post-training quantization, then imxconv-tf, in the toolchain's own
    venv (made on first use). Writes packerOut.zip; one row: float against fake-quant top-1, memory against the
    chip's 8 MB, and the input and output tensors."""
    from edgecv.device.imx500 import java_runtime, quantize_for_imx500
    from edgecv.errors import DataError

    if not model.is_file():
        raise DataError(f"model file {model} does not exist")
    java_runtime()  # before the data set is decoded
    folder = out if out is not None else model.parent / f"{model.stem}_imx500"
    with ui.ProgressBars(not quiet) as bars:
        dataset = opt.load_data(data, None, None, 0, bars, image_size)
        result = quantize_for_imx500(model, dataset, folder, calibration, test_images, memory_kb, gptq.value, gptq_epochs,
                                     max_drop, trust=trust_model, on_progress=bars)
    if as_json:
        ui.show_json(result.to_dict())
    else:
        show_imx500(result)
