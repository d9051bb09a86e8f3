"""Run a device kit on a Raspberry Pi OS userland under emulation: real ARM builds of the runtimes, no Pi.

Raspberry Pi OS (bookworm, 64-bit) is Debian bookworm for arm64. With qemu's user-mode emulator registered in
binfmt_misc, ``debootstrap`` builds that userland in a folder and ``chroot`` runs its Python, numpy and the
aarch64 wheels of tflite-runtime and ai-edge-litert. What that proves: the kit's script runs on the device's
Python and numpy, and what accuracy the ARM kernels of each runtime give. What it does not: speed (emulated
latency is meaningless), temperature, the Edge TPU.

The root is built once and cached; a stamp file written last says it is complete, so a root whose build was
interrupted has no stamp and is built again instead of used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from edgecv.errors import DataError, Unsupported
from edgecv.fsutil import write_text
from edgecv.progress import Progress, ProgressFn, ignore

SUITE, ARCH = "bookworm", "arm64"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "python3-pip", "python3-numpy", "ca-certificates")
STAMP_NAME = ".edgecv-root.json"
STAMP = {"suite": SUITE, "arch": ARCH, "packages": list(PACKAGES), "layout": 1}


class PiRuntime(str, Enum):
    """The TFLite runtimes a kit can be emulated under (each gets its own venv in the root)."""

    TFLITE_RUNTIME = "tflite_runtime"
    AI_EDGE_LITERT = "ai_edge_litert"

    def __str__(self) -> str:
        return self.value


RUNTIMES = {
    # (venv options, pip requirements): tflite-runtime with the system's numpy 1.x, as on a Pi
    PiRuntime.TFLITE_RUNTIME: (["--system-site-packages"], ["tflite-runtime==2.14.0"]),
    PiRuntime.AI_EDGE_LITERT: ([], ["ai-edge-litert==2.3.*", "numpy>=2"]),
}


@dataclass
class EmulatedRun:
    runtime: PiRuntime
    result: Path  # the device JSON, brought back
    python: str
    machine: str


def root_dir() -> Path:
    from edgecv.data.datasets import cache_dir

    return Path(os.environ.get("EDGECV_PI_ROOT") or cache_dir() / f"pi-root-{SUITE}-{ARCH}")


def check_host() -> None:
    """Root, binfmt support for aarch64, debootstrap: one line naming what is missing (exit 3)."""
    if os.geteuid() != 0:
        raise Unsupported("emulating a Pi needs root (debootstrap and chroot): run as root")
    if shutil.which("debootstrap") is None:
        raise Unsupported("debootstrap is not installed: apt-get install debootstrap qemu-user-static binfmt-support")
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not entry.exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], capture_output=True)
        if shutil.which("update-binfmts"):
            subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise Unsupported("no binfmt support for aarch64: apt-get install qemu-user-static binfmt-support, "
                          "and mount binfmt_misc")


def root_is_complete(root: Path) -> bool:
    stamp = root / STAMP_NAME
    try:
        return json.loads(stamp.read_text()) == STAMP
    except (OSError, ValueError):
        return False


def ensure_root(on_progress: ProgressFn = ignore) -> Path:
    """The cached arm64 root, built when missing, stale or half-built."""
    root = root_dir()
    if root_is_complete(root):
        return root
    check_host()
    if root.exists():
        shutil.rmtree(root)  # half-built (no stamp) or built for other packages: never used as it is
    root.parent.mkdir(parents=True, exist_ok=True)
    on_progress(Progress("build Pi OS root", 0, 1, "debootstrap (minutes)"))
    done = subprocess.run(
        ["debootstrap", f"--arch={ARCH}", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root),
         MIRROR], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unsupported(f"debootstrap failed (offline, with no cached root?): {tail[0]}")
    write_text(root / STAMP_NAME, json.dumps(STAMP))  # last: its presence says the root is whole
    on_progress(Progress("build Pi OS root", 1, 1))
    return root


def _chroot(root: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"  # found on the host's PATH, not the root's
    try:
        return subprocess.run([chroot, str(root), *args], capture_output=True, text=True, timeout=timeout,
                              env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"})
    except subprocess.TimeoutExpired:
        raise Unsupported(f"the emulated Pi did not finish {' '.join(args[:2])} within {timeout} s") from None


def ensure_venv(root: Path, runtime: str, on_progress: ProgressFn = ignore) -> str:
    """A venv per runtime inside the root (cached, with its own stamp); returns its python's path there."""
    options, requirements = RUNTIMES[runtime]
    venv = f"/opt/edgecv/venv-{runtime}"
    stamp = root / venv.lstrip("/") / ".edgecv-requirements"
    if stamp.is_file() and stamp.read_text() == "\n".join(requirements):
        return f"{venv}/bin/python"
    on_progress(Progress(f"venv {runtime}", 0, 1, "pip under emulation"))
    for name in ("etc/resolv.conf", "etc/ssl/certs/ca-certificates.crt"):  # pip inside needs DNS and the CAs
        if Path("/", name).exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path("/", name), root / name)
    shutil.rmtree(root / venv.lstrip("/"), ignore_errors=True)
    for step in (["python3", "-m", "venv", *options, venv],
                 [f"{venv}/bin/python", "-m", "pip", "install", "--quiet", *requirements]):
        done = _chroot(root, *step)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise Unsupported(f"could not set up {runtime} in the emulated Pi ({' '.join(step[:3])}): {last[0]}")
    stamp.write_text("\n".join(requirements))
    on_progress(Progress(f"venv {runtime}", 1, 1))
    return f"{venv}/bin/python"


