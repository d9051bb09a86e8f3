"""Rebuilds a Keras 3 ``.keras`` file as a tf-keras model.

TFMOT only takes Keras 2 (tf-keras) models, and tf-keras cannot read the configs Keras 3 writes: its
serialized objects, input layers and functional nodes have other shapes. Standard layers mean the same in
both, so the config is translated key by key and the weights are copied from ``model.weights.h5``. What
tf-keras lacks but can compute exactly is written in its layers: Keras 3's ``hard_silu`` and ``hard_sigmoid``
(which tf-keras does not have, or defines with another slope) as ``Rescaling``, ``ReLU`` and ``Multiply``, and
``keras.ops`` arithmetic (``x + 3.0``, ``x * (1 / 6)``, as ``keras.applications`` writes them) as ``Rescaling`` or
a merge layer. Anything else that could change what the model computes is refused with a one-line reason
rather than dropped.

Only TFMOT's rows need this: a Keras 3 model is converted, measured and channel-pruned as it is.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import zipfile
from functools import cache
from pathlib import Path

import numpy as np

from edgecv._tf import keras
from edgecv.errors import DataError, first_line

LAMBDA_REFUSAL = ("{path} carries code (a Lambda layer) and is refused: "
                  "load it only if you trust it (compress --model with --trust-model)")

# Keras 3 class name -> option renames. Each was checked to compute the same in tf-keras, and
# tests/test_keras3.py compares predictions through every one of them.
LAYERS: dict[str, dict[str, str]] = {
    "InputLayer": {"batch_shape": "batch_input_shape"},
    "Conv2D": {}, "DepthwiseConv2D": {}, "SeparableConv2D": {}, "Conv2DTranspose": {}, "Dense": {},
    "BatchNormalization": {}, "LayerNormalization": {},
    "Activation": {}, "ReLU": {}, "LeakyReLU": {"negative_slope": "alpha"}, "PReLU": {}, "Softmax": {},
    "MaxPooling2D": {}, "AveragePooling2D": {}, "GlobalAveragePooling2D": {}, "GlobalMaxPooling2D": {},
    "Flatten": {}, "Reshape": {}, "Permute": {}, "ZeroPadding2D": {}, "Cropping2D": {}, "UpSampling2D": {},
    "Dropout": {}, "SpatialDropout2D": {}, "GaussianNoise": {}, "GaussianDropout": {},
    "Add": {}, "Subtract": {}, "Multiply": {}, "Average": {}, "Maximum": {}, "Minimum": {}, "Concatenate": {},
    "Rescaling": {}, "Normalization": {},
}
MODELS = ("Sequential", "Functional")

# Options Keras 3 writes that tf-keras lacks, and the value at which leaving them out changes nothing.
NEUTRAL = {
    "optional": False, "quantization_config": None, "lora_rank": None, "lora_alpha": None,
    "rms_scaling": False, "input_axes": None, "output_axes": None, "name": None,
}

# Same formula in both; Keras 3's hard_sigmoid has another slope, hard_silu does not exist in tf-keras.
HARD = {"hard_silu": "hard_silu", "hard_swish": "hard_silu", "hard_sigmoid": "hard_sigmoid"}  # written in layers
# keras.ops arithmetic written as Rescaling (tensor and number) or a merge layer (two tensors of one shape)
OPS = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply", "Divide": None, "TrueDivide": None}
ACTIVATIONS = {"linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "selu", "softplus",
               "softsign", "swish", "silu", "gelu", "leaky_relu", "mish", "exponential"}

DTYPES = {"float16", "float32", "float64", "bfloat16", "mixed_float16", "mixed_bfloat16",
          "int8", "int16", "int32", "int64", "uint8", "bool", "string"}


def saved_version(path: str | Path) -> str | None:
    """The Keras version in a ``.keras`` archive's metadata, or None when it is not such an archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read("metadata.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    return version if isinstance(version, str) else None


def is_keras3(path: str | Path) -> bool:
    """tf-keras writes its own version (2.x) in the same archive format, so the major version decides."""
    version = saved_version(path)
    return bool(version) and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3


