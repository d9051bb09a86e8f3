"""The host's doctor, and the known-bad pairing the device check exists for: tflite-runtime under numpy 2.

The numpy-2 environment is made by the test from the package registry and kept between runs (beside the
device-script environments of test_device_venvs.py: ``$EDGECV_TEST_VENVS`` or ``~/.cache/edgecv-test-venvs``);
offline and without it, that test skips and says why.
"""

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from edgecv import runtime as rt
from edgecv.device.doctor import Check, Diagnosis, diagnose, qemu_check, stack_checks
from edgecv.errors import ExitCode

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "edgecv_bench.py"


def test_doctor_here_passes_without_importing_tensorflow():
    code = ("import sys, json\n"
            "from edgecv.device.doctor import diagnose\n"
            "d = diagnose()\n"
            "print(json.dumps({'doctor': d.to_dict(), 'tensorflow_imported': 'tensorflow' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert not out["tensorflow_imported"]
    assert out["doctor"]["exit_code"] == 0
    names = [c["name"] for c in out["doctor"]["checks"]]
    for name in ("python", "os", "cpu", "isa", "numpy", "ai_edge_litert", "tflite_runtime", "libedgetpu", "pairing",
                 "runtime", "edgecv", "tensorflow", "tf-keras", "tfmot", "edgetpu_compiler", "debootstrap",
                 "qemu-aarch64"):
        assert name in names, name
    assert names.count("tensorflow") == 1  # the host's stack line, not also the runtime's


def test_doctor_checks_read_what_is_installed():
    d = diagnose()
    assert all(c.status in ("ok", "warn", "fail") for c in d.checks)
    isa = rt.isa_flags()
    if isa:
        assert d.check("isa").value == " ".join(isa)
    else:
        assert d.check("isa").value.startswith(("unknown", "none of")), d.check("isa")
    assert d.check("tensorflow").value == version("tensorflow") and d.check("tensorflow").status == "ok"
    assert d.check("tfmot").value == version("tensorflow-model-optimization")
    assert d.check("ai_edge_litert").value.startswith(version("ai-edge-litert"))
    lines = d.lines()
    assert len(lines) == len(d.checks) and not any("\n" in line for line in lines)
    assert lines[0].split()[:2] == ["ok", "python"]
    compiler = d.check("edgetpu_compiler")
    assert compiler.status == "ok" and (shutil.which("edgetpu_compiler") is None) == (compiler.value == "not on PATH")


def test_exit_code_is_3_exactly_when_a_check_fails():
    assert Diagnosis([Check("a", "x", "ok"), Check("b", "y", "warn")]).exit_code == ExitCode.OK
    failed = Diagnosis([Check("a", "x", "ok"), Check("runtime", "none", "fail", "why")])
    assert failed.exit_code == ExitCode.MISSING == 3 and [c.name for c in failed.failed] == ["runtime"]


def test_doctor_fails_when_the_edge_tpu_is_required_and_absent():
    if rt.libedgetpu_version() or rt.edgetpu_devices():
        pytest.skip("this machine has an Edge TPU runtime or device")
    d = diagnose(edgetpu=True)
    assert d.exit_code == 3
    assert {"libedgetpu", "edgetpu device", "edgetpu delegate"} <= {c.name for c in d.failed}


def test_stack_checks_judge_the_installed_versions_against_the_pins():
    checks = {c.name: c for c in stack_checks()}
    assert set(checks) == {"tensorflow", "tf-keras", "tfmot"}
    assert checks["tensorflow"].note == "pinned ==2.21.*" and checks["tensorflow"].status == "ok"


def test_qemu_check_reads_binfmt():
    check = qemu_check()
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    registered = entry.is_file() and entry.read_text().startswith("enabled")
    assert check.value.startswith("binfmt enabled") == registered


# --- tflite-runtime 2.14 beside numpy 2: imports, then cannot build an interpreter --------------------------

NUMPY2_TFLITE = ["tflite-runtime==2.14.0", "numpy>=2"]


@pytest.fixture(scope="module")
def numpy2_python():
    root = Path(os.environ.get("EDGECV_TEST_VENVS") or Path.home() / ".cache" / "edgecv-test-venvs") / "tflite_runtime_numpy2"
    stamp, python = root / "edgecv-requirements.txt", root / "bin" / "python"
    wanted = "\n".join(NUMPY2_TFLITE)
    if not (stamp.is_file() and stamp.read_text() == wanted and python.exists()):
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *NUMPY2_TFLITE], capture_output=True,
                              text=True, timeout=900)
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"could not install {' '.join(NUMPY2_TFLITE)} (offline?): {done.stderr.strip()[-300:]}")
        stamp.write_text(wanted)
    return python


def test_device_check_names_the_numpy2_pairing_and_exits_3(numpy2_python):
    imports = subprocess.run([str(numpy2_python), "-c", "import tflite_runtime.interpreter, numpy; print(numpy.__version__)"],
                             capture_output=True, text=True)
    assert imports.returncode == 0 and imports.stdout.startswith("2.")  # it imports: importing proves nothing
    done = subprocess.run([str(numpy2_python), str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    tflite = next(line for line in lines if line[6:22].strip() == "tflite_runtime")
    assert tflite.startswith("warn") and "2.14.0 imports, but cannot run a model" in tflite and "numpy" in tflite
    assert any(line.startswith("warn") and "numpy<2" in line for line in lines if line[6:22].strip() == "pairing")
    assert lines[-1].startswith("fail") and "runtime" in lines[-1]
    assert "Traceback" not in done.stderr and "NumPy 1.x" not in done.stdout + done.stderr  # numpy's page is kept off


def test_device_benchmark_under_the_numpy2_pairing_is_one_line_exit_3(numpy2_python, tiny_tflite, tmp_path):
    """Before the probe, tflite-runtime was taken and the first model died with a SystemError traceback."""
    import numpy as np

    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(SCRIPT, kit / "edgecv_bench.py")
    shutil.copy(tiny_tflite["int8"], kit / "tiny_int8.tflite")
    np.savez(kit / "samples.npz", images=np.zeros((2, 16, 16, 3), np.uint8), labels=np.zeros(2, np.int64))
    done = subprocess.run([str(numpy2_python), str(kit / "edgecv_bench.py"), "--runs", "2", "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=kit, timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: no TFLite runtime could be loaded") and "cannot run a model" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()