def check_kit(kit: Path) -> None:
    if not kit.is_dir():
        raise DataError(f"kit folder {kit} does not exist")
    missing = [n for n in ("edgecv_bench.py", "samples.npz") if not (kit / n).is_file()]
    if not list(kit.glob("*.tflite")):
        missing.append("a .tflite model")
    if missing:
        raise DataError(f"{kit} is not a device kit: it lacks {', '.join(missing)} (make one with edgecv device kit)")


def emulate(kit: str | os.PathLike, runtimes: list[str], out: str | os.PathLike, runs: int = 20,
            on_progress: ProgressFn = ignore) -> list[EmulatedRun]:
    """Runs the kit under each runtime in the emulated Pi and brings each result JSON back into ``out``.

    Raises:
        DataError: not a kit, or a runtime that is not offered.
        Unsupported: no root, no binfmt support, or offline with no cached root (exit 3).
    """
    kit, out = Path(kit), Path(out)
    check_kit(kit)
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise DataError(f"runtime {', '.join(unknown)} is not offered; choose from {', '.join(RUNTIMES)}")
    runtimes = [PiRuntime(r) for r in runtimes]
    if not root_is_complete(root_dir()):
        check_host()
    root = ensure_root(on_progress)
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
            on_progress(Progress(f"emulated {runtime}", 0, 1, "slow: every instruction is emulated"))
            done = _chroot(root, python, f"{inside}/edgecv_bench.py", "--runtime", runtime, "--runs", str(runs),
                           "--warmup", "2", "--out", f"{inside}/result.json")
            if done.returncode != 0:
                last = done.stderr.strip().splitlines()[-1:] or ["no output"]
                raise DataError(f"the kit failed under {runtime} in the emulated Pi: {last[0]}")
            result = json.loads((work / "result.json").read_text())
        finally:
            shutil.rmtree(work, ignore_errors=True)
        device = result["environment"].setdefault("device", {})
        device["emulated"] = {"by": "qemu-user (binfmt_misc)", "root": f"Debian {SUITE} {ARCH}",
                              "latency": "not meaningful: every instruction is emulated"}
        device["board"] = device.get("board") or f"emulated Raspberry Pi OS ({SUITE}, {ARCH})"
        target = out / f"emulated-{runtime}.json"
        write_text(target, json.dumps(result, indent=2) + "\n")
        on_progress(Progress(f"emulated {runtime}", 1, 1))
        runs_done.append(EmulatedRun(runtime, target, result["environment"]["python"], result["environment"]["machine"]))
    return runs_done


@dataclass
class Emulation:
    host: Path  # the kit's result on this host, the reference each emulated run is compared with
    runs: list[EmulatedRun]
    merged: object  # device.kit.Merged: host and emulated results in one table


def emulate_kit(kit: str | os.PathLike, runtimes: list[str], out: str | os.PathLike, runs: int = 20,
                on_progress: ProgressFn = ignore) -> Emulation:
    """``edgecv device emulate``: the kit on this host, then under each runtime in the emulated Pi, merged into
    ``out`` (merged.json, merged.png), so each emulated runtime is compared image by image with the host."""
    import sys

    from edgecv.device.kit import merge, save_merged
    from edgecv.fsutil import prepare_out_dir

    kit = Path(kit)
    check_kit(kit)
    folder = prepare_out_dir(out)
    host = folder / "host.json"
    done = subprocess.run([sys.executable, str(kit / "edgecv_bench.py"), "--runs", str(runs), "--out", str(host)],
                          capture_output=True, text=True, cwd=kit)
    if done.returncode != 0:
        raise DataError(f"the kit failed on this host: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    emulated = emulate(kit, runtimes, folder, runs, on_progress)
    merged = merge([host] + [run.result for run in emulated])
    save_merged(merged, folder)
    return Emulation(host, emulated, merged)
