"""Emulated aarch64 instructions per inference of any .tflite files, on a Pi 4 (A72) and a Pi 5 (A76) core.

Usage (as root, like ``edgecv device emulate``):
    python benchmarks/arm_cost_files.py runs/mixed/*.tflite --data ../shared/datasets/cifar10-jpg \\
        --results benchmarks/results/arm_cost_mixed.json

Counts every file in one emulated process per core (10 inferences on test images after a first one, resized
to each model's own input size) and writes the counts, in millions, with the unit and the host's record.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from edgecv.data.datasets import load
from edgecv.device.armcost import PI_CPUS, UNIT, arm_costs
from edgecv.fsutil import write_text
from edgecv.runtime import TFLiteModel, environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--results", required=True)
    args = parser.parse_args()
    test = load(args.data).subset(train=1)
    test = replace(test, x_test=test.x_test[:11], y_test=test.y_test[:11])
    inputs = {str(m): test.resized(int(TFLiteModel(path=str(m), plain=True).input["shape"][1])).x_test
              for m in args.models}  # a 96 px model gets the same images at 96 px
    counts = arm_costs(args.models, inputs, PI_CPUS, inferences=10)
    rows = {name: {cpu: cost.instructions_per_inference / 1e6 for cpu, cost in per.items()}
            for name, per in counts.items()}
    for name, row in rows.items():
        print(f"{name:40s} " + "  ".join(f"{cpu} {m:.3f} M" for cpu, m in row.items()))
    write_text(args.results, json.dumps({"unit": "millions of " + UNIT, "models": rows, "host": environment(None, 1),
                                         "command": "python benchmarks/arm_cost_files.py "
                                                    + " ".join(str(m) for m in args.models)
                                                    + f" --data {args.data} --results {args.results}"},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
