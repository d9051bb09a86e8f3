"""Keras 3 ``.keras`` files rebuilt in tf-keras (for TFMOT's rows): same predictions, or a one-line refusal
naming the layer; and loaded as they are, in Keras 3, for everything else.

The files are written by real Keras 3 in a subprocess (as TensorFlow hands it out, without the tf-keras
switch), all in one run to keep the tests fast.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import DataError
from edgecv.compress.export import load_keras
from edgecv.compress.keras3 import is_keras3, saved_version
from edgecv.compress.keras3 import load as rebuild

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

PRELUDE = """
import os, sys
import numpy as np
import keras
from keras import layers

assert keras.__version__.startswith("3."), keras.__version__
out = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32")

def perturb(model):
    # biases and batch-norm statistics away from their initial values, so that a weight copied to the
    # wrong place or left out changes the predictions
    for layer in model.layers:
        if hasattr(layer, "layers"):
            perturb(layer)
            continue
        values = []
        for v in layer.weights:
            shape, name = tuple(v.shape), v.path.split("/")[-1]
            if name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
            elif name in ("beta", "moving_mean", "bias", "alpha"):
                values.append(rng.normal(0, 0.2, shape).astype("float32"))
            else:
                values.append(np.asarray(v))
        if values:
            layer.set_weights(values)

def save(name, model, predict=True):
    path = os.path.join(out, name + ".keras")
    model.save(path)
    if predict:  # what Keras 3 itself makes of the file
        y = keras.models.load_model(path).predict(x, verbose=0)
        np.savez(os.path.join(out, name + ".npz"), x=x, y=np.asarray(y))
"""

MODELS = """
seq = keras.Sequential([
    keras.Input((16, 16, 3)), layers.Rescaling(1 / 255.0),
    layers.Conv2D(8, 3, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4)),
    layers.BatchNormalization(), layers.MaxPooling2D(),
    layers.DepthwiseConv2D(3, padding="same"), layers.SeparableConv2D(8, 3, activation="relu"),
    layers.Dropout(0.2), layers.Flatten(), layers.Dense(3, activation="softmax"),
], name="cnn")
perturb(seq)
save("sequential", seq)

def block(x, filters, stride):
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(filters, 3, padding="same")(y)
    y = layers.BatchNormalization(scale=False)(y)
    if stride != 1 or x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, strides=stride)(x)
        x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(layers.Add()([x, y]))

inp = keras.Input((16, 16, 3), name="image")
h = layers.Rescaling(1 / 127.5, offset=-1)(inp)
h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
h = block(h, 8, 1)
h = block(h, 16, 2)
side = layers.GlobalAveragePooling2D()(layers.AveragePooling2D(2)(layers.ZeroPadding2D(1)(h)))
h = layers.Concatenate()([layers.GlobalAveragePooling2D()(h), side])
h = layers.Reshape((32,))(h)
res = keras.Model(inp, layers.Softmax()(layers.Dense(3)(h)), name="resnet")
perturb(res)
save("resnet", res)

inner_in = keras.Input((16, 16, 4))
inner = keras.Model(inner_in, layers.Conv2D(4, 1)(inner_in), name="inner")
stem = keras.Sequential([layers.Rescaling(1 / 255.0), layers.Conv2D(4, 3, padding="same"),
                         layers.BatchNormalization(), layers.ReLU(6.0)], name="stem")
stem.build((None, 16, 16, 3))
shared = layers.Dense(3, name="shared")
inp = keras.Input((16, 16, 3))
h = inner(stem(inp, training=False))
out_ = layers.Add()([shared(layers.GlobalAveragePooling2D()(h)), shared(layers.GlobalMaxPooling2D()(h))])
nested = keras.Model(inp, out_, name="nested")
perturb(nested)
save("nested", nested)

mid_in = keras.Input((16, 16, 3))
mid = keras.Model(mid_in, inner(stem(mid_in)), name="mid")  # two levels deep, and called twice
inp = keras.Input((16, 16, 3))
h = layers.Add()([mid(inp), mid(layers.Rescaling(0.5)(inp))])
deep = keras.Model(inp, layers.Dense(3)(layers.GlobalAveragePooling2D()(h)), name="deep")
perturb(deep)
save("deep", deep)

