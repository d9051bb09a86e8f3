"""A device kit run on an emulated Raspberry Pi OS: under each runtime, beside this host, merged.

The layers below: :mod:`edgecv.device.emulate` builds the Pi OS root and its runtime venvs and runs a command
there; :mod:`edgecv.device.armcost` shows the guest a Pi's CPU and counts instructions. This module runs the
kit's own script through both and merges the results with the host's (:mod:`edgecv.device.kit`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from edgecv.device import armcost
from edgecv.device.emulate import (ARCH, DEFAULT_CPU, DEFAULT_SUITE, SUITES, EmulatedRun, _chroot, check_host,
                                   check_kit, check_runtimes, ensure_root, ensure_venv, root_dir, root_is_complete,
                                   runtime_label)
from edgecv.device.kit import merge, save_merged
from edgecv.errors import DataError
from edgecv.fsutil import json_text, prepare_out_dir, write_text
from edgecv.progress import Progress, ProgressFn, ignore


def emulate(kit: str | os.PathLike, runtimes: Sequence[str] | None, out: str | os.PathLike, runs: int = 20,
            on_progress: ProgressFn = ignore, suite: str = DEFAULT_SUITE, mirror: str | None = None,
            cpu: str | None = DEFAULT_CPU) -> list[EmulatedRun]:
    """Runs the kit under each runtime (None: ai-edge-litert) in the emulated Pi OS of ``suite`` and brings
    each result JSON back into ``out`` as ``emulated-<runtime>.json``.

    ``cpu``: the core the emulated Pi has (``cortex-a76``, a Pi 5, by default; ``cortex-a72``, a Pi 4): qemu
    emulates that model and the guest sees its ``/proc/cpuinfo`` and ``/sys/devices/system/cpu``, so the
    runtime's default delegate (XNNPACK) starts and picks the kernels it would pick on that board. None: qemu's
    default CPU and no ``/proc``, where XNNPACK's cpuinfo finds no processor and TFLite's builtin kernels run.

    Raises:
        DataError: not a kit, or a runtime or suite that is not offered.
        Unsupported: a legacy runtime with no wheel for the suite's Python; no root, no binfmt support, or
            offline with no cached root (exit 3).
    """
    kit, out = Path(kit), Path(out)
    check_kit(kit)
    runtimes = check_runtimes(runtimes, suite)
    check_host(building=not root_is_complete(root_dir(suite), suite))
    if cpu is not None:
        armcost.check_cpus([cpu])
    root = ensure_root(on_progress, suite, mirror)
    out.mkdir(parents=True, exist_ok=True)
    runs_done = []
    for runtime in runtimes:
        python = ensure_venv(root, runtime, on_progress)
        work = Path(tempfile.mkdtemp(prefix="kit-", dir=root / "tmp"))
        try:
            for item in kit.iterdir():
                if item.is_file():
                    shutil.copyfile(item, work / item.name)
            inside = "/" + str(work.relative_to(root))
            view, env = None, {}
            if cpu is not None:
                view, env = work / "view", {"QEMU_CPU": cpu}
                armcost.pi_view(root, cpu, python, view)
            on_progress(Progress(f"emulated {runtime}", 0, 1, "slow: every instruction is emulated"))
            done = _chroot(root, python, f"{inside}/edgecv_bench.py", "--runtime", runtime, "--runs", str(runs),
                           "--warmup", "2", "--out", f"{inside}/result.json", view=view, env=env)
            if done.returncode != 0:
                last = done.stderr.strip().splitlines()[-1:] or ["no output"]
                raise DataError(f"the kit failed under {runtime} in the emulated Pi: {last[0]}")
            result = json.loads((work / "result.json").read_text())
        finally:
            shutil.rmtree(work, ignore_errors=True)
        device = result["environment"].setdefault("device", {})
        device["emulated"] = {"by": "qemu-user (binfmt_misc)", "root": f"Debian {suite} {ARCH}",
                              "os": SUITES[suite]["pi_os"], "runtime": runtime_label(runtime),
                              "cpu": cpu or "qemu's default (no /proc: XNNPACK off, TFLite's builtin kernels)",
                              "latency": "not meaningful: every instruction is emulated"}
        device["board"] = device.get("board") or f"emulated Raspberry Pi OS ({suite}, {ARCH}{', ' + cpu if cpu else ''})"
        target = out / f"emulated-{runtime}.json"
        write_text(target, json_text(result))
        on_progress(Progress(f"emulated {runtime}", 1, 1))
        runs_done.append(EmulatedRun(runtime, target, result["environment"]["python"], result["environment"]["machine"],
                                     suite))
    return runs_done


@dataclass
class Emulation:
    host: Path  # the kit's result on this host, the reference each emulated run is compared with
    runs: list[EmulatedRun]
    merged: object  # device.kit.Merged: host and emulated results in one table
    arm_costs: dict = field(default_factory=dict)  # {runtime: {model file: {cpu: armcost.ArmCost}}}


def emulate_kit(kit: str | os.PathLike, runtimes: Sequence[str] | None, out: str | os.PathLike, runs: int = 20,
                on_progress: ProgressFn = ignore, suite: str = DEFAULT_SUITE, mirror: str | None = None,
                arm_cost_cpus: Sequence[str] = (), arm_cost_inferences: int = 10,
                cpu: str | None = DEFAULT_CPU) -> Emulation:
    """``edgecv device emulate``: the kit on this host, then under each runtime (None: ai-edge-litert) in the
    emulated Pi OS of ``suite``, merged into ``out`` (merged.json, merged.png), so each emulated runtime is
    compared image by image with the host. ``cpu``: the core the emulated Pi presents (see ``emulate``).

    ``arm_cost_cpus`` (e.g. ``("cortex-a72", "cortex-a76")``, or ``armcost.PI_CPUS``) adds each model's emulated
    ARM instructions per inference under each runtime and CPU model: in the emulated result JSON as
    ``stages[i].details["arm_cost"]`` and in merged.json as ``models[j].arm_cost`` (see ``armcost``). They are
    counts of emulated instructions, never times.
    """
    kit = Path(kit)
    check_kit(kit)
    runtimes = check_runtimes(runtimes, suite)
    if arm_cost_cpus:
        armcost.check_cpus(arm_cost_cpus)
    folder = prepare_out_dir(out)
    host = folder / "host.json"
    done = subprocess.run([sys.executable, str(kit / "edgecv_bench.py"), "--runs", str(runs), "--out", str(host)],
                          capture_output=True, text=True, cwd=kit)
    if done.returncode != 0:
        raise DataError(f"the kit failed on this host: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    emulated = emulate(kit, runtimes, folder, runs, on_progress, suite, mirror, cpu)
    costs = {}
    if arm_cost_cpus:
        costs = armcost.add_to_results(kit, emulated, arm_cost_cpus, suite=suite, mirror=mirror,
                                       inferences=arm_cost_inferences, on_progress=on_progress)
    merged = merge([host] + [run.result for run in emulated])  # each cell carries its stage's ARM cost
    save_merged(merged, folder)
    return Emulation(host, emulated, merged, costs)
