"""Runs the default ``edgecv compress --int8`` on the full CIFAR-10 and checks the issue's targets as ratios.

Usage:
    python benchmarks/compress_cifar10.py --data ../shared/datasets/cifar10-jpg [--out runs/bench-compress]

Writes the run's own report (models, report.json, report.md, pareto.png) under ``--out`` and a summary of the
targets, each with its measured ratio and whether it was met, to ``benchmarks/results/compress_cifar10.json``.
Speed and size goals are judged here, as ratios from one run, not by timed asserts in the tests.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgecv.config import CompressConfig
from edgecv.fsutil import write_text
from edgecv.flows.pipeline import compress
from edgecv.progress import Progress

HERE = Path(__file__).resolve().parent


def targets(report, wall_seconds: float) -> list[dict]:
    keras, flt, int8, pruned8 = (report.stage(n) for n in ("keras float", "tflite float32", "tflite int8", "pruned int8"))

    def target(name, value, op, limit, unit):
        met = limit is None or (value <= limit if op == "<=" else value >= limit)
        return {"target": name, "measured": value, "op": op, "limit": limit, "met": met, "unit": unit}

    drop = 100 * (keras.accuracy - int8.accuracy)
    pruned_drop = 100 * (keras.accuracy - pruned8.accuracy)
    latency = int8.p50() / flt.p50()
    size = flt.size_bytes / int8.size_bytes
    gz = flt.gzip_bytes / pruned8.gzip_bytes
    return [
        target("int8 accuracy drop vs Keras float", drop, "<=", 0.5, "points"),
        target("pruned + int8 accuracy drop vs Keras float (reported, no target)", pruned_drop, None, None, "points"),
        target("int8 p50 / float TFLite p50", latency, "<=", 0.4, "x"),
        target("float TFLite size / int8 size", size, ">=", 4.0, "x"),
        target("float TFLite gzip / pruned + int8 gzip", gz, ">=", 10.0, "x"),
        target("whole pipeline wall time", wall_seconds / 60, "<=", 5.0, "min"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 image folder or python version")
    parser.add_argument("--out", default="runs/bench-compress")
    parser.add_argument("--results", default=str(HERE / "results" / "compress_cifar10.json"))
    args = parser.parse_args()

    last = {}

    def on_progress(p: Progress) -> None:  # one line per task, enough for a log
        if p.task not in last:
            print(f"  {p.task} ...", flush=True)
        last[p.task] = p

    start = time.perf_counter()
    report = compress(CompressConfig(out=Path(args.out), data=args.data), on_progress)
    wall = time.perf_counter() - start
    print(Path(args.out, "report.md").read_text())
    results = targets(report, wall)
    for t in results:
        limit = "" if t["limit"] is None else f" (target {t['op']} {t['limit']})"
        print(f"{'MET ' if t['met'] else 'MISS'} {t['target']}: {t['measured']:.3f} {t['unit']}{limit}")
    summary = {"command": "edgecv compress --int8 --data " + args.data, "wall_seconds": wall, "targets": results,
               "report": report.to_dict()}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.results, json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
