"""The ``edgecv`` command: each command parses options, calls one library function and renders the result.

This is the only module that prints or sets exit codes. TensorFlow is imported inside the commands, so
``edgecv --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer

from . import ui
from .config import (Arch, BenchConfig, CompressConfig, FinetuneConfig, IOType, Objective, Optimizer, PruneConfig,
                     QuantMode, Recipe, Schedule, SearchConfig, Strategy, recipe_config)
from .errors import ConfigError, DataError, EdgecvError, GateFailed, check_interrupt
from .export import KERAS_SUFFIXES

app = typer.Typer(
    help="Compress image classifiers for edge devices, and measure what each step costs and buys.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

DataOpt = typer.Option(None, "--data", help="Image folder (train/<class>/, test/<class>/), cifar-10-batches-py/ or "
                       "cifar-10-python.tar.gz. Default: $EDGECV_DATA, then the caches, then the download.")
TrainLimit = typer.Option(None, "--train-limit", min=1, help="Use a seeded subset of this many train images.")
TestLimit = typer.Option(None, "--test-limit", min=1, help="Use a seeded subset of this many test images.")
SeedOpt = typer.Option(0, "--seed", help="Seed for weights, shuffling and subsets.")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON on stdout instead of a table.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
RecipeOpt = typer.Option(None, help="Training preset: classic (SGD 0.01, 10 epochs, batch 64) or edge "
                         "(flips and shifts, label smoothing 0.1, Adam 3e-3 with warm-up and cosine decay, 30 epochs, "
                         "batch 128). Default: classic for seed-cnn, edge for the others. --epochs, --batch-size, "
                         "--optimizer and --lr override it.")
EpochsOpt = typer.Option(None, "--epochs", min=1, help="Training epochs. Default: the recipe's.")
BatchOpt = typer.Option(None, "--batch-size", min=1, help="Default: the recipe's.")
OptimizerOpt = typer.Option(None, "--optimizer", help="Default: the recipe's.")
LrOpt = typer.Option(None, "--lr", help="Peak learning rate. Default: the recipe's.")
BudgetOpt = typer.Option(None, "--budget-minutes", help="Train within this wall clock (data loading included): "
                         "epochs, warm-up and decay are fitted to it from the measured throughput.")
StrategyOpt = typer.Option(Strategy.DEFAULT, "--strategy", help="tf.distribute strategy: mirrored (local devices), "
                           "multi-worker (machines in TF_CONFIG; each saves its own --out).")


def cli_errors(fn):
    """One line on stderr and the error's exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            check_interrupt()  # an interrupt that native code swallowed still ends the command as one
            return result
        except EdgecvError as e:
            try:
                check_interrupt()
            except KeyboardInterrupt:
                ui.error("interrupted")
                raise typer.Exit(130) from None
            ui.error(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _load_data(data, train_limit, test_limit, seed, bars):
    from .data import load

    dataset = load(data, bars).subset(train_limit, test_limit, seed)
    if dataset.skipped:
        ui.note(f"warning: skipped {dataset.skipped} unreadable file(s) under {dataset.source}")
    return dataset


@app.command()
@cli_errors
def train(
    data: Optional[str] = DataOpt,
    arch: Arch = typer.Option(Arch.SEED_CNN, help="Architecture."),
    recipe: Optional[Recipe] = RecipeOpt,
    epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt,
    optimizer: Optional[Optimizer] = OptimizerOpt,
    lr: Optional[float] = LrOpt,
    budget_minutes: Optional[float] = BudgetOpt,
    seed: int = SeedOpt,
    val_split: float = typer.Option(0.0, help="Share of the train split held out for validation, in [0, 1)."),
    train_limit: Optional[int] = TrainLimit,
    test_limit: Optional[int] = TestLimit,
    out: Path = typer.Option(Path("model.keras"), "--out", "-o", help="Where to save the trained model."),
    strategy: Strategy = StrategyOpt,
    stream: bool = typer.Option(False, "--stream", help="Stream an image folder from disk (larger than memory)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=14, help="With --stream: resize to NxN."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="With --stream: keep decoded images here."),
    quiet: bool = QuietOpt,
):
    """Train a baseline classifier (the classic seed-cnn recipe by default) and save it."""
    from .export import save_keras
    from .train import train as train_model

    import time

    started = time.perf_counter()  # a budget counts data loading too
    config = recipe_config(_recipe(recipe, arch), arch=arch, epochs=epochs, batch_size=batch_size,
                           optimizer=optimizer, learning_rate=lr, seed=seed, val_split=val_split, strategy=strategy,
                           budget_minutes=budget_minutes)
    _writable(out, KERAS_SUFFIXES)  # before minutes of training, not after
    if stream:
        from .train import train_stream

        if data is None:
            raise ConfigError("--stream reads an image folder: pass --data FOLDER")
        if budget_minutes is not None:
            raise ConfigError("--budget-minutes fits epochs to in-memory data: it does not combine with --stream")
        if config.augment or config.label_smoothing or config.schedule is not Schedule.CONSTANT:
            raise ConfigError(f"--stream trains with the classic recipe only (the {config.arch.value} default is "
                              "edge: flips, shifts and a schedule on in-memory data); add --recipe classic")
        if val_split or train_limit or test_limit:
            raise ConfigError("--stream reads whole splits: --val-split, --train-limit and --test-limit do not apply")
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        with ui.ProgressBars(not quiet) as bars:
            result = train_stream(data, config, (image_size, image_size) if image_size else None, 3, bars,
                                  str(cache_dir) if cache_dir else None)
    else:
        with ui.ProgressBars(not quiet) as bars:
            dataset = _load_data(data, train_limit, test_limit, seed, bars)
            result = train_model(dataset, config, bars, started=started)
    save_keras(result.model, out)
    epochs_run = len(next(iter(result.history.values()), [])) or config.epochs
    ui.show(f"test accuracy {100 * result.test_accuracy:.2f} % after {epochs_run} epochs "
                 f"({result.seconds:.0f} s); saved {out}")


@app.command()
@cli_errors
def prune(
    model: Path = typer.Argument(..., help="Keras model to prune (.keras, .h5)."),
    data: Optional[str] = DataOpt,
    sparsity: float = typer.Option(0.8, help="Target share of zero weights per kernel, in [0, 1)."),
    epochs: int = typer.Option(2, min=1, help="Fine-tuning epochs while sparsity ramps up."),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(0.01, help="Fine-tuning learning rate."),
    optimizer: Optimizer = typer.Option(Optimizer.SGD, help="Fine-tuning optimizer."),
    seed: int = SeedOpt,
    train_limit: Optional[int] = TrainLimit,
    test_limit: Optional[int] = TestLimit,
    out: Path = typer.Option(Path("pruned.keras"), "--out", "-o"),
    strategy: Strategy = StrategyOpt,
    quiet: bool = QuietOpt,
):
    """Magnitude-prune a Keras model with TFMOT, fine-tune it, strip the wrappers, report each layer's sparsity."""
    from rich.table import Table

    from .export import load_keras, save_keras
    from .prune import prune as prune_model

    config = PruneConfig(sparsity, epochs, batch_size, lr, seed, optimizer, strategy)
    _writable(out, KERAS_SUFFIXES)
    from .distribute import get_strategy

    get_strategy(strategy)  # a multi-worker strategy must exist before the model is loaded
    with ui.ProgressBars(not quiet) as bars:
        dataset = _load_data(data, train_limit, test_limit, seed, bars)
        result = prune_model(load_keras(model, dataset), dataset, config, bars)
    save_keras(result.model, out)
    table = Table("layer", "weights", "zeros", "sparsity %", title=f"pruned {model.name} -> {out}", title_justify="left")
    for layer in result.layers:
        table.add_row(layer.layer, f"{layer.weights:,}", f"{layer.zeros:,}", f"{100 * layer.sparsity:.1f}")
    table.add_row("all kernels", "", "", f"{100 * result.sparsity:.1f}")
    ui.show(table)
    ui.show(f"test accuracy {100 * result.test_accuracy:.2f} %")


@app.command("prune-channels")
@cli_errors
def prune_channels_command(
    model: Path = typer.Argument(..., help="Keras model to shrink (.keras, .h5)."),
    data: Optional[str] = DataOpt,
    ratio: float = typer.Option(0.5, help="Share of each prunable layer's channels to remove, in [0, 1)."),
    finetune_epochs: int = typer.Option(3, min=0, help="Fine-tuning epochs after the cut (0: none)."),
    recipe: Recipe = typer.Option(Recipe.EDGE, help="Fine-tuning preset (its rate divided by 3)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Fine-tuning peak rate. Default: the recipe's / 3."),
    seed: int = SeedOpt,
    train_limit: Optional[int] = TrainLimit,
    test_limit: Optional[int] = TestLimit,
    runs: int = typer.Option(200, min=1, help="Timed runs per model for the int8 latency change."),
    trust_model: bool = typer.Option(False, "--trust-model", help="Load a model that carries code (Lambda)."),
    out: Path = typer.Option(Path("shrunk.keras"), "--out", "-o"),
    quiet: bool = QuietOpt,
):
    """Remove the weakest channels (L1), rebuild a smaller model, fine-tune it; report MACs, parameters,
    accuracy and int8 latency before and after."""
    from rich.table import Table

    from .channels import compare_latency, prune_channels
    from .export import load_keras, save_keras
    from .quantize import calibration_images

    base = recipe_config(recipe, seed=seed, epochs=max(1, finetune_epochs))
    config = replace(base, learning_rate=lr if lr is not None else base.learning_rate / 3) if finetune_epochs else None
    _writable(out, KERAS_SUFFIXES)
    with ui.ProgressBars(not quiet) as bars:
        dataset = _load_data(data, train_limit, test_limit, seed, bars)
        parent = load_keras(model, dataset, trust=trust_model)
        from .train import evaluate

        parent_accuracy = evaluate(parent, dataset.x_test, dataset.y_test)
        result = prune_channels(parent, dataset, ratio, config, bars)
        before, after = compare_latency(parent, result.model, calibration_images(dataset, 100, seed), runs=runs)
    save_keras(result.model, out)
    from .macs import layer_macs

    macs_before = {r.name: r.macs for r in layer_macs(parent)}
    macs_after = {r.name: r.macs for r in layer_macs(result.model)}
    table = Table("layer", "channels before", "after", "MACs before", "after", title=f"{model.name} -> {out}",
                  title_justify="left")
    for layer in result.layers:
        table.add_row(layer.layer, str(layer.before), str(layer.after), f"{macs_before.get(layer.layer, 0):,}",
                      f"{macs_after.get(layer.layer, 0):,}")
    ui.show(table)
    summary = Table("", "before", "after", "change", title_justify="left")
    summary.add_row("parameters", f"{result.params_before:,}", f"{result.params_after:,}",
                    f"{result.params_before / result.params_after:.2f}x fewer")
    summary.add_row("MACs", f"{result.macs_before:,}", f"{result.macs_after:,}",
                    f"{result.macs_before / result.macs_after:.2f}x fewer")
    summary.add_row("int8 p50 ms (1 thread)", f"{before:.4f}", f"{after:.4f}", f"{before / after:.2f}x faster")
    final = result.test_accuracy if result.test_accuracy is not None else result.pruned_accuracy
    summary.add_row("test accuracy %", f"{100 * parent_accuracy:.2f}", f"{100 * final:.2f}",
                    f"{100 * (final - parent_accuracy):+.2f} points (straight after the cut: "
                    f"{100 * result.pruned_accuracy:.2f})")
    ui.show(summary)


@app.command()
@cli_errors
def search(
    data: Optional[str] = DataOpt,
    model: Optional[Path] = typer.Option(None, "--model", help="The parent Keras model. Default: train one."),
    trust_model: bool = typer.Option(False, "--trust-model", help="Load a --model that carries code (Lambda)."),
    arch: Arch = typer.Option(Arch.SEED_CNN, help="Architecture of the parent, when it is trained here."),
    recipe: Optional[Recipe] = RecipeOpt,
    epochs: Optional[int] = EpochsOpt,
    channels: str = typer.Option("0,0.25,0.5", help="Channel ratios to cut, comma-separated, each in [0, 1)."),
    sparsity: str = typer.Option("0,0.5", help="Magnitude sparsities, comma-separated, each in [0, 1)."),
    modes: str = typer.Option("int8", help="Quantization modes, comma-separated: float32, dynamic, float16, "
                              "int8, int16x8."),
    max_drop: float = typer.Option(1.0, help="Allowed accuracy points below the parent's float accuracy."),
    objective: Objective = typer.Option(Objective.LATENCY, help="What the chosen model minimises."),
    finetune_epochs: int = typer.Option(3, min=1, help="Fine-tuning epochs after each channel cut."),
    prune_epochs: int = typer.Option(2, min=1, help="Fine-tuning epochs while magnitude-pruning."),
    seed: int = SeedOpt,
    train_limit: Optional[int] = TrainLimit,
    test_limit: Optional[int] = TestLimit,
    runs: int = typer.Option(200, min=1, help="Timed single-image runs per candidate."),
    threads: int = typer.Option(1, min=1),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder. Default: runs/search-<time>."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Try channel ratio x sparsity x quantization mode; return the fastest (or smallest) model within the
    allowed accuracy drop, with the Pareto front (exit 1 when none is within it)."""
    from .search import as_report, search as run_search, verdict

    training = recipe_config(_recipe(recipe, arch), arch=arch, epochs=epochs, seed=seed)
    config = SearchConfig(
        out=out or Path("runs") / datetime.now().strftime("search-%Y%m%d-%H%M%S"), data=data, model=model,
        trust_model=trust_model, train=training, channel_ratios=_floats(channels, "--channels"),
        sparsities=_floats(sparsity, "--sparsity"), modes=tuple(_modes(modes)), max_drop=max_drop,
        objective=objective, finetune_epochs=finetune_epochs,
        prune=PruneConfig(0.5, prune_epochs, training.batch_size, training.learning_rate / 3, seed,
                          training.optimizer),
        bench=BenchConfig(runs=runs, threads=threads), train_limit=train_limit, test_limit=test_limit,
    )
    with ui.ProgressBars(not quiet) as bars:
        result = run_search(config, bars)
    if as_json:
        ui.out.print_json(json.dumps(result.to_dict(), default=str))
    else:
        ui.show_report(as_report(result), title=f"edgecv search -> {config.out}")
        ui.show(verdict(result))
        ui.note(f"wrote {config.out}/search.json, search.md, search.png" +
                (" and best.tflite" if result.chosen else ""))
    if result.chosen is None:
        raise typer.Exit(GateFailed.exit_code)


def _recipe(recipe: Recipe | None, arch: Arch) -> Recipe:
    """The classic recipe stays seed-cnn's default; the edge architectures need augmentation and a schedule."""
    if recipe is not None:
        return recipe
    return Recipe.CLASSIC if arch is Arch.SEED_CNN else Recipe.EDGE


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated numbers, got {text!r}") from None


def _modes(text: str) -> list[QuantMode]:
    try:
        return [QuantMode(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--modes takes {', '.join(m.value for m in QuantMode)}, got {text!r}") from None


@app.command()
@cli_errors
def quantize(
    model: Path = typer.Argument(..., help="Keras model to convert (.keras, .h5)."),
    mode: QuantMode = typer.Option(QuantMode.INT8, help="Post-training mode."),
    io_type: IOType = typer.Option(IOType.INT8, help="Input/output type of an int8 model."),
    data: Optional[str] = DataOpt,
    calibration_samples: int = typer.Option(200, min=1, help="Train images used to calibrate int8."),
    keep_float: List[str] = typer.Option([], "--keep-float", help="int8 with this layer left float (repeatable)."),
    sparse: bool = typer.Option(False, "--sparse", help="Store pruned weights in TFLite's sparse format."),
    seed: int = SeedOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Default: MODEL_<mode>.tflite beside the model."),
):
    """Convert a Keras model to TFLite: float32, dynamic-range, float16, int8 or int16x8."""
    from .export import check_fits, load_keras, save_tflite
    from .quantize import calibration_images, convert
    from .runtime import file_sizes

    if keep_float and mode is not QuantMode.INT8:
        raise ConfigError("--keep-float leaves layers float in an int8 model: use --mode int8")
    target = _writable(out or model.with_name(f"{model.stem}_{mode.value}.tflite"), (".tflite",))
    keras_model = load_keras(model)
    calibration = None
    if mode in (QuantMode.INT8, QuantMode.INT16X8):  # calibrated on images from the train split
        with ui.ProgressBars(True) as bars:
            dataset = _load_data(data, None, None, seed, bars)
        check_fits(keras_model, dataset, model)
        calibration = calibration_images(dataset, calibration_samples, seed)
    if keep_float:
        from .sensitivity import convert_keep_float

        content = convert_keep_float(keras_model, calibration, list(keep_float))
    else:
        content = convert(keras_model, mode, calibration, io_type, sparse=sparse)
    save_tflite(content, target)
    size, gz = file_sizes(content)
    ui.show(f"wrote {target} ({mode.value}, {size / 1024:,.1f} KB, gzip {gz / 1024:,.1f} KB)")


@app.command("qat")
@cli_errors
def qat_command(
    model: Path = typer.Argument(..., help="Keras model (.keras, .h5); pruned models keep their zeros."),
    data: Optional[str] = DataOpt,
    epochs: int = typer.Option(1, min=1),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(1e-3, help="Fine-tuning learning rate."),
    optimizer: Optimizer = typer.Option(Optimizer.SGD),
    preserve_sparsity: bool = typer.Option(False, help="TFMOT's pruning-preserving scheme: keep the zeros."),
    io_type: IOType = typer.Option(IOType.INT8),
    seed: int = SeedOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Default: MODEL_qat_int8.tflite beside the model."),
    strategy: Strategy = StrategyOpt,
    quiet: bool = QuietOpt,
):
    """Quantization-aware training, then conversion to a full-integer int8 model."""
    from .export import load_keras, save_tflite
    from .qat import qat
    from .quantize import calibration_images, convert
    from .runtime import TFLiteModel, weight_stats

    target = _writable(out or model.with_name(f"{model.stem}_qat_int8.tflite"), (".tflite",))
    from .distribute import get_strategy

    get_strategy(strategy)  # a multi-worker strategy must exist before the model is loaded
    with ui.ProgressBars(not quiet) as bars:
        dataset = _load_data(data, None, None, seed, bars)
        result = qat(load_keras(model, dataset), dataset,
                     FinetuneConfig(epochs, batch_size, lr, optimizer, seed, strategy), bars, preserve_sparsity)
    content = convert(result.model, QuantMode.INT8, calibration_images(dataset, 200, seed), io_type)
    save_tflite(content, target)
    _, sparsity = weight_stats(TFLiteModel(content=content, plain=True).interpreter)
    ui.show(f"wrote {target}: fake-quantized Keras accuracy {100 * result.test_accuracy:.2f} %, "
            f"int8 kernel sparsity {100 * sparsity:.1f} %")


@app.command("cluster")
@cli_errors
def cluster_command(
    model: Path = typer.Argument(..., help="Keras model (.keras, .h5)."),
    clusters: int = typer.Option(16, "--clusters", help="Distinct values per kernel (>= 2)."),
    data: Optional[str] = DataOpt,
    epochs: int = typer.Option(1, min=1),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(1e-5, help="Small: a centroid's gradient sums over every weight in its cluster."),
    optimizer: Optimizer = typer.Option(Optimizer.ADAM),
    seed: int = SeedOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Default: MODEL_clustered.keras beside the model."),
    quiet: bool = QuietOpt,
):
    """Cluster each kernel's weights into N values (TFMOT), fine-tune, strip; report values per layer."""
    from rich.table import Table

    from .cluster import cluster
    from .export import load_keras, save_keras

    if clusters < 2:
        raise ConfigError(f"cluster count must be >= 2, got {clusters}")
    target = _writable(out or model.with_name(f"{model.stem}_clustered.keras"), KERAS_SUFFIXES)
    with ui.ProgressBars(not quiet) as bars:
        dataset = _load_data(data, None, None, seed, bars)
        result = cluster(load_keras(model, dataset), dataset, clusters,
                         FinetuneConfig(epochs, batch_size, lr, optimizer, seed), bars)
    save_keras(result.model, target)
    table = Table("layer", "distinct kernel values", title=f"clustered -> {target}", title_justify="left")
    for layer, unique in result.unique_values.items():
        table.add_row(layer, str(unique))
    ui.show(table)
    ui.show(f"test accuracy {100 * result.test_accuracy:.2f} %")


@app.command("sensitivity")
@cli_errors
def sensitivity_command(
    model: Path = typer.Argument(..., help="Keras model (.keras, .h5)."),
    data: Optional[str] = DataOpt,
    images: int = typer.Option(2000, min=1, help="Test images for the accuracy of each variant."),
    seed: int = SeedOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Per-layer int8 error (RMSE / scale) and the accuracy with each layer alone kept in float."""
    from dataclasses import asdict

    from rich.table import Table

    from .export import load_keras
    from .quantize import calibration_images
    from .sensitivity import sensitivity

    with ui.ProgressBars(not quiet) as bars:
        dataset = _load_data(data, None, None, seed, bars)
        result = sensitivity(load_keras(model, dataset), dataset, calibration_images(dataset, 200, seed), images, bars)
    if as_json:
        ui.out.print_json(json.dumps({"int8_accuracy": result.int8_accuracy, "images": result.images,
                                      "layers": [asdict(s) for s in result.layers]}))
        return
    table = Table("layer", "RMSE / scale", "accuracy % with it float", title=f"int8 sensitivity of {model.name}: all-int8 "
                  f"accuracy {100 * result.int8_accuracy:.2f} % on {result.images} images", title_justify="left")
    for s in result.layers:
        table.add_row(s.layer, f"{s.error:.3f}", f"{100 * s.accuracy_kept_float:.2f}")
    ui.show(table)


@app.command()
@cli_errors
def benchmark(
    models: List[Path] = typer.Argument(..., help=".tflite or Keras model files."),
    data: Optional[str] = DataOpt,
    runs: int = typer.Option(200, min=1, help="Timed single-image runs."),
    warmup: int = typer.Option(10, min=0, help="Untimed runs before timing."),
    threads: int = typer.Option(1, min=1),
    limit: Optional[int] = typer.Option(None, min=1, help="Score accuracy on the first N test images only."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results as JSON here."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Measure accuracy, batch-1 latency (p50/p90/p99), parameters, sparsity and size of model files."""
    from .benchmark import benchmark_files

    config = BenchConfig(warmup, runs, threads, limit)
    if output:
        _writable(output, (".json",))
    with ui.ProgressBars(not quiet) as bars:
        dataset = _load_data(data, None, None, 0, bars)
        report = benchmark_files(models, dataset, config, bars)
    if output:
        report.save(output)
    ui.show_report(report, as_json)


@app.command()
@cli_errors
def compress(
    int8: bool = typer.Option(False, "--int8", help="Full-integer int8 (the default when no mode is given)."),
    float16: bool = typer.Option(False, "--float16", help="Float16 weights."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic-range: int8 weights, float activations."),
    int16x8: bool = typer.Option(False, "--int16x8", help="int8 weights with int16 activations."),
    qat: bool = typer.Option(False, "--qat", help="Quantization-aware training (pruning-preserving after pruning)."),
    clusters: Optional[int] = typer.Option(None, "--clusters", help="Weight clustering into N values per kernel."),
    keep_float: List[str] = typer.Option([], "--keep-float", help="Leave this layer float in an extra int8 stage "
                                         "(repeatable)."),
    keep_float_worst: Optional[int] = typer.Option(None, "--keep-float-worst", help="Leave the K layers with the "
                                                   "largest int8 error float."),
    sparse: bool = typer.Option(False, "--sparse", help="Also store the pruned int8 model in TFLite's sparse format."),
    finetune_epochs: int = typer.Option(1, min=1, help="Epochs of the QAT and clustering fine-tunes."),
    data: Optional[str] = DataOpt,
    model: Optional[Path] = typer.Option(None, "--model", help="Start from this Keras model instead of training."),
    trust_model: bool = typer.Option(False, "--trust-model", help="Load a --model that carries code (Lambda)."),
    sparsity: float = typer.Option(0.8, help="Pruning target in [0, 1); 0 skips pruning."),
    epochs: Optional[int] = EpochsOpt,
    prune_epochs: int = typer.Option(2, min=1, help="Fine-tuning epochs while pruning."),
    batch_size: Optional[int] = BatchOpt,
    optimizer: Optional[Optimizer] = OptimizerOpt,
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of training and pruning. Default: the "
                                       "recipe's."),
    arch: Arch = typer.Option(Arch.SEED_CNN),
    recipe: Optional[Recipe] = RecipeOpt,
    budget_minutes: Optional[float] = BudgetOpt,
    io_type: IOType = typer.Option(IOType.INT8, help="Input/output type of int8 models."),
    seed: int = SeedOpt,
    train_limit: Optional[int] = TrainLimit,
    test_limit: Optional[int] = TestLimit,
    threads: int = typer.Option(1, min=1, help="Threads for TFLite latency."),
    runs: int = typer.Option(200, min=1, help="Timed single-image runs per model."),
    max_drop: Optional[float] = typer.Option(None, help="Gate: fail (exit 1) when a quantized stage loses more "
                                             "than this many accuracy points against the Keras float model."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder. Default: runs/<name>."),
    strategy: Strategy = typer.Option(Strategy.DEFAULT, "--strategy", help="default or mirrored (local devices); "
                                      "for several machines run 'edgecv train --strategy multi-worker', then --model."),
    name: Optional[str] = typer.Option(None, help="Run name under runs/. Default: compress-<date>-<time>."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Train (or load), prune, quantize and benchmark: one table of what each step costs and buys."""
    from .pipeline import compress as run_compress

    modes = tuple(m for m, on in ((QuantMode.INT8, int8), (QuantMode.FLOAT16, float16), (QuantMode.DYNAMIC, dynamic),
                                  (QuantMode.INT16X8, int16x8)) if on)
    folder = out or Path("runs") / (name or datetime.now().strftime("compress-%Y%m%d-%H%M%S"))
    training = recipe_config(_recipe(recipe, arch), arch=arch, epochs=epochs, batch_size=batch_size,
                             optimizer=optimizer, learning_rate=lr, seed=seed, strategy=strategy, budget_minutes=budget_minutes)
    batch_size, lr, optimizer = training.batch_size, training.learning_rate, training.optimizer
    config = CompressConfig(
        out=folder, data=data, model=model, trust_model=trust_model, modes=modes or (QuantMode.INT8,), io_type=io_type,
        train=training,
        prune=PruneConfig(sparsity, prune_epochs, batch_size, lr, seed, optimizer, strategy),
        bench=BenchConfig(runs=runs, threads=threads), train_limit=train_limit, test_limit=test_limit,
        max_drop=max_drop, qat=qat, clusters=clusters, keep_float=tuple(keep_float),
        keep_float_worst=keep_float_worst, sparse=sparse,
        finetune=FinetuneConfig(finetune_epochs, batch_size, lr / 10, optimizer, seed, strategy),
    )
    with ui.ProgressBars(not quiet) as bars:
        report = run_compress(config, bars)
    if report.data.get("skipped_files"):
        ui.note(f"warning: skipped {report.data['skipped_files']} unreadable file(s) under {report.data['source']}")
    ui.show_report(report, as_json, title=f"edgecv compress -> {folder}")
    if not as_json:
        ui.note(f"wrote {folder}/report.json, report.md, pareto.png and the models")
    if report.gate is not None:
        if not as_json:
            ui.show(ui.gate_table(report.gate["criteria"], f"gate: max drop {report.gate['max_drop']:g} points"))
        if not report.gate["passed"]:
            raise typer.Exit(GateFailed.exit_code)


@app.command()
@cli_errors
def check(
    model: Path = typer.Argument(..., help="The compressed model to judge (.tflite or Keras)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Its float parent, measured now on the same images."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A stored baseline JSON to compare with."),
    update_baseline: bool = typer.Option(False, "--update-baseline", help="Measure MODEL and write it as --baseline."),
    data: Optional[str] = DataOpt,
    max_drop: Optional[float] = typer.Option(1.0, help="Accuracy points MODEL may lose against the reference."),
    min_accuracy: Optional[float] = typer.Option(None, help="Absolute accuracy floor, percent."),
    max_size_kb: Optional[float] = typer.Option(None, help="File size ceiling, KB."),
    max_latency_ms: Optional[float] = typer.Option(None, help="p50 latency ceiling, ms."),
    max_latency_ratio: Optional[float] = typer.Option(None, help="p50 latency ceiling relative to the reference's."),
    max_size_ratio: Optional[float] = typer.Option(None, help="File size ceiling relative to the reference's."),
    allow_other_data: bool = typer.Option(False, help="Compare with a baseline measured on other test images."),
    measured_by: Optional[Path] = typer.Option(None, "--measured-by", help="Take MODEL's (and --reference's) "
                                               "numbers from this device result instead of measuring here."),
    limit: Optional[int] = typer.Option(None, min=1, help="Score on the first N test images only."),
    runs: int = typer.Option(200, min=1),
    threads: int = typer.Option(1, min=1),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Gate a compressed model: exit 0 within the limits, 1 when it regresses, 2 for bad input."""
    from .gate import GateConfig
    from .gate import check as run_check
    from .gate import update_baseline as write_baseline

    config = GateConfig(max_drop, min_accuracy, max_size_kb, max_latency_ms, max_latency_ratio, max_size_ratio,
                        allow_other_data)
    bench = BenchConfig(runs=runs, threads=threads, limit=limit)
    if update_baseline and baseline is None:
        raise ConfigError("--update-baseline needs --baseline FILE to write")
    if measured_by is not None:  # the numbers of the runtime the devices run, from its result file
        from .gate import check_result

        if update_baseline:
            raise ConfigError("--update-baseline measures here; it does not combine with --measured-by")
        result = check_result(model, measured_by, config, reference, baseline)
    else:
        with ui.ProgressBars(not quiet) as bars:
            dataset = _load_data(data, None, None, 0, bars)
            if update_baseline:
                written = write_baseline(model, dataset, _writable(baseline, (".json",)), bench, bars)
            else:
                result = run_check(model, dataset, config, bench, reference, baseline, bars)
    if update_baseline:
        ui.show(f"wrote baseline {baseline}: accuracy {100 * written.accuracy:.2f} % on "
                f"{written.data['test_images']} test images")
        return
    if as_json:
        ui.out.print_json(json.dumps(result.to_dict(), default=str))
    else:
        verdict = "passed" if result.passed else "REGRESSED"
        ui.show(ui.gate_table([c.to_dict() for c in result.criteria], f"check {model.name}: {verdict}"))
    if not result.passed:
        raise typer.Exit(GateFailed.exit_code)


device_app = typer.Typer(help="Benchmark on a Raspberry Pi or a Coral board: make a kit, merge its results.",
                         no_args_is_help=True)
app.add_typer(device_app, name="device")


@device_app.command("kit")
@cli_errors
def device_kit(
    models: List[Path] = typer.Argument(..., help=".tflite models to carry."),
    data: Optional[str] = DataOpt,
    samples: int = typer.Option(500, min=1, help="Test images in the sample file (a seeded sample)."),
    out: Path = typer.Option(Path("edgecv-kit"), "--out", "-o", help="Kit folder."),
    archive: bool = typer.Option(False, help="Also pack the kit as <out>.tar.gz."),
):
    """Make a folder to copy to a device: models, samples.npz, edgecv_bench.py and a README."""
    from .device import make_kit

    with ui.ProgressBars(True) as bars:
        dataset = _load_data(data, None, None, 0, bars)
    kit = make_kit(models, dataset, out, samples, archive)
    ui.show(f"wrote {kit.path}: {', '.join(kit.models)} with {kit.images} test images; see its README.txt")


@device_app.command("merge")
@cli_errors
def device_merge(
    results: List[Path] = typer.Argument(..., help="Host report.json and device result JSON files."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for merged.json and merged.png."),
    as_json: bool = JsonOpt,
):
    """Merge host and device results: one accuracy / latency / size table, a column group per device."""
    from rich.table import Table

    from .device import merge, plot_merged

    merged = merge(results)
    if out is not None:
        from .fsutil import prepare_out_dir, write_text

        folder = prepare_out_dir(out)
        write_text(folder / "merged.json", json.dumps(merged.to_dict(), indent=2) + "\n")
        plot_merged(merged, folder / "merged.png")
    if as_json:
        ui.out.print_json(json.dumps(merged.to_dict()))
        return
    compared = any(merged.top1_differences(d, m) for d in merged.devices for m in merged.models)
    table = Table(title="accuracy % / p50 ms / p90 ms per device", title_justify="left")
    table.add_column("model")
    table.add_column("KB", justify="right")
    table.add_column("gzip KB", justify="right")
    for i, device in enumerate(merged.devices):
        for header in ("acc %", "p50 ms", "p90 ms") + (("top-1 ≠",) if compared else ()):
            table.add_column(f"{header}\n[{i + 1}]", justify="right")
    for model in merged.models:
        cells = [merged.cell(d, model) for d in merged.devices]
        sized = next((c for c in cells if c is not None and c.size_bytes), None)
        row = [model, f"{sized.size_bytes / 1024:,.1f}" if sized else "", f"{sized.gzip_bytes / 1024:,.1f}" if sized else ""]
        for device, c in zip(merged.devices, cells):
            latency = (c.latency or {}) if c else {}
            mark = "*" if device.emulated else ""  # emulated latency is not meaningful
            row += ["" if c is None or c.accuracy is None else f"{100 * c.accuracy:.2f}",
                    "" if latency.get("p50_ms") is None else f"{latency['p50_ms']:.4f}{mark}",
                    "" if latency.get("p90_ms") is None else f"{latency['p90_ms']:.4f}{mark}"]
            if compared:
                differs = merged.top1_differences(device, model)
                row.append("" if differs is None else f"{differs[0]}/{differs[1]}")
        table.add_row(*row)
    ui.show(table)
    for i, device in enumerate(merged.devices):
        data = device.report.data
        warning = (device.report.environment.get("device") or {}).get("pairing_warning")
        ui.show(f"[{i + 1}] {device.label}: {data.get('test_images', '?')} images"
                + ("; EMULATED: latency (*) not meaningful" if device.emulated else "")
                + (f"; warning: {warning}" if warning else ""))
    if compared:
        ui.show("top-1 ≠: images whose predicted class differs from the first result with per-image predictions "
                "on the same images")
    fingerprints = {d.report.data.get("test_fingerprint") for d in merged.devices} - {None}
    if len(fingerprints) > 1:
        ui.note("note: the files were scored on different test images; compare accuracies with care")


@device_app.command("emulate")
@cli_errors
def device_emulate(
    kit: Path = typer.Argument(..., help="A kit folder from 'edgecv device kit'."),
    runtime: List[str] = typer.Option(["tflite_runtime", "ai_edge_litert"], "--runtime",
                                      help="Runtime(s) to run under: tflite_runtime, ai_edge_litert."),
    runs: int = typer.Option(20, min=1, help="Timed runs (emulated latency is not meaningful: keep it small)."),
    out: Path = typer.Option(Path("emulated"), "--out", "-o", help="Folder for host.json and emulated-*.json."),
):
    """Run a kit on an emulated Raspberry Pi OS (arm64, qemu): real ARM runtimes, accuracy per runtime."""
    import subprocess
    import sys

    from .emulate import check_kit, emulate
    from .fsutil import prepare_out_dir

    check_kit(kit)
    folder = prepare_out_dir(out)
    # the same kit on this host first, so each emulated runtime is compared image by image with it
    host = subprocess.run([sys.executable, str(kit / "edgecv_bench.py"), "--runs", str(runs), "--out",
                           str(folder / "host.json")], capture_output=True, text=True, cwd=kit)
    if host.returncode != 0:
        raise DataError(f"the kit failed on this host: {(host.stderr.strip().splitlines() or ['no output'])[-1]}")
    with ui.ProgressBars(True) as bars:
        done = emulate(kit, list(runtime), folder, runs, bars)
    for run in done:
        ui.note(f"{run.runtime}: Python {run.python} on {run.machine} -> {run.result}")
    device_merge([folder / "host.json"] + [run.result for run in done], out=folder, as_json=False)


@app.command()
@cli_errors
def edgetpu(
    model: Path = typer.Argument(..., help="A full-integer .tflite (edgecv quantize --mode int8 --io-type uint8)."),
    runtime_version: int = typer.Option(14, "--runtime-version", help="Lowest Edge TPU runtime to target (-m)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where edgetpu_compiler writes, if installed."),
    as_json: bool = JsonOpt,
):
    """Edge TPU readiness: compile with edgetpu_compiler if installed, else predict op by op what would map."""
    from rich.table import Table

    from .edgetpu import AFTER_CUT, check_model

    report = check_model(model, out, runtime_version)
    if as_json:
        ui.out.print_json(json.dumps(report.to_dict()))
        return
    how = "edgetpu_compiler" if report.method == "compiler" else "static check (edgetpu_compiler not on PATH)"
    table = Table("operator", "count", "status", title=f"{model.name}: {how}", title_justify="left")
    for op, count, status in report.table():
        table.add_row(op, str(count), status)
    ui.show(table)
    reasons = [o for o in report.ops if o.reason and not o.on_tpu and o.status != AFTER_CUT]
    for o in reasons:
        ui.show(f"op {o.index} {o.op}: {o.reason}")
    ui.show(f"{report.tpu_ops} ops on the Edge TPU, {report.cpu_ops} on the CPU"
            + (f"; compiled {report.compiled}" if report.compiled else ""))


def _writable(path: Path, suffixes: tuple[str, ...]) -> Path:
    """Checks an output file's kind and folder before the work that fills it."""
    from .fsutil import prepare_out_dir

    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{path}: the output file must end in {' or '.join(suffixes)}")
    prepare_out_dir(path.parent)
    return path


def main() -> None:
    """The console script: option errors as one line too, not a usage box."""
    import sys

    from typer._click.exceptions import ClickException

    import signal

    from .errors import note_interrupt

    def interrupted(signum, _frame):
        note_interrupt(signum)  # native code may turn the KeyboardInterrupt into an error; stages re-check
        raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: temporary files are removed, one line, exit 130

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="edgecv", standalone_mode=False)
    except ClickException as e:
        ui.error(e.format_message().replace("\n", " "))
        sys.exit(e.exit_code)
    except typer.Abort:
        ui.error("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
