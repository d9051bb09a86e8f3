"""The Raspberry Pi AI Camera (Sony IMX500): quantize a Keras model with Sony's MCT and convert it with
``imxconv-tf`` into the ``packerOut.zip`` that the Pi's ``imx500-package`` turns into a ``.rpk``.

Sony's toolchain cannot share edgecv's environment: ``imx500-converter[tf]`` and ``model-compression-toolkit``
pin TensorFlow 2.15 (Keras 2), numpy<2 and Python<3.12, and the converter's backend is Java (a Java 17 runtime
on PATH, or under ``$JAVA_HOME``). So the toolchain lives in its own venv, made from the package registry on
first use and reused after (``$EDGECV_IMX500_VENV``, else ``imx500-venv`` under ``$EDGECV_CACHE`` or
``~/.cache/edgecv``; stamped with :data:`REQUIREMENTS`, remade when they change), and a small worker script
shipped with edgecv (``imx500_worker.py``, importing only what that venv has) does the work there.

What is measured here: the float model's and MCT's fake-quant model's top-1 on the same test images (the
fake-quant Keras model simulates the IMX500's integer arithmetic; it is not the camera), and the converter's
memory report against the chip's 8 MB. What only the camera can tell (its own accuracy on sensor frames, its
frame rate and DNN timing) is the AI Camera script's job (``edgecv.device.imx500_camera``).

A Keras 3 model goes over as a Keras 2 ``.h5`` through edgecv's tf-keras rebuild
(:func:`edgecv.compress.keras3.to_tf_keras`); one it cannot rebuild is refused in one line. Nothing is printed;
outputs are moved into the output folder only once everything has succeeded.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from edgecv.data.datasets import fingerprint
from edgecv.errors import ConfigError, DataError, GateFailed, Unsupported, first_line
from edgecv.fsutil import json_text, run_dir, sha256, write_text
from edgecv.progress import Progress, ProgressFn, ignore

# Verified together on 2026-12-06 in a Python 3.11 venv (the versions pip resolved for the unpinned names).
REQUIREMENTS = (
    "imx500-converter[tf]==3.19.2",
    "model-compression-toolkit==2.5.1",
    "mct-quantizers==1.6.0",
    "tensorflow==2.15.1",
    "numpy==1.26.4",
)
PYTHONS = ((3, 9), (3, 10), (3, 11))  # what TensorFlow 2.15 has wheels for
CHIP_BYTES = 8 * 1024 * 1024  # the IMX500's memory for the runtime and the model together
JAVA_MAJOR = 17
WORKER = Path(__file__).with_name("imx500_worker.py")
OUTPUTS = ("packerOut.zip", "dnnParams.xml")
UNIT = ("top-1 of MCT's fake-quant Keras model (simulating the IMX500's integers) on the host, and the converter's "
        "memory report; not a run on the camera")
BOARDS = "Raspberry Pi AI Camera (Sony IMX500) on a Raspberry Pi 5, 4, 3, Zero 2 W (any Pi with a camera connector)"


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: list[int]
    bits: int
    format: str  # "unsigned" or "signed", as dnnParams.xml says
    scale: float
    shift: int = 0


@dataclass
class Imx500Result:
    """``edgecv imx500``: one model quantized and converted for the IMX500."""

    model: str
    float_accuracy: float  # top-1 of the Keras float model, 0-1
    imx500_accuracy: float  # top-1 of MCT's fake-quant model on the same images
    test_images: int
    calibration_images: int
    method: str  # "ptq" or "gptq" (MCT's gradient-based PTQ)
    memory_bytes: int  # the converter's "Memory Usage": runtime + model + reserved
    available_bytes: int  # "Total Memory Available On Chip" (8 MB)
    runtime_bytes: int
    model_bytes: int
    fits: bool
    inputs: list[Tensor]
    outputs: list[Tensor]
    toolchain_seconds: float  # the worker's wall time: load, quantize, score, export, convert
    convert_seconds: float  # imxconv-tf alone
    memory_kb_target: float | None = None  # mixed precision's weights-memory target, when asked for
    weight_bits: dict[str, int] = field(default_factory=dict)  # {bits: parameters} in the quantized model
    chosen_on: dict | None = None  # gptq=auto: train images that decided, and each method's top-1 there
    handed_over: str = ""  # how the model reached TF 2.15: "h5" (as it is) or "tf-keras rebuild"
    folded: str | None = None  # the input Rescaling the converter refuses, folded into the first kernels
    files: list[str] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    venv: str = ""
    venv_made_seconds: float | None = None  # when this run made the toolchain venv
    model_sha256: str = ""  # of the model file quantized, and of the packerOut.zip written: a gate checks both
    package_sha256: str = ""
    predictions: dict[str, list[int]] = field(default_factory=dict)  # "float", "imx500": top-1 per test image
    boards: str = BOARDS
    unit: str = UNIT

    @property
    def drop(self) -> float:
        """Accuracy points the IMX500 model loses against the float model (negative: it gains)."""
        return 100 * (self.float_accuracy - self.imx500_accuracy)

    def to_dict(self) -> dict:
        return {"schema": "edgecv.imx500/1", **asdict(self), "drop_points": self.drop}

    def row(self, name: str, report_dir: Path):
        """The row a report keeps for this model (``compress --imx500``, ``search --target imx500``): the
        fake-quant top-1 as its accuracy, ``packerOut.zip`` as its file, both models' top-1 per test image kept,
        so that ``check --measured-by`` can judge it against the float model image by image."""
        from edgecv.measure.report import StageResult

        package = Path(self.files[0])
        record = {k: v for k, v in self.to_dict().items() if k not in ("inputs", "outputs", "files", "boards",
                                                                     "predictions")}
        return StageResult(
            name, model=str(package.relative_to(report_dir)), format="imx500", accuracy=self.imx500_accuracy,
            images=self.test_images, size_bytes=package.stat().st_size, sha256=self.package_sha256,
            runtime={"name": "MCT fake-quant (IMX500)", "version": self.versions.get("model-compression-toolkit")},
            details={"mode": "int8", "imx500": record, "predictions": self.predictions.get("imx500"),
                     "float_predictions": self.predictions.get("float"),
                     "inputs": [asdict(t) for t in self.inputs], "outputs": [asdict(t) for t in self.outputs]})

    @classmethod
    def from_dict(cls, d: dict) -> Imx500Result:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["inputs"] = [Tensor(**t) for t in d.get("inputs", [])]
        d["outputs"] = [Tensor(**t) for t in d.get("outputs", [])]
        return cls(**d)


def memory_criterion(memory_bytes: int | None, limit_kb: float | None = None):
    """The converter's memory use against the chip's 8 MB, or a tighter ``limit_kb``: the fit a gate checks."""
    from edgecv.measure.verdict import Criterion

    limit = CHIP_BYTES / 1024 if limit_kb is None else min(limit_kb, CHIP_BYTES / 1024)
    return Criterion("IMX500 memory", None if memory_bytes is None else memory_bytes / 1024, "<=", limit, "KB")


def measured_row(package: str | os.PathLike, record: str | os.PathLike):
    """The row that ``record`` (``imx500.json``, a ``compress --imx500`` report or a ``search --target imx500``
    ``search.json``) keeps for this very ``packerOut.zip``, found by its SHA-256: a package is judged by the
    numbers of its own conversion, never by a file's name.

    Raises:
        DataError: no such file, not a record of either kind, or no row for this package.
    """
    from edgecv.measure.report import Report, StageResult

    package, record = Path(package), Path(record)
    if not package.is_file():
        raise DataError(f"IMX500 package {package} does not exist")
    mine = sha256(package.read_bytes())
    try:
        d = json.loads(record.read_text())
    except OSError as e:
        raise DataError(f"cannot read {record}: {e.strerror or e}") from None
    except ValueError as e:
        raise DataError(f"{record} is not JSON: {first_line(e)}") from None
    if isinstance(d, dict) and d.get("schema") == "edgecv.imx500/1":
        result = Imx500Result.from_dict(d)
        if result.package_sha256 != mine:
            raise DataError(f"{record} converted another {package.name} than this one (its SHA-256 differs or was "
                            "not recorded): run edgecv imx500 again")
        result.files = [str(package)]
        return result.row("imx500", package.parent)
    if isinstance(d, dict) and isinstance(d.get("candidates"), list):  # search.json: each grid point's row
        stages = [StageResult.from_dict(c["result"]) for c in d["candidates"]
                  if isinstance(c, dict) and isinstance(c.get("result"), dict)]
    else:
        stages = Report.load(record).stages
    rows = [s for s in stages if s.format == "imx500"]
    found = next((s for s in rows if s.sha256 == mine and (s.details or {}).get("imx500")), None)
    if found is None:
        have = ", ".join(s.stage for s in rows) or "none"
        raise DataError(f"{record} has no IMX500 row for this {package.name} (none with its SHA-256; IMX500 rows: "
                        f"{have})")
    return found


# --- Java and the toolchain venv ---------------------------------------------------------------------


def java_runtime() -> tuple[str, int]:
    """The Java the converter will start (``$JAVA_HOME/bin/java``, else ``java`` on PATH) and its major version.

    Raises:
        Unsupported: none, or older than Java 17.
    """
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").is_file() else shutil.which("java")
    if java is None:
        raise Unsupported(f"no Java runtime: the IMX500 converter's backend is Java; install Java {JAVA_MAJOR} "
                          "(apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unsupported(f"{java} does not run: {first_line(e)}") from None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if done.returncode != 0 or not found:
        raise Unsupported(f"{java} does not run: {first_line(done.stderr or done.stdout or 'no output')}")
    major = int(found.group(1)) if found.group(1) != "1" else int(found.group(2) or 0)  # "1.8.0" is Java 8
    if major < JAVA_MAJOR:
        raise Unsupported(f"{java} is Java {major}: the IMX500 converter needs Java {JAVA_MAJOR} or newer")
    return java, major


def _java_env(java: str) -> dict:
    """The converter's scripts start ``java`` from PATH: the one found goes first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = os.pathsep.join([str(Path(java).parent), env.get("PATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_USE_LEGACY_KERAS", None)  # TF 2.15 has Keras 2 as it is
    return env