def to_tf_keras(model):
    """TFMOT's copy of a model: a tf-keras model as it is, a Keras 3 one rebuilt (through a ``.keras`` file in a
    temporary folder). Refusals name the model and the layer, not the temporary file.

    Raises:
        DataError: a layer, activation or option tf-keras cannot reproduce exactly.
    """
    import tempfile

    from edgecv._tf import is_keras3_model

    if not is_keras3_model(model):
        return model
    with tempfile.TemporaryDirectory(prefix="edgecv-rebuild-") as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return load(path, trust=True, label=f"model '{model.name}'")  # in memory already: its code ran


def load(path: str | Path, trust: bool = False, label: str | None = None):
    """The tf-keras model a Keras 3 ``.keras`` file describes, with its weights; ``label`` names it in refusals
    (default: the path).

    Raises:
        DataError: the archive is unreadable, carries code (a Lambda layer) and is not trusted, or holds a
            layer, activation or option tf-keras cannot reproduce exactly.
    """
    path = Path(path)
    label = label or str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{label} is not a loadable Keras 3 model: {first_line(e)}") from None
    if not trust and _has_lambda(config):
        raise DataError(LAMBDA_REFUSAL.format(path=path))
    translator = _Translator(label)
    try:
        kind, tk_config = translator.model(config, top=True)
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # a config.json Keras 3 did not write
        raise DataError(f"{label} is not a loadable Keras 3 model: its config is malformed ({first_line(e)})") from None
    try:
        model = (keras().Sequential if kind == "Sequential" else keras().Model).from_config(tk_config)
    except Exception as e:  # tf-keras raises many types for a config it cannot build
        raise DataError(f"{label}: the Keras 3 model could not be rebuilt in tf-keras: {first_line(e)}") from None
    try:
        _load_weights(label, weights, config, model, translator.weights_of)
    except DataError:
        raise
    except Exception as e:  # h5py, numpy and tf-keras each raise their own types for weights that do not fit
        raise DataError(f"{label}: its weights could not be copied into the rebuilt model: {first_line(e)}") from None
    return model


