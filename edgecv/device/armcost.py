"""A deterministic ARM cost: emulated aarch64 instructions per inference on a Pi 4 and a Pi 5 core model.

Latency measured on an x86 host says little about a Raspberry Pi, and two x86 hosts disagree with each other.
This counts, instead, the aarch64 instructions that one ``invoke()`` executes in the real ARM build of the
runtime (ai-edge-litert by default, 1 thread), under qemu's user-mode emulator with the CPU model of the board:
``cortex-a72`` (Raspberry Pi 4) or ``cortex-a76`` (Raspberry Pi 5). The CPU model matters: it decides which
instructions the guest may use (the A76 has the dot-product instructions, the A72 does not), and so which
kernels XNNPACK picks. A count is not a time: it knows nothing of caches, memory, issue width or clocks, and
an A76 retires more instructions per cycle than an A72. It is exact and repeatable, so it ranks models and
gates regressions where a wall clock on a shared x86 host cannot.

How it is counted
    Debian's dynamic ``qemu-aarch64`` (package qemu-user, built with TCG plugin support) runs inside the cached
    arm64 root, started through its own x86 ``ld-linux`` with its libraries copied into the root. A small
    plugin, compiled here against the plugin header of Debian's qemu source package (``apt-get source qemu``,
    through a private apt configuration made from this host's own sources), adds up the instructions of every
    translated block the guest executes, and some instructions by kind, decoded from their opcodes (dot
    product, widening integer multiply-accumulate, float FMA, any Advanced SIMD vector instruction, loads and
    stores of SIMD registers). A runner script in the root calls a marker (a system call no Linux has, which the
    plugin sees and the guest gets ENOSYS for) around each ``invoke()``: after one first inference (lazy
    initialisation, XNNPACK packing the weights), N inferences on N distinct inputs are counted, and N empty
    marker pairs measure what the markers themselves cost, which is subtracted. Per inference = (instructions
    in the N invoke windows - instructions in the N empty windows) / N. Python's start, imports and model
    loading are outside every window, so nothing has to be subtracted by running the process twice.

The CPU the runtime sees
    XNNPACK asks the cpuinfo library what it runs on, and cpuinfo reads ``/proc/cpuinfo`` and
    ``/sys/devices/system/cpu``. qemu 7.2 does not emulate those for aarch64: with the host's ``/proc`` mounted
    cpuinfo reads an x86 description (and crashed); with none, it finds no processors. Each run therefore sees
    a generated ARM view, bind-mounted over the root's ``/proc`` and ``/sys`` in a private mount namespace: the
    board's four cores with the MIDR of the emulated model (implementer 0x41, part 0xd08 r0p3 for the A72 of a
    Pi 4, 0xd0b r4p1 for the A76 of a Pi 5, the values qemu's models report), the ``Features`` that qemu's
    HWCAPs for that model give the guest, and the board's clock. (qemu 8.1 and later generate ``/proc/cpuinfo``
    the same way, from the MIDR and HWCAPs.)

Everything is built once and cached next to the Pi root with a stamp written last; what cannot be had (not
root, offline with nothing cached, no compiler) is one line and exit 3.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecv.device import emulate as em
from edgecv.device.emulate import DEFAULT_SUITE, PiRuntime
from edgecv.errors import DataError, Unsupported
from edgecv.fsutil import json_text, write_text
from edgecv.progress import Progress, ProgressFn, ignore

UNIT = "emulated aarch64 instructions per inference (qemu TCG count, 1 thread): not a time"
TOOLS_STAMP = ".edgecv-tools.json"
INSIDE = "/opt/edgecv/qemu"  # where the x86 qemu, its loader and libraries and the plugin live in a root
MARK = 0x4543  # the marker "system call": no aarch64 Linux syscall has this number
SLOTS = 96  # marker slots in the plugin: 3 per model, so 32 models per emulated process


@dataclass(frozen=True)
class CpuModel:
    """A qemu CPU model and the board whose core it is."""

    name: str  # qemu's -cpu name
    board: str
    midr: int  # MIDR_EL1 as qemu's model reports it (the board's revision)
    max_khz: int  # the board's top clock, for cpufreq (cpuinfo reads it; nothing here depends on it)
    cores: int = 4


CPUS = {
    "cortex-a72": CpuModel("cortex-a72", "Raspberry Pi 4 (BCM2711, Cortex-A72 r0p3)", 0x410FD083, 1_800_000),
    "cortex-a76": CpuModel("cortex-a76", "Raspberry Pi 5 (BCM2712, Cortex-A76 r4p1)", 0x414FD0B1, 2_400_000),
    "cortex-a53": CpuModel("cortex-a53", "Raspberry Pi 3 / Zero 2 W (Cortex-A53 r0p4)", 0x410FD034, 1_200_000),
}
PI_CPUS = ("cortex-a72", "cortex-a76")  # Pi 4 and Pi 5: what emulate_kit counts when asked

# arm64 HWCAP and HWCAP2 bits in the order of the kernel's hwcap_str (arch/arm64/kernel/cpuinfo.c)
HWCAP_NAMES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
               "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2_NAMES = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm "
                "svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme sme_i16i64 sme_f64f64 sme_i8i32 "
                "sme_f16f32 sme_b16f32 sme_f32f32 sme_fa64").split()

PLUGIN_C = r"""/* edgecv arm cost: guest instructions, in all and between marker system calls (qemu TCG plugin). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MARK_SYSCALL @MARK@ /* not an aarch64 Linux system call: the guest gets ENOSYS */
#define SLOTS @SLOTS@
#define NCLASS 5
static const char *class_names[NCLASS] = {"dot_product", "widening_multiply", "float_fma", "simd_vector",
                                          "simd_memory"};
