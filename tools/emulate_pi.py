"""Run an edgecv device kit on an emulated Raspberry Pi OS userland (Debian arm64 under qemu).

Usage (as root, with qemu-user-static, binfmt-support and debootstrap installed):
    python tools/emulate_pi.py KIT [--suite trixie|bookworm] [--runtime ai_edge_litert] [--arm-cost] [--out emulated/]

The same library call as ``edgecv device emulate``: builds and caches the root once, makes one venv per runtime
inside it, runs the kit there and on this host, and writes merged.json with the per-image top-1 agreement.
"""

import argparse
import sys

from edgecv.device.armcost import PI_CPUS
from edgecv.device.emulate import PiRuntime
from edgecv.device.emulated_kit import emulate_kit
from edgecv.errors import EdgecvError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kit")
    parser.add_argument("--runtime", action="append", choices=[r.value for r in PiRuntime])
    parser.add_argument("--suite", default="trixie")
    parser.add_argument("--arm-cost", action="store_true", help="count aarch64 instructions per inference (A72, A76)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default="emulated")
    args = parser.parse_args()
    try:
        done = emulate_kit(args.kit, args.runtime, args.out, args.runs, suite=args.suite,
                           arm_cost_cpus=PI_CPUS if args.arm_cost else ())
    except EdgecvError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    for run in done.runs:
        print(f"{run.runtime}: Python {run.python} on {run.machine}, accuracy and top-1 agreement in {args.out}/merged.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
