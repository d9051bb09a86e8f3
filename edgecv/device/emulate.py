"""Run a device kit on a Raspberry Pi OS userland under emulation: real ARM builds of the runtimes, no Pi.

Raspberry Pi OS (64-bit) is Debian for arm64: today Debian 13 "trixie" with Python 3.13, before it Debian 12
"bookworm" with Python 3.11. With qemu's user-mode emulator registered in binfmt_misc, ``debootstrap`` builds
that userland in a folder and ``chroot`` runs its Python, numpy and the aarch64 wheels of the runtimes:
ai-edge-litert (the default, with wheels for both) and tflite-runtime (legacy: its last release, 2.14 of 2023,
has no wheel for Python 3.13, so it is offered on bookworm only). What that proves: the kit's script runs on the
device's Python and numpy, and what accuracy the ARM kernels of each runtime give. The guest is shown a Pi's
CPU (qemu's Cortex-A76 model, a Pi 5, by default, with a generated ARM ``/proc/cpuinfo`` and ``/sys``): without
one XNNPACK's cpuinfo finds no processor, XNNPACK does not start and TFLite's builtin kernels run instead of
the ones a Pi runs. What it does not prove: speed (emulated latency is meaningless), temperature, the Edge
TPU. Running a kit there is :mod:`edgecv.device.emulated_kit`; ``edgecv.device.armcost`` adds a deterministic ARM cost: guest instructions per inference on a Pi 4
(Cortex-A72) and a Pi 5 (Cortex-A76) core model.

The root is built once per suite and cached; a stamp file written last says it is complete, so a root whose
build was interrupted has no stamp and is built again instead of used. Packages come from the mirror this host's
apt sources name (``EDGECV_APT_MIRROR`` or a ``mirror`` argument overrides it); no mirror address is built in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Sequence

from edgecv.errors import DataError, Unsupported
from edgecv.fsutil import write_text
from edgecv.progress import Progress, ProgressFn, ignore

ARCH = "arm64"
SUITES = {  # Raspberry Pi OS release -> the Debian suite it is built on, and that suite's Python
    "trixie": {"debian": 13, "python": "3.13", "pi_os": "Raspberry Pi OS (trixie, 2025-)"},
    "bookworm": {"debian": 12, "python": "3.11", "pi_os": "Raspberry Pi OS (bookworm, 2023-2025)"},
}
DEFAULT_SUITE = "trixie"
PACKAGES = ("python3", "python3-venv", "python3-pip", "python3-numpy", "ca-certificates")
STAMP_NAME = ".edgecv-root.json"
MIRROR_ENV = "EDGECV_APT_MIRROR"
BINFMT_AARCH64 = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")  # where the kernel says qemu runs arm64
SOURCES_LIST, SOURCES_PARTS = Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d")


def stamp(suite: str = DEFAULT_SUITE) -> dict:
    """What a complete root of ``suite`` says of itself (the mirror it came from is not part of it)."""
    return {"suite": suite, "arch": ARCH, "packages": list(PACKAGES), "layout": 1}


STAMP = stamp(DEFAULT_SUITE)


class PiRuntime(str, Enum):
    """The TFLite runtimes a kit can be emulated under (each gets its own venv in the root); the first is the
    default. tflite-runtime is legacy: no wheel for Python 3.13, so bookworm only."""

    AI_EDGE_LITERT = "ai_edge_litert"
    TFLITE_RUNTIME = "tflite_runtime"

    def __str__(self) -> str:
        return self.value


class PiOs(str, Enum):
    """The Raspberry Pi OS releases a root can be built of (keys of ``SUITES``)."""

    TRIXIE = "trixie"
    BOOKWORM = "bookworm"

    def __str__(self) -> str:
        return self.value


class PiCpu(str, Enum):
    """The cores an emulated Pi can present: XNNPACK picks its kernels by them."""

    CORTEX_A76 = "cortex-a76"  # Raspberry Pi 5
    CORTEX_A72 = "cortex-a72"  # Raspberry Pi 4
    CORTEX_A53 = "cortex-a53"  # Raspberry Pi 3, Zero 2 W

    def __str__(self) -> str:
        return self.value


DEFAULT_RUNTIME = PiRuntime.AI_EDGE_LITERT
DEFAULT_CPU = "cortex-a76"  # the Pi 5's core: what emulate() presents unless told otherwise
LEGACY_RUNTIMES = (PiRuntime.TFLITE_RUNTIME,)
RUNTIMES = {
    # (venv options, pip requirements): tflite-runtime with the system's numpy 1.x, as on a bookworm Pi
    PiRuntime.AI_EDGE_LITERT: ([], ["ai-edge-litert==2.3.*", "numpy>=2"]),
    PiRuntime.TFLITE_RUNTIME: (["--system-site-packages"], ["tflite-runtime==2.14.0"]),
}
OFFERED = {  # the runtimes with an aarch64 wheel for the suite's Python
    "trixie": (PiRuntime.AI_EDGE_LITERT,),
    "bookworm": (PiRuntime.AI_EDGE_LITERT, PiRuntime.TFLITE_RUNTIME),
}


def runtime_label(runtime: str) -> str:
    """``ai_edge_litert``, or ``tflite_runtime (legacy)``."""
    return f"{runtime} (legacy)" if runtime in LEGACY_RUNTIMES else str(runtime)


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise DataError(f"suite {suite} is not offered; choose from {', '.join(SUITES)}")
    return suite


def check_runtimes(runtimes: Sequence[str] | None, suite: str = DEFAULT_SUITE) -> list[PiRuntime]:
    """The runtimes to emulate (None: the default, ai-edge-litert); one line for one that cannot be had."""
    check_suite(suite)
    if runtimes is None or len(runtimes) == 0:
        return [DEFAULT_RUNTIME]
    unknown = [str(r) for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise DataError(f"runtime {', '.join(unknown)} is not offered; choose from {', '.join(RUNTIMES)}")
    chosen = list(dict.fromkeys(PiRuntime(r) for r in runtimes))
    missing = [r for r in chosen if r not in OFFERED[suite]]
    if missing:
        python = SUITES[suite]["python"]
        raise Unsupported(f"{missing[0]} (legacy) has no wheel for Python {python} on {suite}: use --runtime "
                          f"{DEFAULT_RUNTIME}, or emulate bookworm (Python 3.11) for the legacy runtime")
    return chosen


@dataclass
class EmulatedRun:
    runtime: PiRuntime
    result: Path  # the device JSON, brought back
    python: str
    machine: str
    suite: str = DEFAULT_SUITE


# --- the host's apt sources: where packages come from --------------------------------------------------------


@dataclass
class AptSource:
    """One entry of the host's apt sources, in either format (one-line ``.list`` or deb822 ``.sources``)."""

    types: list[str]
    uri: str
    suites: list[str]
    components: list[str]
    signed_by: str | None = None
    origin: str = ""  # the file it was read from

    def lines(self, types: Sequence[str] = ("deb", "deb-src")) -> list[str]:
        """One-line entries for these types (``deb-src`` added so that ``apt-get source`` works)."""
        option = f" [signed-by={self.signed_by}]" if self.signed_by and not self.signed_by.startswith("-") else ""
        return [f"{t}{option} {self.uri} {s} {' '.join(self.components)}" for t in types for s in self.suites]