static uint64_t total, cls[NCLASS];
static uint64_t start_total[SLOTS], start_cls[SLOTS][NCLASS];
static uint64_t sum[SLOTS], sum_cls[SLOTS][NCLASS], windows[SLOTS];
static int open_slot[SLOTS];
static char out_path[4096];

/* A64 encodings (mask, value), decoded from the opcode: qemu 7.2's disassembler does not know the v8.2 dot
   product and prints it as ".byte", so the text cannot be trusted */
static const uint32_t DOT[][2] = {
    {0x9fe0fc00, 0x0e809400}, /* SDOT/UDOT (vector) */
    {0x9fc0f400, 0x0f80e000}, /* SDOT/UDOT (by element) */
    {0xdfe0fc00, 0x4e80a400}, /* SMMLA/UMMLA/USMMLA (i8mm) */
};
static const uint32_t WIDENING[][2] = {
    {0x9f20fc00, 0x0e208000}, /* SMLAL/UMLAL{2} (vector) */
    {0x9f20fc00, 0x0e20a000}, /* SMLSL/UMLSL{2} (vector) */
    {0x9f20fc00, 0x0e20c000}, /* SMULL/UMULL{2} (vector) */
    {0x9f00f400, 0x0f002000}, /* SMLAL/UMLAL{2} (by element) */
    {0x9f00f400, 0x0f006000}, /* SMLSL/UMLSL{2} (by element) */
    {0x9f00f400, 0x0f00a000}, /* SMULL/UMULL{2} (by element) */
    {0x9f3ffc00, 0x0e206800}, /* SADALP/UADALP */
};
static const uint32_t FMA[][2] = {
    {0xbf20fc00, 0x0e20cc00}, /* FMLA/FMLS (vector, single and double) */
    {0xbf80b400, 0x0f801000}, /* FMLA/FMLS (by element) */
};

static int match(uint32_t op, const uint32_t (*table)[2], size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((op & table[i][0]) == table[i][1])
            return 1;
    return 0;
}

#define N(t) (sizeof(t) / sizeof(t[0]))

/* the kinds an instruction counts under: a bit per class */
static unsigned classify(uint32_t op) {
    unsigned kinds = 0;
    if ((op & 0x9e000000) == 0x0e000000) /* Advanced SIMD, vector form */
        kinds |= 1u << 3;
    if ((op & 0x0e000000) == 0x0c000000) /* loads and stores of SIMD and FP registers */
        kinds |= 1u << 4;
    if (match(op, DOT, N(DOT)))
        kinds |= 1u << 0;
    if (match(op, WIDENING, N(WIDENING)))
        kinds |= 1u << 1;
    if (match(op, FMA, N(FMA)))
        kinds |= 1u << 2;
    return kinds;
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t op;
        if (qemu_plugin_insn_size(insn) != 4)
            continue;
        memcpy(&op, qemu_plugin_insn_data(insn), 4); /* A64 code is little-endian, as is an x86 host */
        unsigned kinds = classify(op);
        for (int c = 0; c < NCLASS; c++)
            if (kinds >> c & 1)
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &cls[c], 1);
    }
}

/* a block's instructions are added when it starts, and a system call ends its block: at a marker the count
   holds every instruction up to and including the svc */
static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
    if (num != MARK_SYSCALL || a2 >= SLOTS)
        return;
    if (a1 == 0) {
        start_total[a2] = total;
        memcpy(start_cls[a2], cls, sizeof(cls));
        open_slot[a2] = 1;
    } else if (a1 == 1 && open_slot[a2]) {
        sum[a2] += total - start_total[a2];
        for (int c = 0; c < NCLASS; c++)
            sum_cls[a2][c] += cls[c] - start_cls[a2][c];
        windows[a2]++;
        open_slot[a2] = 0;
    }
}

static void write_classes(FILE *f, const uint64_t *values) {
    fprintf(f, "{");
    for (int c = 0; c < NCLASS; c++)
        fprintf(f, "%s\"%s\": %" PRIu64, c ? ", " : "", class_names[c], values[c]);
    fprintf(f, "}");
}