def toolchain_root() -> Path:
    given = os.environ.get("EDGECV_IMX500_VENV")
    if given:
        return Path(given)
    cache = Path(os.environ.get("EDGECV_CACHE") or Path.home() / ".cache" / "edgecv")
    return cache / "imx500-venv"


def _stamp_text(python_version: str) -> str:
    return "\n".join([f"python {python_version}", *REQUIREMENTS]) + "\n"


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.fullmatch(r"(\d+)\.(\d+)", done.stdout.strip())
    return (int(found.group(1)), int(found.group(2))) if done.returncode == 0 and found else None


def base_python() -> tuple[str, str]:
    """A Python TensorFlow 2.15 runs on (3.9 to 3.11): ``$EDGECV_IMX500_PYTHON``, this one, or one on PATH.

    Raises:
        Unsupported: none is there.
    """
    given = os.environ.get("EDGECV_IMX500_PYTHON")
    candidates = [given] if given else [sys.executable, "python3.11", "python3.10", "python3.9"]
    for candidate in candidates:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        found = _python_version(path) if path else None
        if found in PYTHONS:
            return path, "%d.%d" % found
    raise Unsupported("the IMX500 toolchain (TensorFlow 2.15) needs Python 3.9 to 3.11 and none was found: "
                      "install python3.11 or set EDGECV_IMX500_PYTHON")


