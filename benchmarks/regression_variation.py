"""Measures how much the regression tests' accuracies move across seeds and reruns, to choose their margins.

Usage:
    python benchmarks/regression_variation.py --data ../shared/datasets/cifar10-jpg [--seeds 0 1 2 3 4] [--reruns 2]

Runs the configuration of ``tests/measure/test_regression_cifar.py`` (a seeded slice of the real CIFAR-10) once per
seed, and seed 0 ``--reruns`` more times, and writes every accuracy and the spread to
``benchmarks/results/regression_variation.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from regression_config import regression_config  # the tests' own configuration (they import it from here)

from edgecv.fsutil import write_text
from edgecv.flows.pipeline import compress

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--reruns", type=int, default=2)
    parser.add_argument("--results", default=str(HERE / "results" / "regression_variation.json"))
    args = parser.parse_args()

    runs = []
    for seed in list(args.seeds) + [args.seeds[0]] * args.reruns:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            report = compress(regression_config(args.data, Path(out), seed))
            row = {"seed": seed, "seconds": time.perf_counter() - start}
            for stage in ("keras float", "tflite float32", "tflite int8", "pruned int8"):
                row[stage] = 100 * report.stage(stage).accuracy
            row["int8 drop"] = row["keras float"] - row["tflite int8"]
            row["pruned int8 drop"] = row["keras float"] - row["pruned int8"]
            runs.append(row)
            print(json.dumps(row), flush=True)
    seeds = runs[: len(args.seeds)]
    spread = {}
    for key in ("keras float", "tflite int8", "pruned int8", "int8 drop", "pruned int8 drop"):
        values = np.array([r[key] for r in seeds])
        spread[key] = {"min": values.min(), "max": values.max(), "mean": values.mean(), "std": values.std(ddof=1)}
    reruns = [r for r in runs if r["seed"] == args.seeds[0]]
    rerun_identical = all(r["tflite int8"] == reruns[0]["tflite int8"] for r in reruns)
    summary = {"runs": runs, "across_seeds": spread, "reruns_identical": rerun_identical}
    write_text(args.results, json.dumps(summary, indent=2, default=float) + "\n")
    print(json.dumps(spread, indent=1, default=float))
    print(f"reruns of seed {args.seeds[0]} identical: {rerun_identical}; wrote {args.results}")


if __name__ == "__main__":
    main()
