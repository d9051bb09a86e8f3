"""Commands of the flows wing: ``compress`` (the whole pipeline) and ``search`` (the best model in a grid)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer

from edgecv.cli import options as opt
from edgecv.cli import ui
from edgecv.config import (Arch, BenchConfig, CompressConfig, FinetuneConfig, IOType, MixedConfig, Objective,
                           Optimizer, PruneConfig, QuantMode, Recipe, SearchConfig, Strategy, recipe_config)
from edgecv.device.vela import NpuConfig
from edgecv.errors import ConfigError, GateFailed


def compress(
    int8: bool = opt.flag("--int8", help="Full-integer int8 (the default when no mode is given)."),
    float16: bool = opt.flag("--float16", help="Float16 weights."),
    dynamic: bool = opt.flag("--dynamic", help="Dynamic-range: int8 weights, float activations."),
    int16x8: bool = opt.flag("--int16x8", help="int8 weights with int16 activations."),
    mixed: bool = opt.flag("--mixed", help="int4 weights where the accuracy allows, int8 elsewhere "
                           "(litert-quantizer; int8 input and output, not for the Edge TPU)."),
    mixed_max_drop: float = opt.MixedMaxDrop,
    mixed_images: int = opt.MixedImages,
    qat: bool = opt.flag("--qat", help="Quantization-aware training (pruning-preserving after pruning)."),
    clusters: Optional[int] = typer.Option(None, "--clusters", help="Weight clustering into N values per kernel."),
    keep_float: List[str] = typer.Option([], "--keep-float", help="Leave this layer float in an extra int8 stage "
                                         "(repeatable)."),
    keep_float_worst: Optional[int] = typer.Option(None, "--keep-float-worst", help="Leave the K layers with the "
                                                   "largest int8 error float."),
    sparse: bool = opt.flag("--sparse", help="Also store the pruned int8 model in TFLite's sparse format."),
    finetune_epochs: int = typer.Option(1, min=1, help="Epochs of the QAT and clustering fine-tunes."),
    npu: List[NpuConfig] = typer.Option([], "--npu", help="Also compile each int8 row with Vela for this Ethos-U "
                                        "configuration (repeatable): NPU cycles, SRAM and flash, Vela's estimate."),
    micro: bool = opt.flag("--micro", help="Also run each int8 row on TFLite Micro: its accuracy against LiteRT on "
                           "1,000 test images, and the tensor arena."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    model: Optional[Path] = typer.Option(None, "--model", help="Start from this Keras model instead of training."),
    trust_model: bool = opt.TrustModel,
    sparsity: float = typer.Option(0.8, help="Pruning target in [0, 1); 0 skips pruning."),
    epochs: Optional[int] = opt.Epochs,
    prune_epochs: int = typer.Option(2, min=1, help="Fine-tuning epochs while pruning."),
    batch_size: Optional[int] = opt.Batch,
    optimizer: Optional[Optimizer] = opt.OptimizerChoice,
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of training and pruning. Default: the "
                                       "recipe's."),
    arch: Arch = typer.Option(Arch.SEED_CNN),
    recipe: Optional[Recipe] = opt.RecipeChoice,
    budget_minutes: Optional[float] = opt.Budget,
    io_type: IOType = typer.Option(IOType.INT8, help="Input/output type of int8 models."),
    seed: int = opt.Seed,
    train_limit: Optional[int] = opt.TrainLimit,
    test_limit: Optional[int] = opt.TestLimit,
    threads: int = typer.Option(1, min=1, help="Threads for TFLite latency."),
    runs: int = typer.Option(200, min=1, help="Timed single-image runs per model."),
    max_drop: Optional[float] = typer.Option(None, help="Gate: fail (exit 1) when a quantized stage loses more "
                                             "than this many accuracy points against the Keras float model."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="With --max-drop: also write the gate's verdict as "
                                         "JUnit XML here, one test case per quantized stage."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder. Default: runs/<name>."),
    strategy: Strategy = typer.Option(Strategy.DEFAULT, "--strategy", help="default or mirrored (local devices); "
                                      "for several machines run 'edgecv train --strategy multi-worker', then --model."),
    name: Optional[str] = typer.Option(None, metavar="NAME", help="Run name under runs/. Default: compress-<date>-<time>."),
    imx500: bool = opt.flag("--imx500", help="Also an imx500 row: the float model through Sony's MCT and "
                            "converter for the Raspberry Pi AI Camera (edgecv imx500), its fake-quant accuracy on "
                            "the same images and its memory against the chip's 8 MB."),
    as_json: bool = opt.Json,
    wide: bool = opt.Wide,
    quiet: bool = opt.Quiet,
):
    """Train (or load), prune, quantize and benchmark: one table of what each step costs and buys."""
    from edgecv.flows.pipeline import compress as run_compress

    modes = tuple(m for m, on in ((QuantMode.INT8, int8), (QuantMode.FLOAT16, float16), (QuantMode.DYNAMIC, dynamic),
                                  (QuantMode.INT16X8, int16x8), (QuantMode.MIXED, mixed)) if on)
    folder = out or Path("runs") / (name or datetime.now().strftime("compress-%Y%m%d-%H%M%S"))
    training = recipe_config(opt.recipe_for(recipe, arch), arch=arch, epochs=epochs, batch_size=batch_size,
                             optimizer=optimizer, learning_rate=lr, seed=seed, strategy=strategy,
                             budget_minutes=budget_minutes)
    batch_size, lr, optimizer = training.batch_size, training.learning_rate, training.optimizer
    config = CompressConfig(
        out=folder, data=data, image_size=image_size, model=model, trust_model=trust_model,
        modes=modes or (QuantMode.INT8,), io_type=io_type,
        train=training,
        prune=PruneConfig(sparsity, prune_epochs, batch_size, lr, seed, optimizer, strategy),
        bench=BenchConfig(runs=runs, threads=threads), train_limit=train_limit, test_limit=test_limit,
        max_drop=max_drop, qat=qat, clusters=clusters, keep_float=tuple(keep_float),
        keep_float_worst=keep_float_worst, sparse=sparse,
        finetune=FinetuneConfig(finetune_epochs, batch_size, lr / 10, optimizer, seed, strategy),
        mixed=MixedConfig(mixed_max_drop, mixed_images), npu=tuple(npu), micro=micro, imx500=imx500,
    )
    if junit is not None:
        if max_drop is None:
            raise ConfigError("--junit writes the gate's verdict: add --max-drop POINTS")
        opt.writable(junit, (".xml",))
    with ui.ProgressBars(not quiet) as bars:
        report = run_compress(config, bars)
    ui.show_compressed(report, folder, as_json, wide, junit)
    if report.gate is not None and not report.gate.passed:
        raise GateFailed(f"{', '.join(report.gate.failed)} lost more than {report.gate.max_drop:g} points")


def search(
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    model: Optional[Path] = typer.Option(None, "--model", help="The parent Keras model. Default: train one."),
    trust_model: bool = opt.TrustModel,
    arch: Arch = typer.Option(Arch.SEED_CNN, help="Architecture of the parent, when it is trained here."),
    recipe: Optional[Recipe] = opt.RecipeChoice,
    epochs: Optional[int] = opt.Epochs,
    channels: str = typer.Option("0,0.25,0.5", metavar="RATIO,...", help="Channel ratios to cut, comma-separated, each in [0, 1)."),
    sparsity: str = typer.Option("0,0.5", metavar="SPARSITY,...", help="Magnitude sparsities, comma-separated, each in [0, 1)."),
    modes: str = typer.Option("int8", metavar="MODE,...", help="Quantization modes, comma-separated: float32, dynamic, float16, "
                              "int8, int16x8, mixed (int4/int8: with --objective size)."),
    mixed_max_drop: float = opt.MixedMaxDrop,
    mixed_images: int = opt.MixedImages,
    max_drop: float = typer.Option(1.0, help="Allowed accuracy points below the parent's float accuracy."),
    objective: Objective = typer.Option(Objective.LATENCY, help="What the chosen model minimises."),
    target: str = typer.Option("tflite", "--target", metavar="tflite|imx500", help="tflite, or imx500: each grid point through Sony's MCT "
                               "and converter for the Raspberry Pi AI Camera, the smallest IMX500 memory within "
                               "--max-drop of its fake-quant accuracy (a minute per point)."),
    finetune_epochs: int = typer.Option(3, min=1, help="Fine-tuning epochs after each channel cut."),
    prune_epochs: int = typer.Option(2, min=1, help="Fine-tuning epochs while magnitude-pruning."),
    seed: int = opt.Seed,
    train_limit: Optional[int] = opt.TrainLimit,
    test_limit: Optional[int] = opt.TestLimit,
    runs: int = typer.Option(200, min=1, help="Timed single-image runs per candidate."),
    threads: int = typer.Option(1, min=1),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder. Default: runs/search-<time>."),
    as_json: bool = opt.Json,
    wide: bool = opt.Wide,
    quiet: bool = opt.Quiet,
):
    """Try channel ratio x sparsity x quantization mode; return the fastest (or smallest) model within the
    allowed accuracy drop, with the Pareto front (exit 1 when none is within it)."""
    from edgecv.flows.search import search as run_search, verdict

    training = recipe_config(opt.recipe_for(recipe, arch), arch=arch, epochs=epochs, seed=seed)
    config = SearchConfig(
        out=out or Path("runs") / datetime.now().strftime("search-%Y%m%d-%H%M%S"), data=data, image_size=image_size,
        model=model, trust_model=trust_model, train=training, channel_ratios=opt.floats(channels, "--channels"),
        sparsities=opt.floats(sparsity, "--sparsity"), modes=opt.modes(modes), max_drop=max_drop,
        objective=objective, finetune_epochs=finetune_epochs,
        prune=PruneConfig(0.5, prune_epochs, training.batch_size, training.learning_rate / 3, seed,
                          training.optimizer),
        bench=BenchConfig(runs=runs, threads=threads), train_limit=train_limit, test_limit=test_limit,
        mixed=MixedConfig(mixed_max_drop, mixed_images), target=target,
    )
    with ui.ProgressBars(not quiet) as bars:
        result = run_search(config, bars)
    ui.show_search(result, config.out, as_json, wide)
    if result.chosen is None:
        raise GateFailed(verdict(result))
