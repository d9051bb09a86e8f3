"""``quantize``: from a Keras file to one ``.tflite`` file, in one mode.

Above :mod:`edgecv.compress.quantize` (the converter's modes) and :mod:`edgecv.compress.sensitivity` (layers
kept float), so neither needs the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecv import runtime as rt
from edgecv.compress.export import check_fits, load_keras, save_tflite
from edgecv.compress.quantize import calibration_images, converter_name, make_tflite
from edgecv.compress.sensitivity import convert_keep_float
from edgecv.config import IOType, MixedConfig, QuantMode, _check_mixed_io
from edgecv.data.datasets import load
from edgecv.errors import ConfigError
from edgecv.progress import ProgressFn, ignore


@dataclass(frozen=True)
class QuantizedFile:
    path: Path
    mode: QuantMode
    io_type: IOType | None  # of a full-integer model; None where the mode keeps float input and output
    size_bytes: int
    gzip_bytes: int
    details: dict  # made_by, and for mixed each layer's bits


def default_tflite_name(model_path: Path, mode: QuantMode, io_type: IOType, flip_average: bool = False) -> Path:
    """MODEL_<mode>.tflite beside the model; an int8 model with other than int8 input and output says which,
    so an Edge TPU (uint8) file never overwrites the plain one, and so does a flip-averaged one."""
    suffix = mode.value if mode is not QuantMode.INT8 or io_type is IOType.INT8 else f"{mode.value}_{io_type.value}_io"
    return model_path.with_name(f"{model_path.stem}_{suffix}{'_flipavg' if flip_average else ''}.tflite")


def quantize_file(model_path: Path, out: Path, mode: QuantMode = QuantMode.INT8, data: str | None = None,
                  io_type: IOType = IOType.INT8, calibration_samples: int = 200, keep_float: tuple[str, ...] = (),
                  sparse: bool = False, seed: int = 0, on_progress: ProgressFn = ignore,
                  mixed: MixedConfig = MixedConfig(), image_size: int | None = None,
                  flip_average: bool = False) -> QuantizedFile:
    """``edgecv quantize``: one conversion of a Keras file written to ``out``. int8 and int16x8 are calibrated
    on the train split of ``data`` (resized to ``image_size``); ``keep_float`` leaves the named layers float in
    an int8 model; ``flip_average`` builds the mirror-image inference into the file (twice the work)."""
    if keep_float and mode is not QuantMode.INT8:  # before any loading
        raise ConfigError("--keep-float leaves layers float in an int8 model: use --mode int8")
    if flip_average and (keep_float or mode is QuantMode.MIXED):
        raise ConfigError("--flip-average wraps the whole model: it does not combine with --keep-float or "
                          "--mode mixed, which choose layers by name")
    _check_mixed_io((mode,), io_type)
    model = load_keras(model_path)
    mirror = None
    if flip_average:
        from edgecv.compress.flip import flip_averaged, mirror_for

        mirror = mirror_for(model, edgetpu=io_type is IOType.UINT8)  # uint8 input and output: the Edge TPU's
        model = flip_averaged(model, mirror)
    calibration = dataset = None
    if mode in (QuantMode.INT8, QuantMode.INT16X8, QuantMode.MIXED):
        dataset = load(data, on_progress, image_size=image_size)
        check_fits(model, dataset, model_path)
        calibration = calibration_images(dataset, calibration_samples, seed)
    details: dict = {"flip_average": True, "mirror": mirror.value} if flip_average else {}
    if keep_float:
        content = convert_keep_float(model, calibration, list(keep_float))
        details["made_by"] = converter_name()
    else:
        content = make_tflite(model, mode, calibration, io_type, details, dataset, mixed, seed, sparse, on_progress)
    save_tflite(content, out)
    size, gz = rt.file_sizes(content)
    integer = mode in (QuantMode.INT8, QuantMode.MIXED)
    return QuantizedFile(Path(out), mode, io_type if integer else None, size, gz, details)