static void on_exit_(qemu_plugin_id_t id, void *unused) {
    FILE *f = fopen(out_path, "w");
    if (!f)
        return;
    fprintf(f, "{\"schema\": \"edgecv.qemu-count/1\", \"total\": %" PRIu64 ", \"classes\": ", total);
    write_classes(f, cls);
    fprintf(f, ", \"slots\": [");
    for (int s = 0; s < SLOTS; s++) {
        fprintf(f, "%s{\"windows\": %" PRIu64 ", \"instructions\": %" PRIu64 ", \"classes\": ", s ? ", " : "",
                windows[s], sum[s]);
        write_classes(f, sum_cls[s]);
        fprintf(f, "}");
    }
    fprintf(f, "]}\n");
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0)
            snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
    if (!out_path[0] || strcmp(info->target_name, "aarch64") != 0)
        return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
    return 0;
}
""".replace("@MARK@", hex(MARK)).replace("@SLOTS@", str(SLOTS))

# The runner, inside the root (Python 3.7+, numpy and the runtime only; the kit's benchmark core beside it).
RUNNER = r'''"""edgecv arm cost runner: marked invoke() windows for the counting plugin (see edgecv/device/armcost.py)."""
import ctypes
import gc
import json
import platform
import struct
import sys

MARK, START, STOP = @MARK@, 0, 1


def hwcaps():
    """AT_HWCAP and AT_HWCAP2 as the emulated CPU gives them (qemu answers /proc/self/auxv itself)."""
    found = {}
    try:
        with open("/proc/self/auxv", "rb") as f:
            data = f.read()
        for i in range(0, len(data) - 15, 16):
            key, value = struct.unpack("<QQ", data[i:i + 16])
            found[key] = value
    except OSError:
        pass
    return found.get(16, 0), found.get(26, 0)


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    if job.get("probe"):
        with open(job["out"], "w") as f:
            json.dump({"hwcap": hwcaps()[0], "hwcap2": hwcaps()[1]}, f)
        return 0
    sys.path.insert(0, job["bench_dir"])
    import numpy as np
    import edgecv_bench as rt

    runtime = rt.find_runtime(job["runtime"])
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long]
    n = int(job["inferences"])
    results = []
    for k, item in enumerate(job["models"]):
        model = rt.TFLiteModel(item["path"], threads=1, runtime=runtime)
        shape = [int(d) for d in model.input["shape"][1:]]
        if item.get("images"):
            images = np.load(item["images"])
        else:  # seeded raw pixels: the count does not depend on what the image shows
            images = np.random.RandomState(k).randint(0, 256, size=[n + 1] + shape).astype(np.float32)
        x = model.prepare(images)
        ops = model.interpreter._get_ops_details()
        delegated = sum(1 for op in ops if op["op_name"] == "DELEGATE")
        delegation = rt.delegation(model.interpreter) if hasattr(rt, "delegation") else None
        first, empty, counted = 3 * k, 3 * k + 1, 3 * k + 2
        gc.collect()
        gc.disable()
        model.set_input(x[0])
        syscall(MARK, START, first)
        model.invoke()
        syscall(MARK, STOP, first)
        for i in range(n):
            syscall(MARK, START, empty)
            syscall(MARK, STOP, empty)
        for i in range(n):
            model.set_input(x[(i + 1) % len(x)])
            syscall(MARK, START, counted)
            model.invoke()
            syscall(MARK, STOP, counted)
        gc.enable()
        results.append({"path": item["path"], "slots": [first, empty, counted], "inputs": int(len(x)),
                        "delegate_nodes": delegated, "delegation": delegation, "input_shape": shape})
    hwcap, hwcap2 = hwcaps()
    with open(job["out"], "w") as f:
        json.dump({"python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__,
                   "runtime": runtime.describe(), "hwcap": hwcap, "hwcap2": hwcap2, "models": results}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''.replace("@MARK@", hex(MARK))


@dataclass
class ArmCost:
    """One model's emulated instruction count on one CPU model. Not a time: see the module's docstring."""

    model: str  # file name
    cpu: str  # qemu CPU model, e.g. cortex-a76
    board: str  # the board whose core that is
    instructions_per_inference: float  # (counted - marker_overhead) / inferences
    inferences: int  # counted invoke() calls, each on another input
    counted: int  # raw: instructions in the N marked invoke() windows
    marker_overhead: int  # raw: instructions in N empty marked windows (subtracted)
    first_inference: int  # the first invoke() (lazy initialisation, XNNPACK packing weights): not in the mean
    classes: dict  # per inference, by kind: dot_product, widening_multiply, float_fma, simd_vector, simd_memory
    delegate_nodes: int  # XNNPACK (the default delegate) partitions in the graph: 0 means the builtin kernels ran
    runtime: str
    runtime_version: str | None
    python: str
    suite: str
    qemu: str
    features: list[str] = field(default_factory=list)  # the HWCAPs the emulated CPU gave the guest
    delegation: dict | None = None  # which ops XNNPACK took (edgecv.runtime.delegation), as the count ran
    seconds: float = 0.0  # wall time of the emulated process that counted it (with the other models it held)
    unit: str = UNIT

    @property
    def millions(self) -> float:
        return self.instructions_per_inference / 1e6

    def to_dict(self) -> dict:
        return asdict(self)


# --- the tools: dynamic qemu-aarch64 with its libraries, and the counting plugin -------------------------------


def tools_dir(suite: str = DEFAULT_SUITE) -> Path:
    """Next to the Pi roots: ``<cache>/arm-cost-qemu-<host arch>``."""
    return em.root_dir(suite).parent / f"arm-cost-qemu-{platform.machine()}"


def _tools_stamp_wanted() -> dict:
    return {"plugin": hashlib.sha256(PLUGIN_C.encode()).hexdigest()[:16], "layout": 1}


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def tools_are_complete(folder: Path) -> bool:
    found = _read_json(folder / TOOLS_STAMP)
    return bool(found) and {k: found.get(k) for k in _tools_stamp_wanted()} == _tools_stamp_wanted()


def _run(args: list[str], what: str, cwd: Path | None = None, env: dict | None = None,
         timeout: int = 900) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    except FileNotFoundError:
        raise Unsupported(f"{args[0]} is not installed, needed to {what}") from None
    except subprocess.TimeoutExpired:
        raise Unsupported(f"{what} did not finish within {timeout} s") from None
    if done.returncode != 0:
        last = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise Unsupported(f"could not {what} ({' '.join(args[:2])}): {last[0].strip()}")
    return done


def _apt(folder: Path) -> list[str]:
    """apt-get options for a private configuration under ``folder``: its own sources, lists and archives, and
    nothing of the host's apt state changed (the host's dpkg status is read to see what is installed)."""
    return ["-o", f"Dir::Etc::SourceList={folder / 'sources.list'}", "-o", f"Dir::Etc::SourceParts={folder / 'parts'}",
            "-o", f"Dir::State::Lists={folder / 'lists'}", "-o", f"Dir::Cache::Archives={folder / 'archives'}",
            "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=", "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root", "-q"]


def private_sources(mirror: str | None = None) -> list[str]:
    """``deb`` and ``deb-src`` lines for this host's own Debian release, from its apt sources (``mirror`` or
    ``$EDGECV_APT_MIRROR`` replaces the main archive's address; the security archive stays as the host has it)."""
    codename = em.host_codename()
    sources = em.host_debian_sources(codename=codename)
    override = mirror or os.environ.get(em.MIRROR_ENV)
    lines = []
    for source in sources:
        if override and codename in source.suites:
            source.uri = em.debian_mirror(override)
        lines += source.lines(("deb", "deb-src"))
    return lines