def _one_line_sources(text: str, origin: str) -> list[AptSource]:
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        options = re.search(r"\[([^\]]*)\]", line)
        signed_by = None
        if options:
            for option in options.group(1).split():
                if option.startswith("signed-by="):
                    signed_by = option.split("=", 1)[1]
            line = line[: options.start()] + line[options.end():]
        words = line.split()
        if len(words) >= 3 and words[0] in ("deb", "deb-src"):
            found.append(AptSource([words[0]], words[1].rstrip("/"), [words[2]], words[3:], signed_by, origin))
    return found


def _deb822_sources(text: str, origin: str) -> list[AptSource]:
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:  # a continuation (a keyring pasted inline)
                fields[key] += "\n" + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
            continue
        signed_by = fields.get("signed-by")
        signed_by = signed_by if signed_by and "\n" not in signed_by else None
        for uri in fields["uris"].split():
            found.append(AptSource(fields.get("types", "deb").split(), uri.rstrip("/"), fields.get("suites", "").split(),
                                   fields.get("components", "").split(), signed_by, origin))
    return found


def host_apt_sources(sources_list: Path = SOURCES_LIST, parts: Path = SOURCES_PARTS) -> list[AptSource]:
    """Every enabled entry of this host's apt sources, as apt reads them (files not named ``.list`` or
    ``.sources`` are ignored, as apt ignores them)."""
    found = []
    if sources_list.is_file():
        found += _one_line_sources(sources_list.read_text(errors="replace"), str(sources_list))
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                found += _one_line_sources(path.read_text(errors="replace"), str(path))
            elif path.suffix == ".sources":
                found += _deb822_sources(path.read_text(errors="replace"), str(path))
    return found


