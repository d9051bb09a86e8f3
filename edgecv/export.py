"""Saving and loading models; every file is written under a temporary name and renamed when complete."""

from __future__ import annotations

import os
from pathlib import Path

from ._tf import keras
from .errors import ConfigError, DataError, first_line
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


def load_keras(path: str | os.PathLike, dataset=None):
    """Loads a tf.keras model for inference and fine-tuning (not its training state); with ``dataset``,
    checks that the model takes its images and predicts its classes.

    Raises:
        DataError: the file is missing or is not a Keras model.
        ConfigError: the model does not fit the data set.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise DataError(f"{path} is not a Keras model: expected one of {', '.join(KERAS_SUFFIXES)}")
    try:
        model = keras().models.load_model(path, compile=False)
    except Exception as e:  # h5py, zipfile and Keras each raise their own types for a bad file
        raise DataError(f"{path} is not a loadable Keras model: {first_line(e)}") from None
    if dataset is not None:
        check_fits(model, dataset, path)
    return model


def check_fits(model, dataset, path) -> None:
    """A model must take the data set's images and predict its classes."""
    expected = tuple(model.input_shape[1:])
    if expected != dataset.input_shape:
        raise ConfigError(f"{path} takes {expected} inputs but the data set's images are {dataset.input_shape}")
    classes = model.output_shape[-1]
    if classes != dataset.num_classes:
        raise ConfigError(f"{path} predicts {classes} classes but the data set has {dataset.num_classes}")
