"""Structured (channel) pruning: remove whole filters and rebuild a smaller model, so the multiplies go too.

Magnitude pruning leaves zeros in dense kernels, which a CPU multiplies all the same. Here each channel
*space* (the channels a tensor carries) is ranked by the L1 norms of the filters that write it; the weakest
are removed from every layer that writes or reads that space, and a smaller Keras model is built from the
original's config with the surviving weights. A residual ``Add`` ties its inputs to one space, so the
shortcut and the branch keep the same channels, and so does a squeeze-excite ``Multiply``: the excitation's
last convolution writes the channels it scales. The model's input and output channels are never removed.

Keras 3 models are cut as they are, in Keras 3 (with ``keras.ops`` arithmetic between a tensor and a number,
as ``keras.applications`` writes hard-sigmoid, read as channel-wise); tf-keras models in tf-keras.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from edgecv._tf import is_keras3_model, keras_of
from edgecv.config import TrainConfig
from edgecv.data.datasets import Dataset
from edgecv.errors import ConfigError, DataError
from edgecv.progress import ProgressFn, ignore

PRODUCERS = ("Conv2D", "Dense", "SeparableConv2D")  # write a new channel space
PASSTHROUGH = ("BatchNormalization", "Activation", "ReLU", "ReLU6", "LeakyReLU", "MaxPooling2D", "AveragePooling2D",
               "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dropout", "ZeroPadding2D", "Rescaling", "Softmax",
               "DepthwiseConv2D", "InputLayer", "Normalization", "Cropping2D")  # channel c in, channel c out
OPS = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide")  # keras.ops arithmetic in a Keras 3 graph
MERGES = ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")  # elementwise: inputs share a space


@dataclass
class Space:
    """The channels one or more tensors carry; ``kept`` are the indices that survive."""

    size: int
    writers: list = field(default_factory=list)  # producer layers writing it
    frozen: str = ""  # why it cannot be pruned, if it cannot
    parent: Space | None = None  # union-find: merged spaces point at one root
    kept: np.ndarray | None = None

    def root(self) -> Space:
        space = self
        while space.parent is not None:
            space = space.parent
        return space


@dataclass(frozen=True)
class Flat:
    """A flattened (H, W, C) space: Dense rows index it as (h * W + w) * C + c."""

    space: Space
    positions: int  # H * W


@dataclass
class LayerChannels:
    layer: str
    before: int
    after: int


@dataclass
class StructuredResult:
    model: object  # the smaller tf_keras.Model, fine-tuned when asked
    ratio: float
    layers: list[LayerChannels]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    test_accuracy: float | None = None  # after the fine-tune; None without one
    pruned_accuracy: float | None = None  # straight after the cut, before fine-tuning
    seconds: float = 0.0


def shrink(model, ratio: float):
    """Returns (smaller model, per-layer channel counts): ``ratio`` of each prunable space's channels removed,
    the lowest L1 first. The weights are the original's, sliced; nothing is trained."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"channel ratio must be in [0, 1), got {ratio}")
    spaces, inputs_of = _trace(model)
    for space in {id(s.root()): s.root() for s in spaces.values() if isinstance(s, Space)}.values():
        space.kept = _keep(space, ratio)
    config = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}  # keras.ops entries have no layer and no weights
    for entry in config["layers"]:
        entry.pop("build_config", None)  # Keras 3 would build each layer at its old width before the graph is called
        layer = by_name.get(entry["config"]["name"])  # a Sequential's config lists its InputLayer too
        kind = type(layer).__name__
        if kind in PRODUCERS:
            entry["config"]["units" if kind == "Dense" else "filters"] = len(spaces[layer.name].root().kept)
        elif kind == "Reshape":  # a pooled (1, 1, C) or (C,): its C is the space's
            entry["config"]["target_shape"] = [*entry["config"]["target_shape"][:-1],
                                               len(spaces[layer.name].root().kept)]
    smaller = type(model).from_config(config)
    counts = []
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        out = spaces[layer.name]
        source = inputs_of[layer.name][0] if inputs_of[layer.name] else None
        smaller.get_layer(layer.name).set_weights(_slice(layer, weights, _indices(source), _indices(out)))
        if type(layer).__name__ in PRODUCERS:
            counts.append(LayerChannels(layer.name, out.root().size, len(out.root().kept)))
    return smaller, counts


def prune_channels(model, dataset: Dataset, ratio: float, finetune: TrainConfig | None = None,
                   on_progress: ProgressFn = ignore) -> StructuredResult:
    """Removes ``ratio`` of the channels, then fine-tunes the smaller model with ``finetune`` (if given)."""
    from edgecv.measure.macs import total_macs
    from edgecv.train.fit import evaluate, train

    start = time.perf_counter()
    smaller, layers = shrink(model, ratio)
    pruned_accuracy = evaluate(smaller, dataset.x_test, dataset.y_test)
    accuracy = None
    if finetune is not None:
        # a fine-tune of cut weights: no average reaching back to the cut, no new stem
        accuracy = train(dataset, replace(finetune, ema=0.0, whiten=False), on_progress, model=smaller).test_accuracy
    return StructuredResult(
        model=smaller, ratio=ratio, layers=layers, params_before=model.count_params(),
        params_after=smaller.count_params(), macs_before=total_macs(model), macs_after=total_macs(smaller),
        test_accuracy=accuracy, pruned_accuracy=pruned_accuracy, seconds=time.perf_counter() - start,
    )


