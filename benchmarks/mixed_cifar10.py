"""int4/int8 mixed precision against plain int8 on the full CIFAR-10 JPEGs (issue 17), batch 1, 1 thread.

Usage:
    python benchmarks/mixed_cifar10.py --data ../shared/datasets/cifar10-jpg \\
        --reference ../shared/models/mlperf-tiny-resnet8 [--work runs/mixed] [--limit N]

Two models: seed-cnn, trained here by the classic recipe on the train split, and the MLPerf Tiny ResNet-8 as
published (``pretrainedResnet.h5``). Each becomes the converter's int8 (what edgecv ships), the LiteRT quantizer's
plain int8, and the quantizer's mixed file (``edgecv.compress.mixed``): int4 weights on the layers that a seeded
slice of the TRAIN split allows within ``--max-drop`` points, int8 elsewhere. The test split plays no part in the
choice; every file is scored on it, where the targets are judged: >= 20 % smaller than the converter's int8 at
<= 0.2 point drop. Latency is shown twice: with XNNPACK (the runtime's default, as deployed) and on TFLite's own
kernels. Writes ``benchmarks/results/mixed_cifar10.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgecv import __version__
from edgecv import runtime as rt
from edgecv.config import BenchConfig, QuantMode, TrainConfig
from edgecv.data.datasets import load
from edgecv.fsutil import write_bytes, write_text
from edgecv.measure.benchmark import benchmark_tflite, find_runtime, host_environment, now, open_tflite
from edgecv.measure.report import Report, StageResult
from edgecv.progress import Progress

HERE = Path(__file__).resolve().parent
SIZE_TARGET, DROP_TARGET = 0.20, 0.2  # at least 20 % smaller than the converter's int8, at most 0.2 points lower


def log(p: Progress, last={}) -> None:  # one line per task and message, enough for a log
    key = (p.task, p.message.split(" loss")[0])
    if key not in last:
        print(f"  {p.task} {p.message}", flush=True)
        last[key] = True


def seed_cnn(dataset, work: Path, seed: int):
    """seed-cnn by the classic recipe on the train split, or the copy a previous run left in ``work``."""
    from edgecv.compress.export import load_keras, save_keras
    from edgecv.train.fit import train

    path = work / f"seed_cnn_seed{seed}.keras"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return load_keras(path), json.loads(meta.read_text())
    result = train(dataset, TrainConfig(seed=seed), log)
    save_keras(result.model, path)
    info = {"recipe": "classic (TrainConfig defaults)", "seconds": result.seconds,
            "train_images": len(dataset.x_train), "float_test_accuracy": result.test_accuracy}
    write_text(meta, json.dumps(info, indent=2))
    return result.model, info


def plain_p50(path: Path, images: np.ndarray, bench: BenchConfig) -> float:
    """p50 ms on TFLite's own kernels (no XNNPACK): shows whether a slowdown is the delegate's or the kernels'."""
    model = open_tflite(path, bench.threads, plain=True)
    return rt.measure_latency(model, model.prepare(images), bench.warmup, bench.runs)["p50_ms"]


def measure_model(name: str, model, dataset, calibration, search, work: Path, bench: BenchConfig,
                  max_drop: float, runtime) -> dict:
    """The three files of one model, each benchmarked on the test split, and the mixed search's own record."""
    from edgecv._tf import tf
    from edgecv.compress.mixed import StaticQuantizer, accuracy_scorer, quantize_mixed
    from edgecv.compress.quantize import convert
    from edgecv.compress.tflite_bits import tflite_layout

    float_file = convert(model, QuantMode.FLOAT32)
    start = time.perf_counter()
    mixed = quantize_mixed(float_file, calibration, accuracy_scorer(search.x_train, search.y_train), max_drop, log)
    search_seconds = time.perf_counter() - start
    files = (  # label, file name, content, the tool that made it
        ("int8 (converter)", "int8_converter", convert(model, QuantMode.INT8, calibration),
         f"TFLite converter (TensorFlow {tf().__version__})"),
        ("int8 (litert-quantizer)", "int8_litert", StaticQuantizer(float_file, calibration).quantize(), mixed.made_by),
        ("mixed int4/int8", "mixed_litert", mixed.model, mixed.made_by),
    )
    latency_images = dataset.subset(test=200, seed=1).x_test
    rows = {}
    for label, stem, content, made_by in files:
        path = write_bytes(work / f"{name.replace('-', '_')}_{stem}.tflite", content)
        row = benchmark_tflite(path, dataset, bench, log, name=f"{name} {label}", runtime=runtime)
        row.details.update(made_by=made_by, plain_p50_ms=plain_p50(path, latency_images, bench),
                           layout=tflite_layout(content).to_dict())
        rows[label] = row
    return {"rows": rows, "mixed": mixed.to_dict(), "search_seconds": search_seconds,
            "targets": judge(rows["int8 (converter)"], rows["mixed int4/int8"])}