def toolchain_state() -> tuple[Path, bool]:
    """The venv's folder and whether it is made with today's requirements (nothing is installed)."""
    root = toolchain_root()
    stamp = root / "edgecv-requirements.txt"
    python = root / "bin" / "python"
    ready = python.exists() and stamp.is_file() and stamp.read_text().splitlines()[1:] == list(REQUIREMENTS)
    return root, ready


@contextmanager
def _locked(root: Path):
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two commands at once: the second waits for the first's venv
        yield


def toolchain_python(on_progress: ProgressFn = ignore, timeout: int = 1800) -> tuple[Path, float | None]:
    """The toolchain venv's Python, made first when missing or stamped with other requirements.
    Returns it and the seconds spent making it (None when it was there).

    Raises:
        Unsupported: no suitable Python, or the registry cannot be reached / the install fails.
    """
    root, ready = toolchain_state()
    if ready:
        return root / "bin" / "python", None
    with _locked(root):
        root, ready = toolchain_state()  # made by another process while this one waited
        if ready:
            return root / "bin" / "python", None
        base, base_version = base_python()
        started = time.time()
        on_progress(Progress("imx500 toolchain", 0, 2, f"python{base_version} -m venv {root}"))
        shutil.rmtree(root, ignore_errors=True)
        try:
            subprocess.run([base, "-m", "venv", str(root)], check=True, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as e:
            shutil.rmtree(root, ignore_errors=True)
            raise Unsupported(f"cannot make the IMX500 toolchain venv at {root}: {first_line(e)}") from None
        on_progress(Progress("imx500 toolchain", 1, 2, "pip install " + " ".join(REQUIREMENTS)))
        try:
            done = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                   "--disable-pip-version-check", *REQUIREMENTS],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            shutil.rmtree(root, ignore_errors=True)
            raise Unsupported(f"installing the IMX500 toolchain took over {timeout} s") from None
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
            raise Unsupported("cannot install the IMX500 toolchain (" + ", ".join(REQUIREMENTS[:2]) + "): "
                              + (lines[-1].strip() if lines else f"pip exited {done.returncode}"))
        (root / "edgecv-requirements.txt").write_text(_stamp_text(base_version))  # last: a stamp means complete
        on_progress(Progress("imx500 toolchain", 2, 2, "done"))
        return root / "bin" / "python", time.time() - started


