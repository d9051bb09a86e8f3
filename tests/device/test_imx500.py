"""``edgecv imx500``: the real Sony toolchain (MCT and imxconv-tf in their own TF 2.15 venv, made from the
registry by edgecv's own code and kept in ``$EDGECV_TEST_VENVS/imx500`` or ``~/.cache/edgecv-test-venvs/imx500``
between runs; offline and without it, those tests skip and say why) on tiny models trained here in seconds.
Every bad input is one line with doctor's exit code, and leaves no output folder behind."""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import synthetic_images, write_image_folder
from edgecv.cli.app import app
from edgecv.errors import Unsupported

VENV = Path(os.environ.get("EDGECV_TEST_VENVS") or Path.home() / ".cache" / "edgecv-test-venvs") / "imx500"
CLASSES = ("left", "middle", "right")


@pytest.fixture(scope="module", autouse=True)
def _toolchain_venv():
    """The toolchain venv outlives the session's temporary cache: made once, reused by every run."""
    saved = os.environ.get("EDGECV_IMX500_VENV")
    os.environ["EDGECV_IMX500_VENV"] = str(VENV)
    yield
    if saved is None:
        os.environ.pop("EDGECV_IMX500_VENV", None)
    else:
        os.environ["EDGECV_IMX500_VENV"] = saved


@pytest.fixture(scope="module")
def java():
    from edgecv.device.imx500 import java_runtime

    try:
        return java_runtime()
    except Unsupported as e:
        pytest.skip(f"no Java for the IMX500 converter: {e}")


