"""Users' models: every keras.applications family that fits two cores, at 96 x 96, through each edgecv path.

Each family is built in Keras 3 (weights=None, 10 classes, raw 0-255 pixels in: a Rescaling in front where the
family has no preprocessing of its own, built flat through ``input_tensor``), trained briefly here on CIFAR-10
resized to 96 px (Adam 2e-3, batch-norm momentum 0.9 so its averages keep up with so few steps), saved as a user would save it, and then taken by edgecv as it is: float and int8 TFLite
straight from Keras 3, a channel cut in Keras 3, QAT through the tf-keras rebuild, the Edge TPU static check.
Accuracies are on the same test images; p50 is LiteRT, 1 thread, batch 1, beside the MLPerf Tiny ResNet-8 int8
file timed in the same run. A path that fails keeps its cell, with why.

    python benchmarks/user_models_96.py --data ../shared/datasets/cifar10-jpg \
        --reference ../shared/models/mlperf-tiny-resnet8/pretrainedResnet_quant.tflite
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

FAMILIES = {  # name -> (keras.applications keyword arguments, whether it rescales its own input)
    "MobileNet (VWW: alpha 0.25)": ("MobileNet", dict(alpha=0.25), False),
    "MobileNetV2 alpha 0.35": ("MobileNetV2", dict(alpha=0.35), False),
    "MobileNetV3Small": ("MobileNetV3Small", dict(include_preprocessing=True), True),
    "MobileNetV3Large alpha 0.75": ("MobileNetV3Large", dict(alpha=0.75, include_preprocessing=True), True),
    "EfficientNetB0": ("EfficientNetB0", dict(), True),
    "EfficientNetV2B0": ("EfficientNetV2B0", dict(include_preprocessing=True), True),
    "NASNetMobile": ("NASNetMobile", dict(), False),
}


def build(name: str, size: int):
    from edgecv._tf import keras3

    k = keras3()
    family, kwargs, rescales = FAMILIES[name]
    inputs = k.Input((size, size, 3), name="pixels")
    start = inputs if rescales else k.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    return getattr(k.applications, family)(input_tensor=start, weights=None, classes=10, **kwargs)


def p50(content: bytes, x: np.ndarray, runs: int) -> float:
    from edgecv import runtime as rt

    model = rt.TFLiteModel(content=content)
    return rt.measure_latency(model, model.prepare(x), warmup=10, runs=runs)["p50_ms"]


def accuracy(content: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from edgecv import runtime as rt

    model = rt.TFLiteModel(content=content)
    return rt.measure_accuracy(model, model.prepare(x), y)[0]


def attempt(row: dict, key: str, fn):
    """A path's result in the row, or why it failed: the row stays either way."""
    from edgecv.errors import first_line

    start = time.perf_counter()
    try:
        row[key] = fn()
    except Exception as e:  # a benchmark row records every failure, whatever raised it
        row[key] = {"failed": f"{type(e).__name__}: {first_line(e)}"}
    row.setdefault("seconds", {})[key] = round(time.perf_counter() - start, 1)


