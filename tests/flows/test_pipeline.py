import json

import pytest

from edgecv.config import BenchConfig, CompressConfig, Optimizer, PruneConfig, QuantMode, TrainConfig
from edgecv.errors import ConfigError
from edgecv.compress.export import save_keras
from edgecv.train.models import build
from edgecv.flows.pipeline import compress

FAST_TRAIN = TrainConfig(epochs=2, batch_size=16, optimizer=Optimizer.ADAM, learning_rate=3e-3)
FAST_BENCH = BenchConfig(warmup=2, runs=20)


def test_compress_writes_every_stage_and_artifact(image_folder, tmp_path):
    out = tmp_path / "run"
    events = []
    report = compress(
        CompressConfig(out=out, data=str(image_folder), modes=(QuantMode.INT8, QuantMode.FLOAT16), train=FAST_TRAIN,
                       prune=PruneConfig(sparsity=0.6, epochs=2, batch_size=16), bench=FAST_BENCH),
        events.append,
    )
    names = [s.stage for s in report.stages]
    assert names == ["keras float", "tflite float32", "tflite int8", "tflite float16",
                     "pruned float32", "pruned int8", "pruned float16"]
    assert all(s.status == "ok" for s in report.stages), [(s.stage, s.reason) for s in report.stages]
    for s in report.stages:
        assert (out / s.model).is_file()
        assert s.accuracy is not None and s.p50() > 0 and s.size_bytes > 0
    assert report.stage("pruned int8").sparsity == pytest.approx(0.6, abs=0.05)
    assert report.stage("pruned int8").gzip_bytes < report.stage("tflite int8").gzip_bytes
    assert report.stage("tflite int8").input["dtype"] == "int8"
    for name in ("report.json", "report.md", "pareto.png", "baseline.keras", "pruned.keras"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "report.json").read_text())
    assert saved["environment"]["tensorflow"] and saved["data"]["train_images"] == 60
    assert saved["config"]["prune"]["sparsity"] == 0.6
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert {e.task for e in events} >= {"load data", "train", "prune", "benchmark tflite int8", "report"}


def test_sparsity_zero_skips_pruning_but_keeps_the_rows(image_folder, tmp_path):
    report = compress(CompressConfig(out=tmp_path / "r", data=str(image_folder), train=FAST_TRAIN,
                                     prune=PruneConfig(sparsity=0.0), bench=FAST_BENCH))
    skipped = [s for s in report.stages if s.status == "skipped"]
    assert [s.stage for s in skipped] == ["pruned float32", "pruned int8"]
    assert not (tmp_path / "r" / "pruned.keras").exists()


def test_compress_starts_from_a_users_model(image_folder, tmp_path):
    model = build("seed-cnn", (16, 16, 3), 3)
    path = save_keras(model, tmp_path / "mine.h5")
    report = compress(CompressConfig(out=tmp_path / "r", data=str(image_folder), model=path,
                                     prune=PruneConfig(sparsity=0.0), bench=FAST_BENCH))
    assert "train" not in report.stage("keras float").details
    assert report.stage("tflite int8").status == "ok"


def test_a_model_that_does_not_fit_the_data_is_refused(image_folder, tmp_path):
    path = save_keras(build("seed-cnn", (32, 32, 3), 10), tmp_path / "cifar.keras")
    with pytest.raises(ConfigError, match="takes"):
        compress(CompressConfig(out=tmp_path / "r", data=str(image_folder), model=path))


def test_every_technique_is_its_own_row_against_the_same_baseline(image_folder, tmp_path):
    from edgecv.config import FinetuneConfig

    tune = FinetuneConfig(epochs=1, batch_size=16, learning_rate=3e-4, optimizer=Optimizer.ADAM)
    report = compress(CompressConfig(
        out=tmp_path / "t", data=str(image_folder), modes=(QuantMode.INT8, QuantMode.INT16X8), train=FAST_TRAIN,
        prune=PruneConfig(sparsity=0.6, epochs=2, batch_size=16), bench=FAST_BENCH, qat=True, keep_float_worst=1,
        sparse=True, finetune=tune, max_drop=100))
    names = [s.stage for s in report.stages]
    keep = next(n for n in names if n.startswith("int8 float:"))
    assert names == ["keras float", "tflite float32", "tflite int8", "tflite int16x8", "qat int8", keep,
                     "pruned float32", "pruned int8", "pruned int16x8", "pruned qat int8", "pruned int8 sparse"]
    assert all(s.status == "ok" for s in report.stages), [(s.stage, s.reason) for s in report.stages]
    assert report.stage("pruned qat int8").sparsity == pytest.approx(0.6, abs=0.03)  # zeros kept through QAT
    assert report.stage("tflite int16x8").input["dtype"] == "float32"
    sensitivity = report.stage(keep).details["sensitivity"]
    assert keep == f"int8 float:{sensitivity[0]['layer']}"  # the worst layer is the one kept
    sparse = report.stage("pruned int8 sparse")
    assert sparse.sparsity == pytest.approx(0.6, abs=0.03) and "delegate" in sparse.details  # XNNPACK refused it
    assert {c.stage for c in report.gate.criteria} >= {"qat int8", "pruned qat int8", keep}


def test_clustering_rows(image_folder, tmp_path):
    report = compress(CompressConfig(out=tmp_path / "c", data=str(image_folder), train=FAST_TRAIN, clusters=4,
                                     prune=PruneConfig(sparsity=0.0), bench=FAST_BENCH))
    clustered = report.stage("clustered int8")
    assert clustered.status == "ok" and max(clustered.details["unique_values"].values()) <= 4
    assert clustered.gzip_bytes < report.stage("tflite int8").gzip_bytes