def host_codename() -> str | None:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return None
    match = re.search(r"^VERSION_CODENAME=\"?([A-Za-z0-9-]+)", text, re.M)
    return match.group(1) if match else None


def host_debian_sources(sources: list[AptSource] | None = None, codename: str | None = None) -> list[AptSource]:
    """The host's entries for its own Debian release: the suites ``<codename>``, ``<codename>-updates``,
    ``<codename>-security`` (third-party repositories, whose suites are named otherwise, are left out)."""
    sources = host_apt_sources() if sources is None else sources
    codename = codename or host_codename()
    if not codename:
        return []
    kept = []
    for source in sources:
        suites = [s for s in source.suites if s == codename or s.startswith(codename + "-")]
        if suites and "deb" in source.types and "main" in source.components:
            kept.append(AptSource(["deb"], source.uri, suites, ["main"], source.signed_by, source.origin))
    return kept


def debian_mirror(mirror: str | None = None, sources: list[AptSource] | None = None) -> str:
    """The Debian archive to build a root from: ``mirror``, else ``$EDGECV_APT_MIRROR``, else the archive this
    host's apt sources name for its own release (the entry for the bare codename, not ``-security``)."""
    chosen = mirror or os.environ.get(MIRROR_ENV)
    if chosen:
        if not re.match(r"^(https?|file)://", chosen):
            raise DataError(f"apt mirror {chosen!r} is not an http(s):// or file:// address")
        return chosen.rstrip("/")
    codename = host_codename()
    for source in host_debian_sources(sources, codename):
        if codename in source.suites:
            return source.uri
    raise Unsupported(f"no Debian archive in this host's apt sources (/etc/apt/sources.list*) to build an arm64 "
                      f"root from: set {MIRROR_ENV} to a Debian mirror's address")


# --- the root ------------------------------------------------------------------------------------------------


def root_dir(suite: str = DEFAULT_SUITE) -> Path:
    """``$EDGECV_PI_ROOT`` (the root of the suite asked for), else ``<edgecv cache>/pi-root-<suite>-arm64``."""
    from edgecv.data.datasets import cache_dir

    check_suite(suite)
    return Path(os.environ.get("EDGECV_PI_ROOT") or cache_dir() / f"pi-root-{suite}-{ARCH}")


def check_host(building: bool = True) -> None:
    """Root, binfmt support for aarch64 and, to build a root (``building``), debootstrap: one line naming what
    is missing (exit 3). A cached root still needs root and binfmt to run anything in it."""
    if os.geteuid() != 0:
        raise Unsupported("emulating a Pi needs root (debootstrap and chroot): run as root")
    if building and shutil.which("debootstrap") is None:
        raise Unsupported("debootstrap is not installed: apt-get install debootstrap qemu-user-static binfmt-support")
    entry = BINFMT_AARCH64
    if not entry.exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], capture_output=True)
        if shutil.which("update-binfmts"):
            subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise Unsupported("no binfmt support for aarch64: apt-get install qemu-user-static binfmt-support, "
                          "and mount binfmt_misc")