def run_family(name: str, dataset, reference: bytes | None, args) -> dict:
    from edgecv._tf import keras3
    from edgecv.compress.channels import shrink
    from edgecv.compress.keras3 import to_tf_keras
    from edgecv.compress.qat import qat
    from edgecv.compress.quantize import calibration_images, convert
    from edgecv.config import FinetuneConfig, Optimizer
    from edgecv.device.edgetpu import static_report
    from edgecv.measure.macs import total_macs
    from edgecv.train.fit import evaluate, one_hot

    k = keras3()
    k.utils.set_random_seed(args.seed)
    model = build(name, args.size)
    for layer in model.layers:  # batch-norm averages that keep up with a few hundred steps from scratch
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = 0.9
    model.compile(optimizer=k.optimizers.Adam(2e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(dataset.x_train, one_hot(dataset.y_train, 10), batch_size=64, epochs=args.epochs, verbose=0)
    row = {"family": name, "params": int(model.count_params()), "mmacs": total_macs(model) / 1e6,
           "train": {"images": len(dataset.x_train), "epochs": args.epochs, "optimizer": "Adam 2e-3, batch 64",
                     "seconds": round(time.perf_counter() - start, 1)}}
    saved = args.out / f"{FAMILIES[name][0]}.keras"
    model.save(saved)  # as a user saves it; edgecv loads it back the way `--model` does
    from edgecv.compress.export import load_keras

    model = load_keras(saved, dataset)
    x, y = dataset.x_test, dataset.y_test
    row["keras_accuracy"] = evaluate(model, x, y)
    calibration = calibration_images(dataset, 200, args.seed)
    timing = x[:100]
    files = {}

    def ptq():
        files["float32"] = convert(model, "float32")
        files["int8"] = convert(model, "int8", calibration)
        (args.out / f"{FAMILIES[name][0]}_int8.tflite").write_bytes(files["int8"])
        return {"float_accuracy": accuracy(files["float32"], x, y), "int8_accuracy": accuracy(files["int8"], x, y),
                "float_kb": len(files["float32"]) / 1024, "int8_kb": len(files["int8"]) / 1024}

    attempt(row, "ptq", ptq)
    if "int8" in files:
        def timed():
            times = {"float32_p50_ms": p50(files["float32"], timing, args.runs),
                     "int8_p50_ms": p50(files["int8"], timing, args.runs)}
            if reference is not None:
                times["reference_int8_p50_ms"] = p50(reference, args.reference_images, args.runs)
            return times

        attempt(row, "latency", timed)
        attempt(row, "edgetpu", lambda: _edgetpu(static_report(args.out / f"{FAMILIES[name][0]}_int8.tflite")))

    def channel_cut():
        smaller, _ = shrink(model, 0.25)
        content = convert(smaller, "int8", calibration)
        return {"ratio": 0.25, "mmacs": total_macs(smaller) / 1e6, "int8_accuracy_no_finetune": accuracy(content, x, y),
                "int8_p50_ms": p50(content, timing, args.runs), "keras3": type(smaller).__module__.startswith("keras")}

    attempt(row, "channel_cut", channel_cut)

    def aware():
        rebuilt = to_tf_keras(model)
        small = dataset.subset(train=args.qat_images, seed=args.seed)
        result = qat(rebuilt, small, FinetuneConfig(epochs=1, batch_size=32, learning_rate=1e-4,
                                                    optimizer=Optimizer.ADAM, seed=args.seed))
        return {"int8_accuracy": accuracy(convert(result.model, "int8", calibration), x, y),
                "train_images": len(small.x_train)}

    attempt(row, "qat", aware)
    if "float32" in files:
        attempt(row, "mixed", lambda: mixed(files["float32"], calibration, dataset, args))
    return row


def mixed(float_tflite: bytes, calibration, dataset, args) -> dict:
    """int4/int8 through the LiteRT quantizer: the search where the model has few enough candidate layers
    (it scores 1 + 3 x candidates files), else every candidate at int4 at once, unsearched: the size floor."""
    from edgecv.compress.mixed import StaticQuantizer, accuracy_scorer, quantize_mixed

    names = [layer.name for layer in StaticQuantizer(float_tflite, calibration).candidates]
    x, y = dataset.x_test, dataset.y_test
    if len(names) <= args.mixed_max_layers:
        held = dataset.subset(train=args.mixed_images, seed=args.seed)
        result = quantize_mixed(float_tflite, calibration, accuracy_scorer(held.x_train, held.y_train), 0.5)
        content, int4, how = result.model, sum(1 for c in result.layers if c.method), "searched, 0.5 points"
        plain = {"int8_kb": result.int8_bytes / 1024}
    else:
        content = StaticQuantizer(float_tflite, calibration).quantize({n: "mse" for n in names})
        int4, how, plain = len(names), "every candidate at int4 (mse), not searched", {}
    return {"candidates": len(names), "int4_layers": int4, "how": how, "accuracy": accuracy(content, x, y),
            "kb": len(content) / 1024, **plain}


def count_arm(rows: list[dict], args) -> None:
    """Emulated aarch64 instructions per inference of each row's int8 file and of the reference, in one
    emulated process per core (see benchmarks/arm_cost_files.py): millions, on the A72 and the A76."""
    from edgecv.data.datasets import load
    from edgecv.device.armcost import PI_CPUS, arm_costs

    files = {r["family"]: args.out / f"{FAMILIES[r['family']][0]}_int8.tflite" for r in rows
             if "failed" not in (r.get("ptq") or {"failed": 1})}
    models = list(files.values()) + ([args.reference] if args.reference else [])
    test = load(args.data).subset(train=1, test=11, seed=args.seed)
    inputs = {str(m): (test.resized(args.size) if m != args.reference else test).x_test for m in models}
    try:
        counts = arm_costs(models, inputs, PI_CPUS, inferences=5)
    except Exception as e:  # no root or qemu here: every row says so
        from edgecv.errors import first_line

        for r in rows:
            r["arm_cost"] = {"failed": f"{type(e).__name__}: {first_line(e)}"}
        return
    million = {name: {cpu: c.instructions_per_inference / 1e6 for cpu, c in per.items()} for name, per in counts.items()}
    for r in rows:
        if r["family"] in files:
            r["arm_cost"] = {**million[files[r["family"]].name],
                             "reference": million.get(args.reference.name) if args.reference else None}


def _edgetpu(report) -> dict:
    return {"tpu_ops": report.tpu_ops, "cpu_ops": report.cpu_ops, "method": report.method,
            "refused": report.refused or None}


def cell(row: dict, key: str, fmt) -> str:
    value = row.get(key)
    if isinstance(value, dict) and "failed" in value:
        return "fails: " + value["failed"].split(": ", 1)[-1][:90]
    return fmt(value) if value is not None else "not run"


def table(result: dict) -> str:
    """The results as one Markdown table, a family a row; a failed path keeps its cell, with why."""
    lines = ["| family | params | MMACs | train (images x epochs) | Keras % | float % | int8 % | int8 KB | "
             "float p50 ms | int8 p50 ms | int8 / MLPerf int8 p50 | Edge TPU ops (static) | channel cut 0.25: MMACs, "
             "int8 % no fine-tune | QAT int8 % | mixed int4/int8: int4 layers of candidates, %, KB | A72 / A76 M instructions "
             "(MLPerf int8: A72 / A76) |", "|" + "---|" * 16]
    for r in result["rows"]:
        ptq, lat = r.get("ptq") or {}, r.get("latency") or {}
        ok = "failed" not in ptq
        ratio = (f"{lat['int8_p50_ms'] / lat['reference_int8_p50_ms']:.2f}x" if "reference_int8_p50_ms" in lat else "")
        lines.append("| " + " | ".join([
            r["family"], f"{r['params']:,}", f"{r['mmacs']:.1f}", f"{r['train']['images']:,} x {r['train']['epochs']}",
            f"{100 * r['keras_accuracy']:.1f}",
            f"{100 * ptq['float_accuracy']:.1f}" if ok else cell(r, "ptq", str),
            f"{100 * ptq['int8_accuracy']:.1f}" if ok else "", f"{ptq['int8_kb']:,.0f}" if ok else "",
            f"{lat['float32_p50_ms']:.3f}" if lat.get("float32_p50_ms") else "",
            f"{lat['int8_p50_ms']:.3f}" if lat.get("int8_p50_ms") else "", ratio,
            cell(r, "edgetpu", lambda e: f"{e['tpu_ops']} TPU / {e['cpu_ops']} CPU"),
            cell(r, "channel_cut", lambda c: f"{c['mmacs']:.1f}, {100 * c['int8_accuracy_no_finetune']:.1f}"),
            cell(r, "qat", lambda q: f"{100 * q['int8_accuracy']:.1f}"),
            cell(r, "mixed", lambda m: f"{m['int4_layers']} of {m['candidates']}"
                 f"{'' if m['how'].startswith('searched') else ' (all, unsearched)'}, {100 * m['accuracy']:.1f}, {m['kb']:,.0f}"),
            cell(r, "arm_cost", lambda a: f"{a['cortex-a72']:.2f} / {a['cortex-a76']:.2f}" + (
                f" ({a['reference']['cortex-a72']:.2f} / {a['reference']['cortex-a76']:.2f})" if a.get("reference") else "")),
        ]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--reference", type=Path, help="the MLPerf Tiny int8 .tflite, timed in the same run")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train-images", type=int, default=4000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--qat-images", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-max-layers", type=int, default=30,
                        help="search int4 layers only in models with at most this many candidates")
    parser.add_argument("--mixed-images", type=int, default=500, help="train images the mixed search scores on")
    parser.add_argument("--arm-cost", action="store_true", help="also count emulated ARM instructions (root, qemu)")
    parser.add_argument("--only", nargs="*", help="family names (keys of FAMILIES) to run")
    parser.add_argument("--out", type=Path, default=Path("runs/user-models-96"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/user_models_96.json"))
    parser.add_argument("--table", action="store_true", help="only render --results as Markdown beside it")
    args = parser.parse_args()
    if args.table:
        args.results.with_suffix(".md").write_text(table(json.loads(args.results.read_text())))
        print(args.results.with_suffix(".md").read_text())
        return

    from edgecv import runtime as rt
    from edgecv.data.datasets import load
    from edgecv.measure.benchmark import host_environment

    args.out.mkdir(parents=True, exist_ok=True)
    full = load(args.data).subset(args.train_images, args.test_images, args.seed)
    args.reference_images = full.x_test[:100]
    dataset = full.resized(args.size)
    reference = args.reference.read_bytes() if args.reference else None
    options = ("data", "reference", "size", "train_images", "test_images", "qat_images", "epochs", "runs", "seed",
               "mixed_max_layers", "mixed_images")
    command = "python benchmarks/user_models_96.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k in options)
    if args.arm_cost:
        command += " --arm-cost"
    if args.only:
        command += " --only " + " ".join(f'"{o}"' if " " in o else o for o in args.only)
    rows = []
    previous = json.loads(args.results.read_text()) if args.only and args.results.is_file() else {"rows": []}
    for name in FAMILIES:
        if args.only and not any(o in name for o in args.only):
            continue
        print(f"== {name}", flush=True)
        row = {**run_family(name, dataset, reference, args), "command": command}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.arm_cost:
        count_arm(rows, args)
    merged = {r["family"]: r for r in previous["rows"]} | {r["family"]: r for r in rows}
    order = list(FAMILIES)
    rows = sorted(merged.values(), key=lambda r: order.index(r["family"]) if r["family"] in order else len(order))
    # each row keeps the command that measured it; the top-level one is the last run's
    result = {"command": command, "train_images": len(dataset.x_train), "test_images": len(dataset.x_test), "image_size": args.size,
        "environment": host_environment(rt.find_runtime(), 1), "rows": rows}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1, default=str))
    args.results.with_suffix(".md").write_text(table(result))
    print(f"wrote {args.results} and {args.results.with_suffix('.md')}")


if __name__ == "__main__":
    main()
