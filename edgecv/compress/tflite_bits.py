"""What a ``.tflite`` file stores, read from its flatbuffer: each weight layer's bit width and bytes, and where
the file's bytes go.

The interpreter cannot tell this: it hands int4 weights out unpacked, as int8 tensors. The flatbuffer's tensor
type (``INT4``, ``INT8``, ``FLOAT16``, ``FLOAT32``...) and buffer length are what the file really holds, so they
are read with the schema reader that ships with ai-edge-litert (``ai_edge_litert.tools.flatbuffer_utils``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgecv.errors import DataError, first_line

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")
UNPACKING_OPS = ("DEQUANTIZE", "DENSIFY")  # stand between a stored weight and its op (float16, sparse storage)


@dataclass(frozen=True)
class WeightLayer:
    name: str  # the op's first output tensor name: the name the converter gave the layer
    op: str  # CONV_2D, FULLY_CONNECTED...
    index: int  # the op's position in the main subgraph
    dtype: str  # the stored weight tensor's type: INT4, INT8, FLOAT16, FLOAT32...
    bits: int  # of one stored weight
    params: int  # weights in the kernel (biases not counted)
    bytes: int  # the kernel's buffer as stored (int4 packs two weights to a byte)


@dataclass(frozen=True)
class TFLiteLayout:
    layers: tuple[WeightLayer, ...]  # in graph order
    file_bytes: int
    constant_bytes: int  # every constant buffer: kernels, biases, shapes...

    def weight_bytes(self) -> dict[str, int]:
        """Kernel bytes by stored type, e.g. ``{"INT4": 9216, "INT8": 34016}``."""
        totals: dict[str, int] = {}
        for layer in self.layers:
            totals[layer.dtype] = totals.get(layer.dtype, 0) + layer.bytes
        return totals

    def breakdown(self) -> dict[str, int]:
        """Where the file's bytes go: kernels by type, the other constants, and the rest (graph, quantization
        parameters, names, metadata)."""
        kernels = self.weight_bytes()
        parts = {f"weights {dtype.lower()}": n for dtype, n in sorted(kernels.items())}
        parts["other constants"] = self.constant_bytes - sum(kernels.values())
        parts["graph and metadata"] = self.file_bytes - self.constant_bytes
        return parts

    def bits(self) -> dict[str, int]:
        """Each weight layer's stored bit width, by name."""
        return {layer.name: layer.bits for layer in self.layers}

    def to_dict(self) -> dict:
        return {"file_bytes": self.file_bytes, "breakdown": self.breakdown(),
                "layers": [asdict(layer) for layer in self.layers]}


def read_flatbuffer(model: bytes | str | Path):
    """The file as the schema's object tree (``ModelT``); a DataError line for what is not a TFLite model."""
    from ai_edge_litert.tools import flatbuffer_utils

    content = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    if content[4:8] != b"TFL3":
        raise DataError(f"{model if isinstance(model, (str, Path)) else 'the model'} is not a TFLite flatbuffer")
    try:
        return flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    except Exception as e:  # the generated reader raises whatever a truncated buffer makes it hit
        raise DataError(f"the TFLite flatbuffer cannot be read: {first_line(e)}") from None


def tflite_layout(model: bytes | str | Path) -> TFLiteLayout:
    """The weight layers of the main subgraph with their stored types, and the file's size breakdown."""
    from ai_edge_litert.tools import flatbuffer_utils

    content = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    fb = read_flatbuffer(content)
    graph = fb.subgraphs[0]
    op_names = [flatbuffer_utils.opcode_to_name(fb, op.opcodeIndex) for op in graph.operators]
    produced_by = {int(out): i for i, op in enumerate(graph.operators) for out in op.outputs}
    layers = []
    for i, (op, op_name) in enumerate(zip(graph.operators, op_names)):
        if op_name not in WEIGHT_OPS or len(op.inputs) < 2:
            continue
        index = int(op.inputs[1])
        while index in produced_by and op_names[produced_by[index]] in UNPACKING_OPS:
            index = int(graph.operators[produced_by[index]].inputs[0])
        tensor = graph.tensors[index]
        data = fb.buffers[tensor.buffer].data
        if data is None:  # a weight computed at run time or fed as an input: nothing stored
            continue
        dtype = flatbuffer_utils.type_to_name(tensor.type)
        name = tensor_name(graph.tensors[int(op.outputs[0])])
        layers.append(WeightLayer(name=name, op=op_name, index=i, dtype=dtype, bits=_bits(dtype),
                                  params=int(np.prod(tensor.shape)) if tensor.shape is not None else len(data),
                                  bytes=len(data)))
    constants = sum(len(b.data) for b in fb.buffers if b.data is not None)
    return TFLiteLayout(layers=tuple(layers), file_bytes=len(content), constant_bytes=constants)


def tensor_name(tensor) -> str:
    """A tensor's name up to the first ``;`` (the converter joins the names of fused ops with ``;``)."""
    return tensor.name.decode(errors="replace").split(";")[0]


def _bits(dtype: str) -> int:
    """INT4 -> 4, FLOAT16 -> 16, FLOAT8_E4M3FN -> 8."""
    return int(re.search(r"\d+", dtype).group())
