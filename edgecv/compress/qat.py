"""Quantization-aware training with TFMOT, and its pruning-preserving variant.

Fake-quantization during a short fine-tune teaches the weights to live with int8 rounding. After pruning,
TFMOT's prune-preserving scheme keeps the zeros through that fine-tune, so pruned + int8 stays sparse.
Layers TFMOT cannot quantize but that train no weights (the input ``Rescaling``, an adapted ``Normalization``
as EfficientNet carries) pass through, with only their output quantized.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from edgecv._tf import keras, tfmot
from edgecv.config import FinetuneConfig, IOType, QuantMode
from edgecv.data.datasets import Dataset
from edgecv.errors import ConfigError
from edgecv.progress import ProgressFn, ignore
from edgecv.train.fit import ProgressCallback, compile_model, evaluate, one_hot, set_seed


@dataclass
class QatResult:
    model: object  # quantization-aware tf_keras model; convert it with mode int8
    test_accuracy: float  # of the fake-quantized Keras model
    seconds: float
    preserve_sparsity: bool


@cache
def _passthrough_config():
    """A QuantizeConfig for weightless layers TFMOT does not know: no weights to quantize, only the output."""
    base = tfmot().quantization.keras.QuantizeConfig

    class PassThrough(base):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            # the output still gets a range: the converter needs one for every tensor of an int8 graph
            return [tfmot().quantization.keras.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    return PassThrough


def quantize_aware(model, preserve_sparsity: bool = False):
    """Wraps every layer for QAT (of a Keras 3 model, of its tf-keras rebuild); raises ConfigError naming a layer
    with weights that TFMOT cannot quantize."""
    from edgecv.compress.keras3 import to_tf_keras

    model = to_tf_keras(model)
    q = tfmot().quantization.keras
    registry = q.default_8bit.Default8BitQuantizeRegistry()
    passthrough = _passthrough_config()

    folded = ("BatchNormalization", "Add", "Activation", "ReLU")  # TFMOT's transforms fold or quantize these

    def annotate(layer):
        if registry.supports(layer) or type(layer).__name__ in folded:
            return q.quantize_annotate_layer(layer)
        if layer.trainable_weights:  # fixed statistics (an input Normalization) are constants, not weights to train
            raise ConfigError(f"layer {layer.name!r} ({type(layer).__name__}) cannot be trained quantization-aware")
        return q.quantize_annotate_layer(layer, quantize_config=passthrough())

    annotated = keras().models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    scheme = tfmot().experimental.combine.Default8BitPrunePreserveQuantizeScheme() if preserve_sparsity else None
    with q.quantize_scope({"PassThrough": passthrough}):
        return q.quantize_apply(annotated, scheme) if scheme else q.quantize_apply(annotated)


def seed_input_range(aware, low: float, high: float) -> None:
    """Starts the input quantizer at the data's range. TFMOT starts it at [-6, 6] and moves it by a slow
    moving average: raw 0-255 pixels would be clipped to 6 for thousands of steps, and a one-epoch fine-tune
    learns from images that are nearly black (measured: chance accuracy on CIFAR-10)."""
    for layer in aware.layers:
        if type(layer).__name__ == "QuantizeLayer":
            for weight in layer.weights:
                if weight.name.endswith("_min:0"):
                    weight.assign(low)
                elif weight.name.endswith("_max:0"):
                    weight.assign(high)


def qat(model, dataset: Dataset, config: FinetuneConfig = FinetuneConfig(), on_progress: ProgressFn = ignore,
        preserve_sparsity: bool = False) -> QatResult:
    """Fine-tunes a quantization-aware copy of ``model``; the model passed in is left untouched."""
    from edgecv.train.distribute import fit, get_strategy, scope

    get_strategy(config.strategy)
    set_seed(config.seed)
    with scope(config.strategy):
        aware = quantize_aware(model, preserve_sparsity)
        seed_input_range(aware, float(dataset.x_train.min()), float(dataset.x_train.max()))
        compile_model(aware, config.optimizer, config.learning_rate)
    task = "pruning-preserving QAT" if preserve_sparsity else "QAT"
    start = time.perf_counter()
    fit(aware, dataset.x_train, one_hot(dataset.y_train, dataset.num_classes), batch_size=config.batch_size,
        epochs=config.epochs, strategy=config.strategy, seed=config.seed,
        callbacks=[ProgressCallback(task, on_progress, config.epochs, len(dataset.x_train), config.batch_size)])
    seconds = time.perf_counter() - start
    return QatResult(aware, evaluate(aware, dataset.x_test, dataset.y_test), seconds, preserve_sparsity)


@dataclass
class QatFile:
    path: Path
    keras_accuracy: float  # of the fake-quantized Keras model
    int8_sparsity: float | None  # share of zeros in the int8 kernels: what a pruning-preserving QAT kept


def qat_to_file(model, dataset: Dataset, out: Path, config: FinetuneConfig = FinetuneConfig(),
                io_type: IOType = IOType.INT8, preserve_sparsity: bool = False,
                on_progress: ProgressFn = ignore) -> QatFile:
    """``edgecv qat``: the fine-tune, then a full-integer int8 file calibrated on the train split."""
    from edgecv import runtime as rt
    from edgecv.compress.export import save_tflite
    from edgecv.compress.quantize import calibration_images, convert

    result = qat(model, dataset, config, on_progress, preserve_sparsity)
    content = convert(result.model, QuantMode.INT8, calibration_images(dataset, 200, config.seed), io_type)
    save_tflite(content, out)
    _, sparsity = rt.weight_stats(rt.TFLiteModel(content=content, plain=True).interpreter)
    return QatFile(Path(out), result.test_accuracy, sparsity)
