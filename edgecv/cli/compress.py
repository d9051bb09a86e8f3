"""Commands of the compress wing: ``prune``, ``prune-channels``, ``quantize``, ``qat``, ``cluster``, ``sensitivity``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer

from edgecv.cli import options as opt
from edgecv.cli import ui
from edgecv.config import (FinetuneConfig, IOType, MixedConfig, Optimizer, PruneConfig, QuantMode, Recipe, Strategy,
                           recipe_config)
from edgecv.compress.export import KERAS_SUFFIXES


def prune(
    model: Path = typer.Argument(..., help="Keras model to prune (.keras, .h5)."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    sparsity: float = typer.Option(0.8, help="Target share of zero weights per kernel, in [0, 1)."),
    epochs: int = typer.Option(2, min=1, help="Fine-tuning epochs while sparsity ramps up."),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(0.01, help="Fine-tuning learning rate."),
    optimizer: Optimizer = typer.Option(Optimizer.SGD, help="Fine-tuning optimizer."),
    seed: int = opt.Seed,
    train_limit: Optional[int] = opt.TrainLimit,
    test_limit: Optional[int] = opt.TestLimit,
    out: Path = typer.Option(Path("pruned.keras"), "--out", "-o"),
    strategy: Strategy = opt.StrategyChoice,
    quiet: bool = opt.Quiet,
):
    """Magnitude-prune a Keras model with TFMOT, fine-tune it, strip the wrappers, report each layer's sparsity."""
    from edgecv.compress.export import load_keras, save_keras
    from edgecv.compress.prune import prune as prune_model
    from edgecv.train.distribute import get_strategy

    config = PruneConfig(sparsity, epochs, batch_size, lr, seed, optimizer, strategy)
    opt.writable(out, KERAS_SUFFIXES)
    get_strategy(strategy)  # a multi-worker strategy must exist before the model is loaded
    with ui.ProgressBars(not quiet) as bars:
        dataset = opt.load_data(data, train_limit, test_limit, seed, bars, image_size)
        result = prune_model(load_keras(model, dataset), dataset, config, bars)
    save_keras(result.model, out)
    ui.show(ui.sparsity_table(result, f"pruned {model.name} -> {out}"))
    ui.show(f"test accuracy {100 * result.test_accuracy:.2f} %")


