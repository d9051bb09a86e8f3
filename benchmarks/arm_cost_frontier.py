"""The frontier models on the x86 host and on emulated Pi cores: host p50 beside ARM instructions per inference.

Usage (as root; the first run builds the trixie arm64 root and the counter, cached):
    python benchmarks/arm_cost_frontier.py --reference ../shared/models/mlperf-tiny-resnet8 \\
        [--data ../shared/datasets/cifar10-jpg] [--work runs/frontier] [--repeat 2]

The models are those of ``frontier_cifar10.py``: the MLPerf Tiny ResNet-8 reference (int8 and float32, as
published), edgecv's ResNet-8 and DS-CNN and their 25 % and 50 % channel cuts, int8 and float32. Where
``--work`` holds that benchmark's trained files they are used; otherwise the architectures are built here with
their initial weights, cut with ``channels.shrink`` and converted with calibration images: the instruction
count and the host latency depend on the graph (layers, shapes, types), not on what the weights learnt, so
accuracy is not the point of this table and is not reported.

For each model: the host's p50 (1 thread, ai-edge-litert, XNNPACK), and the emulated aarch64 instructions per
inference on a Cortex-A72 (Pi 4) and a Cortex-A76 (Pi 5) model (``edgecv.device.armcost``: ai-edge-litert
2.3 in Debian trixie's Python 3.13, 1 thread), each also as a ratio to the MLPerf int8 reference of the same
run. ``--repeat 2`` counts everything twice and reports the largest difference between the two (the count's
determinism). Writes ``benchmarks/results/arm_cost_frontier.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgecv.config import Arch, BenchConfig
from edgecv.data.datasets import Dataset
from edgecv.device import armcost
from edgecv.fsutil import write_text
from edgecv.measure.benchmark import benchmark_tflite, find_runtime, host_environment, now

HERE = Path(__file__).resolve().parent
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
REFERENCE = "MLPerf reference int8"


def log(message: str) -> None:
    print(message, flush=True)


def jpeg_sample(folder: Path | None, split: str, per_class: int, seed: int) -> np.ndarray | None:
    """A few CIFAR-10 JPEGs per class (calibration and inputs), or None without the data set."""
    if folder is None or not (folder / split).is_dir():
        return None
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for name in CLASSES:
        files = sorted((folder / split / name).glob("*.jpg"))
        for path in rng.choice(files, size=min(per_class, len(files)), replace=False):
            images.append(np.asarray(Image.open(path).convert("RGB")))
    return np.stack(images).astype(np.uint8) if images else None


def frontier_models(work: Path, reference: Path, calibration: np.ndarray, out: Path) -> dict[str, tuple[Path, str]]:
    """{row name: (tflite path, where it came from)} in the frontier benchmark's order."""
    from edgecv.compress.channels import shrink
    from edgecv.compress.quantize import convert
    from edgecv.train.models import build

    models = {REFERENCE: (reference / "pretrainedResnet_quant.tflite", "published file"),
              "MLPerf reference float32": (reference / "pretrainedResnet.tflite", "published file")}
    for arch, label in ((Arch.RESNET8, "resnet8"), (Arch.DSCNN, "dscnn")):
        for ratio in (0.0, 0.25, 0.5):
            name = label if ratio == 0 else f"{label} channels-{int(ratio * 100)}%"
            stem = label if ratio == 0 else f"{label}_channels-{int(ratio * 100)}"
            for mode in ("int8", "float32"):
                trained = work / f"{stem}_{mode}.tflite"  # what frontier_cifar10.py leaves in its work folder
                if trained.is_file():
                    models[f"{name} {mode}"] = (trained, f"trained ({trained})")
                    continue
                target = out / f"{stem}_{mode}.tflite"
                if not target.is_file():
                    keras_model = build(arch, (32, 32, 3), 10)
                    if ratio:
                        keras_model = shrink(keras_model, ratio)[0]
                    target.write_bytes(convert(keras_model, mode, calibration if mode == "int8" else None))
                models[f"{name} {mode}"] = (target, "built here, initial weights (untrained)")
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=HERE.parent.parent / "shared" / "models" / "mlperf-tiny-resnet8")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "datasets" / "cifar10-jpg")
    parser.add_argument("--work", type=Path, default=HERE.parent / "runs" / "frontier",
                        help="frontier_cifar10.py's work folder (its trained .tflite files are used when there)")
    parser.add_argument("--models-out", type=Path, default=HERE.parent / "runs" / "arm-cost-frontier")
    parser.add_argument("--inferences", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2, help="count everything this many times (determinism)")
    parser.add_argument("--runs", type=int, default=500, help="timed host runs per model")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "arm_cost_frontier.json")
    args = parser.parse_args()
    started = time.perf_counter()
    command = "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])

    rng = np.random.default_rng(0)
    calibration = jpeg_sample(args.data, "train", 20, 0)
    inputs = jpeg_sample(args.data, "test", 3, 1)
    data_note = f"{args.data} (200 train JPEGs for calibration, 30 test JPEGs as inputs)"
    if calibration is None:
        calibration = rng.integers(0, 256, size=(200, 32, 32, 3), dtype=np.uint8)
        inputs = rng.integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
        data_note = "random pixels (no CIFAR-10 JPEGs found)"
    args.models_out.mkdir(parents=True, exist_ok=True)
    log("models ...")
    models = frontier_models(args.work, args.reference, calibration.astype(np.float32), args.models_out)

    log("host p50 (1 thread) ...")
    runtime = find_runtime()
    dataset = Dataset(calibration, np.zeros(len(calibration), np.int64), inputs, np.zeros(len(inputs), np.int64),
                      CLASSES, data_note, "sample")
    host = {}
    for name, (path, _) in models.items():
        stage = benchmark_tflite(path, dataset, BenchConfig(warmup=20, runs=args.runs, threads=1), name=name,
                                 runtime=runtime)
        host[name] = {"p50_ms": stage.p50(), "p90_ms": (stage.latency or {}).get("p90_ms"), "macs": stage.macs,
                      "size_bytes": stage.size_bytes}

    counts = []
    for i in range(args.repeat):
        log(f"ARM instruction counts, pass {i + 1}/{args.repeat} (2 emulated processes) ...")
        t0 = time.perf_counter()
        counted = armcost.arm_costs([p for p, _ in models.values()], inputs, armcost.PI_CPUS,
                                    inferences=args.inferences)
        counts.append((counted, time.perf_counter() - t0))
        log(f"  {counts[-1][1]:.0f} s")

    log("the same without an ARM /proc and /sys (XNNPACK off: what a count without them measures) ...")
    blind_names = [REFERENCE, "resnet8 int8", "resnet8 channels-50% int8"]
    blind = armcost.arm_costs([models[n][0] for n in blind_names], inputs, ["cortex-a76"], inferences=args.inferences,
                              present_cpu=False)

    first = counts[0][0]
    ref_path = models[REFERENCE][0].name
    ref_host = host[REFERENCE]["p50_ms"]
    ref_arm = {cpu: first[ref_path][cpu].instructions_per_inference for cpu in armcost.PI_CPUS}
    rows = []
    spread = 0.0
    for name, (path, origin) in models.items():
        cells = first[path.name]
        for other, _ in counts[1:]:
            for cpu in armcost.PI_CPUS:
                a, b = cells[cpu].instructions_per_inference, other[path.name][cpu].instructions_per_inference
                spread = max(spread, abs(a - b) / a)
        row = {"model": name, "file": path.name, "origin": origin, "macs": host[name]["macs"],
               "size_bytes": host[name]["size_bytes"], "host_p50_ms": host[name]["p50_ms"],
               "host_p50_ratio": host[name]["p50_ms"] / ref_host}
        for cpu in armcost.PI_CPUS:
            cost = cells[cpu]
            row[cpu] = {"instructions_per_inference": cost.instructions_per_inference,
                        "ratio": cost.instructions_per_inference / ref_arm[cpu],
                        "first_inference": cost.first_inference, "classes": cost.classes,
                        "delegate_nodes": cost.delegate_nodes, "delegation": cost.delegation,
                        "repeats": [c[path.name][cpu].instructions_per_inference for c, _ in counts]}
        rows.append(row)
    any_cost = first[ref_path]["cortex-a76"]
    env = host_environment(runtime, 1)
    report = {
        "command": command, "created": now(), "seconds": round(time.perf_counter() - started, 1),
        "unit": armcost.UNIT,
        "host": {"cpu": env.get("cpu"), "isa": env.get("isa"), "runtime": env.get("runtime"), "python": env.get("python")},
        "emulated": {"suite": any_cost.suite, "python": any_cost.python, "runtime": any_cost.runtime,
                     "runtime_version": any_cost.runtime_version, "qemu": any_cost.qemu,
                     "features": {cpu: first[ref_path][cpu].features for cpu in armcost.PI_CPUS},
                     "boards": {cpu: armcost.CPUS[cpu].board for cpu in armcost.PI_CPUS},
                     "inferences": args.inferences, "seconds_per_pass": [round(s, 1) for _, s in counts]},
        "determinism": {"passes": args.repeat, "largest_relative_difference": spread if args.repeat > 1 else None},
        "data": data_note, "rows": rows,
        "without_cpu_view": [
            {"model": n, "cpu": "cortex-a76",
             "instructions_per_inference": blind[models[n][0].name]["cortex-a76"].instructions_per_inference,
             "delegate_nodes": blind[models[n][0].name]["cortex-a76"].delegate_nodes,
             "dot_product": blind[models[n][0].name]["cortex-a76"].classes["dot_product"],
             "with_view": first[models[n][0].name]["cortex-a76"].instructions_per_inference} for n in blind_names],
    }
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    write_text(args.out.with_suffix(".md"), markdown(report))
    log(f"wrote {args.out} and {args.out.with_suffix('.md')} in {report['seconds']:.0f} s")
    return 0


