"""What this host has for edgecv: the device script's own facts (``edgecv.runtime.device_checks``: Python, OS,
CPU and its ISA flags, numpy, each TFLite runtime, libedgetpu, known-bad pairings) and the host's own: the
TensorFlow stack against edgecv's pins, the Edge TPU compiler, and what ``device emulate`` needs.

A library: :func:`diagnose` returns the checks and prints nothing. TensorFlow is never imported (its versions
are read from the installed distributions), so the checks take a second, not ten.

A check fails only when edgecv cannot do its work here: no TFLite runtime runs a model, the TensorFlow stack
(TensorFlow, tf-keras, TFMOT) is not installed, or ``edgetpu=True`` and the Edge TPU library, device or
delegate is missing. Missing optional tools (``edgetpu_compiler``, Vela, TFLite Micro, ``debootstrap``, qemu) are "ok" or "warn"
with a note saying what they are for.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, requires, version

from edgecv import __version__
from edgecv import runtime as rt
from edgecv.device import emulate as em
from edgecv.errors import ExitCode

OK, WARN, FAIL = rt.OK, rt.WARN, rt.FAIL
# the host stack edgecv pins together (pyproject.toml): TFMOT 0.8.1 needs Keras 2 (tf-keras) beside TF 2.21
HOST_STACK = (("tensorflow", "tensorflow", "training and conversion"),
              ("tf-keras", "tf-keras", "Keras 2 models, which TFMOT needs"),
              ("tfmot", "tensorflow-model-optimization", "pruning, clustering and QAT"))


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    status: str  # "ok", "warn" or "fail"
    note: str = ""

    def line(self) -> str:
        """One line: status, name, value and note (the device script's ``--check`` format)."""
        return rt.format_fact({"name": self.name, "status": self.status, "value": self.value, "note": self.note})


@dataclass
class Diagnosis:
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == WARN]

    @property
    def exit_code(self) -> ExitCode:
        """MISSING (3) when a check failed, else OK (0)."""
        return ExitCode.MISSING if self.failed else ExitCode.OK

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]

    def to_dict(self) -> dict:
        return {"checks": [asdict(c) for c in self.checks], "exit_code": int(self.exit_code)}


def diagnose(edgetpu: bool = False) -> Diagnosis:
    """Every check, in order: the device facts first (the runtimes probed with a one-op model), then the host's.
    ``edgetpu``: the Edge TPU library, device and delegate are required (missing ones fail)."""
    device = [Check(f["name"], f["value"], f["status"], f["note"])
              for f in rt.device_checks(edgetpu=edgetpu, load_tensorflow=False)]
    # the device list's "tensorflow" line is a runtime's; the host's stack line below says more
    device = [c for c in device if c.name != "tensorflow"]
    host = [Check("edgecv", __version__, OK)]
    host += stack_checks()
    host += [edgetpu_compiler_check(), vela_check(), micro_check(), debootstrap_check(), qemu_check()]
    host += imx500_checks()
    return Diagnosis(device + host)


def _pins() -> dict[str, str]:
    """edgecv's declared requirement per distribution ("tensorflow" -> "==2.21.*"), as installed."""
    try:
        declared = requires("edgecv") or []
    except PackageNotFoundError:
        return {}
    pins = {}
    for requirement in declared:
        if ";" in requirement:  # extras ("pytest>=8; extra == 'test'") are not the host stack
            continue
        try:
            from packaging.requirements import Requirement

            parsed = Requirement(requirement)
            pins[parsed.name.lower()] = str(parsed.specifier)
        except Exception:  # packaging absent or a line it cannot read: no pin known for it
            continue
    return pins


def _satisfies(installed: str, specifier: str) -> bool | None:
    try:
        from packaging.specifiers import SpecifierSet

        return SpecifierSet(specifier).contains(installed, prereleases=True)
    except Exception:
        return None


