"""Device kits, the device script (run for real in a subprocess) and merged reports."""

import filecmp
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgecv import runtime as rt
from edgecv.device.kit import make_kit, merge, plot_merged
from edgecv.errors import DataError
from edgecv.measure.report import Report

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

REPO = Path(__file__).resolve().parents[2]


def test_device_script_is_the_runtime_module_byte_for_byte():
    assert filecmp.cmp(REPO / "tools" / "edgecv_bench.py", REPO / "edgecv" / "runtime.py", shallow=False), (
        "tools/edgecv_bench.py drifted from edgecv/runtime.py: cp edgecv/runtime.py tools/edgecv_bench.py")


def test_device_script_keeps_to_python37():
    vermin = Path(sys.executable).with_name("vermin")  # the console script installed beside this Python
    done = subprocess.run([str(vermin), "-t=3.7-", "--violations", "--no-tips", str(REPO / "tools" / "edgecv_bench.py")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def kit(tiny_tflite, tiny_dataset, tmp_path):
    return make_kit([tiny_tflite["int8"], tiny_tflite["float32"]], tiny_dataset, tmp_path / "kit", samples=40)


def test_kit_holds_models_samples_script_and_steps(kit, tiny_tflite):
    folder = kit.path
    names = {p.name for p in folder.iterdir()}
    assert names == {"tiny_int8.tflite", "tiny_float32.tflite", "samples.npz", "edgecv_bench.py", "kit.json", "README.txt",
                     "host.json"}
    # the host, scored on the kit's own images: what a device result is merged with
    host = json.loads((folder / "host.json").read_text())
    assert host["data"]["test_fingerprint"] == json.loads((folder / "kit.json").read_text())["data"]["test_fingerprint"]
    assert [s["model"] for s in host["stages"]] == ["tiny_int8.tflite", "tiny_float32.tflite"]
    assert all(s["images"] == 40 for s in host["stages"]) and kit.host == folder / "host.json"
    assert filecmp.cmp(folder / "edgecv_bench.py", rt.__file__, shallow=False)
    samples = rt.load_samples(folder / "samples.npz")
    assert samples["images"].shape == (40, 16, 16, 3) and samples["labels"].shape == (40,)
    model = rt.TFLiteModel(tiny_tflite["int8"])
    prepared = samples[rt.sample_key("tiny_int8.tflite")]
    assert prepared.dtype == np.int8 and np.array_equal(prepared, model.prepare(samples["images"]))
    assert samples[rt.sample_key("tiny_float32.tflite")].dtype == np.float32
    manifest = json.loads((folder / "kit.json").read_text())
    assert manifest["data"]["test_images"] == 40 and manifest["models"] == ["tiny_int8.tflite", "tiny_float32.tflite"]
    readme = (folder / "README.txt").read_text()
    assert "--edgetpu" in readme and "tflite-runtime" in readme and "edgecv device merge" in readme


def test_kit_archive(tiny_tflite, tiny_dataset, tmp_path):
    kit = make_kit([tiny_tflite["int8"]], tiny_dataset, tmp_path / "k", samples=10, archive=True)
    assert kit.path.name == "k.tar.gz"
    with tarfile.open(kit.path) as tar:
        assert "k/edgecv_bench.py" in tar.getnames() and "k/samples.npz" in tar.getnames()


@pytest.mark.parametrize("name, content", [("model.onnx", b"x"), ("junk.tflite", b"\0" * 16)])
def test_kit_refuses_what_is_not_a_tflite_model(tiny_dataset, tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(DataError):
        make_kit([bad], tiny_dataset, tmp_path / "kit")


def run_script(kit_dir, *args, python=sys.executable):
    return subprocess.run([python, str(kit_dir / "edgecv_bench.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=kit_dir, timeout=300)


def test_device_script_runs_and_its_json_is_read_by_the_host(kit, tiny_dataset, tiny_tflite, tmp_path):
    out = tmp_path / "device.json"
    done = run_script(kit.path, "--runs", "20", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "tiny_int8.tflite" in done.stdout
    report = Report.load(out)  # the host's own reader
    assert [s.model for s in report.stages] == ["tiny_float32.tflite", "tiny_int8.tflite"]
    device = report.environment["device"]
    assert device["hostname"] and "before" in device and "after" in device
    assert report.data["test_images"] == 40
    # the device's accuracy is the host's on the same images
    host = rt.benchmark_tflite(tiny_tflite["int8"], rt.load_samples(kit.path / "samples.npz")["images"],
                               rt.load_samples(kit.path / "samples.npz")["labels"], runs=5)
    assert report.stages[1].accuracy == host["accuracy"]


def test_device_script_errors_are_one_line_with_exit_codes(kit, tmp_path):
    missing = run_script(kit.path, "--samples", tmp_path / "none.npz")
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error:") and "none.npz" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "edgecv_bench.py").write_bytes((kit.path / "edgecv_bench.py").read_bytes())
    nothing = run_script(empty)
    assert nothing.returncode == 2 and "no .tflite model" in nothing.stderr
    tpu = run_script(kit.path, "--edgetpu", "--runs", "2", "--out", tmp_path / "tpu.json")
    assert tpu.returncode == 3 and "Edge TPU delegate" in tpu.stderr and "Traceback" not in tpu.stderr
    assert not (tmp_path / "tpu.json").exists()
    (tmp_path / "bad.npz").write_bytes(b"not npz")
    bad = run_script(kit.path, "--samples", tmp_path / "bad.npz")
    assert bad.returncode == 2 and "cannot read sample file" in bad.stderr


def test_device_facts_are_read_or_none():
    state = rt.thermal_state()
    assert set(state) == {"cpu_celsius", "throttled"}
    assert state["cpu_celsius"] is None or 0 < state["cpu_celsius"] < 130
    env = rt.device_info(rt.find_runtime(), 1)
    board = Path("/proc/device-tree/model")
    assert env["device"]["board"] == (board.read_bytes().decode().strip("\x00 \n") if board.exists() else None)


def test_known_bad_edgetpu_pairings_are_named():
    runtime = rt.Runtime("tflite_runtime", "2.14.0", None, None)
    assert "2.5.0.post1" in rt.pairing_warning(runtime, {"package": "libedgetpu1-std", "version": "16.0"})
    assert rt.pairing_warning(rt.Runtime("tflite_runtime", "2.5.0.post1", None, None),
                              {"package": "libedgetpu1-std", "version": "16.0"}) is None
    assert "tflite_runtime" in rt.pairing_warning(rt.Runtime("tensorflow", "2.21.0", None, None), None)


def test_merge_puts_host_and_device_side_by_side(kit, tiny_tflite, tiny_dataset, tmp_path):
    from edgecv.measure.benchmark import benchmark_files
    from edgecv.config import BenchConfig

    host = benchmark_files([tiny_tflite["int8"]], tiny_dataset, BenchConfig(warmup=1, runs=5))
    host.save(tmp_path / "host.json")
    assert run_script(kit.path, "--runs", "5", "--out", tmp_path / "dev.json").returncode == 0
    merged = merge([tmp_path / "host.json", tmp_path / "dev.json"])
    assert len(merged.devices) == 2 and merged.models == ["tiny_int8.tflite", "tiny_float32.tflite"]
    assert merged.cell(merged.devices[0], "tiny_float32.tflite") is None  # the host did not run it
    assert merged.cell(merged.devices[1], "tiny_int8.tflite").accuracy is not None
    d = merged.to_dict()
    assert d["models"][0]["results"][merged.devices[1].label]["p50_ms"] > 0
    assert plot_merged(merged, tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DataError):
        merge([tmp_path / "missing.json"])


def test_kit_refuses_twin_names_and_drops_stale_models(tiny_tflite, tiny_dataset, tmp_path):
    twin = tmp_path / "other" / "tiny_int8.tflite"
    twin.parent.mkdir()
    twin.write_bytes(tiny_tflite["int8"].read_bytes())
    with pytest.raises(DataError, match="share a file name"):
        make_kit([tiny_tflite["int8"], twin], tiny_dataset, tmp_path / "kit")
    make_kit([tiny_tflite["int8"], tiny_tflite["float32"]], tiny_dataset, tmp_path / "kit", samples=5)
    make_kit([tiny_tflite["int8"]], tiny_dataset, tmp_path / "kit", samples=5)
    assert sorted(p.name for p in (tmp_path / "kit").glob("*.tflite")) == ["tiny_int8.tflite"]


def test_kit_archive_name_is_taken_as_given(tiny_tflite, tiny_dataset, tmp_path):
    kit = make_kit([tiny_tflite["int8"]], tiny_dataset, tmp_path / "kit.v2.tar.gz", samples=5, archive=True)
    assert kit.path == tmp_path / "kit.v2.tar.gz" and (tmp_path / "kit.v2").is_dir()


def test_device_script_checks_its_output_folder_first(kit, tmp_path):
    done = run_script(kit.path, "--out", tmp_path / "missing" / "x.json")
    assert done.returncode == 2 and "cannot write the result" in done.stderr and "benchmarking" not in done.stderr
    (kit.path / "kit.json").write_text("{broken")
    bad = run_script(kit.path, "--out", tmp_path / "y.json")
    assert bad.returncode == 2 and "kit.json" in bad.stderr


def test_merge_refuses_malformed_results(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": [1]}')
    with pytest.raises(DataError, match="not an edgecv report"):
        merge([bad])
