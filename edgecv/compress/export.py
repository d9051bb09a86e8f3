"""Saving and loading models; every file is written under a temporary name and renamed when complete."""

from __future__ import annotations

import os
from pathlib import Path

from edgecv._tf import keras, keras3, keras_of
from edgecv.errors import ConfigError, DataError, first_line
from edgecv.fsutil import atomic_path, write_bytes
from edgecv.compress.keras3 import LAMBDA_REFUSAL, is_keras3

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def save_keras(model, path: str | os.PathLike) -> Path:
    """Saves architecture and weights without the optimizer state, which would double the file."""
    path = Path(path)
    if getattr(model, "optimizer", None) is not None:  # the native format has no include_optimizer=False
        plain = keras_of(model).models.clone_model(model)
        plain.set_weights(model.get_weights())
        model = plain
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def save_tflite(data: bytes, path: str | os.PathLike) -> Path:
    return write_bytes(path, data)


def load_keras(path: str | os.PathLike, dataset=None, trust: bool = False):
    """Loads a model for inference and fine-tuning (not its training state) in the Keras that saved it: tf-keras
    for its files, Keras 3 for Keras 3's; with ``dataset``, checks that the model takes its images and predicts
    its classes.

    A Keras 3 model stays a Keras 3 model: it is converted, measured and channel-pruned as it is, and only
    TFMOT's techniques rebuild it in tf-keras (:func:`edgecv.compress.keras3.to_tf_keras`).

    A model file can carry code: a ``Lambda`` layer's function. Such files are refused unless ``trust``:
    ``.keras`` through Keras' safe mode, ``.h5`` by reading its config before anything is deserialized.

    Raises:
        DataError: the file is missing, is not a Keras model, carries code and is not trusted, or has other
            than one input and one output.
        ConfigError: the model does not fit the data set.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in KERAS_SUFFIXES:
        raise DataError(f"{path} is not a Keras model: expected one of {', '.join(KERAS_SUFFIXES)}")
    if not trust and suffix in (".h5", ".hdf5"):
        _refuse_code_in_h5(path)
    by_keras3 = is_keras3(path) if suffix == ".keras" else _h5_major_version(path) >= 3
    loader = keras3() if by_keras3 else keras()
    try:
        if suffix == ".keras":
            model = loader.models.load_model(path, compile=False, safe_mode=not trust)
        else:
            model = loader.models.load_model(path, compile=False)
    except Exception as e:  # h5py, zipfile and Keras each raise their own types for a bad file
        if "Lambda" in str(e) and "safe_mode" in str(e):
            raise DataError(LAMBDA_REFUSAL.format(path=path)) from None
        raise DataError(f"{path} is not a loadable Keras model: {first_line(e)}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise DataError(f"{path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs: edgecv takes "
                        "image classifiers with one input and one output")
    if dataset is not None:
        check_fits(model, dataset, path)
    return model


def check_fits(model, dataset, path) -> None:
    """A model must take the data set's images and predict its classes."""
    expected = tuple(model.input_shape[1:])
    if None in expected:
        raise ConfigError(f"{path} takes images of any size {expected}: TFLite needs a fixed one, so build it with "
                          f"input_shape={dataset.input_shape}")
    if expected != dataset.input_shape:
        hint = (f": pass --image-size {expected[0]} to resize them" if expected[0] == expected[1]
                and expected[2:] == dataset.input_shape[2:] else "")
        raise ConfigError(f"{path} takes {expected} inputs but the data set's images are {dataset.input_shape}{hint}")
    classes = model.output_shape[-1]
    if classes != dataset.num_classes:
        raise ConfigError(f"{path} predicts {classes} classes but the data set has {dataset.num_classes}")


def _h5_major_version(path: Path) -> int:
    """The major Keras version an .h5 model was saved by (0 when unknown): Keras 3 writes configs tf-keras
    misreads, so they are refused with a way out rather than a deserialization error."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
    except OSError:
        return 0  # not HDF5: the loader gives its own message
    version = version.decode() if isinstance(version, bytes) else str(version or "")
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def _refuse_code_in_h5(path: Path) -> None:
    """Reads an .h5 model's JSON config, without deserializing it, for layers that carry Python code."""
    import json

    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as e:
        raise DataError(f"{path} is not a loadable Keras model: {first_line(e)}") from None
    if raw is None:
        raise DataError(f"{path} is not a loadable Keras model: it holds no model config")
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError as e:
        raise DataError(f"{path} is not a loadable Keras model: its config is not JSON ({e})") from None
    if _has_code(config):
        raise DataError(LAMBDA_REFUSAL.format(path=path))


def _has_code(node) -> bool:
    if isinstance(node, dict):
        if node.get("class_name") == "Lambda":
            return True
        return any(_has_code(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_code(v) for v in node)
    return False
