"""Test-time flip averaging that ships: the model and its mirror image in one file.

Averaging a classifier's output over an image and its horizontal mirror is the cheapest test-time augmentation,
and on a device it is two inferences. Built into the graph, the ``.tflite`` does both with shared weights, so
whatever times or scores the file (``benchmark``, ``check``, a device script) counts the second inference too.

The mirror comes in two forms. REVERSE_V2 is free of arithmetic, but neither XNNPACK nor the Edge TPU runs it:
on an Edge TPU everything after it would fall back to the CPU. A permutation matrix (TRANSPOSE, FULLY_CONNECTED
with a reversed identity, TRANSPOSE) maps to both, and is exact in int8 (one weight of 1 per output channel).
On an x86 CPU both cost about the same (2.01x and 2.11x the plain file's p50 for a 6.4M-MAC CIFAR net, timed in
turns): the split XNNPACK graph is cheap there. The matrix's arithmetic grows with the width squared, so wide
images keep REVERSE_V2 unless asked.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from edgecv._tf import keras_of, tf


class Mirror(str, Enum):
    AUTO = "auto"  # the matrix when it adds at most MATRIX_SHARE of the model's multiply-accumulates
    MATRIX = "matrix"  # TRANSPOSE + FULLY_CONNECTED + TRANSPOSE: all in XNNPACK, height x width^2 x channels MACs
    REVERSE = "reverse"  # REVERSE_V2: no arithmetic, but left to TFLite's own kernel


MATRIX_SHARE = 0.05


def flip_averaged(model, mirror: Mirror | str = Mirror.AUTO):
    """``model`` behind one input, applied to it and to its left-right mirror, outputs averaged. The model's
    weights are shared (one copy in the file); a matrix mirror adds its fixed width x width permutation."""
    k = keras_of(model)
    name = model.inputs[0].name.split(":")[0]
    inputs = k.Input(shape=model.input_shape[1:], batch_size=model.input_shape[0], name=name)
    if mirror_for(model, mirror) is Mirror.MATRIX:
        mirrored = _matrix_mirror(k, inputs, model.input_shape[2])
    else:
        mirrored = k.layers.Lambda(_reverse, name="mirror")(inputs)
    outputs = k.layers.Average(name="flip_average")([model(inputs), model(mirrored)])
    return k.Model(inputs, outputs, name=f"{model.name}_flip_averaged")


def mirror_for(model, mirror: Mirror | str = Mirror.AUTO, edgetpu: bool = False) -> Mirror:
    """The mirror ``flip_averaged`` builds: AUTO resolves by the matrix's share of the model's work, or to the
    matrix whatever its share for an Edge TPU, which cannot run REVERSE_V2. A model without a fixed width (or
    not NHWC) gets REVERSE_V2, which needs no size."""
    mirror = Mirror(mirror)
    shape = model.input_shape
    if len(shape) != 4 or shape[2] is None or shape[3] is None:
        if mirror is Mirror.MATRIX:
            raise ValueError(f"a matrix mirror needs a fixed image width, the model takes {shape}")
        return Mirror.REVERSE
    if mirror is not Mirror.AUTO:
        return mirror
    if edgetpu:
        return Mirror.MATRIX
    from edgecv.measure.macs import total_macs

    try:
        work = total_macs(model)
    except ValueError:  # shapes that are not static: no share to judge
        return Mirror.REVERSE
    return Mirror.MATRIX if matrix_macs(shape) <= MATRIX_SHARE * work else Mirror.REVERSE


def matrix_macs(input_shape) -> int:
    _, height, width, channels = input_shape
    return int((height or 0) * width * width * channels)


def _matrix_mirror(k, inputs, width: int):
    columns = k.layers.Permute((1, 3, 2), name="mirror_columns_last")(inputs)  # (H, C, W)
    flip = k.layers.Dense(width, use_bias=False, trainable=False, name="mirror")
    flipped = flip(columns)
    flip.set_weights([np.eye(width, dtype=np.float32)[::-1]])
    return k.layers.Permute((1, 3, 2), name="mirror_columns_back")(flipped)


def _reverse(images):
    return tf().reverse(images, axis=[2])