def prune_channels(
    model: Path = typer.Argument(..., help="Keras model to shrink (.keras, .h5)."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    ratio: float = typer.Option(0.5, help="Share of each prunable layer's channels to remove, in [0, 1)."),
    finetune_epochs: int = typer.Option(3, min=0, help="Fine-tuning epochs after the cut (0: none)."),
    recipe: Recipe = typer.Option(Recipe.EDGE, help="Fine-tuning preset (its rate divided by 3)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Fine-tuning peak rate. Default: the recipe's / 3."),
    seed: int = opt.Seed,
    train_limit: Optional[int] = opt.TrainLimit,
    test_limit: Optional[int] = opt.TestLimit,
    runs: int = typer.Option(200, min=1, help="Timed runs per model for the int8 latency change."),
    trust_model: bool = opt.TrustModel,
    out: Path = typer.Option(Path("shrunk.keras"), "--out", "-o"),
    quiet: bool = opt.Quiet,
):
    """Remove the weakest channels (L1), rebuild a smaller model, fine-tune it; report MACs, parameters,
    accuracy and int8 latency before and after."""
    from edgecv.compress.channels import cut_and_compare
    from edgecv.compress.export import load_keras, save_keras

    base = recipe_config(recipe, seed=seed, epochs=max(1, finetune_epochs))
    config = replace(base, learning_rate=lr if lr is not None else base.learning_rate / 3) if finetune_epochs else None
    opt.writable(out, KERAS_SUFFIXES)
    with ui.ProgressBars(not quiet) as bars:
        dataset = opt.load_data(data, train_limit, test_limit, seed, bars, image_size)
        cut = cut_and_compare(load_keras(model, dataset, trust=trust_model), dataset, ratio, config, runs, seed, bars)
    save_keras(cut.result.model, out)
    for table in ui.channel_tables(cut, f"{model.name} -> {out}"):
        ui.show(table)


def quantize(
    model: Path = typer.Argument(..., help="Keras model to convert (.keras, .h5)."),
    mode: QuantMode = typer.Option(QuantMode.INT8, help="Post-training mode."),
    io_type: IOType = typer.Option(IOType.INT8, help="Input/output type of an int8 model (uint8 for the Edge TPU)."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    calibration_samples: int = typer.Option(200, min=1, help="Train images used to calibrate int8."),
    keep_float: List[str] = typer.Option([], "--keep-float", help="int8 with this layer left float (repeatable)."),
    sparse: bool = opt.flag("--sparse", help="Store pruned weights in TFLite's sparse format."),
    mixed_max_drop: float = opt.MixedMaxDrop,
    mixed_images: int = opt.MixedImages,
    flip_average: bool = opt.flag("--flip-average", help="Average the model over each image and its mirror, "
                                  "inside the file: one more inference per image, counted in every timing."),
    seed: int = opt.Seed,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Default: MODEL_<mode>.tflite beside the model "
                                       "(MODEL_int8_<io>_io.tflite for other than int8 input and output; "
                                       "_flipavg added with --flip-average)."),
):
    """Convert a Keras model to TFLite: float32, dynamic-range, float16, int8, int16x8, or mixed (int4 weights
    where the accuracy allows, int8 elsewhere)."""
    from edgecv.flows.quantizing import default_tflite_name, quantize_file

    target = opt.writable(out or default_tflite_name(model, mode, io_type, flip_average), (".tflite",))
    with ui.ProgressBars(True) as bars:
        done = quantize_file(model, target, mode, data, io_type, calibration_samples, tuple(keep_float), sparse, seed,
                             bars, MixedConfig(mixed_max_drop, mixed_images), image_size, flip_average)
    ui.show_quantized(done)


def qat(
    model: Path = typer.Argument(..., help="Keras model (.keras, .h5); pruned models keep their zeros."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    epochs: int = typer.Option(1, min=1),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(1e-3, help="Fine-tuning learning rate."),
    optimizer: Optimizer = typer.Option(Optimizer.SGD),
    preserve_sparsity: bool = opt.flag(help="TFMOT's pruning-preserving scheme: keep the zeros."),
    io_type: IOType = typer.Option(IOType.INT8),
    seed: int = opt.Seed,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Default: MODEL_qat_int8.tflite beside the model."),
    strategy: Strategy = opt.StrategyChoice,
    quiet: bool = opt.Quiet,
):
    """Quantization-aware training, then conversion to a full-integer int8 model."""
    from edgecv.compress.export import load_keras
    from edgecv.compress.qat import qat_to_file
    from edgecv.train.distribute import get_strategy

    target = opt.writable(out or model.with_name(f"{model.stem}_qat_int8.tflite"), (".tflite",))
    get_strategy(strategy)  # a multi-worker strategy must exist before the model is loaded
    with ui.ProgressBars(not quiet) as bars:
        dataset = opt.load_data(data, None, None, seed, bars, image_size)
        done = qat_to_file(load_keras(model, dataset), dataset, target,
                           FinetuneConfig(epochs, batch_size, lr, optimizer, seed, strategy), io_type,
                           preserve_sparsity, bars)
    ui.show(f"wrote {done.path}: fake-quantized Keras accuracy {100 * done.keras_accuracy:.2f} %, "
            f"int8 kernel sparsity {100 * (done.int8_sparsity or 0):.1f} %")


def cluster(
    model: Path = typer.Argument(..., help="Keras model (.keras, .h5)."),
    clusters: int = typer.Option(16, "--clusters", help="Distinct values per kernel (>= 2)."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    epochs: int = typer.Option(1, min=1),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(1e-5, help="Small: a centroid's gradient sums over every weight in its cluster."),
    optimizer: Optimizer = typer.Option(Optimizer.ADAM),
    seed: int = opt.Seed,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Default: MODEL_clustered.keras beside the model."),
    quiet: bool = opt.Quiet,
):
    """Cluster each kernel's weights into N values (TFMOT), fine-tune, strip; report values per layer."""
    from edgecv.compress.cluster import cluster as cluster_model, check_clusters
    from edgecv.compress.export import load_keras, save_keras

    check_clusters(clusters)
    target = opt.writable(out or model.with_name(f"{model.stem}_clustered.keras"), KERAS_SUFFIXES)
    with ui.ProgressBars(not quiet) as bars:
        dataset = opt.load_data(data, None, None, seed, bars, image_size)
        result = cluster_model(load_keras(model, dataset), dataset, clusters,
                               FinetuneConfig(epochs, batch_size, lr, optimizer, seed), bars)
    save_keras(result.model, target)
    ui.show(ui.cluster_table(result, f"clustered -> {target}"))
    ui.show(f"test accuracy {100 * result.test_accuracy:.2f} %")


def sensitivity(
    model: Path = typer.Argument(..., help="Keras model (.keras, .h5)."),
    data: Optional[str] = opt.Data,
    image_size: Optional[int] = opt.ImageSize,
    images: int = typer.Option(2000, min=1, help="Test images for the accuracy of each variant."),
    seed: int = opt.Seed,
    as_json: bool = opt.Json,
    quiet: bool = opt.Quiet,
):
    """Per-layer int8 error (RMSE / scale) and the accuracy with each layer alone kept in float."""
    from edgecv.compress.export import load_keras
    from edgecv.compress.quantize import calibration_images
    from edgecv.compress.sensitivity import sensitivity as measure_sensitivity

    with ui.ProgressBars(not quiet) as bars:
        dataset = opt.load_data(data, None, None, seed, bars, image_size)
        result = measure_sensitivity(load_keras(model, dataset), dataset, calibration_images(dataset, 200, seed),
                                     images, bars)
    if as_json:
        ui.show_json(result.to_dict())
        return
    ui.show(ui.sensitivity_table(result, f"int8 sensitivity of {model.name}: all-int8 accuracy "
                                         f"{100 * result.int8_accuracy:.2f} % on {result.images} images"))
