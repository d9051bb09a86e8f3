"""int8 files of the edge frontier's layouts with their initial weights, for instruction counts.

Usage:
    python benchmarks/edge_frontier_graphs.py --data ../shared/datasets/cifar10-jpg --out runs/edge-frontier/graphs
    python benchmarks/arm_cost_files.py runs/edge-frontier/graphs/*.tflite \\
        ../shared/models/mlperf-tiny-resnet8/pretrainedResnet_quant.tflite --data ../shared/datasets/cifar10-jpg \\
        --results benchmarks/results/arm_cost_v3.json

A count depends on the graph (layers, shapes, int8 kernels), not on what the weights learnt, so a layout whose
trained file was not kept is counted from its initial weights, calibrated on 200 train images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

LAYOUTS = ("edge2", "stem32")  # rows of edge_frontier_cifar10.py, whose widths they take


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="runs/edge-frontier/graphs")
    args = parser.parse_args()
    from edgecv.compress.quantize import calibration_images, convert
    from edgecv.config import QuantMode
    from edgecv.data.datasets import load
    from edgecv.train.fit import set_seed
    from edgecv.train.models import build
    from edge_frontier_cifar10 import ROWS  # this folder is on the path of a script run from it

    set_seed(0)
    dataset = load(args.data).subset(train=1000, test=10, seed=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in LAYOUTS:
        widths = ROWS[name][1].get("widths", ())
        model = build("patchnet", dataset.input_shape, dataset.num_classes, widths, 0)
        path = out / f"{name}-initial-int8.tflite"
        path.write_bytes(convert(model, QuantMode.INT8, calibration_images(dataset, 200, 0)))
        print(f"{path}: {model.count_params():,} parameters")


if __name__ == "__main__":
    main()
