"""The frontier models on an Arm Ethos-U NPU (Vela's estimate) and on TFLite Micro, beside the A76 instruction count.

Usage:
    python benchmarks/npu_micro_frontier.py [--data ../shared/datasets/cifar10-jpg] [--work runs/npu-micro] \\
        [--train-limit 10000] [--epochs 4]

The models: the MLPerf Tiny int8 ResNet-8 (as published), and edgecv's resnet8, its 25 % and 50 % channel cuts,
dscnn and patchnet, trained here briefly (``--epochs`` on a seeded ``--train-limit`` of the train split, each
architecture's default recipe; the cuts fine-tuned for one epoch), converted to int8 with 200 calibration images
from the train split. Accuracy is not the point of such short training; what is measured is where each graph
runs and what it costs there:

- Vela 5.2 (``edgecv.device.vela``) on ethos-u55-128 and ethos-u65-256: NPU and total cycles, inferences/s at
  Vela's default clock for the configuration, SRAM and flash/DRAM, ops on the NPU or the CPU. Each model is
  compiled twice and the two estimates are compared field by field (determinism).
- TFLite Micro (``edgecv.device.micro``): top-1 on 1,000 seeded test images against LiteRT's on the same int8
  inputs, how many images change their answer, and the arena.
- ``edgecv compress --model resnet8.keras --sparsity 0.5 --npu ... --micro``: the compress stages with the new
  columns.
- The ranking by Vela's ethos-u55-128 cycles against the ranking by emulated A76 instructions per inference
  from ``benchmarks/results/arm_cost_frontier.json`` (the same architectures and cuts; an instruction count
  depends on the graph, not on what the weights learnt). Patchnet has no A76 count there.

Writes ``benchmarks/results/npu_micro_frontier.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from edgecv.config import Arch, BenchConfig, CompressConfig, PruneConfig, QuantMode, Recipe, recipe_config
from edgecv.fsutil import write_text
from edgecv.measure.benchmark import now

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MLPERF = REPO.parent / "shared" / "models" / "mlperf-tiny-resnet8" / "pretrainedResnet_quant.tflite"
CONFIGS = ("ethos-u55-128", "ethos-u65-256")
TIE = 0.03  # two costs within 3 % of each other are a tie: one architecture's graph with other weights
RECIPES = {Arch.RESNET8: Recipe.EDGE, Arch.DSCNN: Recipe.EDGE, Arch.PATCHNET: Recipe.EDGE2}
A76_NAMES = {"MLPerf int8": "MLPerf reference int8", "resnet8 int8": "resnet8 int8",
             "resnet8 channels-25% int8": "resnet8 channels-25% int8",
             "resnet8 channels-50% int8": "resnet8 channels-50% int8", "dscnn int8": "dscnn int8"}


def log(message) -> None:
    print(message, flush=True)


class Every:
    """An on_progress that prints a task's start and end only."""

    def __call__(self, event) -> None:
        if event.done in (0, event.total):
            log(f"  {event.task}: {event.done}/{event.total} {event.message}")


def trained(arch: Arch, dataset, work: Path, epochs: int, seed: int):
    from edgecv.compress.export import load_keras, save_keras
    from edgecv.train.fit import train

    path, meta = work / f"{arch.value}.keras", work / f"{arch.value}.json"
    if path.exists() and meta.exists():
        return load_keras(path), json.loads(meta.read_text())
    config = recipe_config(RECIPES[arch], arch=arch, epochs=epochs, seed=seed)
    result = train(dataset, config, Every())
    save_keras(result.model, path)
    info = {"arch": arch.value, "recipe": RECIPES[arch].value, "epochs": epochs, "train_images": len(dataset.x_train),
            "seconds": result.seconds, "keras_test_accuracy": result.test_accuracy}
    write_text(meta, json.dumps(info, indent=2))
    return result.model, info