@pytest.fixture(scope="module")
def toolchain(java):
    from edgecv.device.imx500 import REQUIREMENTS, toolchain_python

    try:
        python, _ = toolchain_python()
    except Unsupported as e:
        pytest.skip(f"the IMX500 toolchain cannot be installed here (offline?): {e}")
    stamp = (VENV / "edgecv-requirements.txt").read_text().splitlines()
    assert stamp[1:] == list(REQUIREMENTS) and python == VENV / "bin" / "python"
    return python


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Clean labels: the gate test needs a float model that is right on every image."""
    x, y = synthetic_images(120, seed=21)
    xt, yt = synthetic_images(30, seed=22)
    return write_image_folder(tmp_path_factory.mktemp("imx500") / "images", x, y, xt, yt, CLASSES)


def run(*args):
    return CliRunner().invoke(app, ["imx500", *map(str, args)])


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def keras3_model(folder, tmp_path_factory):
    """A Keras 3 model taking raw pixels (Rescaling in front, as edgecv's and users' models do), trained briefly."""
    from edgecv._tf import keras3
    from edgecv.data.datasets import load

    k = keras3()
    k.utils.set_random_seed(0)
    data = load(folder)
    inputs = k.Input((16, 16, 3), name="pixels")
    x = k.layers.Rescaling(1 / 255)(inputs)
    x = k.layers.Conv2D(8, 3, activation="relu")(x)
    x = k.layers.MaxPooling2D()(x)
    x = k.layers.Flatten()(x)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(x))
    model.compile(k.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(data.x_train.astype(np.float32), data.y_train, epochs=8, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("k3") / "tiny3.keras"
    model.save(path)
    return path


@pytest.mark.imx500
def test_keras3_model_converts_with_its_accuracy_memory_and_tensors(toolchain, keras3_model, folder, tmp_path):
    from edgecv.compress.export import load_keras
    from edgecv.config import BenchConfig
    from edgecv.data.datasets import load
    from edgecv.measure.benchmark import scoring_images

    out = tmp_path / "out"
    done = run(keras3_model, "--data", folder, "--calibration-images", 16, "--test-images", 30, "-o", out, "--json")
    assert done.exit_code == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["handed_over"] == "tf-keras rebuild"
    assert result["folded"] and "Rescaling" in result["folded"]  # the converter refuses it; folding is exact
    # the float model TF 2.15 scored (rebuilt in tf-keras, Rescaling folded) is the user's Keras 3 model
    x, y = scoring_images(load(folder), BenchConfig(limit=30))
    mine = load_keras(keras3_model).predict(x.astype(np.float32), verbose=0).argmax(-1)
    assert result["float_accuracy"] == pytest.approx(float(np.mean(mine == y)))
    assert result["float_accuracy"] > 0.6 and result["test_images"] == 30 and result["calibration_images"] == 16
    assert result["drop_points"] <= 1.0  # the default gate passed, or the command would have failed
    assert result["fits"] and 0 < result["memory_bytes"] < result["available_bytes"] == 8 * 2**20
    assert result["memory_bytes"] >= result["model_bytes"] + result["runtime_bytes"]
    assert [t["shape"] for t in result["inputs"]] == [[16, 16, 3]] and result["inputs"][0]["bits"] == 8
    assert [t["shape"] for t in result["outputs"]] == [[3]]
    assert result["versions"]["model-compression-toolkit"] == "2.5.1" and result["versions"]["tensorflow"] == "2.15.1"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["dnnParams.xml", "imx500.json", "packerOut.zip", "tiny3_MemoryReport.json", "tiny3_imx500.keras"]
    assert zipfile.is_zipfile(out / "packerOut.zip") and zipfile.ZipFile(out / "packerOut.zip").namelist()
    report = json.loads((out / "tiny3_MemoryReport.json").read_text())["Memory Report"]
    assert report["Fit In Chip"] is True
    assert json.loads((out / "imx500.json").read_text()) == result
    # each image's top-1 is kept: the float model's are the user's Keras 3 model's, and ``check`` judges by them
    assert result["predictions"]["float"] == mine.tolist()
    assert result["imx500_accuracy"] == pytest.approx(float(np.mean(np.array(result["predictions"]["imx500"]) == y)))
    checked = CliRunner().invoke(app, ["check", str(out / "packerOut.zip"), "--measured-by", str(out / "imx500.json"),
                                       "--reference", str(keras3_model), "--data", str(folder), "--max-drop", "1",
                                       "--max-class-drop", "100", "--json"])
    assert checked.exit_code == 0, checked.stderr
    verdict = json.loads(checked.stdout)
    assert verdict["paired"]["images"] == 30 and verdict["paired"]["drop"] == pytest.approx(result["drop_points"])
    assert verdict["criteria"][-1]["name"] == "IMX500 memory"
    assert verdict["criteria"][-1]["measured"] == pytest.approx(result["memory_bytes"] / 1024)

    table = run(keras3_model, "--data", folder, "--calibration-images", 16, "--test-images", 30, "-o", out)
    assert table.exit_code == 0, table.stderr
    assert "tiny3.keras" in table.stdout and "16x16x3 uint8" in table.stdout and "8,192" in table.stdout


def tf_keras_model(build, path: Path) -> Path:
    from edgecv._tf import keras

    k = keras()
    inputs = k.Input((16, 16, 3), name="pixels")
    model = k.Model(inputs, build(k, inputs))
    model.save(path)
    return path


@pytest.mark.imx500
def test_a_layer_the_converter_refuses_is_one_line(toolchain, folder, tmp_path):
    def lstm(k, inputs):
        x = k.layers.Rescaling(1 / 255)(inputs)
        x = k.layers.Conv2D(4, 3, padding="same")(x)
        x = k.layers.LSTM(8)(k.layers.Reshape((16, 64))(x))
        return k.layers.Dense(3, activation="softmax")(x)

    model = tf_keras_model(lstm, tmp_path / "lstm.h5")
    out = tmp_path / "out"
    done = run(model, "--data", folder, "--calibration-images", 8, "--test-images", 30, "--max-drop", 100, "-o", out)
    assert done.exit_code == 2
    line = one_line(done)
    assert "imxconv-tf refused the model" in line and "LSTM" in line
    assert not out.exists()  # nothing half-written


@pytest.mark.imx500
def test_an_accuracy_drop_over_the_margin_fails_the_gate_before_converting(toolchain, folder, tmp_path):
    """A linear classifier whose three logits share a huge offset: softmax and argmax ignore it in float, but
    the 8-bit output tensor's step is then far wider than the logits' differences, so the IMX500 model guesses."""
    weights = np.zeros((16 * 16 * 3, 3), np.float32)
    band = np.zeros((16, 16, 3), bool)
    for label in range(3):
        band[:] = False
        band[:, label * 5:(label + 1) * 5, :] = True
        weights[band.reshape(-1), label] = 1.0
    weights += 1000.0  # the shared offset

    from edgecv._tf import keras

    k = keras()
    inputs = k.Input((16, 16, 3), name="pixels")
    logits = k.layers.Dense(3, name="logits")(k.layers.Flatten()(k.layers.Rescaling(1 / 255)(inputs)))
    built = k.Model(inputs, logits)
    built.get_layer("logits").set_weights([weights, np.zeros(3, np.float32)])
    model = tmp_path / "offset.h5"
    built.save(model)
    out = tmp_path / "out"
    done = run(model, "--data", folder, "--calibration-images", 32, "--test-images", 30, "--max-drop", 5, "-o", out)
    assert done.exit_code == 1, done.stderr
    line = one_line(done)
    assert "against the float model's 100.00 %" in line and "over --max-drop 5" in line and "nothing converted" in line
    assert not out.exists()


def test_no_java_is_one_line_before_any_work(keras3_model, folder, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    done = run(keras3_model, "--data", folder, "-o", tmp_path / "out")
    assert done.exit_code == 3
    assert "no Java runtime" in one_line(done) and "JAVA_HOME" in one_line(done)
    assert not (tmp_path / "out").exists()


def test_an_old_java_is_refused(tmp_path, monkeypatch):
    """A JAVA_HOME whose java says it is 11 (a script, standing in for an old JDK's launcher)."""
    from edgecv.device.imx500 import java_runtime

    home = tmp_path / "jdk11"
    (home / "bin").mkdir(parents=True)
    launcher = home / "bin" / "java"
    launcher.write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    launcher.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(home))
    with pytest.raises(Unsupported, match="is Java 11: the IMX500 converter needs Java 17"):
        java_runtime()


