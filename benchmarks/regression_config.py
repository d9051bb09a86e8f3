"""The regression tests' run, shared with ``benchmarks/regression_variation.py`` that chose their margins."""

from pathlib import Path

from edgecv.config import BenchConfig, CompressConfig, Optimizer, PruneConfig, TrainConfig

TRAIN_IMAGES = 5000
TEST_IMAGES = 1000


def regression_config(data: str, out: Path, seed: int = 0, max_drop: float | None = None) -> CompressConfig:
    """seed-cnn on a seeded 5,000 / 1,000 slice of CIFAR-10, Adam for 3 epochs, 50 % pruning over 2, int8."""
    return CompressConfig(
        out=out, data=str(data), train_limit=TRAIN_IMAGES, test_limit=TEST_IMAGES,
        train=TrainConfig(epochs=3, optimizer=Optimizer.ADAM, learning_rate=1e-3, seed=seed),
        prune=PruneConfig(sparsity=0.5, epochs=2, learning_rate=1e-3, seed=seed, optimizer=Optimizer.ADAM),
        bench=BenchConfig(warmup=5, runs=50), max_drop=max_drop,
    )