def stack_checks() -> list[Check]:
    """TensorFlow, tf-keras and TFMOT: installed (fail if not) and within edgecv's pins (warn if not)."""
    pins, checks = _pins(), []
    for name, dist, used_for in HOST_STACK:
        try:
            installed = version(dist)
        except PackageNotFoundError:
            checks.append(Check(name, "not installed", FAIL, f"{dist} is needed for {used_for}"))
            continue
        pin = pins.get(dist)
        if pin and _satisfies(installed, pin) is False:
            checks.append(Check(name, installed, WARN, f"edgecv pins {dist}{pin}; other versions are untested together"))
        else:
            checks.append(Check(name, installed, OK, f"pinned {pin}" if pin else ""))
    return checks


def edgetpu_compiler_check() -> Check:
    """``edgetpu_compiler`` on PATH and its version; without it ``edgecv edgetpu`` uses its static check."""
    path = shutil.which("edgetpu_compiler")
    if path is None:
        return Check("edgetpu_compiler", "not on PATH", OK,
                     "edgecv edgetpu uses its static check; the compiler is in Coral's apt repository (x86-64 only)")
    out = rt._command([path, "--version"]) or ""  # the device script's own runner
    words = [w for w in out.split() if w[:1].isdigit()]  # "Edge TPU Compiler version 16.0.384591198"
    return Check("edgetpu_compiler", f"{words[-1] if words else 'version unknown'} ({path})", OK)


def vela_check() -> Check:
    """Vela (``ethos-u-vela``, an edgecv dependency) for ``edgecv npu``; without it that command exits 3."""
    from edgecv.device.vela import VELA_PIN, vela_command
    from edgecv.errors import Unsupported

    try:
        command = vela_command()
    except Unsupported as e:
        return Check("vela", "not installed", WARN, f"edgecv npu needs it: {e}")
    try:
        found = version("ethos-u-vela") if len(command) > 1 else command[0]
    except PackageNotFoundError:
        found = "version unknown"
    return Check("vela", found, OK, f"Ethos-U NPU compiler (edgecv npu); edgecv pins {VELA_PIN}")


def micro_check() -> Check:
    """TFLite Micro's interpreter (``tflite-micro``, an edgecv dependency) for ``edgecv micro``."""
    from edgecv.device.micro import MICRO_PIN, check_installed
    from edgecv.errors import Unsupported

    try:
        check_installed()
    except Unsupported as e:
        return Check("tflite-micro", "not installed", WARN, f"edgecv micro needs it: {e}")
    try:
        return Check("tflite-micro", version("tflite-micro"), OK, f"microcontroller runtime (edgecv micro); {MICRO_PIN}")
    except PackageNotFoundError:
        return Check("tflite-micro", "version unknown", OK, "microcontroller runtime (edgecv micro)")


def debootstrap_check() -> Check:
    """``device emulate`` builds a Raspberry Pi OS root with debootstrap, as root."""
    path = shutil.which("debootstrap")
    if path is None:
        return Check("debootstrap", "not installed", WARN,
                     "device emulate needs it: apt-get install debootstrap qemu-user-static binfmt-support")
    if os.geteuid() != 0:
        return Check("debootstrap", path, WARN, "device emulate needs root (debootstrap and chroot)")
    return Check("debootstrap", path, OK)


def qemu_check() -> Check:
    """qemu's aarch64 user-mode emulator, registered with binfmt_misc (``device emulate`` registers an installed
    one itself, as root: not being registered yet is no failure)."""
    try:
        entry = em.BINFMT_AARCH64.read_text()
    except OSError:
        entry = ""
    if "enabled" in entry.splitlines()[:1]:
        interpreter = next((line.split(None, 1)[1] for line in entry.splitlines() if line.startswith("interpreter ")),
                           "?")
        return Check("qemu-aarch64", f"binfmt enabled ({interpreter})", OK)
    binary = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if binary:
        return Check("qemu-aarch64", f"{binary}, not registered with binfmt_misc yet", OK,
                     "device emulate registers it when run as root")
    return Check("qemu-aarch64", "not installed", WARN,
                 "device emulate needs it: apt-get install qemu-user-static binfmt-support")


def imx500_checks() -> list[Check]:
    """Java 17 and the IMX500 toolchain venv for ``edgecv imx500`` (optional: "ok" or "warn", never made here)."""
    from edgecv.device.imx500 import toolchain_checks

    return [Check(*line) for line in toolchain_checks()]