def judge(int8: StageResult, mixed: StageResult) -> list[dict]:
    smaller = 1 - mixed.size_bytes / int8.size_bytes
    drop = 100 * (int8.accuracy - mixed.accuracy)
    return [
        {"target": "smaller than the converter's int8", "measured": smaller, "op": ">=", "limit": SIZE_TARGET,
         "unit": "share", "met": smaller >= SIZE_TARGET},
        {"target": "test accuracy drop from the converter's int8", "measured": drop, "op": "<=", "limit": DROP_TARGET,
         "unit": "points", "met": drop <= DROP_TARGET},
    ]


def markdown(models: dict, environment: dict, args, seconds: float) -> str:
    lines = ["# Mixed precision below int8: CIFAR-10 JPEG test split", "",
             "| model | file | made by | acc % | drop pts | KB | vs int8 | gzip KB | p50 ms XNNPACK | p50 ms TFLite "
             "kernels | int4 layers |", "|" + "---|" * 11]
    for name, record in models.items():
        rows = record["rows"]
        base = rows["int8 (converter)"]
        for label, row in rows.items():
            int4 = sum(layer["bits"] == 4 for layer in row.details["layout"]["layers"])
            lines.append(
                f"| {name} | {label} | {row.details['made_by']} | {100 * row.accuracy:.2f} | "
                f"{100 * (base.accuracy - row.accuracy):+.2f} | {row.size_bytes / 1024:.1f} | "
                f"{100 * (row.size_bytes / base.size_bytes - 1):+.1f} % | {row.gzip_bytes / 1024:.1f} | "
                f"{row.p50():.4f} | {row.details['plain_p50_ms']:.4f} | {int4} |")
    lines += ["", "drop pts: the converter's int8 minus this file, in points (negative: more accurate); bits and "
              "int4 layers read from each file's flatbuffer", "",
              "## Targets (judged on the test split against the converter's int8)", ""]
    for name, record in models.items():
        for t in record["targets"]:
            shown = f"{100 * t['measured']:.1f} %" if t["unit"] == "share" else f"{t['measured']:+.2f} points"
            limit = f"{100 * t['limit']:.0f} %" if t["unit"] == "share" else f"{t['limit']} points"
            verdict = "MET" if t["met"] else "MISSED"
            lines.append(f"- {verdict} {name}: {t['target']} {shown} (target {t['op']} {limit})")
    for name, record in models.items():
        mixed = record["mixed"]
        lines += ["", f"## {name}: the layers ({mixed['made_by']}, {mixed['evaluations']} models scored on "
                      f"{args.search_images} train images in {record['search_seconds']:.0f} s)", "",
                  f"Accuracy on those train images: int8 {100 * mixed['int8_accuracy']:.2f} %, mixed "
                  f"{100 * mixed['accuracy']:.2f} % (allowed drop {mixed['max_drop_points']} points). Bits read from "
                  "the file.", "",
                  "| layer | op | weights | bits | int4 rounding | train-slice acc % with only this layer at int4 "
                  "(min-max / mse) |", "|---|---|---|---|---|---|"]
        for layer in mixed["layers"]:
            alone = " / ".join(f"{100 * a:.2f}" for a in layer["int4_accuracy"].values()) or "no int4 for this op"
            lines.append(f"| {layer['name']} | {layer['op']} | {layer['params']:,} | {layer['bits']} | "
                         f"{layer['method'] or ''} | {alone} |")
        lines += ["", "| file | " + " | ".join(_parts(record)) + " |", "|---|" + "---|" * len(_parts(record))]
        for label, row in record["rows"].items():
            breakdown = row.details["layout"]["breakdown"]
            lines.append(f"| {label} | " + " | ".join(f"{breakdown.get(p, 0) / 1024:.1f} KB" for p in _parts(record))
                         + " |")
    runtime = environment.get("runtime") or {}
    lines += ["", "## Setup", "",
              f"- data: {args.data}; test images: {args.limit or 'all'}; the int4 choices are made on "
              f"{args.search_images} seeded TRAIN images (seed {args.seed}), never on the test split; calibration: "
              "200 train images",
              "- both models were trained on the whole train split, so the search slice is not unseen by them: it "
              "keeps the choice off the test split, which stays the honest judge",
              f"- CPU: {environment.get('cpu')}, {environment.get('cores')} cores; ISA flags: "
              f"{' '.join(environment.get('isa') or []) or 'unknown'}",
              f"- latency: batch 1, 1 thread, {runtime.get('name')} {runtime.get('version')}, {args.runs} timed runs "
              "after 50 warm-up; TFLite kernels = the interpreter without its default XNNPACK delegate",
              f"- python {environment.get('python')}, tensorflow {environment.get('tensorflow')}, "
              f"litert-quantizer {environment.get('litert_quantizer')}, edgecv {__version__}",
              f"- command: `{command(args)}`; wall time {seconds / 60:.1f} min"]
    return "\n".join(lines) + "\n"