def ensure_tools(on_progress: ProgressFn = ignore, suite: str = DEFAULT_SUITE, mirror: str | None = None) -> Path:
    """The cached folder holding ``qemu/`` (dynamic qemu-aarch64, its x86 loader and libraries, the plugin).

    Built once: a private apt configuration made from this host's sources (with ``deb-src`` added) downloads
    the qemu-user package and whichever of its libraries this host lacks, and the qemu source package, whose
    plugin header the plugin is compiled against. Nothing is installed on the host.

    Raises:
        Unsupported: not root, not a Debian host, offline with nothing cached, no C compiler.
    """
    folder = tools_dir(suite)
    if tools_are_complete(folder):
        return folder
    if os.geteuid() != 0:
        raise Unsupported("counting ARM instructions needs root (apt-get, chroot, mount): run as root")
    for tool, package in (("apt-get", "apt"), ("dpkg-deb", "dpkg"), ("gcc", "gcc"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            raise Unsupported(f"{tool} is not installed, needed to build the ARM instruction counter: "
                              f"apt-get install {package}")
    lines = private_sources(mirror)
    if not lines:
        raise Unsupported(f"no Debian sources for this host's release in /etc/apt/sources.list*: the ARM instruction "
                          f"counter needs Debian's qemu-user and qemu source (set {em.MIRROR_ENV} on a Debian host)")
    step = "build ARM instruction counter"
    on_progress(Progress(step, 0, 4, "apt-get update (private sources with deb-src)"))
    if folder.exists():
        shutil.rmtree(folder)  # half-built or for another plugin: never used as it is
    apt_dir, work = folder / "apt", folder / "work"
    for sub in ("parts", "lists/partial", "archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True)
    write_text(apt_dir / "sources.list", "\n".join(lines) + "\n")
    apt = ["apt-get", *_apt(apt_dir)]
    _run([*apt, "update"], "read the host's Debian sources (offline?)", timeout=600)
    on_progress(Progress(step, 1, 4, "download qemu-user and the qemu source"))
    _run([*apt, "download", "qemu-user"], "download qemu-user", cwd=apt_dir / "archives")
    _run([*apt, "install", "--download-only", "--no-install-recommends", "-y", "qemu-user"],
         "download the libraries qemu-user needs")
    debs = sorted((apt_dir / "archives").glob("*.deb"))
    package = next((d for d in debs if d.name.startswith("qemu-user_")), None)
    if package is None:
        raise Unsupported("apt-get download qemu-user brought no package: check the host's Debian sources")
    control = _run(["dpkg-deb", "-f", str(package), "Version", "Source"], "read qemu-user's control file").stdout
    fields = dict(line.split(": ", 1) for line in control.strip().splitlines() if ": " in line)
    source_version = re.search(r"\((.+)\)", fields.get("Source", "")) if "Source" in fields else None
    source_version = source_version.group(1) if source_version else fields["Version"]
    _run([*apt, "source", "--download-only", f"qemu={source_version}"], "download Debian's qemu source", cwd=work)
    on_progress(Progress(step, 2, 4, "unpack qemu-user and its libraries"))
    staging = work / "staging"
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(staging)], f"unpack {deb.name}")
    header = _plugin_header(work)
    on_progress(Progress(step, 3, 4, "compile the counting plugin"))
    qemu = folder / "qemu.part"
    (qemu / "lib").mkdir(parents=True)
    binary = staging / "usr" / "bin" / "qemu-aarch64"
    library_dirs = sorted({str(p.parent) for p in staging.rglob("*.so*") if p.is_file() or p.is_symlink()})
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(library_dirs)}
    listed = _run(["ldd", str(binary)], "list qemu-aarch64's libraries", env=env).stdout
    loader = None
    for line in listed.splitlines():
        line = line.strip()
        if "not found" in line:
            raise Unsupported(f"qemu-aarch64 needs a library neither this host nor the download has: {line}")
        match = re.match(r"(\S+) => (\S+) \(", line)
        if match:
            shutil.copyfile(os.path.realpath(match.group(2)), qemu / "lib" / match.group(1))
        elif re.match(r"/\S*ld-linux\S* \(", line):
            loader = line.split()[0]
    if loader is None:
        raise Unsupported("could not find qemu-aarch64's dynamic loader (ldd named none)")
    shutil.copyfile(os.path.realpath(loader), qemu / "ld.so")
    shutil.copyfile(binary, qemu / "qemu-aarch64")
    for path in (qemu / "ld.so", qemu / "qemu-aarch64"):
        path.chmod(0o755)
    write_text(work / "edgecv_count.c", PLUGIN_C)
    _run(["gcc", "-shared", "-fPIC", "-O2", "-I", str(header.parent), "-o", str(qemu / "libedgecv_count.so"),
          str(work / "edgecv_count.c")], "compile the counting plugin against qemu's plugin header")
    version = _run([str(qemu / "ld.so"), "--library-path", str(qemu / "lib"), str(qemu / "qemu-aarch64"), "--version"],
                   "run the downloaded qemu-aarch64").stdout.strip().splitlines()[0]
    stamp = {**_tools_stamp_wanted(), "qemu": version.replace("qemu-aarch64 version ", ""),
             "qemu_user": fields["Version"], "source": f"qemu {source_version}", "host": em.host_codename()}
    write_text(qemu / "VERSION.json", json.dumps(stamp))
    qemu.rename(folder / "qemu")
    shutil.rmtree(work)
    shutil.rmtree(apt_dir)
    write_text(folder / TOOLS_STAMP, json.dumps(stamp))  # last: its presence says the tools are whole
    on_progress(Progress(step, 4, 4))
    return folder


