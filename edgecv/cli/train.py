"""``edgecv train``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgecv.cli import options as opt
from edgecv.cli import ui
from edgecv.config import Arch, Optimizer, Recipe, Strategy, recipe_config
from edgecv.compress.export import KERAS_SUFFIXES


def train(
    data: Optional[str] = opt.Data,
    arch: Arch = typer.Option(Arch.SEED_CNN, help="Architecture."),
    recipe: Optional[Recipe] = opt.RecipeChoice,
    epochs: Optional[int] = opt.Epochs,
    batch_size: Optional[int] = opt.Batch,
    optimizer: Optional[Optimizer] = opt.OptimizerChoice,
    lr: Optional[float] = opt.Lr,
    budget_minutes: Optional[float] = opt.Budget,
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", min=0.0, help="Decoupled weight decay "
                                                 "on kernels (not BN or biases), per step times the rate. "
                                                 "Default: the recipe's."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help="Default: the recipe's."),
    shift: Optional[int] = typer.Option(None, "--shift", min=0, help="Largest random shift, pixels. Default: the "
                                        "recipe's."),
    alternate_flips: Optional[bool] = typer.Option(None, "--alternate-flips/--random-flips", help="Flip each "
                                                   "image every other epoch, or at random. Default: the recipe's."),
    ema: Optional[float] = typer.Option(None, "--ema", help="Keep an average of the weights with this momentum "
                                        "per step, and save it (0: off). Default: the recipe's."),
    whiten: Optional[bool] = typer.Option(None, "--whiten/--no-whiten", help="Start patchnet's 2x2 stem as a "
                                          "whitening of the train patches. Default: the recipe's."),
    widths: Optional[str] = typer.Option(None, "--widths", metavar="STEM,B1,B2", help="patchnet's stem and block "
                                         "channels. Default: 24,48,64."),
    late_pool: int = typer.Option(0, "--late-pool", min=0, help="patchnet: the first N blocks pool after both "
                                  "convolutions (more work at the higher resolution, no more parameters)."),
    separable: int = typer.Option(0, "--separable", min=0, help="patchnet: the last N blocks use "
                                  "depthwise-separable convolutions (about 3x the channels for the same parameters)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="A trained Keras model: its predictions on "
                                           "the train images become soft targets (needs --distill)."),
    distill: float = typer.Option(0.0, "--distill", min=0.0, max=1.0, help="Weight of the teacher's soft "
                                  "targets in the labels, the rest one-hot."),
    distill_temperature: float = typer.Option(1.0, "--distill-temperature", help="Above 1 the teacher's "
                                              "runner-up classes weigh more."),
    seed: int = opt.Seed,
    val_split: float = typer.Option(0.0, help="Share of the train split held out for validation, in [0, 1)."),
    train_limit: Optional[int] = opt.TrainLimit,
    test_limit: Optional[int] = opt.TestLimit,
    out: Path = typer.Option(Path("model.keras"), "--out", "-o", help="Where to save the trained model."),
    strategy: Strategy = opt.StrategyChoice,
    stream: bool = opt.flag("--stream", help="Stream an image folder from disk (larger than memory)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=14, help="With --stream: resize to NxN."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="With --stream: keep decoded images here."),
    quiet: bool = opt.Quiet,
):
    """Train a baseline classifier (the classic seed-cnn recipe by default) and save it."""
    from edgecv.flows.training import TrainJob, train_to_file

    config = recipe_config(opt.recipe_for(recipe, arch), arch=arch, epochs=epochs, batch_size=batch_size,
                           optimizer=optimizer, learning_rate=lr, seed=seed, val_split=val_split, strategy=strategy,
                           budget_minutes=budget_minutes, weight_decay=weight_decay,
                           label_smoothing=label_smoothing, shift=shift, alternate_flips=alternate_flips, ema=ema,
                           whiten=whiten, widths=opt.ints(widths, "--widths") if widths else None,
                           late_pool=late_pool, separable=separable, distill=distill,
                           distill_temperature=distill_temperature)
    job = TrainJob(config, opt.writable(out, KERAS_SUFFIXES), data, train_limit, test_limit, stream, image_size,
                   cache_dir, teacher)
    with ui.ProgressBars(not quiet) as bars:
        done = train_to_file(job, bars)
    ui.show_trained(done)