def check_prunable(model) -> None:
    """Raises the DataError ``shrink`` would, before any time is spent on the model."""
    _trace(model)


def _trace(model):
    """Walks the layers in order and gives each output its channel space; raises for what cannot be pruned."""
    if not isinstance(model, keras_of(model).Model) or type(model).__name__ not in ("Functional", "Sequential"):
        raise DataError(f"model '{model.name}' ({type(model).__name__}) cannot be pruned by channel: only "
                        "Sequential and functional Keras models can be rebuilt from their config")
    spaces: dict[str, Space | Flat] = {}
    inputs_of: dict[str, list] = {}
    keras3 = is_keras3_model(model)
    for layer in (model.operations if keras3 else model.layers):  # Keras 3 lists keras.ops apart from layers
        kind = type(layer).__name__
        if isinstance(layer, keras_of(model).Model):
            raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: it is a nested model "
                            "(cut the model inside it, or build the model without nesting)")
        if len(layer._inbound_nodes) > 1:
            raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: it is shared by "
                            "several calls")
        if kind == "InputLayer":
            spaces[layer.name] = Space(int(_shape(layer.output)[-1]), frozen="the model's input")
            inputs_of[layer.name] = []
            continue
        sources = [_source(t) for t in _as_list(layer.input)]
        input_shape = _shape(_as_list(layer.input)[0])
        for source in sources:
            if source not in spaces:  # a Sequential's implicit input
                spaces[source] = Space(int(input_shape[-1]), frozen="the model's input")
                inputs_of[source] = []
        incoming = [spaces[s] for s in sources]
        inputs_of[layer.name] = incoming
        if keras3 and kind in OPS and not isinstance(layer, keras_of(model).layers.Layer):
            kind = kind if len(incoming) > 1 else "Rescaling"  # with a number: x * c or x + c, channel by channel
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: channels_first layout")
        if kind == "SeparableConv2D" and layer.depth_multiplier != 1:
            raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: depth multiplier "
                            f"{layer.depth_multiplier} (only 1 keeps channel c in channel c)")
        if kind in PRODUCERS:
            if isinstance(incoming[0], Flat) and kind != "Dense":
                raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: it reads a "
                                "flattened tensor")
            if kind == "Conv2D" and layer.groups != 1:
                raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: grouped convolution")
            if kind == "Dense" and len(input_shape) != 2:
                raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: it is applied to a "
                                f"rank-{len(input_shape)} tensor")
            spaces[layer.name] = Space(int(_shape(layer.output)[-1]), writers=[layer])
        elif kind in ("DepthwiseConv2D", "SeparableConv2D") and layer.depth_multiplier != 1:
            raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: depth multiplier "
                            f"{layer.depth_multiplier} (only 1 keeps channel c in channel c)")
        elif kind in PASSTHROUGH:
            if isinstance(incoming[0], Flat) and kind not in ("Dropout", "Activation", "ReLU", "ReLU6", "LeakyReLU"):
                raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: it reads a "
                                "flattened tensor")
            if kind == "BatchNormalization" and layer.axis not in ([-1], [len(input_shape) - 1], -1,
                                                                   len(input_shape) - 1):
                raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: it normalizes "
                                f"axis {layer.axis}, not the channels")
            spaces[layer.name] = incoming[0]
        elif kind in MERGES:
            if any(isinstance(s, Flat) for s in incoming):
                raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: it merges "
                                "flattened tensors")
            root = incoming[0].root()
            for other in incoming[1:]:
                other = other.root()
                if other is not root:
                    other.parent = root
                    root.writers += other.writers
                    root.frozen = root.frozen or other.frozen
            spaces[layer.name] = root
        elif kind == "Flatten":
            if isinstance(incoming[0], Flat):
                spaces[layer.name] = incoming[0]
            else:
                spaces[layer.name] = Flat(incoming[0], int(np.prod(input_shape[1:-1])))
        elif kind == "Reshape" and not isinstance(incoming[0], Flat) and int(np.prod(input_shape[1:-1])) == 1 \
                and _shape(layer.output)[-1] == input_shape[-1]:
            spaces[layer.name] = incoming[0]  # (1, 1, C) <-> (C,): channel c stays channel c
        else:
            raise DataError(f"layer '{layer.name}' ({kind}) cannot be pruned by channel: edgecv does not know "
                            "how it maps channels (supported: " + ", ".join(PRODUCERS + MERGES) + ", Flatten, "
                            "Reshape of a pooled (1, 1, C) and channel-wise layers)")
    for tensor in _as_list(model.outputs):
        space = spaces[_source(tensor)]
        space = space.space if isinstance(space, Flat) else space
        space.root().frozen = "the model's output"
    return spaces, inputs_of