def test_a_model_over_8_mb_is_one_line_before_the_toolchain(java, folder, tmp_path):
    def big(k, inputs):
        x = k.layers.Dense(11000, activation="relu")(k.layers.Flatten()(k.layers.Rescaling(1 / 255)(inputs)))
        return k.layers.Dense(3, activation="softmax")(x)

    model = tf_keras_model(big, tmp_path / "big.h5")
    done = run(model, "--data", folder, "-o", tmp_path / "out")
    assert done.exit_code == 2
    line = one_line(done)
    assert f"{768 * 11000 + 11000 + 11000 * 3 + 3:,} parameters" in line and "over the IMX500's 8 MB" in line
    assert not (tmp_path / "out").exists()


def test_a_keras3_layer_tf_keras_cannot_rebuild_is_one_line(java, folder, tmp_path):
    from edgecv._tf import keras3

    k = keras3()
    inputs = k.Input((16, 16, 3))
    x = k.layers.Reshape((16, 48))(k.layers.Rescaling(1 / 255)(inputs))
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(k.layers.GRU(4)(x)))
    model.save(tmp_path / "gru.keras")
    done = run(tmp_path / "gru.keras", "--data", folder, "-o", tmp_path / "out")
    assert done.exit_code == 2
    line = one_line(done)
    assert "cannot go to the IMX500 toolchain (TensorFlow 2.15, Keras 2)" in line and "GRU" in line
    assert not (tmp_path / "out").exists()


def test_bad_options_are_one_line(keras3_model, folder, tmp_path):
    done = run(keras3_model, "--data", folder, "--gptq", "sometimes", "-o", tmp_path / "out")
    assert done.exit_code == 2 and "'sometimes' is not one of 'off', 'auto', 'on'" in one_line(done)
    done = run(keras3_model, "--data", folder, "--imx500-memory-kb", 9000, "-o", tmp_path / "out")
    assert done.exit_code == 2 and "over the IMX500's 8192 KB" in one_line(done)
    done = run(tmp_path / "missing.h5", "--data", folder)
    assert done.exit_code == 2 and "does not exist" in one_line(done)


def test_doctor_has_a_java_and_a_toolchain_line():
    from edgecv.device.doctor import diagnose

    diagnosis = diagnose()
    java, venv = diagnosis.check("java"), diagnosis.check("imx500 toolchain")
    assert java is not None and venv is not None
    assert java.status in ("ok", "warn") and venv.status == "ok"  # optional: never a failure
    assert str(VENV) in venv.value or "not made yet" in venv.value


# --- the AI Camera script, up to the missing camera (run with this host's Python: no picamera2, no camera) -----

SCRIPT = Path(__file__).resolve().parents[2] / "edgecv" / "device" / "imx500_camera.py"