def _plugin_header(work: Path) -> Path:
    """``qemu-plugin.h`` from the source package: from the upstream tarball, with Debian's patches applied
    (a full ``dpkg-source -x`` only when one of them touches the header: none does in 7.2)."""
    origs = sorted(work.glob("qemu_*.orig.tar.*"))
    debian = sorted(work.glob("qemu_*.debian.tar.*"))
    if not origs:
        raise Unsupported("apt-get source qemu brought no upstream tarball")
    patched = False
    for path in debian:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.startswith("debian/patches/"):
                    text = tar.extractfile(member).read()
                    if b"qemu-plugin.h" in text:
                        patched = True
    if patched:
        dsc = sorted(work.glob("qemu_*.dsc"))
        _run(["dpkg-source", "--no-check", "-x", str(dsc[0]), str(work / "tree")], "unpack Debian's qemu source",
             cwd=work)
        header = work / "tree" / "include" / "qemu" / "qemu-plugin.h"
    else:
        header = None
        with tarfile.open(origs[0]) as tar:
            for member in tar:
                if member.name.endswith("/include/qemu/qemu-plugin.h"):
                    target = work / "include" / "qemu-plugin.h"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
                    header = target
                    break
    if header is None or not header.is_file():
        raise Unsupported("Debian's qemu source has no include/qemu/qemu-plugin.h (qemu built without plugins?)")
    return header


def install_tools(root: Path, tools: Path) -> dict:
    """Copies the tools into the root (once per build of them); returns their stamp."""
    stamp = json.loads((tools / TOOLS_STAMP).read_text())
    target = root / INSIDE.lstrip("/")
    if _read_json(target / TOOLS_STAMP) == stamp:
        return stamp
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(tools / "qemu", target, symlinks=False)
    write_text(target / TOOLS_STAMP, json.dumps(stamp))
    return stamp


# --- the CPU the guest sees ----------------------------------------------------------------------------------


def features(hwcap: int, hwcap2: int) -> list[str]:
    """HWCAP bits to the names the kernel prints in ``/proc/cpuinfo``."""
    names = [n for i, n in enumerate(HWCAP_NAMES) if hwcap >> i & 1]
    return names + [n for i, n in enumerate(HWCAP2_NAMES) if hwcap2 >> i & 1]