def _keep(space: Space, ratio: float) -> np.ndarray:
    """The surviving channel indices, in order: all of a frozen space, else the strongest by summed L1 norm
    (each writer's norms scaled to mean 1, so a residual space weighs its convolutions alike)."""
    if space.frozen or ratio == 0 or not space.writers:
        return np.arange(space.size)
    score = np.zeros(space.size)
    for layer in space.writers:
        kernel = np.abs(layer.get_weights()[1 if type(layer).__name__ == "SeparableConv2D" else 0])  # pointwise
        norms = kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)
        score += norms / max(norms.mean(), 1e-12)
    keep = max(1, int(round(space.size * (1.0 - ratio))))
    return np.sort(np.argsort(-score, kind="stable")[:keep])


def _indices(space) -> np.ndarray | None:
    """Kept indices of a space (None: the input, all kept); a flattened space's in (h, w, c) order."""
    if space is None:
        return None
    if isinstance(space, Flat):
        root = space.space.root()
        return (np.arange(space.positions)[:, None] * root.size + root.kept[None, :]).ravel()
    return space.root().kept


def _slice(layer, weights: list, rows, cols) -> list:
    """The surviving part of each weight: input channels ``rows``, output channels ``cols``."""
    kind = type(layer).__name__
    rows = slice(None) if rows is None else rows
    if kind == "Conv2D":
        return [weights[0][:, :, rows, :][..., cols]] + [b[cols] for b in weights[1:]]
    if kind == "Dense":
        return [weights[0][rows, :][:, cols]] + [b[cols] for b in weights[1:]]
    if kind == "SeparableConv2D":
        depthwise, pointwise, *bias = weights
        return [depthwise[:, :, rows, :], pointwise[:, :, rows, :][..., cols]] + [b[cols] for b in bias]
    if kind == "DepthwiseConv2D":
        return [weights[0][:, :, cols, :]] + [b[cols] for b in weights[1:]]
    if kind == "BatchNormalization":
        return [w[cols] for w in weights]
    if rows is None or len(rows) == weights[0].shape[-1]:
        return weights  # a channel-wise layer on channels that all stay (the input's Normalization)
    raise DataError(f"layer '{layer.name}' ({kind}) has weights edgecv cannot slice by channel")


def _source(tensor) -> str:
    """The layer (tf-keras) or operation (Keras 3) that made ``tensor``: the first field of its history."""
    return tensor._keras_history[0].name


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def compare_latency(before, after, images: np.ndarray, mode: str = "int8", threads: int = 1, runs: int = 200,
                    io_type: str = "int8") -> tuple[float, float]:
    """p50 ms of both models converted to ``mode``, timed alternately in one process on the same images (also
    their calibration set): a noisy machine then moves both numbers alike."""
    from edgecv import runtime as rt
    from edgecv.compress.quantize import convert

    models = [rt.TFLiteModel(content=convert(m, mode, images, io_type), threads=threads) for m in (before, after)]
    prepared = [m.prepare(images) for m in models]
    times: list[list[float]] = [[], []]
    for _ in range(2):  # two rounds, alternating, so neither model has the machine to itself
        for i, (model, x) in enumerate(zip(models, prepared)):
            times[i].append(rt.measure_latency(model, x, warmup=10, runs=max(1, runs // 2))["p50_ms"])
    return float(np.mean(times[0])), float(np.mean(times[1]))


@dataclass
class ChannelCut:
    """A cut beside its parent, per layer and in total: what ``edgecv prune-channels`` shows."""

    result: StructuredResult
    parent_accuracy: float
    layer_macs_before: dict[str, int]
    layer_macs_after: dict[str, int]
    p50_before_ms: float  # int8, 1 thread, timed alternately with the cut in one process
    p50_after_ms: float

    @property
    def final_accuracy(self) -> float:
        return self.result.test_accuracy if self.result.test_accuracy is not None else self.result.pruned_accuracy


def cut_and_compare(parent, dataset: Dataset, ratio: float, finetune: TrainConfig | None = None, runs: int = 200,
                    seed: int = 0, on_progress: ProgressFn = ignore) -> ChannelCut:
    """``prune_channels``, then the parent and the cut measured side by side: accuracy, MACs, int8 latency."""
    from edgecv.compress.quantize import calibration_images
    from edgecv.measure.macs import layer_macs
    from edgecv.train.fit import evaluate

    parent_accuracy = evaluate(parent, dataset.x_test, dataset.y_test)
    result = prune_channels(parent, dataset, ratio, finetune, on_progress)
    before, after = compare_latency(parent, result.model, calibration_images(dataset, 100, seed), runs=runs)
    return ChannelCut(result, parent_accuracy, {r.name: r.macs for r in layer_macs(parent)},
                      {r.name: r.macs for r in layer_macs(result.model)}, before, after)