def camera(*args, cwd=None, path=None):
    import subprocess
    import sys

    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def script_line(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_camera_script_exit_codes_are_edgecvs():
    import importlib.util

    from edgecv.errors import ExitCode

    spec = importlib.util.spec_from_file_location("edgecv_imx500", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert (script.EXIT_BAD_INPUT, script.EXIT_MISSING) == (ExitCode.BAD_INPUT, ExitCode.MISSING)


def test_camera_script_refuses_bad_arguments_in_one_line(tmp_path):
    assert camera("--help").returncode == 0
    done = camera("--frames", 0, cwd=tmp_path)
    assert done.returncode == 2 and "--frames must be >= 1" in script_line(done)
    done = camera("--package", tmp_path / "nothing.zip", cwd=tmp_path)
    assert done.returncode == 2 and "nothing.zip does not exist" in script_line(done)
    (tmp_path / "a.zip").write_bytes(b"PK")
    done = camera("--package", tmp_path / "a.zip", "--rpk", tmp_path / "a.zip", cwd=tmp_path)
    assert done.returncode == 2 and "not both" in script_line(done)
    done = camera("--package", tmp_path / "a.zip", "--out", tmp_path / "missing" / "r.json", cwd=tmp_path)
    assert done.returncode == 2 and "cannot write the result" in script_line(done)


def test_camera_script_label_must_be_one_of_the_kits_classes(tmp_path):
    np.savez(tmp_path / "samples.npz", images=np.zeros((1, 4, 4, 3), np.uint8), labels=np.zeros(1, np.int64),
             classes=np.array(CLASSES))
    (tmp_path / "network.rpk").write_bytes(b"rpk")
    done = camera("--rpk", tmp_path / "network.rpk", "--samples", tmp_path / "samples.npz", "--label", "dog",
                  cwd=tmp_path)
    assert done.returncode == 2 and "--label dog is not one of the model's classes (left, middle, right)" in \
        script_line(done)


def test_camera_script_without_imx500_package_or_picamera2_is_one_line_exit_3(tmp_path):
    import shutil as sh

    (tmp_path / "packerOut.zip").write_bytes(b"PK")
    assert sh.which("imx500-package") is None, "this test wants a host without Raspberry Pi OS's imx500-tools"
    done = camera("--package", tmp_path / "packerOut.zip", "--out", tmp_path / "r.json", cwd=tmp_path)
    assert done.returncode == 3 and "imx500-package is not installed: sudo apt install imx500-tools" in \
        script_line(done)
    (tmp_path / "network.rpk").write_bytes(b"rpk")
    done = camera("--rpk", tmp_path / "network.rpk", "--out", tmp_path / "r.json", cwd=tmp_path)
    assert done.returncode == 3
    line = script_line(done)
    assert "picamera2 with its IMX500 helper cannot be imported" in line and "python3-picamera2" in line
    assert not (tmp_path / "r.json").exists() and not list(tmp_path.glob(".result-*"))


def test_camera_result_is_the_device_schema_that_merge_reads(tmp_path, tiny_tflite, tiny_dataset):
    """Frames as the script records them (what only the camera can produce) go into the device scripts' JSON:
    edgecv's report reader and ``device merge`` take it beside the kit's host.json."""
    import importlib.util

    from edgecv.device.kit import make_kit, merge
    from edgecv.measure.report import Report

    spec = importlib.util.spec_from_file_location("edgecv_imx500", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    records = [{"interval_s": 1 / 30, "top1": int(i % 3 != 0), "dnn_ms": 4.0 + i % 2, "dsp_ms": 0.5} for i in range(30)]
    report = script.report_from_frames(records, "packerOut.zip", 1234, list(CLASSES), "middle", {"picamera2": "x"})
    stage = report["stages"][0]
    assert report["schema"] == "edgecv.report/1" and stage["format"] == "imx500"
    assert stage["accuracy"] == pytest.approx(20 / 30)  # frames whose top-1 is "middle" (class 1)
    assert stage["latency"]["p50_ms"] == pytest.approx(4.5) and stage["details"]["latency_is"].startswith("the camera")
    assert stage["details"]["frames_per_second"] == pytest.approx(30.0)
    unlabelled = script.report_from_frames([dict(r, dnn_ms=None) for r in records], "packerOut.zip", 1234)
    assert unlabelled["stages"][0]["accuracy"] is None
    assert unlabelled["stages"][0]["latency"]["p50_ms"] == pytest.approx(1000 / 30)  # no KPI: between frames
    with pytest.raises(ValueError, match="no frames"):
        script.report_from_frames([], "packerOut.zip", 1)

    package = tmp_path / "packerOut.zip"
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("network.fpk", b"\0")
    kit = make_kit([tiny_tflite["int8"]], tiny_dataset, tmp_path / "kit", samples=20, host_runs=5, imx500=package)
    assert (kit.path / "edgecv_imx500.py").read_bytes() == SCRIPT.read_bytes()
    assert (kit.path / "packerOut.zip").read_bytes() == package.read_bytes()
    assert "edgecv_imx500.py --package packerOut.zip" in (kit.path / "README.txt").read_text()
    result = tmp_path / "ai-camera.json"
    result.write_text(json.dumps(report))
    assert Report.load(result).stages[0].accuracy == pytest.approx(20 / 30)
    merged = merge([kit.host, result])
    assert merged.models == ["tiny_int8.tflite", "packerOut.zip"]
    with pytest.raises(Exception, match="not a packerOut.zip"):
        make_kit([tiny_tflite["int8"]], tiny_dataset, tmp_path / "kit2", imx500=tmp_path / "ai-camera.json")
    assert not (tmp_path / "kit2").exists()


def test_camera_script_keeps_to_python39():
    import subprocess
    import sys

    vermin = Path(sys.executable).with_name("vermin")
    done = subprocess.run([str(vermin), "-t=3.9-", "--violations", "--no-tips", str(SCRIPT)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.imx500
def test_compress_imx500_row_beside_the_tflite_rows_and_in_the_gate(toolchain, keras3_model, folder, tmp_path):
    out = tmp_path / "run"
    done = CliRunner().invoke(app, ["compress", "--model", str(keras3_model), "--data", str(folder), "--imx500",
                                    "--max-drop", "5", "--runs", "5", "--sparsity", "0", "-o", str(out), "--json"])
    assert done.exit_code == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    rows = {s["stage"]: s for s in report["stages"]}
    row, int8 = rows["imx500"], rows["tflite int8"]
    assert row["status"] == "ok" and row["model"] == "imx500/packerOut.zip" and row["images"] == int8["images"] == 30
    result = json.loads((out / "imx500" / "imx500.json").read_text())
    assert row["accuracy"] == result["imx500_accuracy"]
    assert result["float_accuracy"] == pytest.approx(rows["keras float"]["accuracy"])  # same images, same model
    gated = [(c["stage"], c["name"]) for c in report["gate"]["criteria"]]
    assert ("imx500", "IMX500 memory") in gated and report["gate"]["passed"]
    checked = CliRunner().invoke(app, ["check", str(out / "imx500" / "packerOut.zip"), "--measured-by",
                                       str(out / "report.json"), "--data", str(folder), "--max-drop", "5", "--json"])
    assert checked.exit_code == 0, checked.stderr
    assert json.loads(checked.stdout)["paired"]["candidate_accuracy"] == pytest.approx(row["accuracy"])


@pytest.mark.imx500
def test_search_target_imx500_picks_the_smallest_imx500_memory_within_the_drop(toolchain, keras3_model, folder,
                                                                                tmp_path):
    out = tmp_path / "search"
    done = CliRunner().invoke(app, ["search", "--model", str(keras3_model), "--data", str(folder), "--target",
                                    "imx500", "--channels", "0", "--sparsity", "0", "--max-drop", "5", "-o", str(out),
                                    "--json"])
    assert done.exit_code == 0, done.stderr
    result = json.loads((out / "search.json").read_text())
    assert result["objective"] == "imx500-memory" and result["chosen"] == "channels-0% sparsity-0% imx500"
    candidate = result["candidates"][0]["result"]
    made = json.loads((out / candidate["model"]).with_name("imx500.json").read_text())
    assert candidate["details"]["imx500"]["memory_bytes"] == made["memory_bytes"] and made["fits"]
    assert (out / "best_packerOut.zip").read_bytes() == (out / candidate["model"]).read_bytes()
    assert "IMX500 KB" in (out / "search.md").read_text()
    checked = CliRunner().invoke(app, ["check", str(out / "best_packerOut.zip"), "--measured-by",
                                       str(out / "search.json"), "--max-drop", "5", "--max-imx500-memory-kb", "1",
                                       "--json"])
    assert checked.exit_code == 1, checked.stderr  # no model fits in 1 KB: the chosen one is found by its bytes
    assert [c["name"] for c in json.loads(checked.stdout)["criteria"] if not c["passed"]] == ["IMX500 memory"]


def test_search_imx500_objective_and_target_go_together(folder, tmp_path):
    done = CliRunner().invoke(app, ["search", "--data", str(folder), "--objective", "imx500-memory", "-o",
                                    str(tmp_path / "s")])
    assert done.exit_code == 2 and "needs --target imx500" in done.stderr
    done = CliRunner().invoke(app, ["search", "--data", str(folder), "--target", "coral", "-o", str(tmp_path / "s")])
    assert done.exit_code == 2 and "--target takes tflite or imx500" in done.stderr