inp = keras.Input((16, 16, 3))
norm = layers.Normalization(axis=-1)
h = norm(layers.Rescaling(1 / 255.0)(inp))
h = layers.Conv2D(8, 3, strides=2, padding="same", activation="swish")(h)
h = layers.PReLU(shared_axes=[1, 2])(layers.LeakyReLU(0.1)(h))
g = layers.Conv2DTranspose(8, 3, strides=2, padding="same")(h)
g = layers.MaxPooling2D(2)(layers.ZeroPadding2D(1)(layers.Cropping2D(1)(g)))
h = layers.Subtract()([layers.Multiply()([h, g]), g])
h = layers.Minimum()([layers.Maximum()([h, g]), layers.Average()([h, g])])
h = layers.UpSampling2D(2)(layers.LayerNormalization()(h))
h = layers.BatchNormalization(center=False)(layers.SpatialDropout2D(0.1)(h))
h = layers.Conv2D(8, 1, groups=2, activation="gelu")(layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)(h))
h = layers.GaussianDropout(0.1)(layers.GaussianNoise(0.1)(layers.GlobalMaxPooling2D()(layers.Permute((2, 1, 3))(h))))
more = keras.Model(inp, layers.Dense(3, activation="softmax")(h), name="more")
norm.adapt(rng.uniform(0, 1, (16, 16, 16, 3)).astype("float32"))
perturb(more)
save("more", more)

inp = keras.Input((16, 16, 3))

@keras.saving.register_keras_serializable(package="mine")
class MyBlock(layers.Layer):
    def call(self, t):
        return t * 2.0

save("custom", keras.Model(inp, layers.Dense(3)(MyBlock(name="foo")(inp))), predict=False)
save("lambda", keras.Model(inp, layers.Dense(3)(layers.Lambda(lambda t: t * 2.0, name="double")(inp))), predict=False)
h = layers.Conv2D(8, 3, padding="same", activation="hard_silu", name="conv_hs")(inp)
h = layers.Activation("hard_silu", name="hs")(layers.BatchNormalization()(h))
g = layers.GlobalAveragePooling2D(keepdims=True)(h)
g = layers.ReLU(6.0)(layers.Conv2D(8, 1)(g) + 3.0) * (1.0 / 6.0)  # keras.applications' hard sigmoid
h = layers.Multiply()([h, g])
h = layers.Activation("hard_sigmoid")(h - 0.5) / 2.0
hard = keras.Model(inp, layers.Dense(3)(layers.GlobalAveragePooling2D()(keras.ops.add(h, h))), name="hard")
perturb(hard)
save("hard", hard)
save("hard_seq", keras.Sequential([inp, layers.Activation("hard_silu", name="hs")]), predict=False)
save("ops", keras.Model(inp, layers.Dense(3)(keras.ops.exp(inp))), predict=False)

class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(3)

    def call(self, t):
        return self.dense(t)

