"""Models for the Raspberry Pi AI Camera (Sony IMX500) through ``edgecv imx500``'s library call: each model's
fake-quant IMX500 top-1 (Sony's MCT, PTQ on 200 train images) against its Keras float top-1 and its LiteRT int8
top-1 (edgecv's own full-integer conversion, 200 calibration images, the same 1,000 test images), the converter's
memory use against the chip's 8 MB, and the toolchain's wall time (the worker: TF 2.15 import, MCT, scoring,
export and imxconv-tf; the venv already made).

Models: the MLPerf Tiny ResNet-8 ``.h5`` (raw 0-255 pixels in), edgecv's resnet8, dscnn and patchnet trained here
briefly (``--train-minutes`` each, edge recipe, tf-keras ``.h5``), and keras.applications MobileNetV2 alpha 0.35 at
96 px (Keras 3, weights=None, a ``Rescaling(1/255)`` in front, trained here briefly on CIFAR-10 resized to 96 px;
it goes over through the tf-keras rebuild). Then the MLPerf model once with mixed precision under a memory target
(``--memory-kb``) and once with GPTQ, to measure them before either is a default.

    python benchmarks/imx500_models.py --data ../shared/datasets/cifar10-jpg \
        --mlperf ../shared/models/mlperf-tiny-resnet8/pretrainedResnet.h5
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def litert_int8(model, dataset, x, y) -> float:
    from edgecv import runtime as rt
    from edgecv.compress.quantize import calibration_images, convert

    content = convert(model, "int8", calibration_images(dataset, 200))
    interpreter = rt.TFLiteModel(content=content)
    return rt.measure_accuracy(interpreter, interpreter.prepare(x), y)[0]


def keras_top1(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x.astype(np.float32), batch_size=100, verbose=0), -1) == y))


def mobilenet_v2(size: int):
    from edgecv._tf import keras3

    k = keras3()
    inputs = k.Input((size, size, 3), name="pixels")
    start = k.layers.Rescaling(1 / 255)(inputs)
    return k.applications.MobileNetV2(input_tensor=start, weights=None, classes=10, alpha=0.35)


def train_edgecv(arch: str, dataset, minutes: float, folder: Path) -> Path:
    from edgecv.config import Arch, Optimizer, Schedule, TrainConfig
    from edgecv.train.fit import train

    config = TrainConfig(arch=Arch(arch), epochs=30, batch_size=128, optimizer=Optimizer.ADAM, learning_rate=3e-3,
                         augment=True, label_smoothing=0.1, schedule=Schedule.COSINE, warmup_epochs=1,
                         budget_minutes=minutes)
    done = train(dataset, config)
    path = folder / f"{arch}.h5"
    done.model.save(path)
    return path


def train_keras3(model, dataset, minutes: float, path: Path) -> Path:
    """Adam 2e-3, batch 64, for ``minutes`` of wall clock (epochs of a seeded slice until the time is up)."""
    from edgecv._tf import keras3

    k = keras3()
    for layer in model.layers:
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(k.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.time()
    rng = np.random.default_rng(0)
    while time.time() - started < 60 * minutes:
        idx = rng.choice(len(dataset.x_train), 2048, replace=False)
        model.fit(dataset.x_train[idx].astype(np.float32), dataset.y_train[idx], batch_size=64, epochs=1, verbose=0)
    model.save(path)
    return path


def measure(name: str, path: Path, dataset, out: Path, rows: list, **options) -> dict:
    from edgecv.compress.export import load_keras
    from edgecv.config import BenchConfig
    from edgecv.device.imx500 import quantize_for_imx500
    from edgecv.errors import EdgecvError, first_line
    from edgecv.measure.benchmark import scoring_images

    x, y = scoring_images(dataset, BenchConfig(limit=1000))
    row = {"model": name, "file": path.name, "input": list(dataset.input_shape), "options": options}
    model = load_keras(path, dataset, trust=True)
    row["keras_float_host"] = keras_top1(model, x, y)  # TF 2.21 here: the worker's float is TF 2.15's
    try:
        row["litert_int8"] = litert_int8(model, dataset, x, y)
    except EdgecvError as e:
        row["litert_int8_error"] = first_line(e)
    try:
        result = quantize_for_imx500(path, dataset, out / path.stem, calibration=200, test_images=1000,
                                     max_drop=None, trust=True, **options)
        row |= {"float": result.float_accuracy, "imx500": result.imx500_accuracy, "drop_points": result.drop,
                "method": result.method, "memory_kb": result.memory_bytes / 1024,
                "model_kb": result.model_bytes / 1024, "runtime_kb": result.runtime_bytes / 1024,
                "chip_kb": result.available_bytes / 1024, "fits": result.fits, "weight_bits": result.weight_bits,
                "toolchain_s": result.toolchain_seconds, "convert_s": result.convert_seconds,
                "handed_over": result.handed_over, "folded": result.folded, "chosen_on": result.chosen_on,
                "inputs": [t.__dict__ for t in result.inputs], "outputs": [t.__dict__ for t in result.outputs],
                "versions": result.versions}
    except EdgecvError as e:
        row["imx500_error"] = first_line(e)
    rows.append(row)
    return row


def table(rows: list) -> str:
    lines = ["| model | options | float % | IMX500 % (MCT fake-quant) | LiteRT int8 % | memory KB of 8192 | fits | "
             "toolchain s (convert s) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "PTQ"
        if "imx500_error" in r:
            lines.append(f"| {r['model']} | {opts} | {100 * r['keras_float_host']:.1f} | {r['imx500_error']} | "
                         f"{100 * r.get('litert_int8', float('nan')):.1f} | | | |")
            continue
        bits = "+".join(f"int{b}" for b in sorted(r["weight_bits"], key=int))
        lines.append(f"| {r['model']} | {opts} ({r['method']}, {bits}) | {100 * r['float']:.1f} | "
                     f"{100 * r['imx500']:.1f} | {100 * r.get('litert_int8', float('nan')):.1f} | "
                     f"{r['memory_kb']:.1f} (model {r['model_kb']:.1f}) | {'yes' if r['fits'] else 'no'} | "
                     f"{r['toolchain_s']:.0f} ({r['convert_s']:.0f}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--mlperf", required=True, help="the MLPerf Tiny ResNet-8 .h5")
    parser.add_argument("--train-minutes", type=float, default=3.0)
    parser.add_argument("--memory-kb", type=float, default=60.0, help="mixed precision's weights target")
    parser.add_argument("--only", nargs="*", help="model names to run (default: all)")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "edgecv" / "imx500-bench"),
                        help="trained models and converted outputs (kept: a rerun reuses the trained models)")
    parser.add_argument("--out", default=str(HERE / "results" / "imx500_models.json"))
    args = parser.parse_args()

    from edgecv.data.datasets import load
    from edgecv.fsutil import write_text

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dataset = load(args.data)
    out = Path(args.out)
    kept = json.loads(out.read_text()) if out.is_file() and args.only else {}
    rows = kept.get("rows", [])
    commands = kept.get("commands", []) + ["python " + " ".join(shlex.quote(a) for a in sys.argv)]
    wanted = lambda name: not args.only or name in args.only  # noqa: E731
    rows = [r for r in rows if not wanted(r["model"])]

    def save():
        write_text(out, json.dumps({"commands": commands, "test_images": 1000, "calibration_images": 200,
                                    "rows": rows}, indent=2) + "\n")
        write_text(out.with_suffix(".md"), table(rows))

    mlperf = Path(args.mlperf)
    if wanted("mlperf-resnet8"):
        measure("mlperf-resnet8", mlperf, dataset, work, rows)
        save()
    if wanted("mlperf-resnet8 mixed"):
        measure("mlperf-resnet8 mixed", mlperf, dataset, work / "mixed", rows, memory_kb=args.memory_kb)
        save()
    if wanted("mlperf-resnet8 gptq"):
        measure("mlperf-resnet8 gptq", mlperf, dataset, work / "gptq", rows, gptq="on")
        save()
    for arch in ("resnet8", "dscnn", "patchnet"):
        if wanted(arch):
            started = time.time()
            path = work / f"{arch}.h5"
            if not path.is_file():
                path = train_edgecv(arch, dataset, args.train_minutes, work)
            trained = (time.time() - started) / 60
            row = measure(arch, path, dataset, work, rows)
            row["trained_minutes"] = trained
            save()
    if wanted("MobileNetV2 alpha 0.35 96px"):
        big = dataset.subset(train=10000, seed=0).resized(96)  # 96 px copies of all 50,000 would not fit
        path = work / "mobilenetv2_96.keras"
        if not path.is_file():
            train_keras3(mobilenet_v2(96), big, 2 * args.train_minutes, path)
        measure("MobileNetV2 alpha 0.35 96px", path, big, work, rows)
        save()


if __name__ == "__main__":
    main()