def cut(parent, ratio: float, dataset, work: Path, seed: int):
    from edgecv.compress.channels import prune_channels
    from edgecv.compress.export import load_keras, save_keras

    name = f"resnet8_channels-{100 * ratio:g}"
    path, meta = work / f"{name}.keras", work / f"{name}.json"
    if path.exists() and meta.exists():
        return load_keras(path), json.loads(meta.read_text())
    base = recipe_config(Recipe.EDGE, epochs=1, seed=seed)
    result = prune_channels(parent, dataset, ratio, replace(base, learning_rate=base.learning_rate / 3,
                                                           warmup_epochs=0.25), Every())
    save_keras(result.model, path)
    info = {"arch": "resnet8", "channel_ratio": ratio, "finetune_epochs": 1, "train_images": len(dataset.x_train),
            "keras_test_accuracy": result.test_accuracy}
    write_text(meta, json.dumps(info, indent=2))
    return result.model, info


def npu_and_micro(path: Path, images, labels) -> dict:
    from edgecv.device.micro import measure_micro
    from edgecv.device.vela import compile_model

    row = {"file": path.name, "size_bytes": path.stat().st_size, "vela": {}}
    for config in CONFIGS:
        runs = []
        for k in range(2):
            t0 = time.perf_counter()
            estimate = compile_model(path, config, path.parent / f"vela-{k}")
            runs.append((estimate, time.perf_counter() - t0))
        first, second = (e.to_dict() for e, _ in runs)
        first.pop("compiled"), second.pop("compiled")
        e = runs[0][0]
        row["vela"][config] = {
            "cycles_npu": e.cycles_npu, "cycles_total": e.cycles_total, "clock_mhz": e.clock_hz / 1e6,
            "inferences_per_second": e.inferences_per_second, "sram_bytes": e.sram_bytes,
            "flash_bytes": e.flash_bytes, "dram_bytes": e.dram_bytes, "weights_in": e.weights_in,
            "system_config": e.system_config, "graph_ops": len(e.ops), "graph_ops_on_cpu": len(e.cpu_placed),
            "cpu_placed": [f"{o.op}: {o.reason}" for o in e.cpu_placed], "vela_npu_ops": e.npu_ops,
            "vela_cpu_ops": e.cpu_ops, "compile_seconds": round(runs[0][1], 2),
            "identical_on_second_compile": first == second,
        }
    t0 = time.perf_counter()
    micro = measure_micro(path, images, labels)
    row["micro"] = {"images": micro.images, "tflm_accuracy": micro.accuracy, "litert_accuracy": micro.reference_accuracy,
                    "agreement": micro.agreement, "images_changed": round((1 - micro.agreement) * micro.images),
                    "max_output_diff_steps": micro.max_output_diff, "arena_bytes": micro.arena_bytes,
                    "runtime": micro.runtime, "reference_runtime": micro.reference_runtime,
                    "seconds": round(time.perf_counter() - t0, 1)}
    return row


def ranking(rows: dict[str, dict]) -> dict:
    """Vela's ethos-u55-128 cycles against the A76 instruction count of the same graphs: orders and pairs."""
    source = HERE / "results" / "arm_cost_frontier.json"
    counted = {r["model"]: r for r in json.loads(source.read_text())["rows"]}
    a76 = {}
    for name, theirs in A76_NAMES.items():
        value = ((counted.get(theirs) or {}).get("cortex-a76") or {}).get("instructions_per_inference")
        if value is not None and name in rows:
            a76[name] = float(value)
    names = sorted(a76)
    vela = {n: rows[n]["vela"]["ethos-u55-128"]["cycles_total"] for n in names}
    pairs, disagree, ties = 0, [], []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs += 1
            if any(abs(d[a] - d[b]) <= TIE * max(d[a], d[b]) for d in (vela, a76)):
                ties.append([a, b])  # one of the two cannot tell them apart: no order to agree on
            elif (vela[a] - vela[b]) * (a76[a] - a76[b]) < 0:
                disagree.append([a, b])
    ordered = pairs - len(ties)
    return {"source": str(source.relative_to(REPO)), "a76_instructions": a76, "vela_u55_128_cycles": vela,
            "order_by_vela": sorted(names, key=vela.get), "order_by_a76": sorted(names, key=a76.get),
            "pairs": pairs, "ties_within": TIE, "pairs_tied": ties, "pairs_disagreeing": disagree,
            "kendall_tau_untied": None if not ordered else (ordered - 2 * len(disagree)) / ordered}