def cpu_view(cpu: str, feature_names: Sequence[str]) -> dict[str, str]:
    """The files of an ARM ``/proc/cpuinfo`` and ``/sys/devices/system/cpu`` for ``cpu``, as the board's kernel
    shows them (the MIDR of qemu's model, the Features qemu's HWCAPs give), keyed by path below the root."""
    model = CPUS[cpu]
    midr = model.midr
    block = (f"BogoMIPS\t: 108.00\nFeatures\t: {' '.join(feature_names)}\nCPU implementer\t: 0x{midr >> 24:02x}\n"
             f"CPU architecture: 8\nCPU variant\t: 0x{midr >> 20 & 0xF:x}\nCPU part\t: 0x{midr >> 4 & 0xFFF:03x}\n"
             f"CPU revision\t: {midr & 0xF}\n\n")
    last = model.cores - 1
    files = {"proc/cpuinfo": "".join(f"processor\t: {i}\n{block}" for i in range(model.cores)),
             "sys/devices/system/cpu/kernel_max": f"{last}\n"}
    for name in ("possible", "present", "online"):
        files[f"sys/devices/system/cpu/{name}"] = f"0-{last}\n"
    for i in range(model.cores):
        base = f"sys/devices/system/cpu/cpu{i}"
        files[f"{base}/regs/identification/midr_el1"] = f"0x{midr:016x}\n"
        files[f"{base}/regs/identification/revidr_el1"] = "0x0000000000000000\n"
        files[f"{base}/cpufreq/cpuinfo_max_freq"] = f"{model.max_khz}\n"
        files[f"{base}/cpufreq/cpuinfo_min_freq"] = f"{min(model.max_khz, 600_000)}\n"
        for name, value in (("core_id", i), ("physical_package_id", 0), ("cluster_id", 0),
                            ("core_siblings_list", f"0-{last}"), ("package_cpus_list", f"0-{last}"),
                            ("cluster_cpus_list", f"0-{last}"), ("thread_siblings_list", i), ("core_cpus_list", i)):
            files[f"{base}/topology/{name}"] = f"{value}\n"
    return files


