"""Saving and loading models; every file is written under a temporary name and renamed when complete."""

from __future__ import annotations

import os
from pathlib import Path

from ._tf import keras
from .errors import DataError
from .fsutil import atomic_path, write_bytes

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def save_keras(model, path: str | os.PathLike) -> Path:
    """Saves architecture and weights without the optimizer state, which would double the file."""
    path = Path(path)
    if getattr(model, "optimizer", None) is not None:  # the native format has no include_optimizer=False
        plain = keras().models.clone_model(model)
        plain.set_weights(model.get_weights())
        model = plain
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def save_tflite(data: bytes, path: str | os.PathLike) -> Path:
    return write_bytes(path, data)


def load_keras(path: str | os.PathLike):
    """Loads a tf.keras model for inference and fine-tuning (not its training state).

    Raises:
        DataError: the file is missing or is not a Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise DataError(f"{path} is not a Keras model: expected one of {', '.join(KERAS_SUFFIXES)}")
    try:
        return keras().models.load_model(path, compile=False)
    except Exception as e:  # h5py, zipfile and Keras each raise their own types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path} is not a loadable Keras model: {first}") from None