# --- the model's way over --------------------------------------------------------------------------------


def _handover(path: Path, model, work: Path) -> tuple[Path, str]:
    """A file TF 2.15's Keras 2 loads: a tf-keras ``.h5`` as it is, anything else rebuilt in tf-keras and saved
    as ``.h5``.

    Raises:
        DataError: a Keras 3 layer tf-keras cannot reproduce exactly.
    """
    from edgecv._tf import is_keras3_model

    if path.suffix.lower() in (".h5", ".hdf5") and not is_keras3_model(model):
        return path, "h5"
    from edgecv.compress.keras3 import to_tf_keras

    try:
        rebuilt = to_tf_keras(model)
    except DataError as e:
        raise DataError(f"{path.name} cannot go to the IMX500 toolchain (TensorFlow 2.15, Keras 2): "
                        f"{first_line(e)}") from None
    target = work / f"{path.stem}.h5"
    rebuilt.save(target, save_format="h5")
    return target, "tf-keras rebuild" if is_keras3_model(model) else "h5"


def parameters_bytes(model) -> int:
    """The model's weights at 8 bits: one byte each (MCT's default for the IMX500)."""
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def split_images(dataset, calibration: int, choose: int, seed: int = 0):
    """A seeded sample of train images to calibrate on, and a disjoint one that decides on gradient-based PTQ
    (the test split is never used to choose)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset.x_train))
    calibrate = np.sort(order[:calibration])
    decide = np.sort(order[calibration:calibration + choose])
    return dataset.x_train[calibrate], dataset.x_train[decide], dataset.y_train[decide]


class Gptq(str, Enum):
    """When MCT's gradient-based PTQ runs: never, when plain PTQ loses more than the margin, or always."""

    OFF = "off"
    AUTO = "auto"
    ON = "on"

    def __str__(self) -> str:
        return self.value


GPTQ_MODES = tuple(g.value for g in Gptq)