@pytest.mark.slow  # 80 s; pruning and QAT rows are covered by default in test_every_technique_is_its_own_row_against_the_same_baseline
def test_resnet8_through_pruning_and_qat(image_folder, tmp_path):
    """A residual model with BatchNormalization: pruning wraps its convolutions, QAT folds its BN."""
    from edgecv.config import Arch, FinetuneConfig

    train = TrainConfig(arch=Arch.RESNET8, epochs=2, batch_size=16, optimizer=Optimizer.ADAM, learning_rate=3e-3)
    report = compress(CompressConfig(
        out=tmp_path / "r8", data=str(image_folder), train=train, qat=True,
        prune=PruneConfig(sparsity=0.5, epochs=2, batch_size=16, optimizer=Optimizer.ADAM, learning_rate=1e-3),
        finetune=FinetuneConfig(epochs=1, batch_size=16, optimizer=Optimizer.ADAM, learning_rate=3e-4),
        bench=FAST_BENCH))
    assert all(s.status == "ok" for s in report.stages), [(s.stage, s.reason) for s in report.stages]
    assert report.stage("keras float").params == 78_211  # 78,666 less 455: 3 classes instead of 10 (64*7+7)
    assert report.stage("pruned qat int8").sparsity == pytest.approx(0.5, abs=0.03)
    assert report.stage("qat int8").input["dtype"] == "int8"


def test_mixed_precision_is_a_row_made_by_the_quantizer(image_folder, tmp_path):
    from edgecv.compress.tflite_bits import tflite_layout

    out = tmp_path / "run"
    report = compress(CompressConfig(out=out, data=str(image_folder), modes=(QuantMode.INT8, QuantMode.MIXED),
                                     train=FAST_TRAIN, prune=PruneConfig(sparsity=0), bench=FAST_BENCH))
    mixed, int8 = report.stage("tflite mixed"), report.stage("tflite int8")
    assert mixed.status == "ok", mixed.reason
    assert mixed.details["made_by"].startswith("litert-quantizer") and "converter" in int8.details["made_by"]
    bits = tflite_layout(out / mixed.model).bits()  # read from the file itself: the interpreter shows int4 as int8
    chosen = {layer["name"]: layer["bits"] for layer in mixed.details["mixed"]["layers"]}
    assert bits == chosen and set(bits.values()) <= {4, 8}
    if 4 in bits.values():
        assert mixed.size_bytes < int8.size_bytes
    assert "made by litert-quantizer" in (out / "report.md").read_text()
    assert report.stage("pruned mixed").status == "skipped"


def test_mixed_refuses_uint8_io():
    from edgecv.config import IOType

    with pytest.raises(ConfigError, match="litert-quantizer cannot write uint8"):
        CompressConfig(out="x", modes=(QuantMode.MIXED,), io_type=IOType.UINT8)


def _keras3_model(path, with_exp: bool):
    """A Keras 3 CNN saved as its user would; ``with_exp`` puts a keras.ops call tf-keras cannot rebuild in it."""
    from edgecv._tf import keras3

    k = keras3()
    inputs = k.Input((16, 16, 3))
    h = k.layers.Rescaling(1 / 255.0)(inputs)
    h = k.ops.exp(h) if with_exp else h
    h = k.layers.Conv2D(8, 3, activation="hard_silu")(h)
    out = k.layers.Dense(3, activation="softmax")(k.layers.GlobalAveragePooling2D()(h))
    k.Model(inputs, out).save(path)
    return path


def test_a_keras3_model_the_rebuild_refuses_fails_only_the_tfmot_rows(image_folder, tmp_path):
    path = _keras3_model(tmp_path / "mine.keras", with_exp=True)
    report = compress(CompressConfig(out=tmp_path / "r", data=str(image_folder), model=path, qat=True,
                                     modes=(QuantMode.INT8, QuantMode.FLOAT16),
                                     prune=PruneConfig(sparsity=0.5, epochs=1, batch_size=16), bench=FAST_BENCH))
    status = {s.stage: s.status for s in report.stages}
    for ok in ("keras float", "tflite float32", "tflite int8", "tflite float16"):
        assert status[ok] == "ok", (ok, report.stage(ok).reason)
    tfmot_rows = ["qat int8", "pruned float32", "pruned int8", "pruned float16", "pruned qat int8"]
    for name in tfmot_rows:
        assert status[name] == "failed", name
        assert "layer 'exp" in report.stage(name).reason and "cannot be rebuilt in tf-keras" in report.stage(name).reason
    assert report.stage("keras float").macs > 0  # counted on the Keras 3 model itself


def test_a_keras3_model_with_hard_silu_goes_through_every_row(image_folder, tmp_path):
    path = _keras3_model(tmp_path / "mine.keras", with_exp=False)
    from edgecv.config import MixedConfig

    report = compress(CompressConfig(out=tmp_path / "r", data=str(image_folder), model=path, qat=True,
                                     modes=(QuantMode.INT8, QuantMode.MIXED), mixed=MixedConfig(images=40),
                                     prune=PruneConfig(sparsity=0.5, epochs=2, batch_size=16), bench=FAST_BENCH))
    assert all(s.status == "ok" for s in report.stages), [(s.stage, s.reason) for s in report.stages]
    assert "mixed" in report.stage("tflite mixed").details
    assert report.stage("pruned int8").sparsity == pytest.approx(0.5, abs=0.05)
