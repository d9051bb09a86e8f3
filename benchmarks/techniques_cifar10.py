"""Every compression technique on the full CIFAR-10, in one table against the same float baseline.

Usage:
    python benchmarks/techniques_cifar10.py --data ../shared/datasets/cifar10-jpg [--out runs/bench-techniques]

Two runs of the library's ``compress``: the default recipe with int8, int16x8, QAT (and pruning-preserving
QAT), keep-float of the worst layer and sparse storage; then, from that run's baseline model (QAT and
clustering do not combine), 16-value clustering. Writes both reports and a merged table to
``benchmarks/results/techniques_cifar10.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgecv.config import CompressConfig, PruneConfig, QuantMode
from edgecv.fsutil import write_text
from edgecv.flows.pipeline import compress
from edgecv.progress import Progress
from edgecv.measure.report import Report

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="runs/bench-techniques")
    parser.add_argument("--results", default=str(HERE / "results" / "techniques_cifar10.json"))
    args = parser.parse_args()
    seen = set()

    def on_progress(p: Progress) -> None:
        if p.task not in seen:
            seen.add(p.task)
            print(f"  {p.task} ...", flush=True)

    out = Path(args.out)
    start = time.perf_counter()
    main_run = compress(CompressConfig(out=out / "all", data=args.data, modes=(QuantMode.INT8, QuantMode.INT16X8),
                                       qat=True, keep_float_worst=1, sparse=True), on_progress)
    clustered = compress(CompressConfig(out=out / "clustered", data=args.data, model=out / "all" / "baseline.keras",
                                        clusters=16, prune=PruneConfig(sparsity=0.0)), on_progress)
    wall = time.perf_counter() - start
    stages = main_run.stages + [s for s in clustered.stages if s.stage.startswith("clustered")]
    table = Report(stages=stages, environment=main_run.environment, data=main_run.data, edgecv=main_run.edgecv)
    print(table.to_markdown())
    summary = {"command": f"python benchmarks/techniques_cifar10.py --data {args.data}", "wall_seconds": wall,
               "stages": [s for s in table.to_dict()["stages"]], "environment": main_run.environment,
               "runs": [main_run.to_dict(), clustered.to_dict()]}
    write_text(args.results, json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.results} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