def _parts(record: dict) -> list[str]:
    keys = {k for row in record["rows"].values() for k in row.details["layout"]["breakdown"]}
    return sorted(k for k in keys if k.startswith("weights")) + ["other constants", "graph and metadata"]


def command(args) -> str:
    shown = f"python benchmarks/mixed_cifar10.py --data {args.data} --reference {args.reference}"
    return shown + (f" --limit {args.limit}" if args.limit else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 JPEG folder (train/<class>/, test/<class>/)")
    parser.add_argument("--reference", required=True, help="folder of the MLPerf Tiny ResNet-8 files")
    parser.add_argument("--limit", type=int, default=None, help="test images to score (default: all)")
    # the drop between two models on 5,000 images has a standard error of about 0.2 points, the size of the
    # budget (seed-cnn's fc1 at int4 scored -0.22 there and -0.14 on 20,000); 20,000 halve it
    parser.add_argument("--search-images", type=int, default=20000, help="train images that score the int4 choices")
    parser.add_argument("--max-drop", type=float, default=DROP_TARGET, help="points allowed on those images")
    parser.add_argument("--work", default="runs/mixed", help="trained models and .tflite files are kept here")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(HERE / "results" / "mixed_cifar10.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    from edgecv.compress.export import load_keras
    from edgecv.compress.mixed import quantizer_version
    from edgecv.compress.quantize import calibration_images

    dataset = load(args.data, log)
    search = dataset.subset(train=args.search_images, seed=args.seed)
    calibration = calibration_images(dataset, 200, args.seed)
    runtime = find_runtime()
    bench = BenchConfig(warmup=50, runs=args.runs, limit=args.limit)
    sources = {"seed-cnn": seed_cnn(dataset, work, args.seed),
               "resnet8": (load_keras(Path(args.reference) / "pretrainedResnet.h5", dataset),
                           {"source": "MLPerf Tiny pretrainedResnet.h5, as published"})}
    models = {}
    for name, (model, info) in sources.items():
        models[name] = measure_model(name, model, dataset, calibration, search, work, bench, args.max_drop, runtime)
        models[name]["model"] = info
    seconds = time.perf_counter() - start

    environment = {**host_environment(runtime, 1), "litert_quantizer": quantizer_version()}
    report = Report(stages=[row for m in models.values() for row in m["rows"].values()], environment=environment,
                    data=dataset.describe(), config={"bench": asdict(bench), **vars(args)}, edgecv=__version__,
                    created=now(), seconds=seconds)
    text = markdown(models, environment, args, seconds)
    print(text)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".md"), text)
    record = {"command": command(args), "seconds": seconds, "search_train_images": args.search_images,
              "models": {name: {"model": m["model"], "targets": m["targets"], "mixed": m["mixed"],
                                "search_seconds": m["search_seconds"]} for name, m in models.items()},
              "report": report.to_dict()}
    write_text(out, json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
