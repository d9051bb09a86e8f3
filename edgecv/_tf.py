"""The one place that imports TensorFlow, tf-keras and TFMOT.

TFMOT 0.8.1 only accepts Keras 2 models, and TensorFlow 2.21 hands out Keras 3 unless
``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is first imported. Every module that needs
TensorFlow goes through :func:`tf`, :func:`keras` or :func:`tfmot` so the variable is always set in time.
"""

from __future__ import annotations

import os
import sys
from functools import cache

from edgecv.errors import Unsupported


def _prepare_environment() -> None:
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise Unsupported(
            "TensorFlow was imported before edgecv without TF_USE_LEGACY_KERAS=1; "
            "set it in the environment or import edgecv first"
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    # C++ log lines cut through the progress bars; errors that matter still arrive as Python exceptions
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@cache
def tf():
    _prepare_environment()
    from edgecv.fsutil import captured_stderr

    with captured_stderr():  # absl prints oneDNN and CUDA notes at import, before any log level applies
        import tensorflow

        tensorflow.config.list_physical_devices()  # device discovery prints its own CUDA note

    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


@cache
def keras():
    tf()
    import tf_keras

    return tf_keras


@cache
def tfmot():
    keras()
    import tensorflow_model_optimization

    return tensorflow_model_optimization


@cache
def keras3():
    """Keras 3 itself, beside tf-keras: users build their models in it, and converting, measuring and channel
    pruning take such a model as it is. Only TFMOT needs the tf-keras rebuild (``compress.keras3``)."""
    tf()
    import keras as keras_3

    return keras_3


def is_keras3_model(model) -> bool:
    """Told by the class's module (``keras.src...`` against ``tf_keras.src...``), so no Keras is imported."""
    module = type(model).__module__
    return module == "keras" or module.startswith("keras.")


def keras_of(model):
    """The Keras a model belongs to: its layers, inputs and clones must come from the same one."""
    return keras3() if is_keras3_model(model) else keras()