def compress_stages(model: Path, data: str, train_limit: int, work: Path, seed: int) -> dict:
    from edgecv.flows.pipeline import compress

    report = compress(CompressConfig(
        out=work / "compress", data=data, model=model, train_limit=train_limit, test_limit=1000,
        prune=PruneConfig(sparsity=0.5, epochs=1, seed=seed), bench=BenchConfig(runs=50),
        npu=CONFIGS, micro=True), Every())
    rows = []
    for s in report.stages:
        rows.append({"stage": s.stage, "status": s.status.value, "accuracy": s.accuracy, "size_bytes": s.size_bytes,
                     "npu": s.details.get("npu"), "micro": s.details.get("micro"),
                     "npu_error": s.details.get("npu_error"), "micro_error": s.details.get("micro_error")})
    return {"command": f"compress(CompressConfig(model={model.name}, train_limit={train_limit}, test_limit=1000, "
                       f"sparsity=0.5, prune epochs 1, npu={list(CONFIGS)}, micro=True))", "stages": rows,
            "seconds": report.seconds}


def to_markdown(result: dict) -> str:
    lines = ["# Frontier models on an Ethos-U NPU (Vela's estimate) and on TFLite Micro", "",
             f"`{result['command']}`", "",
             "| model | KB | U55-128 kcycles (NPU / total) | U55-128 inf/s @500 MHz | U55-128 SRAM / flash KB "
             "| U65-256 kcycles | U65-256 inf/s @1 GHz | U65-256 SRAM / DRAM KB | graph ops on CPU "
             "| TFLM acc % | LiteRT acc % | changed / 1000 | arena KB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["models"].items():
        u55, u65, m = r["vela"]["ethos-u55-128"], r["vela"]["ethos-u65-256"], r["micro"]
        lines.append(
            f"| {name} | {r['size_bytes'] / 1024:,.1f} | {u55['cycles_npu'] / 1e3:,.1f} / {u55['cycles_total'] / 1e3:,.1f} "
            f"| {u55['inferences_per_second']:,.0f} | {u55['sram_bytes'] / 1024:,.1f} / {u55['flash_bytes'] / 1024:,.1f} "
            f"| {u65['cycles_total'] / 1e3:,.1f} | {u65['inferences_per_second']:,.0f} "
            f"| {u65['sram_bytes'] / 1024:,.1f} / {u65['dram_bytes'] / 1024:,.1f} "
            f"| {max(u55['graph_ops_on_cpu'], u65['graph_ops_on_cpu'])}/{u55['graph_ops']} "
            f"| {100 * m['tflm_accuracy']:.1f} | {100 * m['litert_accuracy']:.1f} | {m['images_changed']} "
            f"| {m['arena_bytes'] / 1024:,.1f} |")
    rank = result["ranking"]
    lines += ["", f"Determinism: every estimate identical on a second compile: {result['deterministic']}.", "",
              f"Ranking by Vela's ethos-u55-128 total cycles: {' < '.join(rank['order_by_vela'])}.",
              f"Ranking by emulated A76 instructions ({rank['source']}): {' < '.join(rank['order_by_a76'])}.",
              f"Of {rank['pairs']} pairs, {len(rank['pairs_tied'])} tied within {100 * TIE:g} % on one side "
              f"({'; '.join(' vs '.join(p) for p in rank['pairs_tied']) or 'none'}); ordered differently: "
              f"{len(rank['pairs_disagreeing'])} ({'; '.join(' vs '.join(p) for p in rank['pairs_disagreeing']) or 'none'})"
              f"; Kendall tau over the untied pairs {rank['kendall_tau_untied']:.2f}.", "", "## compress stages", "",
              "| stage | acc % | U55-128 kcycles | U55-128 SRAM / flash KB | U65-256 kcycles | TFLM acc % | arena KB |",
              "|---|---|---|---|---|---|---|"]
    for s in result["compress"]["stages"]:
        npu, micro = s["npu"] or {}, s["micro"] or {}
        u55, u65 = npu.get("ethos-u55-128") or {}, npu.get("ethos-u65-256") or {}
        cell = lambda d, k, f: f(d[k]) if k in d else ""  # noqa: E731
        accuracy = "" if s["accuracy"] is None else f"{100 * s['accuracy']:.2f}"
        lines.append(f"| {s['stage']} | {accuracy} "
                     f"| {cell(u55, 'cycles_total', lambda v: f'{v / 1e3:,.1f}')} "
                     f"| {cell(u55, 'sram_bytes', lambda v: f'{v / 1024:,.1f}')}"
                     f"{cell(u55, 'flash_bytes', lambda v: f' / {v / 1024:,.1f}')} "
                     f"| {cell(u65, 'cycles_total', lambda v: f'{v / 1e3:,.1f}')} "
                     f"| {cell(micro, 'accuracy', lambda v: f'{100 * v:.2f}')} "
                     f"| {cell(micro, 'arena_bytes', lambda v: f'{v / 1024:,.1f}')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "cifar10-jpg"))
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "npu-micro")
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-compress", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    from edgecv.compress.quantize import calibration_images, convert
    from edgecv.data.datasets import load
    from edgecv.measure.benchmark import scoring_images

    args.work.mkdir(parents=True, exist_ok=True)
    dataset = load(args.data).subset(train=args.train_limit, seed=args.seed)
    images, labels = scoring_images(dataset, BenchConfig(limit=1000))
    calibration = calibration_images(dataset, 200, args.seed)
    files, training = {}, {}
    if MLPERF.is_file():
        files["MLPerf int8"] = MLPERF
        training["MLPerf int8"] = {"trained": "as published by MLPerf Tiny"}
    resnet8 = None
    for arch in (Arch.RESNET8, Arch.DSCNN, Arch.PATCHNET):
        log(f"{arch.value}: training")
        model, info = trained(arch, dataset, args.work, args.epochs, args.seed)
        resnet8 = model if arch is Arch.RESNET8 else resnet8
        models = [(f"{arch.value} int8", model, info)]
        if arch is Arch.RESNET8:
            for ratio in (0.25, 0.5):
                log(f"resnet8: cutting {100 * ratio:g} % of the channels")
                smaller, cut_info = cut(model, ratio, dataset, args.work, args.seed)
                models.append((f"resnet8 channels-{100 * ratio:g}% int8", smaller, cut_info))
        for name, keras_model, info in models:
            path = args.work / f"{name.replace(' ', '_').replace('%', '')}.tflite"
            if not path.exists():
                path.write_bytes(convert(keras_model, QuantMode.INT8, calibration))
            files[name], training[name] = path, info
    rows = {}
    for name, path in files.items():
        log(f"{name}: Vela x2 on {', '.join(CONFIGS)}, TFLite Micro on {len(labels)} images")
        rows[name] = npu_and_micro(path, images, labels) | {"training": training[name]}
    result = {
        "command": "python benchmarks/npu_micro_frontier.py " + " ".join(sys.argv[1:]), "created": now(),
        "data": {"source": args.data, "train_images": len(dataset.x_train), "micro_test_images": int(len(labels)),
                 "calibration": "200 train images, seeded"},
        "unit": "Vela's performance estimate (a compiler's model of the NPU, not a board); TFLM arena on x86-64",
        "models": rows,
        "deterministic": all(v["identical_on_second_compile"] for r in rows.values() for v in r["vela"].values()),
        "ranking": ranking(rows),
    }
    if not args.skip_compress and resnet8 is not None:
        log("compress stages of resnet8 with --npu and --micro")
        result["compress"] = compress_stages(args.work / "resnet8.keras", args.data, args.train_limit, args.work,
                                             args.seed)
    else:
        result["compress"] = {"stages": []}
    result["seconds"] = time.perf_counter() - start
    out = HERE / "results" / "npu_micro_frontier.json"
    write_text(out, json.dumps(result, indent=2, default=str) + "\n")
    write_text(out.with_suffix(".md"), to_markdown(result))
    log(to_markdown(result))


if __name__ == "__main__":
    main()
