"""Options shared by several commands, and the small parsers that turn option text into library values."""

from __future__ import annotations

from pathlib import Path

import typer

from edgecv.config import Arch, QuantMode, Recipe, Strategy
from edgecv.errors import ConfigError

def flag(*names: str, help: str):
    """An on/off option; its help shows no value to type after it."""
    return typer.Option(False, *names, help=help, metavar="")


Data = typer.Option(None, "--data", metavar="PATH", help="Image folder (train/<class>/, test/<class>/), cifar-10-batches-py/ or "
                    "cifar-10-python.tar.gz. Default: $EDGECV_DATA, then the caches, then the download.")
ImageSize = typer.Option(None, "--image-size", metavar="PIXELS", help="Resize every image to PIXELS x PIXELS "
                         "(bilinear) for a model built for another input size, e.g. 96 for a 96 px MobileNet on "
                         "32 px CIFAR-10. Default: the data's own size.")
TrainLimit = typer.Option(None, "--train-limit", min=1, help="Use a seeded subset of this many train images.")
TestLimit = typer.Option(None, "--test-limit", min=1, help="Use a seeded subset of this many test images.")
Seed = typer.Option(0, "--seed", help="Seed for weights, shuffling and subsets.")
Json = flag("--json", help="Print the result as JSON on stdout instead of a table.")
Quiet = flag("--quiet", "-q", help="No progress bars.")
Wide = flag("--wide", help="Every column (p90/p99, MMACs, params, sparsity, peak memory); the default table fits "
            "80 columns, and report.md always has them all.")
RecipeChoice = typer.Option(None, help="Training preset: classic (SGD 0.01, 10 epochs, batch 64), edge "
                            "(flips and shifts, label smoothing 0.1, Adam 3e-3 with warm-up and cosine decay, 30 "
                            "epochs, batch 128) or edge2 (edge with SGD-Nesterov 0.1 and weight decay 5e-4). "
                            "Default: classic for seed-cnn, edge2 for patchnet, edge for the others. Explicit "
                            "options override it.")
Epochs = typer.Option(None, "--epochs", min=1, help="Training epochs. Default: the recipe's.")
Batch = typer.Option(None, "--batch-size", min=1, help="Default: the recipe's.")
OptimizerChoice = typer.Option(None, "--optimizer", help="Default: the recipe's.")
Lr = typer.Option(None, "--lr", help="Peak learning rate. Default: the recipe's.")
Budget = typer.Option(None, "--budget-minutes", help="Train within this wall clock (data loading included): "
                      "epochs, warm-up and decay are fitted to it from the measured throughput.")
StrategyChoice = typer.Option(Strategy.DEFAULT, "--strategy", help="tf.distribute strategy: mirrored (local "
                              "devices), multi-worker (machines in TF_CONFIG; each saves its own --out).")
MixedMaxDrop = typer.Option(0.2, "--mixed-max-drop", help="Mixed mode: accuracy points the int4/int8 model may "
                            "lose against plain int8, measured on a seeded slice of the train split.")
MixedImages = typer.Option(20000, "--mixed-images", min=1, help="Mixed mode: train images that choose the int4 "
                           "layers (the test split is never used to choose).")
TrustModel = flag("--trust-model", help="Load a model that carries code (Lambda).")


def load_data(data: str | None, train_limit: int | None, test_limit: int | None, seed: int, on_progress,
              image_size: int | None = None):
    """The data set the command names, cut to its limits (then resized); unreadable files are warned about."""
    from edgecv.cli import ui
    from edgecv.data.datasets import load

    dataset = load(data, on_progress).subset(train_limit, test_limit, seed).resized(image_size)
    if dataset.skipped:
        ui.note(f"warning: skipped {dataset.skipped} unreadable file(s) under {dataset.source}")
    return dataset


def recipe_for(recipe: Recipe | None, arch: Arch) -> Recipe:
    """The classic recipe stays seed-cnn's default; the edge architectures need augmentation and a schedule."""
    if recipe is not None:
        return recipe
    return {Arch.SEED_CNN: Recipe.CLASSIC, Arch.PATCHNET: Recipe.EDGE2}.get(arch, Recipe.EDGE)


def floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated numbers, got {text!r}") from None


def ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated whole numbers, got {text!r}") from None


def modes(text: str) -> tuple[QuantMode, ...]:
    try:
        return tuple(QuantMode(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--modes takes {', '.join(m.value for m in QuantMode)}, got {text!r}") from None


def writable(path: Path, suffixes: tuple[str, ...]) -> Path:
    """Checks an output file's kind and folder before the work that fills it."""
    from edgecv.fsutil import prepare_out_dir

    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{path}: the output file must end in {' or '.join(suffixes)}")
    prepare_out_dir(path.parent)
    return path