def determinism(record: dict) -> str:
    if record["largest_relative_difference"] is None:
        return "- determinism: one pass (run with --repeat 2 to compare two)"
    return (f"- determinism: {record['passes']} passes in separate processes, largest relative difference of any "
            f"count between them {100 * record['largest_relative_difference']:.5f} %")


def delegated(cell: dict) -> str:
    record = cell.get("delegation")
    if not record:
        return "yes" if cell.get("delegate_nodes") else "no"
    total = record["delegated_ops"] + sum(record["fallback_ops"].values())
    return f"{record['delegated_ops']}/{total} ops"


def markdown(report: dict) -> str:
    a72, a76 = armcost.PI_CPUS
    lines = [
        "# Frontier models: host p50 and emulated ARM instructions per inference",
        "",
        f"`{report['command']}`",
        "",
        "| model | MMACs | host p50 ms | × ref | A72 M instr | × ref | A76 M instr | × ref | A72 / A76 "
        "| A72 widening MACs, k | A76 dot products, k | A76 float FMAs, k | XNNPACK |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        x, y = row[a72], row[a76]
        macs = "" if row["macs"] is None else f"{row['macs'] / 1e6:.2f}"
        lines.append(
            f"| {row['model']} | {macs} | {row['host_p50_ms']:.4f} | {row['host_p50_ratio']:.2f} | "
            f"{x['instructions_per_inference'] / 1e6:.3f} | {x['ratio']:.2f} | {y['instructions_per_inference'] / 1e6:.3f} | "
            f"{y['ratio']:.2f} | {x['instructions_per_inference'] / y['instructions_per_inference']:.2f} | "
            f"{x['classes']['widening_multiply'] / 1e3:.0f} | {y['classes']['dot_product'] / 1e3:.0f} | "
            f"{y['classes']['float_fma'] / 1e3:.0f} | {delegated(y)} |")
    host, emulated = report["host"], report["emulated"]
    isa = host.get("isa")
    lines += [
        "",
        f"- unit: {report['unit']}. × ref: the ratio to the MLPerf reference int8 of this run (host p50, or "
        "instructions on the same CPU model). A count is not a time: it knows no caches, memory or issue width, "
        "and an A76 retires more instructions per cycle than an A72.",
        f"- host: {host['cpu']}; ISA flags: {', '.join(isa) if isinstance(isa, list) else isa}; "
        f"{host['runtime']['name']} {host['runtime']['version']}, Python {host['python']}, 1 thread, XNNPACK",
        f"- emulated: Debian {emulated['suite']} arm64, Python {emulated['python']}, {emulated['runtime']} "
        f"{emulated['runtime_version']}, 1 thread, qemu-aarch64 {emulated['qemu']} with -cpu cortex-a72 "
        f"({emulated['boards'][a72]}) and -cpu cortex-a76 ({emulated['boards'][a76]}); {emulated['inferences']} "
        "counted inferences per model after a first one, marker cost subtracted",
        f"- CPU features the guest saw: A72 {' '.join(emulated['features'][a72])}; "
        f"A76 {' '.join(emulated['features'][a76])}",
        determinism(report["determinism"]),
        f"- inputs and calibration: {report['data']}; models not trained here carry their initial weights, so "
        "no accuracy is reported",
        f"- wall time: {report['seconds'] / 60:.1f} min (emulated passes: "
        f"{', '.join(f'{s:.0f} s' for s in emulated['seconds_per_pass'])})",
        "",
        "Without the generated ARM `/proc/cpuinfo` and `/sys/devices/system/cpu` (an empty `/proc`, as a plain "
        "chroot has), XNNPACK's cpuinfo finds no processor, XNNPACK does not start and TFLite's builtin kernels "
        "run; that is not what a Pi runs:",
        "",
        "| model (A76) | M instr, no ARM view | M instr, ARM view | XNNPACK partitions, no view | dot products, no view |",
        "|---|---|---|---|---|",
    ]
    for row in report.get("without_cpu_view", []):
        lines.append(f"| {row['model']} | {row['instructions_per_inference'] / 1e6:.3f} | {row['with_view'] / 1e6:.3f} | "
                     f"{row['delegate_nodes']} | {row['dot_product']:.0f} |")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    sys.exit(main())