def quantize_for_imx500(model: str | os.PathLike, dataset, out_dir: str | os.PathLike,
                        calibration: int = 200, test_images: int = 1000, memory_kb: float | None = None,
                        gptq: str = "off", gptq_epochs: int = 5, max_drop: float | None = 1.0,
                        choose_images: int = 500, trust: bool = False, on_progress: ProgressFn = ignore,
                        timeout: int = 3600) -> Imx500Result:
    """Quantizes ``model`` with MCT for the IMX500 on ``calibration`` train images, scores the float and the
    fake-quant model on ``test_images`` test images (the seeded sample every edgecv command scores on),
    exports it and runs ``imxconv-tf``; writes ``packerOut.zip``, ``dnnParams.xml``, the memory report, MCT's
    exported ``<model>_imx500.keras`` and ``imx500.json`` into ``out_dir``.

    ``memory_kb``: MCT's mixed precision under this weights-memory target (KB). ``gptq``: "on" runs MCT's
    gradient-based PTQ (``gptq_epochs``); "auto" runs it only when plain PTQ loses more than ``max_drop``
    points on ``choose_images`` other train images, and keeps it when it scores better there. ``max_drop``:
    the gate, in points of top-1 against the float model on the test images (None: no gate).

    Raises:
        ConfigError: an option that cannot work.
        DataError: no such model, one that cannot go to TF 2.15, over the chip's 8 MB, refused by MCT or
            the converter.
        GateFailed: the IMX500 model loses more than ``max_drop`` points.
        Unsupported: no Java 17, no Python for the toolchain, or it cannot be installed.
    """
    from edgecv.compress.export import load_keras
    from edgecv.config import BenchConfig
    from edgecv.measure.benchmark import scoring_images

    if gptq not in GPTQ_MODES:
        raise ConfigError(f"gptq takes {', '.join(GPTQ_MODES)}, got {gptq!r}")
    if calibration < 1 or test_images < 1 or gptq_epochs < 1:
        raise ConfigError("calibration images, test images and GPTQ epochs must be at least 1")
    if memory_kb is not None and memory_kb <= 0:
        raise ConfigError(f"the IMX500 memory target must be over 0 KB, got {memory_kb:g}")
    if max_drop is not None and max_drop < 0:
        raise ConfigError(f"max-drop must be >= 0, got {max_drop}")
    path = Path(model).resolve()
    if not path.is_file():
        raise DataError(f"model file {model} does not exist")
    java, _ = java_runtime()  # before minutes of work that would end at the converter
    on_progress(Progress("imx500", 0, 5, f"loading {path.name}"))
    keras_model = load_keras(path, dataset, trust=trust)
    weights = parameters_bytes(keras_model)
    if memory_kb is None and weights > CHIP_BYTES:
        raise DataError(f"{path.name} has {weights:,} parameters: {weights / 2**20:.1f} MB at 8 bits, over the "
                        "IMX500's 8 MB for the model and its runtime together (try --imx500-memory-kb for "
                        "mixed precision, or a smaller model)")
    if memory_kb is not None and memory_kb * 1024 > CHIP_BYTES:
        raise ConfigError(f"the memory target {memory_kb:g} KB is over the IMX500's {CHIP_BYTES // 1024} KB")
    x_calibrate, x_choose, y_choose = split_images(dataset, calibration, choose_images if gptq == "auto" else 0)
    x_test, y_test = scoring_images(dataset, BenchConfig(limit=test_images))
    with run_dir(Path(out_dir).resolve()) as out:  # a failed first run leaves no empty folder behind
        return _convert(path, keras_model, dataset, out, x_calibrate, x_choose, y_choose, x_test, y_test, java,
                        memory_kb, gptq, gptq_epochs, max_drop, on_progress, timeout)


def _convert(path, keras_model, dataset, out, x_calibrate, x_choose, y_choose, x_test, y_test, java, memory_kb,
             gptq, gptq_epochs, max_drop, on_progress, timeout) -> Imx500Result:
    with tempfile.TemporaryDirectory(prefix=".edgecv-imx500-", dir=out) as work:
        work = Path(work)
        handed, how = _handover(path, keras_model, work)
        del keras_model
        python, made = toolchain_python(on_progress)
        arrays = {"calibration": x_calibrate, "test_x": x_test, "test_y": y_test}
        if gptq == "auto" and len(y_choose):
            arrays |= {"choose_x": x_choose, "choose_y": y_choose}
        request = {name: str(work / f"{name}.npy") for name in arrays}
        for name, value in arrays.items():
            np.save(work / f"{name}.npy", value)
        request |= {"model": str(handed), "work": str(work), "result": str(work / "result.json"),
                    "memory_kb": memory_kb, "gptq": gptq, "gptq_epochs": gptq_epochs,
                    "max_drop": 1.0 if max_drop is None else max_drop, "gate_drop": max_drop, "batch": 32,
                    "name": path.stem,
                    "converter_timeout": timeout}
        (work / "request.json").write_text(json.dumps(request))
        started = time.time()
        done = _run_worker(python, work, java, on_progress, timeout)
        wall = time.time() - started
        if "error" in done:
            kind = Unsupported if done.get("kind") == "missing" else DataError
            raise kind(f"{path.name}: {done['error']}")
        if done.get("gated"):
            drop = 100 * (done["float_accuracy"] - done["imx500_accuracy"])
            raise GateFailed(f"{path.name} on the IMX500 (MCT {done['method']}, fake-quant) scores "
                             f"{100 * done['imx500_accuracy']:.2f} % against the float model's "
                             f"{100 * done['float_accuracy']:.2f} % on {done['test_images']} test images: "
                             f"{drop:.2f} points lost, over --max-drop {max_drop:g}; nothing converted")
        result = Imx500Result(
            model=path.name, float_accuracy=done["float_accuracy"], imx500_accuracy=done["imx500_accuracy"],
            test_images=done["test_images"], calibration_images=done["calibration_images"], method=done["method"],
            memory_bytes=done["memory_bytes"], available_bytes=done["available_bytes"],
            runtime_bytes=done["runtime_bytes"], model_bytes=done["model_bytes"], fits=done["fits"],
            inputs=[Tensor(**t) for t in done["inputs"]], outputs=[Tensor(**t) for t in done["outputs"]],
            toolchain_seconds=wall, convert_seconds=done["timings"]["convert_s"], memory_kb_target=memory_kb,
            weight_bits=done.get("weight_bits") or {}, chosen_on=done.get("chosen_on"), handed_over=how,
            folded=done.get("folded"),
            versions=done["versions"], venv=str(python.parent.parent), venv_made_seconds=made,
            data={"source": dataset.source, "test_images": int(len(y_test)),
                  "test_fingerprint": fingerprint(x_test, y_test), "calibration": "train split",
                  "calibration_images": int(len(x_calibrate))},
            model_sha256=sha256(path.read_bytes()), predictions=done.get("predictions") or {},
        )
        if not result.fits:
            raise DataError(f"{path.name} does not fit the IMX500: the converter's report needs "
                            f"{result.memory_bytes / 1024:,.0f} KB of {result.available_bytes / 1024:,.0f} KB "
                            f"(model {result.model_bytes / 1024:,.0f} KB, runtime {result.runtime_bytes / 1024:,.0f} KB)")
        converted = Path(done["files"]["out"])
        moves = [(converted / name, out / name) for name in OUTPUTS]
        moves += [(converted / done["files"]["memory_report"], out / f"{path.stem}_MemoryReport.json"),
                  (Path(done["files"]["exported"]), out / Path(done["files"]["exported"]).name)]
        for source, _ in moves:
            if not source.is_file():
                raise DataError(f"the converter did not write {source.name}")
        for source, target in moves:  # same file system (the work folder is inside out): each move is atomic
            os.replace(source, target)
        result.package_sha256 = sha256((out / "packerOut.zip").read_bytes())
        result.files = [str(target) for _, target in moves] + [str(out / "imx500.json")]
        write_text(out / "imx500.json", json_text(result.to_dict()))
    return result