sub = Subclassed()
sub(np.zeros((1, 16, 16, 3), "float32"))
save("subclassed", sub, predict=False)
seq.save(os.path.join(out, "legacy.h5"))
"""


def keras3_env() -> dict:
    """Keras 3 as TensorFlow hands it out: without the switch edgecv sets for tf-keras."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def run_keras3(code: str, folder: Path) -> Path:
    """Runs ``code`` under Keras 3 with ``out`` = ``folder``; fails the test with Keras' own error."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(folder)], env=keras3_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def k3(tmp_path_factory) -> Path:
    return run_keras3(PRELUDE + MODELS, tmp_path_factory.mktemp("keras3"))


def _tf_keras_model(model) -> bool:
    return all(type(m).__module__.startswith("tf_keras") for m in [model, *model.layers])


@pytest.mark.parametrize("name", ["sequential", "resnet", "nested", "deep", "more", "hard"])
def test_rebuilt_model_predicts_as_keras3_did(k3, name):
    model = rebuild(k3 / f"{name}.keras")
    assert _tf_keras_model(model)
    saved = np.load(k3 / f"{name}.npz")
    ours = model.predict(saved["x"], verbose=0)
    assert ours.shape == saved["y"].shape
    assert np.abs(ours - saved["y"]).max() < 1e-5
    assert np.abs(saved["y"] - saved["y"].mean(axis=0)).max() > 1e-3  # inputs the model tells apart


def test_loaded_model_stays_keras3_and_predicts_as_saved(k3):
    from edgecv._tf import is_keras3_model

    model = load_keras(k3 / "hard.keras")
    assert is_keras3_model(model)
    saved = np.load(k3 / "hard.npz")
    assert np.abs(model.predict(saved["x"], verbose=0) - saved["y"]).max() < 1e-6


def test_to_tf_keras_rebuilds_an_in_memory_model_and_names_it_in_refusals(k3):
    from edgecv.compress.keras3 import to_tf_keras

    rebuilt = to_tf_keras(load_keras(k3 / "hard.keras"))
    assert _tf_keras_model(rebuilt)
    assert to_tf_keras(rebuilt) is rebuilt  # a tf-keras model goes through as it is
    with pytest.raises(DataError, match=r"^model '[^']+': layer 'exp(_\d+)?' \(Exp\) cannot be rebuilt in tf-keras"):
        to_tf_keras(load_keras(k3 / "ops.keras"))


def test_hard_activations_are_written_in_standard_layers(k3):
    kinds = [type(layer).__name__ for layer in rebuild(k3 / "hard.keras").layers]
    assert "Activation" not in kinds and kinds.count("Multiply") == 3 and kinds.count("ReLU") >= 4


def test_batch_norm_statistics_and_regularizers_survive(k3):
    model = rebuild(k3 / "resnet.keras")
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    assert len(bns) == 5 and all(np.abs(np.asarray(bn.moving_mean)).max() > 0 for bn in bns)
    assert [len(bn.weights) for bn in bns].count(3) == 2  # scale=False: no gamma, the rest in order
    conv = rebuild(k3 / "sequential.keras").layers[1]
    assert conv.kernel_regularizer is not None and float(conv.kernel_regularizer.l2) == pytest.approx(1e-4)


def test_nested_models_keep_their_structure(k3):
    model = rebuild(k3 / "nested.keras")
    assert [type(layer).__name__ for layer in model.layers[1:3]] == ["Sequential", "Functional"]
    assert len(model.get_layer("shared").inbound_nodes) == 2  # one layer, called twice


def test_keras3_archives_are_told_from_tf_keras_ones(k3, tmp_path):
    from edgecv.compress.export import save_keras
    from edgecv.train.models import build

    assert is_keras3(k3 / "sequential.keras") and saved_version(k3 / "sequential.keras").startswith("3.")
    ours = save_keras(build("seed-cnn", (16, 16, 3), 3), tmp_path / "ours.keras")
    assert saved_version(ours).startswith("2.") and not is_keras3(ours)
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    assert saved_version(tmp_path / "junk.keras") is None and not is_keras3(tmp_path / "junk.keras")


@pytest.mark.parametrize("name, trust, expected", [
    ("custom", False, r"layer 'foo' \(MyBlock\) cannot be rebuilt in tf-keras: it is not a standard Keras layer$"),
    ("custom", True, r"layer 'foo' \(MyBlock\) cannot be rebuilt in tf-keras: it is not a standard Keras layer$"),
    ("lambda", True, r"layer 'double' \(Lambda\) cannot be rebuilt in tf-keras: its Python function was written for"),
    ("hard_seq", False, r"layer 'hs' \(Activation\) cannot be rebuilt in tf-keras: its activation 'hard_silu' is "
                        r"rebuilt from several layers, which a Sequential"),
    ("ops", False, r"layer 'exp(_\d+)?' \(Exp\) cannot be rebuilt in tf-keras: it is a keras.ops operation"),
    ("subclassed", False, r"model (\S+ )?\(Subclassed\) cannot be rebuilt in tf-keras: it is a subclassed or custom"),
])
def test_layers_tf_keras_cannot_rebuild_are_refused_by_name(k3, name, trust, expected):
    path = k3 / f"{name}.keras"
    with pytest.raises(DataError) as caught:
        rebuild(path, trust=trust)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and re.search(expected, message), message
    assert "\n" not in message


def test_untrusted_lambda_gets_the_usual_refusal(k3):
    with pytest.raises(DataError, match=r"carries code \(a Lambda layer\) and is refused: load it only if you trust"):
        load_keras(k3 / "lambda.keras")


def test_keras3_h5_loads_in_keras3(k3):
    from edgecv._tf import is_keras3_model

    model = load_keras(k3 / "legacy.h5", trust=True)
    saved = np.load(k3 / "sequential.npz")
    assert is_keras3_model(model) and np.abs(model.predict(saved["x"], verbose=0) - saved["y"]).max() < 1e-6


def _rewrite_weights(src: Path, dst: Path, edit) -> Path:
    """A copy of a .keras archive whose model.weights.h5 went through ``edit(h5file)``."""
    import h5py

    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "r+") as f:
        edit(f)
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def test_weights_that_do_not_fit_are_refused_by_layer(k3, tmp_path):
    def drop_bias(f):
        del f["layers/dense/vars/1"]

    broken = _rewrite_weights(k3 / "sequential.keras", tmp_path / "broken.keras", drop_bias)
    with pytest.raises(DataError, match=r"layer 'dense' \(Dense\) has weights \[\(200, 3\)\] in model\.weights\.h5 "
                                        r"but tf-keras expects \[\(200, 3\), \(3,\)\]"):
        rebuild(broken)


def test_weights_are_found_by_position_when_the_file_does_not_name_layers(k3, tmp_path):
    """Keras 3 releases before the layer name was recorded in the weights file."""
    def unname(f):
        def strip(_, obj):
            if "name" in obj.attrs:
                del obj.attrs["name"]

        f.visititems(strip)
        assert "name" not in f["layers/conv2d/vars"].attrs

    plain = _rewrite_weights(k3 / "resnet.keras", tmp_path / "plain.keras", unname)
    saved = np.load(k3 / "resnet.npz")
    assert np.abs(rebuild(plain).predict(saved["x"], verbose=0) - saved["y"]).max() < 1e-5


def test_config_translation_refuses_options_it_would_drop(k3, tmp_path):
    """An option tf-keras lacks is refused unless it is at its do-nothing value (here a LoRA rank)."""
    def lora(config):
        config["config"]["layers"][-1]["config"]["lora_rank"] = 4

    changed = _rewrite_config(k3 / "sequential.keras", tmp_path / "lora.keras", lora)
    with pytest.raises(DataError, match=r"layer 'dense' \(Dense\) cannot be rebuilt in tf-keras: its option lora_rank"):
        rebuild(changed)


def _rewrite_config(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def test_a_broken_graph_is_refused_instead_of_looping(k3, tmp_path):
    """tf-keras would wait forever for a layer call that never comes."""
    def point_to_a_missing_call(config):
        concat = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Concatenate")
        concat["inbound_nodes"][0]["args"][0][0]["config"]["keras_history"][1] = 3

    broken = _rewrite_config(k3 / "resnet.keras", tmp_path / "broken.keras", point_to_a_missing_call)
    with pytest.raises(DataError, match=r"layer 'concatenate(_\d+)?' \(Concatenate\) cannot be rebuilt in tf-keras: "
                                        r"its input is a layer call the graph does not contain"):
        rebuild(broken)


@pytest.mark.parametrize("mirror", ["matrix", "reverse"])
def test_a_keras3_model_is_flip_averaged_in_keras3_and_converts(k3, mirror):
    from edgecv._tf import is_keras3_model
    from edgecv.compress.flip import flip_averaged
    from edgecv.compress.quantize import convert
    from edgecv.runtime import TFLiteModel, find_runtime

    model = load_keras(k3 / "hard.keras")
    averaged = flip_averaged(model, mirror)
    assert is_keras3_model(averaged)
    x = np.load(k3 / "hard.npz")["x"]
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(averaged.predict(x, verbose=0), expected, atol=1e-5)
    scores = TFLiteModel(content=convert(averaged, "float32"), runtime=find_runtime()).scores(x)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
