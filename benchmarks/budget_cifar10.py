"""MLPerf Tiny quality in a wall-clock budget: train ResNet-8 from scratch in ``--minutes`` (data loading
included) for each seed, quantize to int8, and measure on the full CIFAR-10 JPEG test set, 1 thread.

Usage:
    python benchmarks/budget_cifar10.py --data ../shared/datasets/cifar10-jpg [--minutes 30] [--seeds 0 1 2]

First measures training throughput (images/s) of plain ``model.fit`` on in-memory arrays without augmentation
against the recipe's tf.data pipeline. Then one budgeted run per seed, one after the other, with a learning
curve (test accuracy on 2,000 test images after every epoch; its time counts against the budget). Writes
``benchmarks/results/budget_cifar10.json``, a Markdown table and an accuracy-versus-wall-clock plot.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgecv.config import Arch, BenchConfig, QuantMode, Recipe, recipe_config
from edgecv.fsutil import write_text
from edgecv.progress import Progress

HERE = Path(__file__).resolve().parent


def log(p: Progress, last={}) -> None:
    key = (p.task, p.message.split(" loss")[0])
    if key not in last:
        print(f"  {p.task} {p.message}", flush=True)
        last[key] = True


def throughput(dataset, arch: Arch, batch_size: int) -> dict:
    """Images per second of the second epoch (the first traces the graph): plain fit vs the recipe, on a
    15,000-image slice of the train split."""
    from edgecv._tf import keras
    from edgecv.train.models import build
    from edgecv.train.recipe import training_data, with_augmentation
    from edgecv.train.fit import compile_model, one_hot, set_seed

    x, y = dataset.x_train, one_hot(dataset.y_train, dataset.num_classes)
    result = {}
    for name in ("plain fit, arrays, no augmentation", "edgecv recipe (flips + shifts on the graph)"):
        set_seed(0)
        model = build(arch, dataset.input_shape, dataset.num_classes)
        if "recipe" in name:
            model = with_augmentation(model, recipe_config(Recipe.EDGE))
        compile_model(model, "adam", 1e-3, 0.1 if "recipe" in name else 0.0)
        times = []

        class Clock(keras().callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.t)

        if "plain" in name:
            model.fit(x.astype(np.float32), y, batch_size=batch_size, epochs=2, verbose=0, callbacks=[Clock()])
        else:
            config = recipe_config(Recipe.EDGE, batch_size=batch_size)
            data, _ = training_data(x, y, config)
            model.fit(data, epochs=2, verbose=0, callbacks=[Clock()])
        result[name] = len(x) / times[-1]
        print(f"  {name}: {result[name]:.0f} images/s", flush=True)
    plain, recipe = result.values()
    return {"images_per_second": result, "overhead": plain / recipe}


def one_seed(args, seed: int, work: Path) -> dict:
    from edgecv.measure.benchmark import benchmark_tflite, find_runtime
    from edgecv.data.datasets import load
    from edgecv.device.edgetpu import static_report
    from edgecv.compress.export import save_keras
    from edgecv.measure.macs import total_macs
    from edgecv.compress.quantize import calibration_images, convert
    from edgecv.train.fit import train

    started = time.perf_counter()  # the budget's clock: data loading counts
    dataset = load(args.data, log)
    config = recipe_config(Recipe.EDGE, arch=Arch(args.arch), seed=seed, budget_minutes=args.minutes)
    result = train(dataset, config, log, started=started, track_test=2000)
    wall = time.perf_counter() - started
    save_keras(result.model, work / f"{args.arch}-seed{seed}.keras")
    calibration = calibration_images(dataset, 200, seed)
    rows = {}
    for mode in (QuantMode.FLOAT32, QuantMode.INT8):
        path = work / f"{args.arch}-seed{seed}-{mode.value}.tflite"
        path.write_bytes(convert(result.model, mode, calibration))
        rows[mode.value] = benchmark_tflite(path, dataset, BenchConfig(warmup=50, runs=500), log,
                                            name=f"seed {seed} {mode.value}", runtime=find_runtime())
    edgetpu = static_report(work / f"{args.arch}-seed{seed}-int8.tflite")
    plan = result.plan
    return {
        "seed": seed, "wall_minutes": wall / 60, "train_seconds": result.seconds, "epochs": plan.epochs,
        "plans": plan.plans, "cut_off": plan.cut_off, "keras_accuracy": result.test_accuracy,
        "curve": {"minutes": [t / 60 for t in plan.epoch_ends], "test_accuracy_2000": plan.test_accuracy},
        "params": result.model.count_params(), "macs": total_macs(result.model),
        "float32": asdict(rows["float32"]), "int8": asdict(rows["int8"]),
        "edgetpu_fully_mapped": edgetpu.fully_mapped, "edgetpu_cpu_ops": edgetpu.cpu_ops,
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }


def judge(runs: list[dict], speed: dict, minutes: float) -> list[dict]:
    def target(name, measured, op, limit, unit):
        met = measured <= limit if op == "<=" else measured >= limit
        return {"target": name, "measured": measured, "op": op, "limit": limit, "unit": unit, "met": bool(met)}

    int8 = float(np.mean([100 * r["int8"]["accuracy"] for r in runs]))
    gap = max(100 * (r["float32"]["accuracy"] - r["int8"]["accuracy"]) for r in runs)
    return [
        target(f"int8 top-1, mean of {len(runs)} seeds (MLPerf Tiny quality)", int8, ">=", 85.0, "%"),
        target(f"int8 top-1, mean of {len(runs)} seeds (best published MLPerf Tiny int8)", int8, ">=", 88.0, "%"),
        target("int8 within float parent (worst seed)", gap, "<=", 0.5, "points"),
        target("parameters", max(r["params"] for r in runs), "<=", 100_000, ""),
        target("MACs", max(r["macs"] for r in runs) / 1e6, "<=", 15.0, "M"),
        target("int8 p50, 1 thread (worst seed)", max(r["int8"]["latency"]["p50_ms"] for r in runs), "<=", 0.10, "ms"),
        target("training wall clock incl. data (worst seed)", max(r["wall_minutes"] for r in runs), "<=", minutes,
               "min"),
        target("all ops Edge TPU-mappable (static check)", float(all(r["edgetpu_fully_mapped"] for r in runs)), ">=",
               1.0, ""),
        target("recipe throughput overhead vs plain fit", speed["overhead"], "<=", 1.2, "x"),
    ]


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgecv.measure.report import save_png

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        ax.plot(r["curve"]["minutes"], [100 * a for a in r["curve"]["test_accuracy_2000"]], marker=".",
                label=f"seed {r['seed']}: int8 {100 * r['int8']['accuracy']:.2f} % ({r['epochs']} epochs)")
    ax.axhline(85, color="tab:red", linestyle="--", linewidth=1, label="MLPerf Tiny quality target 85 %")
    ax.set_xlabel("wall clock, minutes (data loading included)")
    ax.set_ylabel("test accuracy, % (2,000 test images)")
    ax.set_title("ResNet-8, edge recipe, budget fitted schedule, 2 CPU cores")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", default="resnet8")
    parser.add_argument("--work", default="runs/budget")
    parser.add_argument("--results", default=str(HERE / "results" / "budget_cifar10.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from edgecv.data.datasets import load

    speed = throughput(load(args.data).subset(train=15000, seed=0), Arch(args.arch), recipe_config(Recipe.EDGE).batch_size)
    runs = []
    for seed in args.seeds:
        runs.append(one_seed(args, seed, work))
        summarize(args, runs, speed)  # after every seed: a run stopped early keeps what it finished


def summarize(args, runs: list[dict], speed: dict) -> None:
    results = judge(runs, speed, args.minutes)
    lines = ["| seed | arch | params | MMACs | epochs | minutes | float % | int8 % | int8 p50 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['seed']} | {args.arch} | {r['params']:,} | {r['macs'] / 1e6:.2f} | {r['epochs']} | "
                     f"{r['wall_minutes']:.1f} | {100 * r['float32']['accuracy']:.2f} | {100 * r['int8']['accuracy']:.2f}"
                     f" | {r['int8']['latency']['p50_ms']:.4f} |")
    table = "\n".join(lines)
    print(table)
    for t in results:
        print(f"{'MET ' if t['met'] else 'MISS'} {t['target']}: {t['measured']:.3f} {t['unit']} "
              f"(target {t['op']} {t['limit']})")
    out = Path(args.results)
    plot(runs, out.with_suffix(".png"))
    write_text(out.with_suffix(".md"), table + "\n")
    command = (f"python benchmarks/budget_cifar10.py --data {args.data} --minutes {args.minutes:g} --seeds "
               + " ".join(map(str, args.seeds)))
    write_text(out, json.dumps({"command": command, "cpu_count": os.cpu_count(), "seeds_done": len(runs),
                                "throughput": speed, "targets": results, "runs": runs}, indent=2, default=str) + "\n")
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
