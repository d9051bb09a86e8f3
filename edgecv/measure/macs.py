"""Multiply-accumulates per layer of a Keras model: the work that explains a latency figure.

The count is the one ``edgecv.runtime.graph_stats`` makes on a TFLite graph, so a Keras row and its
converted rows agree: weight layers only (convolutions of every kind, and dense layers), per image. Pooling,
batch normalization (folded into the convolution on conversion), additions and activations count 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from edgecv._tf import is_keras3_model, keras_of


@dataclass(frozen=True)
class LayerMacs:
    name: str
    type: str  # the layer's class, or the wrapped layer's for a pruning or quantization wrapper
    output_shape: tuple | None  # without the batch dimension; of the first call for a shared layer
    macs: int  # per image, summed over every call of a shared layer
    params: int


def layer_macs(model) -> list[LayerMacs]:
    """One entry per layer, in the model's order; the layers of a nested model are listed as ``outer/inner``.

    Raises:
        ValueError: a weight layer whose shapes are not static (e.g. images of any size).
    """
    rows = []
    k = keras_of(model)
    for layer in model.layers:
        if isinstance(layer, k.Model):
            rows += [LayerMacs(f"{layer.name}/{r.name}", r.type, r.output_shape, r.macs, r.params)
                     for r in layer_macs(layer)]
            continue
        calls = _calls(model, layer)
        inner = _unwrap(layer, k)
        macs = sum(_macs(inner, shape_in, shape_out, k) for shape_in, shape_out in calls)
        shape = tuple(calls[0][1][1:]) if calls and _is_shape(calls[0][1]) else None
        rows.append(LayerMacs(layer.name, type(inner).__name__, shape, int(macs), int(layer.count_params())))
    return rows


def total_macs(model) -> int:
    return sum(r.macs for r in layer_macs(model))


def _unwrap(layer, k):
    """The layer inside pruning, quantization and TimeDistributed wrappers: it holds the kernels."""
    while isinstance(layer, k.layers.Wrapper):
        layer = layer.layer
    return layer


def _calls(model, layer) -> list[tuple]:
    """(input shape, output shape) of each call of ``layer`` inside ``model``: a shared layer works each time."""
    if is_keras3_model(model):  # Keras 3 nodes hold their tensors; the model keys its own by the layer's id
        own = getattr(model, "_nodes", None)
        return [(_single([tuple(t.shape) for t in node.input_tensors]), _single([tuple(t.shape) for t in node.outputs]))
                for i, node in enumerate(layer._inbound_nodes) if own is None or f"{id(layer)}_ib-{i}" in own]
    nodes = getattr(model, "_network_nodes", None)
    calls = []
    for i, node in enumerate(getattr(layer, "_inbound_nodes", [])):
        if nodes is not None and f"{layer.name}_ib-{i}" not in nodes:
            continue  # a call in another model that shares the layer
        calls.append((_single(node.input_shapes), _single(node.output_shapes)))
    return calls


def _single(shapes):
    """The shape itself for a one-tensor list (an InputLayer's node gives ``[(None, 32, 32, 3)]``)."""
    if isinstance(shapes, tuple | list) and len(shapes) == 1 and isinstance(shapes[0], tuple | list):
        return shapes[0]
    return shapes


def _is_shape(value) -> bool:
    return isinstance(value, tuple | list) and all(d is None or isinstance(d, int) for d in value)


def _size(shape, layer) -> int:
    """Elements of one image's tensor (the batch dimension dropped)."""
    if not _is_shape(shape) or any(d is None for d in shape[1:]):
        raise ValueError(f"layer {layer.name} has no static shape ({shape}): MACs need a fixed input size")
    return prod(shape[1:])


def _macs(layer, shape_in, shape_out, k) -> int:
    L = k.layers
    if isinstance(layer, L.SeparableConv1D | L.SeparableConv2D):
        # depthwise (*k, Cin, m), then pointwise (Cin*m -> Cout), at each output pixel
        pixels = _size(shape_out, layer) // layer.filters
        return pixels * (prod(layer.depthwise_kernel.shape) + prod(layer.pointwise_kernel.shape))
    if isinstance(layer, L.DepthwiseConv1D | L.DepthwiseConv2D):  # one product per tap and output channel
        kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel  # Keras 3: kernel
        return _size(shape_out, layer) * prod(kernel.shape[:-2])
    if isinstance(layer, L.Conv1DTranspose | L.Conv2DTranspose | L.Conv3DTranspose):
        # kernel (*k, Cout, Cin): every input pixel meets the whole kernel, as TFLite's TRANSPOSE_CONV counts
        return _size(shape_in, layer) * prod(layer.kernel.shape[:-1])
    if isinstance(layer, L.Conv1D | L.Conv2D | L.Conv3D):  # kernel (*k, Cin per group, Cout): one window per output
        return _size(shape_out, layer) * prod(layer.kernel.shape[:-1])
    if isinstance(layer, L.Dense):  # kernel (in, units), applied at every leading position
        return _size(shape_out, layer) * int(layer.kernel.shape[0])
    return 0
