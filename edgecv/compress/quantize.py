"""Keras to TFLite in every post-training mode: float32, dynamic-range, float16 and full-integer int8.

Full-integer models are calibrated on images from the train split (never the test split) and get 8-bit
input and output tensors unless asked otherwise, which is what the Edge TPU and microcontrollers need.
"""

from __future__ import annotations


import numpy as np

from edgecv._tf import tf
from edgecv.config import IOType, MixedConfig, QuantMode
from edgecv.data.datasets import Dataset
from edgecv.errors import EdgecvError
from edgecv.fsutil import captured_output
from edgecv.progress import ProgressFn, ignore


class ConversionError(EdgecvError):
    """The TFLite converter refused the model."""


def representative(calibration: np.ndarray):
    """The converter's representative dataset: one image per step, as the model will see them."""
    samples = np.asarray(calibration, dtype=np.float32)
    return lambda: ([samples[i : i + 1]] for i in range(len(samples)))


def with_batch(model, batch_size: int):
    """The same layers and weights behind an input of fixed batch size, in the model's own Keras."""
    from edgecv._tf import keras_of

    k = keras_of(model)
    name = model.inputs[0].name.split(":")[0]
    inputs = k.Input(shape=model.input_shape[1:], batch_size=batch_size, name=name)
    return k.Model(inputs, model(inputs), name=model.name)


def calibration_images(dataset: Dataset, n: int = 200, seed: int = 0) -> np.ndarray:
    """A seeded sample of train images, as the float pixels the model takes."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(dataset.x_train), size=min(n, len(dataset.x_train)), replace=False)
    return dataset.x_train[np.sort(idx)].astype(np.float32)


def convert(
    model, mode: QuantMode | str = QuantMode.FLOAT32, calibration: np.ndarray | None = None,
    io_type: IOType | str = IOType.INT8, batch_size: int | None = 1, sparse: bool = False,
) -> bytes:
    """Returns the ``.tflite`` flatbuffer of ``model`` in ``mode``.

    The input batch is fixed (1 by default): the Edge TPU compiler and XNNPACK's static planning want static
    shapes, and a device classifies one image at a time. ``batch_size=None`` keeps it dynamic. ``sparse``
    stores pruned weights in TFLite's sparse format (``EXPERIMENTAL_SPARSITY``), for kernels that skip zeros.
    int16x8 keeps float input and output.

    Raises:
        ConversionError: int8 without calibration images, or the converter failed (its log is in the message).
    """
    mode, io_type = QuantMode(mode), IOType(io_type)
    tf_ = tf()
    if batch_size is not None and model.input_shape[0] != batch_size:
        model = with_batch(model, batch_size)
    converter = tf_.lite.TFLiteConverter.from_keras_model(model)
    if mode is QuantMode.DYNAMIC:
        converter.optimizations = [tf_.lite.Optimize.DEFAULT]
    elif mode is QuantMode.FLOAT16:
        converter.optimizations = [tf_.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf_.float16]
    elif mode in (QuantMode.INT8, QuantMode.INT16X8):
        if calibration is None or len(calibration) == 0:
            raise ConversionError(f"{mode.value} conversion needs calibration images from the train split")
        converter.optimizations = [tf_.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(calibration)
        if mode is QuantMode.INT16X8:
            converter.target_spec.supported_ops = [
                tf_.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        else:
            converter.target_spec.supported_ops = [tf_.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io = {IOType.INT8: tf_.int8, IOType.UINT8: tf_.uint8, IOType.FLOAT32: tf_.float32}[io_type]
            converter.inference_input_type = io
            converter.inference_output_type = io
    if sparse:
        converter.optimizations = list(converter.optimizations) + [tf_.lite.Optimize.EXPERIMENTAL_SPARSITY]
    with captured_output() as log:
        try:
            return converter.convert()
        except Exception as e:  # the converter raises many types; its own log says why
            detail = log().strip().splitlines()[-1:] or [str(e).splitlines()[0] if str(e) else type(e).__name__]
            raise ConversionError(f"TFLite conversion ({mode.value}) failed: {detail[0]}") from e



def converter_name() -> str:
    return f"TFLite converter (TensorFlow {tf().__version__})"


def make_tflite(model, mode: QuantMode, calibration: np.ndarray | None, io_type: IOType = IOType.INT8,
                details: dict | None = None, dataset: Dataset | None = None, mixed: MixedConfig = MixedConfig(),
                seed: int = 0, sparse: bool = False, on_progress: ProgressFn = ignore) -> bytes:
    """Every mode's file from one place, and which tool made it in ``details["made_by"]``: the converter, or for
    ``mixed`` the LiteRT quantizer, which chooses its int4 layers on a seeded slice of ``dataset``'s train split
    (each layer's bits and rounding in ``details["mixed"]``)."""
    details = {} if details is None else details
    if QuantMode(mode) is not QuantMode.MIXED:
        details["made_by"] = converter_name()
        return convert(model, mode, calibration, io_type, sparse=sparse)
    from edgecv.compress.mixed import accuracy_scorer, quantize_mixed
    from edgecv.errors import ConfigError

    if dataset is None or calibration is None:
        raise ConfigError("mixed precision chooses its layers on train images: pass --data")
    held_out = dataset.subset(train=mixed.images, seed=seed)
    result = quantize_mixed(convert(model, QuantMode.FLOAT32), calibration,
                            accuracy_scorer(held_out.x_train, held_out.y_train), mixed.max_drop, on_progress)
    summary = result.to_dict()
    details.update(made_by=result.made_by, mixed={**summary, "search_images": len(held_out.x_train)})
    return result.model