def _run_worker(python: Path, work: Path, java: str, on_progress: ProgressFn, timeout: int) -> dict:
    """Starts the worker in the toolchain venv, forwards its progress lines, returns its result JSON."""
    from edgecv.errors import check_interrupt

    log = work / "worker.log"
    prefix = "EDGECV-PROGRESS "
    with open(log, "w") as err:
        try:
            process = subprocess.Popen([str(python), str(WORKER), str(work / "request.json")], stdout=subprocess.PIPE,
                                       stderr=err, text=True, env=_java_env(java), cwd=work)
        except OSError as e:
            raise Unsupported(f"cannot start the IMX500 toolchain ({python}): {first_line(e)}") from None
        deadline = time.time() + timeout
        try:
            for line in process.stdout:
                if line.startswith(prefix):
                    try:
                        event = json.loads(line[len(prefix):])
                        on_progress(Progress(event["task"], event["done"], event["total"], event["message"]))
                    except (ValueError, KeyError):
                        pass
                if time.time() > deadline:
                    raise Unsupported(f"the IMX500 toolchain did not finish within {timeout} s")
            process.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            raise Unsupported(f"the IMX500 toolchain did not finish within {timeout} s") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    check_interrupt()
    result = work / "result.json"
    if not result.is_file():
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        crashed = next((line for line in reversed(tail) if "Error" in line), tail[-1] if tail else "no output")
        if "No module named" in crashed:
            raise Unsupported(f"the IMX500 toolchain venv is incomplete ({crashed.strip()}): remove "
                              f"{python.parent.parent} to have it made again")
        raise DataError(f"the IMX500 toolchain stopped (exit {process.returncode}): {crashed.strip()}")
    return json.loads(result.read_text())


def toolchain_checks() -> list[tuple[str, str, str, str]]:
    """Doctor's lines for ``edgecv imx500`` as (name, value, status, note): Java, and the toolchain venv
    (never made or installed here)."""
    lines = []
    try:
        java, major = java_runtime()
        lines.append(("java", f"{major} ({java})", "ok", "the IMX500 converter's backend (edgecv imx500)"))
    except Unsupported as e:
        lines.append(("java", "not found", "warn", f"edgecv imx500 needs it: {e}"))
    root, ready = toolchain_state()
    if ready:
        lines.append(("imx500 toolchain", str(root), "ok", ", ".join(REQUIREMENTS[:2])))
    else:
        lines.append(("imx500 toolchain", "not made yet", "ok",
                      f"edgecv imx500 makes it on first use at {root} (TF 2.15 and Sony's MCT, about 2.3 GB)"))
    return lines
