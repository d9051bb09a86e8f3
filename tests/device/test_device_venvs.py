"""The device script in isolated virtual environments, as on a Pi: numpy and one TFLite runtime, no TensorFlow.

The environments are made by the test from the package registry and kept between runs (in
``$EDGECV_TEST_VENVS`` or ``~/.cache/edgecv-test-venvs``, rebuilt when their requirements change); offline and
without them, the test skips and says why.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecv.cli.app import app
from edgecv.config import BenchConfig, CompressConfig, Optimizer, PruneConfig, TrainConfig
from edgecv.device.kit import make_kit
from edgecv.flows.pipeline import compress

pytestmark = pytest.mark.device_venv

RUNTIMES = {
    # the last tflite-runtime, built for numpy 1.x; what older Pis and Coral boards carry
    "tflite_runtime": ["tflite-runtime==2.14.0", "numpy<2"],
    # its maintained successor, with numpy 2
    "ai_edge_litert": ["ai-edge-litert==2.3.*", "numpy>=2"],
}


def isolated_python(name: str) -> Path:
    root = Path(os.environ.get("EDGECV_TEST_VENVS") or Path.home() / ".cache" / "edgecv-test-venvs") / name
    stamp = root / "edgecv-requirements.txt"
    python = root / "bin" / "python"
    wanted = "\n".join(RUNTIMES[name])
    if stamp.is_file() and stamp.read_text() == wanted and python.exists():
        return python
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *RUNTIMES[name]],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not install {' '.join(RUNTIMES[name])} (offline?): {done.stderr.strip()[-300:]}")
    stamp.write_text(wanted)
    return python


@pytest.fixture(scope="module")
def pipeline_kit(tmp_path_factory):
    """A kit around the int8 model that the real pipeline makes from a small image folder."""
    from conftest import synthetic_images, write_image_folder

    base = tmp_path_factory.mktemp("venv-kit")
    x, y = synthetic_images(90, seed=11)
    folder = write_image_folder(base / "images", x[:60], y[:60], x[60:], y[60:], ("left", "middle", "right"))
    run = base / "run"
    report = compress(CompressConfig(
        out=run, data=str(folder), train=TrainConfig(epochs=2, batch_size=16, optimizer=Optimizer.ADAM, learning_rate=3e-3),
        prune=PruneConfig(sparsity=0.0), bench=BenchConfig(warmup=1, runs=5)))
    from edgecv.data.datasets import load

    kit = make_kit([run / "tflite_int8.tflite"], load(folder), base / "kit", samples=30)
    return kit.path, run, report


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_device_script_in_an_isolated_environment(runtime, pipeline_kit, tmp_path):
    python = isolated_python(runtime)
    kit, run, host = pipeline_kit
    no_tf = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True)
    assert no_tf.returncode != 0, "the device environment must not have TensorFlow"
    out = tmp_path / f"{runtime}.json"
    done = subprocess.run([str(python), str(kit / "edgecv_bench.py"), "--runs", "20", "--out", str(out)],
                          capture_output=True, text=True, cwd=kit, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["environment"]["runtime"]["name"] == runtime
    numpy_major = int(result["environment"]["numpy"].split(".")[0])
    assert numpy_major == (1 if runtime == "tflite_runtime" else 2)
    stage = result["stages"][0]
    assert stage["model"] == "tflite_int8.tflite" and stage["input"]["dtype"] == "int8"
    assert stage["accuracy"] > 0.5 and stage["latency"]["p50_ms"] > 0

    merged = CliRunner().invoke(app, ["device", "merge", str(run / "report.json"), str(out), "--json"])
    assert merged.exit_code == 0, merged.stderr
    rows = {m["model"]: m["results"] for m in json.loads(merged.stdout)["models"]}
    device_cells = [cell for cell in rows["tflite_int8.tflite"].values() if cell is not None]
    assert len(device_cells) == 2  # the host's row and this runtime's