def _write_view(folder: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    (folder / "proc" / "self").mkdir(parents=True, exist_ok=True)  # qemu answers /proc/self/* for the guest


GUEST_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _dynamic_qemu(cpu: str, plugin_out: str | None = None) -> list[str]:
    """The command prefix that starts the root's copy of the dynamic qemu-aarch64 (with the plugin)."""
    qemu = [f"{INSIDE}/ld.so", "--library-path", f"{INSIDE}/lib", f"{INSIDE}/qemu-aarch64", "-cpu", cpu]
    return qemu + (["-plugin", f"{INSIDE}/libedgecv_count.so,out={plugin_out}"] if plugin_out else [])


def _counted_run(root: Path, cpu: str, view: Path, command: list[str], plugin_out: str | None,
                 timeout: int) -> subprocess.CompletedProcess:
    """``command`` run by the dynamic qemu-aarch64 (with ``-cpu``, and the plugin when ``plugin_out``) inside the
    root, in a private mount namespace whose /proc and /sys are the generated ARM view."""
    return em._chroot(root, *_dynamic_qemu(cpu, plugin_out), *command, timeout=timeout, view=view, env=GUEST_ENV)


def guest_features(root: Path, cpu: str, python: str, tools: Path | None = None) -> list[str]:
    """The HWCAPs qemu gives a guest on ``cpu``, asked once of the guest itself and cached: of the dynamic
    qemu in ``tools``, or (None) of binfmt_misc's qemu, told the CPU by ``QEMU_CPU``."""
    if tools is not None:
        cache, key = tools / "features.json", cpu
    else:
        interpreter = em.BINFMT_AARCH64
        found = re.search(r"^interpreter (\S+)", interpreter.read_text(), re.M) if interpreter.exists() else None
        binary = Path(os.path.realpath(found.group(1))) if found else None
        if binary is None or not binary.exists():
            raise Unsupported("no binfmt interpreter for aarch64: apt-get install qemu-user-static binfmt-support")
        cache, key = root.parent / "pi-cpu-features.json", f"{binary}:{binary.stat().st_size}:{cpu}"
    known = _read_json(cache) or {}
    if key in known:
        return known[key]
    work = Path(tempfile.mkdtemp(prefix="armcost-probe-", dir=root / "tmp"))
    try:
        inside = "/" + str(work.relative_to(root))
        write_text(work / "runner.py", RUNNER)
        write_text(work / "job.json", json.dumps({"probe": True, "out": f"{inside}/probe.json"}))
        view = work / "view"
        _write_view(view, cpu_view(cpu, []))
        command = [python, f"{inside}/runner.py", f"{inside}/job.json"]
        if tools is not None:
            done = _counted_run(root, cpu, view, command, None, 600)
        else:
            done = em._chroot(root, *command, timeout=600, view=view, env={**GUEST_ENV, "QEMU_CPU": cpu})
        if done.returncode != 0 or not (work / "probe.json").is_file():
            raise Unsupported(f"qemu-aarch64 -cpu {cpu} does not run the root's Python: {_last_line(done)}")
        caps = json.loads((work / "probe.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    known[key] = features(caps["hwcap"], caps["hwcap2"])
    write_text(cache, json.dumps(known, indent=1))
    return known[key]


def pi_view(root: Path, cpu: str, python: str, folder: Path, tools: Path | None = None) -> Path:
    """Writes the ARM ``proc/`` and ``sys/`` a guest on ``cpu`` is shown into ``folder`` (see ``cpu_view``)."""
    _write_view(folder, cpu_view(cpu, guest_features(root, cpu, python, tools)))
    return folder


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in (done.stderr or done.stdout or "").strip().splitlines()
             if line.strip() and not line.startswith("INFO:")]
    return lines[-1].strip() if lines else f"exit status {done.returncode}"


# --- counting ------------------------------------------------------------------------------------------------


def check_cpus(cpus: Sequence[str]) -> list[str]:
    unknown = [c for c in cpus if c not in CPUS]
    if unknown or not cpus:
        raise DataError(f"CPU model {', '.join(unknown) or '(none)'} is not offered; choose from {', '.join(CPUS)}")
    return list(dict.fromkeys(cpus))


def _check_models(models: Sequence[str | os.PathLike]) -> list[Path]:
    paths = [Path(m) for m in models]
    if not paths:
        raise DataError("no model to count")
    for path in paths:
        if path.suffix != ".tflite" or not path.is_file():
            raise DataError(f"{path} is not a .tflite file")
    if len(paths) > SLOTS // 3:
        raise DataError(f"at most {SLOTS // 3} models per count; split the list")
    return paths


def prepare(on_progress: ProgressFn = ignore, suite: str = DEFAULT_SUITE, mirror: str | None = None) -> None:
    """Everything a count needs (root, binfmt, the Pi root and its ai-edge-litert venv, the counter), built or
    checked now: a flow that counts at its end fails before its work, not after."""
    em.check_host(building=not em.root_is_complete(em.root_dir(suite), suite))
    em.ensure_venv(em.ensure_root(on_progress, suite, mirror), em.DEFAULT_RUNTIME, on_progress)
    ensure_tools(on_progress, suite, mirror)


def arm_costs(models: Sequence[str | os.PathLike], inputs: np.ndarray | dict | None = None,
              cpus: Sequence[str] = PI_CPUS, runtime: str = PiRuntime.AI_EDGE_LITERT, inferences: int = 20,
              suite: str = DEFAULT_SUITE, mirror: str | None = None, timeout: int = 1800,
              on_progress: ProgressFn = ignore, present_cpu: bool = True) -> dict[str, dict[str, ArmCost]]:
    """Instructions per inference of each model on each CPU model: ``{model file name: {cpu: ArmCost}}``.

    One emulated process per CPU model counts every model (Python starts once). ``inputs``: raw pixels
    (N, H, W, C) as the data set holds them, one array for all models or a dict by model path or file name;
    each model converts them to its input as the device script does. None: seeded random pixels. The models
    run ``inferences`` times each after a first inference, 1 thread, on the runtime's default delegate
    (XNNPACK), as a kit runs them. ``present_cpu=False`` shows the guest no ``/proc`` and ``/sys`` (an
    experiment, not a Pi: XNNPACK's cpuinfo then finds no processor, XNNPACK does not start and TFLite's
    builtin kernels run).

    Raises:
        DataError: a model that is missing, not a .tflite file or fails to run; a CPU model not offered;
            inferences < 1.
        Unsupported: what the count needs and this host lacks (root, binfmt, debootstrap, network on the
            first build, a C compiler): one line.
    """
    paths = _check_models(models)
    cpus = check_cpus(cpus)
    runtime = em.check_runtimes([runtime], suite)[0]
    if inferences < 1:
        raise DataError("inferences must be >= 1")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise DataError("two models share a file name: rename one")
    em.check_host(building=not em.root_is_complete(em.root_dir(suite), suite))
    root = em.ensure_root(on_progress, suite, mirror)
    python = em.ensure_venv(root, runtime, on_progress)
    tools = ensure_tools(on_progress, suite, mirror)
    stamp = install_tools(root, tools)
    version = em.runtime_version(root, runtime)
    work = Path(tempfile.mkdtemp(prefix="armcost-", dir=root / "tmp"))
    results: dict[str, dict[str, ArmCost]] = {name: {} for name in names}
    try:
        inside = "/" + str(work.relative_to(root))
        shutil.copyfile(Path(__file__).resolve().parents[1] / "runtime.py", work / "edgecv_bench.py")
        write_text(work / "runner.py", RUNNER)
        items = []
        for k, path in enumerate(paths):
            shutil.copyfile(path, work / f"m{k}_{path.name}")
            item = {"path": f"{inside}/m{k}_{path.name}", "images": None}
            chosen = inputs.get(str(path), inputs.get(path.name)) if isinstance(inputs, dict) else inputs
            if chosen is not None:
                chosen = np.asarray(chosen)
                if chosen.ndim != 4 or not len(chosen):
                    raise DataError(f"inputs for {path.name} must be raw images (N, H, W, C), got shape {chosen.shape}")
                np.save(work / f"m{k}.npy", chosen[: inferences + 1])
                item["images"] = f"{inside}/m{k}.npy"
            items.append(item)
        for i, cpu in enumerate(cpus):
            if present_cpu:
                view = pi_view(root, cpu, python, work / f"view-{cpu}", tools)
            else:
                view = work / f"no-view-{cpu}"
                _write_view(view, {"sys/.none": ""})
            job = {"runtime": str(runtime), "bench_dir": inside, "models": items, "inferences": inferences,
                   "out": f"{inside}/runner-{cpu}.json"}
            write_text(work / f"job-{cpu}.json", json.dumps(job))
            on_progress(Progress("count ARM instructions", i, len(cpus), f"{cpu}: {len(paths)} model(s) under qemu"))
            started = time.perf_counter()
            done = _counted_run(root, cpu, view, [python, f"{inside}/runner.py", f"{inside}/job-{cpu}.json"],
                                f"{inside}/count-{cpu}.json", timeout)
            seconds = time.perf_counter() - started
            if done.returncode != 0 or not (work / f"runner-{cpu}.json").is_file():
                raise DataError(f"the count failed under {runtime} on emulated {cpu}: {_last_line(done)}")
            if not (work / f"count-{cpu}.json").is_file():
                raise Unsupported(f"the counting plugin wrote nothing on {cpu}: {_last_line(done)}")
            ran = json.loads((work / f"runner-{cpu}.json").read_text())
            counts = json.loads((work / f"count-{cpu}.json").read_text())
            for name, item in zip(names, ran["models"]):
                first, empty, counted = (counts["slots"][s] for s in item["slots"])
                if counted["windows"] != inferences or empty["windows"] != inferences:
                    raise Unsupported(f"the plugin saw {counted['windows']} of {inferences} marked inferences on {cpu}")
                per = (counted["instructions"] - empty["instructions"]) / inferences
                classes = {k: (counted["classes"][k] - empty["classes"][k]) / inferences for k in counted["classes"]}
                results[name][cpu] = ArmCost(
                    name, cpu, CPUS[cpu].board, per, inferences, counted["instructions"], empty["instructions"],
                    first["instructions"], classes, item["delegate_nodes"], str(runtime),
                    ran["runtime"].get("version") or version, ran["python"], suite, stamp.get("qemu", "?"),
                    features(ran["hwcap"], ran["hwcap2"]), item.get("delegation"), round(seconds, 1))
        on_progress(Progress("count ARM instructions", len(cpus), len(cpus)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def arm_cost(model: str | os.PathLike, inputs: np.ndarray | None = None, cpu: str = "cortex-a76",
             runtime: str = PiRuntime.AI_EDGE_LITERT, inferences: int = 20, suite: str = DEFAULT_SUITE,
             mirror: str | None = None, on_progress: ProgressFn = ignore) -> ArmCost:
    """One model on one CPU model: see ``arm_costs``."""
    return arm_costs([model], inputs, [cpu], runtime, inferences, suite, mirror, on_progress=on_progress)[
        Path(model).name][cpu]


# --- into emulate_kit's results ------------------------------------------------------------------------------


BATCH = 30  # models counted in one emulated process (a process takes at most 32)


def count_into(rows: Sequence[tuple[Path, object]], images: np.ndarray, inferences: int = 10,
               on_progress: ProgressFn = ignore) -> None:
    """Counts each ``(model path, StageResult)`` row on both Pi cores and writes the row's ``details["arm_cost"]``:
    the one way a flow (search, the gate) puts ARM cost into its rows. A file listed twice is counted once."""
    by_path = {}
    for path, row in rows:
        by_path.setdefault(Path(path).resolve(), []).append(row)
    paths = list(by_path)
    for i in range(0, len(paths), BATCH):
        counts = arm_costs(paths[i : i + BATCH], images, PI_CPUS, inferences=inferences, on_progress=on_progress)
        for path in paths[i : i + BATCH]:
            for row in by_path[path]:
                row.details["arm_cost"] = cost_record(counts[path.name])


def cost_record(costs: dict[str, ArmCost]) -> dict:
    """What a result's stage holds under ``details["arm_cost"]``: the unit, then one entry per CPU model."""
    return {"unit": UNIT, "latency": "not a time: a count of emulated instructions",
            **{cpu: cost.to_dict() for cpu, cost in costs.items()}}


def add_to_results(kit: Path, runs: list, cpus: Sequence[str], suite: str = DEFAULT_SUITE, mirror: str | None = None,
                   inferences: int = 10, on_progress: ProgressFn = ignore) -> dict:
    """Counts every model of the kit (on the kit's own sample images) under each emulated run's runtime and
    writes them into that run's result JSON, each stage's ``details["arm_cost"]``. Returns
    ``{runtime: {model file: {cpu: ArmCost}}}``."""
    from edgecv import runtime as rt

    samples = rt.load_samples(str(kit / "samples.npz"))
    models = sorted(kit.glob("*.tflite"))
    images = samples["images"][: inferences + 1]
    found = {}
    for run in runs:
        costs = arm_costs(models, images, cpus, run.runtime, inferences, suite, mirror, on_progress=on_progress)
        found[str(run.runtime)] = costs
        result = json.loads(Path(run.result).read_text())
        for stage in result.get("stages", []):
            name = Path(stage.get("model") or "").name
            if name in costs:
                stage.setdefault("details", {})["arm_cost"] = cost_record(costs[name])
        result.setdefault("environment", {}).setdefault("device", {}).setdefault("emulated", {})["arm_cost"] = UNIT
        write_text(run.result, json_text(result))
    return found
