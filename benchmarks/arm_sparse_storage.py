"""Does TFLite's sparse storage buy instructions on a Pi? The pruned model of a compress run, dense and sparse,
counted in emulated aarch64 instructions per inference on a Pi 4 (A72) and a Pi 5 (A76) core.

Usage (as root, like ``edgecv device emulate``):
    python benchmarks/arm_sparse_storage.py --run runs/bench-compress --data ../shared/datasets/cifar10-jpg

Writes ``benchmarks/results/arm_sparse_storage.json``. The sparse int8 file is listed with why it has no count:
XNNPACK in ai-edge-litert 2.3 refuses to prepare it (on ARM as on x86).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from edgecv.compress.export import load_keras
from edgecv.compress.quantize import calibration_images, convert
from edgecv.data.datasets import load
from edgecv.device.armcost import PI_CPUS, UNIT, arm_costs
from edgecv.errors import DataError
from edgecv.fsutil import write_text
from edgecv.runtime import environment

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a compress run folder holding pruned.keras")
    parser.add_argument("--data", required=True)
    parser.add_argument("--results", default=str(HERE / "results" / "arm_sparse_storage.json"))
    args = parser.parse_args()

    data = load(args.data)
    model = load_keras(Path(args.run) / "pruned.keras")
    calibration = calibration_images(data, 200, 0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for mode in ("int8", "float32"):
            for sparse in (False, True):
                path = Path(folder) / f"pruned_{mode}{'_sparse' if sparse else ''}.tflite"
                path.write_bytes(convert(model, mode, calibration, sparse=sparse))
                files.append(path)
        for path in files:
            row = {"model": path.name, "bytes": path.stat().st_size}
            try:
                counts = arm_costs([path], data.x_test[:11], PI_CPUS, inferences=10)[path.name]
                row.update({cpu: c.instructions_per_inference for cpu, c in counts.items()})
            except DataError as e:
                row["not counted"] = str(e)
            rows.append(row)
            print(row)
    write_text(args.results, json.dumps({"command": "python benchmarks/arm_sparse_storage.py --run " + args.run,
                                         "unit": UNIT, "host": environment(None, 1), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
