"""The accuracy/latency frontier against the MLPerf Tiny reference, on the full CIFAR-10 JPEGs, 1 thread.

Usage:
    python benchmarks/frontier_cifar10.py --data ../shared/datasets/cifar10-jpg \\
        --reference ../shared/models/mlperf-tiny-resnet8 [--work runs/frontier] [--epochs 20]

Trains (or reuses from ``--work``) the fair peer -- ResNet-8 by edgecv's edge recipe on the JPEG train split --
and a DS-CNN by the same recipe, removes 25 % and 50 % of their channels and fine-tunes them, converts every
model to int8 (and float32, to show what the CPU does with fewer MACs), and measures all of them in one run
beside the MLPerf reference int8 file as published. Writes ``benchmarks/results/frontier_cifar10.json``, a
Markdown table and ``frontier_cifar10.png``; the targets are judged as ratios from this one run.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from edgecv.measure.benchmark import benchmark_tflite, find_runtime, host_environment, now
from edgecv.config import Arch, BenchConfig, QuantMode, Recipe, recipe_config
from edgecv.data.datasets import load
from edgecv.fsutil import write_text
from edgecv.progress import Progress
from edgecv.measure.report import Report, StageResult, plot_pareto

HERE = Path(__file__).resolve().parent
RATIOS = (0.25, 0.5)


def log(p: Progress, last={}) -> None:  # one line per task and epoch, enough for a log
    key = (p.task, p.message.split(" loss")[0])
    if key not in last:
        print(f"  {p.task} {p.message}", flush=True)
        last[key] = True


def trained(arch: Arch, dataset, work: Path, epochs: int, seed: int):
    """The arch trained by the edge recipe, or the copy a previous run left in ``work``."""
    from edgecv.compress.export import load_keras, save_keras
    from edgecv.train.fit import train

    path, meta = work / f"{arch.value}.keras", work / f"{arch.value}.json"
    if path.exists() and meta.exists():
        return load_keras(path), json.loads(meta.read_text())
    config = recipe_config(Recipe.EDGE, arch=arch, epochs=epochs, seed=seed)
    result = train(dataset, config, log)
    save_keras(result.model, path)
    info = {"seconds": result.seconds, "epochs": epochs, "test_accuracy": result.test_accuracy,
            "history": result.history, "config": json.loads(json.dumps(asdict(config), default=str))}
    write_text(meta, json.dumps(info, indent=2))
    return result.model, info


def channel_pruned(parent, name: str, ratio: float, dataset, work: Path, epochs: int, seed: int):
    from edgecv.compress.channels import prune_channels
    from edgecv.compress.export import load_keras, save_keras

    path, meta = work / f"{name}.keras", work / f"{name}.json"
    if path.exists() and meta.exists():
        return load_keras(path), json.loads(meta.read_text())
    # a fine-tune: a third of the training rate, a short warm-up, the same augmentation and smoothing
    base = recipe_config(Recipe.EDGE, epochs=epochs, seed=seed)
    finetune = replace(base, learning_rate=base.learning_rate / 3, warmup_epochs=min(0.5, epochs / 4))
    result = prune_channels(parent, dataset, ratio, finetune, log)
    save_keras(result.model, path)
    info = {k: v for k, v in asdict(result).items() if k != "model"}
    info["finetune_epochs"] = epochs
    write_text(meta, json.dumps(info, indent=2, default=str))
    return result.model, info


def judge(rows: dict[str, StageResult]) -> list[dict]:
    fair = rows["resnet8 (fair peer) int8"]
    ours = {k: r for k, r in rows.items() if k.endswith(" int8") and "reference" not in k and "fair" not in k}

    def target(name, measured, op, limit, unit, model):
        met = measured is not None and (measured <= limit if op == "<=" else measured >= limit)
        return {"target": name, "measured": measured, "op": op, "limit": limit, "unit": unit, "met": met,
                "model": model}

    faster = {k: r for k, r in ours.items() if r.p50() <= fair.p50()}
    best = max(faster, key=lambda k: faster[k].accuracy, default=None)
    gain = 100 * (faster[best].accuracy - fair.accuracy) if best else None
    close = {k: r for k, r in ours.items() if r.accuracy >= fair.accuracy - 0.01}
    quickest = min(close, key=lambda k: close[k].p50(), default=None)
    speed = close[quickest].p50() / fair.p50() if quickest else None
    half = rows["resnet8 channels-50% int8"]
    half_float = rows["resnet8 channels-50% float32"]
    return [
        target("at <= the fair peer's int8 p50: accuracy gain", gain, ">=", 1.0, "points", best),
        target("at >= fair peer accuracy - 1 point: p50 / fair peer p50", speed, "<=", 0.6, "x", quickest),
        target("resnet8 50 % channels, int8: unpruned p50 / pruned p50", fair.p50() / half.p50(), ">=", 1.7, "x",
               half.stage),
        target("resnet8 50 % channels, float32: unpruned p50 / pruned p50 (reported)",
               rows["resnet8 (fair peer) float32"].p50() / half_float.p50(), ">=", 1.7, "x", half_float.stage),
        target("resnet8 50 % channels, int8: accuracy drop (reported)", 100 * (fair.accuracy - half.accuracy),
               "<=", 100.0, "points", half.stage),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--reference", required=True, help="folder of the MLPerf Tiny ResNet-8 files")
    parser.add_argument("--work", default="runs/frontier", help="trained models are kept here and reused")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--results", default=str(HERE / "results" / "frontier_cifar10.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    from edgecv.compress.quantize import calibration_images, convert

    dataset = load(args.data, log)
    calibration = calibration_images(dataset, 200, args.seed)
    models, info = {}, {}
    for arch in (Arch.RESNET8, Arch.DSCNN):
        parent, info[arch.value] = trained(arch, dataset, work, args.epochs, args.seed)
        name = "resnet8 (fair peer)" if arch is Arch.RESNET8 else arch.value
        models[name] = parent
        for ratio in RATIOS:
            pruned_name = f"{arch.value} channels-{int(ratio * 100)}%"
            models[pruned_name], info[pruned_name] = channel_pruned(
                parent, pruned_name.replace(" ", "_").replace("%", ""), ratio, dataset, work, args.finetune_epochs,
                args.seed)

    runtime = find_runtime()
    bench = BenchConfig(warmup=50, runs=args.runs)
    rows: dict[str, StageResult] = {}
    reference = Path(args.reference)
    for label, file in (("MLPerf reference int8 (trained on lossless CIFAR-10)", "pretrainedResnet_quant.tflite"),
                        ("MLPerf reference float32", "pretrainedResnet.tflite")):
        if (reference / file).exists():
            rows[label] = benchmark_tflite(reference / file, dataset, bench, log, name=label, runtime=runtime)
    for name, model in models.items():
        for mode in (QuantMode.INT8, QuantMode.FLOAT32):
            path = work / f"{name.replace(' ', '_').replace('%', '').replace('(', '').replace(')', '')}_{mode.value}.tflite"
            path.write_bytes(convert(model, mode, calibration))
            label = f"{name} {mode.value}"
            rows[label] = benchmark_tflite(path, dataset, bench, log, name=label, runtime=runtime)
            rows[label].details["training"] = {k: v for k, v in info.get(name.split(" (")[0], {}).items()
                                               if k != "history"}
    from edgecv import __version__

    report = Report(stages=list(rows.values()), environment=host_environment(runtime, 1), data=dataset.describe(),
                    config=vars(args), edgecv=__version__, created=now(), seconds=time.perf_counter() - start)
    results = judge(rows)
    markdown = report.to_markdown()
    print(markdown)
    for t in results:
        shown = "not reached" if t["measured"] is None else f"{t['measured']:.3f} {t['unit']}"
        print(f"{'MET ' if t['met'] else 'MISS'} {t['target']}: {shown} (target {t['op']} {t['limit']}; {t['model']})")
    out = Path(args.results)
    plot_pareto(report, out.with_suffix(".png"))
    write_text(out.with_suffix(".md"), markdown)
    write_text(out, json.dumps({"command": " ".join(["python benchmarks/frontier_cifar10.py", f"--data {args.data}",
                                                      f"--reference {args.reference}", f"--epochs {args.epochs}",
                                                      f"--finetune-epochs {args.finetune_epochs}"]),
                                "targets": results, "training": info, "report": report.to_dict()}, indent=2,
                               default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