def _read_stamp(root: Path) -> dict | None:
    try:
        value = json.loads((root / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def root_is_complete(root: Path, suite: str = DEFAULT_SUITE) -> bool:
    return _read_stamp(root) == stamp(suite)


def ensure_root(on_progress: ProgressFn = ignore, suite: str = DEFAULT_SUITE, mirror: str | None = None) -> Path:
    """The cached arm64 root of ``suite``, built when missing, stale or half-built.

    Raises:
        Unsupported: not root, no binfmt support or debootstrap, no mirror, or offline with no cached root.
        DataError: ``$EDGECV_PI_ROOT`` holds a complete root of another suite (it is never deleted).
    """
    root = root_dir(suite)
    if root_is_complete(root, suite):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _building(root):  # another process building the same root: wait for it, never delete its half-build
        return _build_root(root, on_progress, suite, mirror)


@contextmanager
def _building(root: Path):
    """An exclusive lock beside ``root`` for as long as one process builds it."""
    import fcntl

    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_root(root: Path, on_progress: ProgressFn, suite: str, mirror: str | None) -> Path:
    if root_is_complete(root, suite):  # built while this process waited for the lock
        return root
    found = _read_stamp(root)
    if found and found.get("suite") != suite:
        raise DataError(f"{root} holds a {found.get('suite')} root, not {suite}: point EDGECV_PI_ROOT at another "
                        f"folder (or unset it) to emulate {suite}")
    check_host()
    source = debian_mirror(mirror)
    if root.exists():
        shutil.rmtree(root)  # half-built (no stamp) or built for other packages: never used as it is
    on_progress(Progress(f"build Pi OS root ({suite})", 0, 1, "debootstrap (minutes)"))
    done = subprocess.run(
        ["debootstrap", f"--arch={ARCH}", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, str(root),
         source], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unsupported(f"debootstrap of {suite} from {source} failed (offline, with no cached root?): {tail[0]}")
    write_text(root / STAMP_NAME, json.dumps(stamp(suite)))  # last: its presence says the root is whole
    on_progress(Progress(f"build Pi OS root ({suite})", 1, 1))
    return root


GUEST_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def _chroot(root: Path, *args: str, timeout: int = 1800, view: Path | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """``args`` run in the root (through binfmt_misc's qemu). ``view``: a folder with ``proc/`` and ``sys/``
    bind-mounted over the root's in a private mount namespace, so that the guest sees that CPU description
    (see ``armcost.cpu_view``) and the host's mounts are left as they were."""
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"  # found on the host's PATH, not the root's
    command = [chroot, str(root), *args]
    if view is not None:
        script = ('set -e; root="$1"; view="$2"; shift 2; mkdir -p "$root/proc" "$root/sys"; '
                  'mount --bind "$view/proc" "$root/proc"; mount --bind "$view/sys" "$root/sys"; exec "$@"')
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root), str(view),
                   *command]
    environment = {**GUEST_ENV, **(env or {})}
    environment["PATH"] += ":" + ":".join(p for p in ("/usr/sbin", "/sbin", os.path.dirname(chroot)))
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    except subprocess.TimeoutExpired:
        raise Unsupported(f"the emulated Pi did not finish {' '.join(args[:2])} within {timeout} s") from None


def ensure_venv(root: Path, runtime: str, on_progress: ProgressFn = ignore) -> str:
    """A venv per runtime inside the root (cached, with its own stamp); returns its python's path there."""
    options, requirements = RUNTIMES[runtime]
    venv = f"/opt/edgecv/venv-{runtime}"
    marker = root / venv.lstrip("/") / ".edgecv-requirements"
    wanted = "\n".join(requirements)
    if marker.is_file() and marker.read_text() == wanted:
        return f"{venv}/bin/python"
    with _building(root):  # one pip at a time in the root
        if not (marker.is_file() and marker.read_text() == wanted):  # or another process made it meanwhile
            _make_venv(root, runtime, venv, options, requirements, on_progress)
        marker.write_text(wanted)
    return f"{venv}/bin/python"


def _make_venv(root: Path, runtime: str, venv: str, options: list[str], requirements: list[str],
               on_progress: ProgressFn) -> None:
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
    on_progress(Progress(f"venv {runtime}", 1, 1))


def runtime_version(root: Path, runtime: str) -> str | None:
    """The version pip installed in the runtime's venv, read from its dist-info (no emulation needed)."""
    dist = {"ai_edge_litert": "ai_edge_litert", "tflite_runtime": "tflite_runtime"}[str(runtime)]
    for info in (root / "opt" / "edgecv" / f"venv-{runtime}").glob(f"lib/python3*/site-packages/{dist}-*.dist-info"):
        return info.name[len(dist) + 1: -len(".dist-info")]
    return None


def check_kit(kit: Path) -> None:
    if not kit.is_dir():
        raise DataError(f"kit folder {kit} does not exist")
    missing = [n for n in ("edgecv_bench.py", "samples.npz") if not (kit / n).is_file()]
    if not list(kit.glob("*.tflite")):
        missing.append("a .tflite model")
    if missing:
        raise DataError(f"{kit} is not a device kit: it lacks {', '.join(missing)} (make one with edgecv device kit)")
