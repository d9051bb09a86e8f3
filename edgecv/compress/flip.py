"""Test-time flip averaging that ships: the model and its mirror image in one file.

Averaging a classifier's output over an image and its horizontal mirror is the cheapest test-time augmentation,
and on a device it is two inferences. Built into the graph, the ``.tflite`` does both with shared weights, so
whatever times or scores the file (``benchmark``, ``check``, a device script) counts the second inference too.
"""

from __future__ import annotations

from edgecv._tf import keras_of, tf


def flip_averaged(model):
    """``model`` behind one input, applied to it and to its left-right mirror, outputs averaged. The weights
    are shared (one copy in the file); the mirror is a REVERSE_V2 on the width axis, which TFLite runs in int8."""
    k = keras_of(model)
    name = model.inputs[0].name.split(":")[0]
    inputs = k.Input(shape=model.input_shape[1:], batch_size=model.input_shape[0], name=name)
    mirrored = k.layers.Lambda(_mirror, name="mirror")(inputs)
    outputs = k.layers.Average(name="flip_average")([model(inputs), model(mirrored)])
    return k.Model(inputs, outputs, name=f"{model.name}_flip_averaged")


def _mirror(images):
    return tf().reverse(images, axis=[2])
