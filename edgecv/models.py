"""Architectures as plain functions of the input shape and class count.

Every model starts with ``Rescaling(1/255)``: it takes raw 0-255 pixels, like the MLPerf Tiny reference, so
the preprocessing travels inside the model (and its TFLite file) instead of living in every caller.
"""

from __future__ import annotations

from ._tf import keras
from .config import Arch
from .errors import ConfigError


def build(arch: Arch | str, input_shape: tuple[int, ...], num_classes: int):
    builders = {Arch.SEED_CNN: seed_cnn}
    arch = Arch(arch)
    return builders[arch](tuple(input_shape), num_classes)


def seed_cnn(input_shape: tuple[int, ...] = (32, 32, 3), num_classes: int = 10):
    """The classic Keras CIFAR-10 CNN: Conv32-Pool-Conv64-Pool-Flatten-Dense128-Dense(n)."""
    if min(input_shape[:2]) < 14:
        raise ConfigError(f"seed-cnn needs images of at least 14x14 pixels, got {input_shape[0]}x{input_shape[1]}")
    L = keras().layers
    return keras().Sequential(
        [
            keras().Input(shape=input_shape, name="pixels"),
            L.Rescaling(1.0 / 255, name="rescale"),
            L.Conv2D(32, (3, 3), activation="relu", name="conv1"),
            L.MaxPooling2D((2, 2), name="pool1"),
            L.Conv2D(64, (3, 3), activation="relu", name="conv2"),
            L.MaxPooling2D((2, 2), name="pool2"),
            L.Flatten(name="flatten"),
            L.Dense(128, activation="relu", name="fc1"),
            L.Dense(num_classes, activation="softmax", name="classifier"),
        ],
        name="seed_cnn",
    )