def _has_lambda(node) -> bool:
    if isinstance(node, dict):
        return node.get("class_name") == "Lambda" or any(_has_lambda(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_lambda(v) for v in node)
    return False


def _in_modules(entry: dict, modules: tuple[str, ...]) -> bool:
    """``keras.layers`` is in ``keras``; ``keras_hub`` is not."""
    module = entry.get("module") or ""
    return any(module == m or module.startswith(m + ".") for m in modules)


def _is_standard(entry: dict, modules: tuple[str, ...]) -> bool:
    """Keras' own classes carry their module and no registered name (models register their class name)."""
    return _in_modules(entry, modules) and entry.get("registered_name") in (None, entry.get("class_name"))


class _Translator:
    """Keras 3 config -> tf-keras config; ``where`` names the layer being translated in refusals."""

    def __init__(self, label: str):
        self.label = label
        self.where = ""
        self.weights_of: dict[str, str] = {}  # Keras 3 layer -> the rebuilt layer holding its weights, where renamed

    def refuse(self, why: str) -> DataError:
        return DataError(f"{self.label}: {self.where} cannot be rebuilt in tf-keras: {why}")

    def model(self, entry: dict, top: bool = False) -> tuple[str, dict]:
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        cls = entry.get("class_name")
        where = (f"model '{config['name']}' ({cls})" if config.get("name") else f"model ({cls})") if top \
            else f"layer '{config.get('name', entry.get('name', '?'))}' ({cls})"
        self.where = where
        if cls not in MODELS or not _is_standard(entry, ("keras",)):
            raise self.refuse("it is a subclassed or custom model, not a Sequential or functional one")
        if cls == "Sequential":
            layers = [self.layer(layer) for layer in config.get("layers", [])]
            for entry, layer in zip(config.get("layers", []), layers):
                if _hard(layer):
                    self.where = f"layer '{layer['config'].get('name')}' ({layer['class_name']})"
                    raise self.refuse(f"its activation {_hard(layer)!r} is rebuilt from several layers, which a "
                                      "Sequential model cannot hold: build the model functionally")
            self.where = where
            if not layers or layers[0]["class_name"] != "InputLayer":
                shape = config.get("build_input_shape") or self._first_build_shape(config)
                if shape is None:
                    raise self.refuse("it was never built, so its input shape and weights are unknown")
                layers.insert(0, {"class_name": "InputLayer", "config": {"batch_input_shape": shape}})
            return cls, {"name": config.get("name"), "trainable": config.get("trainable", True), "layers": layers}
        # tf-keras counts a nested model's own input-to-output node first and leaves it out of configs,
        # so its calls are numbered from 1; Keras 3 numbers them from 0
        nested = {layer.get("name") for layer in config.get("layers", []) if layer.get("class_name") in MODELS}
        layers = []
        for layer in config.get("layers", []):
            if _in_modules(layer, ("keras.ops", "keras.src.ops")):
                layers.append(self.op(layer, nested))
                continue
            translated = self.layer(layer)
            translated["name"] = layer.get("name", translated["config"].get("name"))
            translated["inbound_nodes"] = [self.node(node, nested) for node in layer.get("inbound_nodes", [])]
            layers += self.written_out(translated) if _hard(translated) else [translated]
        self.where = where
        translated = {"name": config.get("name"), "trainable": config.get("trainable", True), "layers": layers,
                      "input_layers": self.endpoints(config.get("input_layers"), nested, layers),
                      "output_layers": self.endpoints(config.get("output_layers"), nested, layers)}
        self.check_graph(translated)
        return cls, translated

    def written_out(self, layer: dict) -> list[dict]:
        """A layer with Keras 3's hard_silu or hard_sigmoid as the same sum in tf-keras layers, under the same name:
        hard_sigmoid(x) = relu6(x + 3) / 6 = min(max(x / 6 + 0.5, 0), 1), hard_silu(x) = x * hard_sigmoid(x)."""
        name, kind, calls = layer["name"], _hard(layer), layer["inbound_nodes"]
        layers = []
        if layer["class_name"] == "Activation":
            inputs = [call[0][:3] for call in calls]
        else:  # the weight layer keeps its weights, without its activation, under another name
            pre = dict(layer, name=f"{name}__linear", config=dict(layer["config"], name=f"{name}__linear",
                                                                   activation="linear"))
            self.weights_of[name] = pre["name"]
            layers.append(pre)
            inputs = [[pre["name"], i, 0] for i in range(len(calls))]

        def called(cls: str, layer_name: str, config: dict, sources) -> dict:
            return {"class_name": cls, "name": layer_name, "config": {"name": layer_name, **config},
                    "inbound_nodes": [[[*ref, {}] for ref in refs] for refs in sources]}

        scale = f"{name}__scale" if kind == "hard_silu" else f"{name}__hard_sigmoid_scale"
        clip = f"{name}__hard_sigmoid" if kind == "hard_silu" else name
        layers.append(called("Rescaling", scale, {"scale": 1 / 6, "offset": 0.5}, [[x] for x in inputs]))
        layers.append(called("ReLU", clip, {"max_value": 1.0}, [[[scale, i, 0]] for i in range(len(calls))]))
        if kind == "hard_silu":
            layers.append(called("Multiply", name, {}, [[x, [clip, i, 0]] for i, x in enumerate(inputs)]))
        return layers

    def op(self, entry: dict, nested: set) -> dict:
        """``keras.ops`` arithmetic between a tensor and a number, as ``Rescaling`` (x * scale + offset), or between
        two tensors of one shape, as the merge layer of the same name."""
        cls, name = entry.get("class_name"), entry.get("name") or (entry.get("config") or {}).get("name")
        self.where = f"layer '{name}' ({cls})"
        calls = entry.get("inbound_nodes", [])
        if cls not in OPS:
            raise self.refuse("it is a keras.ops operation applied to a tensor, not a layer")
        if len(calls) != 1 or not isinstance(calls[0], dict) or calls[0].get("kwargs"):
            raise self.refuse("it is a keras.ops operation called other than once with two arguments")
        args = calls[0].get("args", [])
        tensors = [_tensor(a) for a in args]
        if len(args) != 2:
            raise self.refuse("it is a keras.ops operation called other than once with two arguments")
        if all(t is not None for t in tensors):
            shapes = [(a.get("config") or {}).get("shape") for a in args]
            if OPS[cls] is None or shapes[0] != shapes[1]:
                raise self.refuse("it is a keras.ops operation between tensors that no tf-keras layer computes "
                                  "exactly (a division, or shapes that broadcast)")
            return {"class_name": OPS[cls], "name": name, "config": {"name": name},
                    "inbound_nodes": [[[*_renumber(t, nested), {}] for t in tensors]]}
        numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if len(numbers) != 1 or sum(t is not None for t in tensors) != 1:
            raise self.refuse("it is a keras.ops operation on something other than a tensor and a number")
        c, tensor_first = float(numbers[0]), tensors[0] is not None
        if cls == "Add":
            scale, offset = 1.0, c
        elif cls == "Multiply":
            scale, offset = c, 0.0
        elif cls == "Subtract":
            scale, offset = (1.0, -c) if tensor_first else (-1.0, c)
        elif tensor_first and c != 0:  # a division by a number
            scale, offset = 1.0 / c, 0.0
        else:
            raise self.refuse("it is a keras.ops division of a number by a tensor, which no tf-keras layer computes")
        tensor = next(t for t in tensors if t is not None)
        return {"class_name": "Rescaling", "name": name, "config": {"name": name, "scale": scale, "offset": offset},
                "inbound_nodes": [[[*_renumber(tensor, nested), {}]]]}

    def check_graph(self, config: dict) -> None:
        """Replays the layer calls: tf-keras retries a call whose inputs do not exist yet forever, so a
        broken or circular graph must be refused before it gets there."""
        # calls are numbered from 1 for nested models, whose call 0 is internal; an input layer has just 0
        first = {layer["name"]: int(layer["class_name"] in MODELS) for layer in config["layers"]}
        made = {layer["name"]: int(layer["class_name"] in (*MODELS, "InputLayer")) for layer in config["layers"]}
        pending = {layer["name"]: list(layer["inbound_nodes"]) for layer in config["layers"]}

        def ready(refs) -> bool:
            return all(ref[0] in made and first[ref[0]] <= ref[1] < made[ref[0]] for ref in refs)

        progress = True
        while progress:
            progress = False
            for name, calls in pending.items():
                while calls and ready(calls[0]):
                    calls.pop(0)
                    made[name] += 1
                    progress = True
        stuck = next((layer for layer in config["layers"] if pending[layer["name"]]), None)
        if stuck is not None:
            self.where = f"layer '{stuck['name']}' ({stuck['class_name']})"
            raise self.refuse("its input is a layer call the graph does not contain (a broken or circular graph)")
        if not ready(config["input_layers"] + config["output_layers"]):
            raise self.refuse("its inputs or outputs name a layer call the graph does not contain")

    @staticmethod
    def _first_build_shape(config: dict):
        for layer in config.get("layers", []):
            return (layer.get("build_config") or {}).get("input_shape")
        return None

    def endpoints(self, value, nested: set, layers: list[dict]) -> list:
        """Keras 3 writes one endpoint bare, ``[name, node, tensor]``; tf-keras wants a list of them.

        Keras 3 numbers a layer's calls within the model in ``inbound_nodes`` but counts all of its calls, in
        other models too, in an endpoint: a nested model whose output is an application called elsewhere first
        says call 1 where the graph holds call 0. A layer called once in the graph can only mean that call."""
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            value = [value]
        if not (isinstance(value, list) and value and all(_is_history(v) for v in value)):
            raise self.refuse("its inputs or outputs are nested or a dict, which the rebuild does not support")
        calls = {layer["name"]: len(layer["inbound_nodes"]) for layer in layers}
        out = []
        for name, node, tensor in value:
            if calls.get(name) == 1 and node > 0:
                node = 0
            out.append(_renumber([name, node, tensor], nested))
        return out

    def node(self, node, nested: set) -> list:
        """``{"args": [...], "kwargs": {...}}`` with keras tensors -> tf-keras' ``[[layer, node, tensor, kwargs]]``."""
        if not isinstance(node, dict):
            raise self.refuse("its call in the graph is not in the Keras 3 format")
        args, kwargs = node.get("args", []), {k: v for k, v in node.get("kwargs", {}).items() if v is not None}
        if any(_tensor(v) is not None or isinstance(v, (list, dict)) for v in kwargs.values()):
            raise self.refuse("it is called with tensors as keyword arguments")
        if len(args) == 1 and isinstance(args[0], list):
            tensors = [_tensor(a) for a in args[0]]
        elif len(args) == 1:
            tensors = [_tensor(args[0])]
        else:
            tensors = [None]
        if not tensors or any(t is None for t in tensors):
            raise self.refuse("it is called with arguments other than one tensor or a list of tensors")
        return [[*_renumber(t, nested), kwargs] for t in tensors]

    def layer(self, entry: dict) -> dict:
        cls = entry.get("class_name")
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        self.where = f"layer '{config.get('name', entry.get('name', '?'))}' ({cls})"
        if cls in MODELS:
            kind, nested = self.model(entry)
            return {"class_name": kind, "config": nested}
        if cls == "Lambda":
            raise self.refuse("its Python function was written for Keras 3")
        if _in_modules(entry, ("keras.ops", "keras.src.ops")):
            raise self.refuse("it is a keras.ops operation applied to a tensor, not a layer")
        if not _is_standard(entry, ("keras.layers", "keras.src.layers")):
            raise self.refuse("it is not a standard Keras layer")
        if cls not in LAYERS:
            raise self.refuse(f"edgecv does not translate Keras 3 {cls} layers to tf-keras")
        target = getattr(keras().layers, cls)
        accepted = _accepted(target)
        out = {}
        for key, value in config.items():
            key = LAYERS[cls].get(key, key)
            value = self.value(key, value)
            if key not in accepted:
                if key in NEUTRAL and value == NEUTRAL[key]:
                    continue
                raise self.refuse(f"its option {key}={value!r} has no tf-keras equivalent")
            out[key] = value
        return {"class_name": cls, "config": out}

    def value(self, key: str, value):
        if key == "dtype":
            return self.dtype(value)
        if key == "activation":
            return self.activation(value)
        if key.endswith("_initializer"):
            return self.initializer(value)
        if key.endswith("_regularizer"):
            return self.obj(value, "regularizers", keras().regularizers.Regularizer)
        if key.endswith("_constraint"):
            return self.obj(value, "constraints", keras().constraints.Constraint)
        if isinstance(value, dict) and "class_name" in value:
            raise self.refuse(f"its option {key} is a {value['class_name']} object tf-keras cannot take")
        return value

    def dtype(self, value):
        if isinstance(value, dict):
            if value.get("class_name") not in ("DTypePolicy", "FloatDTypePolicy", "Policy"):
                raise self.refuse(f"its dtype policy {value.get('class_name')} (quantized by Keras 3?) "
                                  "has no tf-keras equivalent")
            value = (value.get("config") or {}).get("name")
        if value is not None and value not in DTYPES:
            raise self.refuse(f"its dtype {value!r} has no tf-keras equivalent")
        return value

    def activation(self, value):
        if isinstance(value, dict):  # some Keras 3 versions wrap built-in functions
            value = value.get("config") if value.get("module") == "keras.activations" else None
        if isinstance(value, str) and value in HARD:
            return value  # written out in layers by ``written_out``
        if not isinstance(value, str) or value not in ACTIVATIONS:
            raise self.refuse(f"its activation {value!r} has no identical tf-keras function")
        return value

    def initializer(self, value):
        """An initializer never touches loaded weights, so one tf-keras lacks falls back to the default."""
        if not isinstance(value, dict):
            return value
        try:
            return self.obj(value, "initializers", keras().initializers.Initializer)
        except DataError:
            return None

    def obj(self, value, module: str, base: type):
        """A serialized Keras 3 object -> tf-keras' ``{"class_name", "config"}``, keeping only what it takes."""
        if value is None or isinstance(value, str):
            return value
        name = value.get("class_name") if isinstance(value, dict) else None
        target = getattr(getattr(keras(), module), name or "", None)
        if not (_is_standard(value, ("keras",)) and isinstance(target, type) and issubclass(target, base)):
            raise self.refuse(f"its {name!r} {module[:-1]} is not a standard Keras one")
        accepted = set(inspect.signature(target.__init__).parameters) - {"self", "args", "kwargs"}
        config = {}
        for key, v in (value.get("config") or {}).items():
            if key in accepted:
                config[key] = v
            elif not (key in NEUTRAL and v == NEUTRAL[key]):
                raise self.refuse(f"its {name} {module[:-1]} option {key}={v!r} has no tf-keras equivalent")
        return {"class_name": name, "config": config}


def _hard(layer: dict) -> str | None:
    """``hard_silu`` or ``hard_sigmoid`` when a translated layer's activation must be written out in layers."""
    return HARD.get(layer["config"].get("activation")) if isinstance(layer["config"].get("activation"), str) else None


def _is_history(value) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(i, int) for i in value[1:]))


def _renumber(history: list, nested: set) -> list:
    name, node, tensor = history
    return [name, node + 1 if name in nested else node, tensor]


def _tensor(value) -> list | None:
    """``[layer, node, tensor]`` of a serialized Keras 3 tensor, or None for anything else."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if _is_history(history):
            return list(history)
    return None


@cache
def _accepted(cls: type) -> frozenset[str]:
    """Every argument a tf-keras layer class takes, through its bases' constructors."""
    names = {"input_shape", "batch_input_shape", "batch_size", "activity_regularizer", "autocast", "input_dim"}
    for base in cls.__mro__:
        if isinstance(base, type) and issubclass(base, keras().layers.Layer) and "__init__" in vars(base):
            names |= set(inspect.signature(base.__init__).parameters)
    return frozenset(names - {"self", "args", "kwargs"})


def _snake(name: str) -> str:
    """Keras 3's ``naming.to_snake_case``: the weights file names each layer after its class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _load_weights(label: str, data: bytes, config: dict, model, weights_of: dict[str, str]) -> None:
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            _copy_weights(label, f, "", config, model, weights_of)
    except OSError as e:
        raise DataError(f"{label}: its model.weights.h5 is unreadable: {first_line(e)}") from None


def _copy_weights(label: str, f, prefix: str, entry: dict, model, weights_of: dict[str, str]) -> None:
    """Keras 3 stores a model's layers under ``layers/<snake_case class>[_n]``, numbered in ``model.layers``
    order (a Sequential's input layer is not in it); recent versions also record each layer's name."""
    config = entry["config"]
    layers = config.get("layers", [])
    if entry["class_name"] == "Sequential" and layers and layers[0].get("class_name") == "InputLayer":
        layers = layers[1:]
    group = f.get(f"{prefix}layers")
    by_name = {}
    if group is not None:
        for key, child in group.items():
            name = child["vars"].attrs.get("name") if "vars" in child else None
            if isinstance(name, bytes):
                name = name.decode()
            if isinstance(name, str):
                by_name[name] = f"{prefix}layers/{key}"
    used: dict[str, int] = {}
    for layer in layers:
        key = _snake(layer["class_name"])
        used[key] = used.get(key, -1) + 1
        name = layer["config"].get("name")
        location = by_name.get(name) or f"{prefix}layers/{key}" + (f"_{used[key]}" if used[key] else "")
        target = model.get_layer(weights_of.get(name, name))
        if layer["class_name"] in MODELS:
            _copy_weights(label, f, location + "/", layer, target, weights_of)
            continue
        stored = f.get(f"{location}/vars")
        try:
            values = [] if stored is None else [np.asarray(stored[str(i)]) for i in range(len(stored))]
        except KeyError:  # variables are stored as 0..n-1
            raise DataError(f"{label}: layer '{name}' ({layer['class_name']}) has its weights in model.weights.h5 "
                            f"under unexpected names: {sorted(stored)}") from None
        expected = [tuple(w.shape) for w in target.weights]
        if [v.shape for v in values] != expected:
            raise DataError(f"{label}: layer '{name}' ({layer['class_name']}) has weights "
                            f"{[v.shape for v in values]} in model.weights.h5 but tf-keras expects {expected}")
        if values:
            target.set_weights(values)
