"""The CLI's contract: one line on stderr and a meaningful exit code for bad input, tables for results."""

import json
import os
import stat
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgecv.cli.app import app

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_does_not_import_tensorflow():
    code = "import sys; from edgecv.cli.app import app; print([m for m in ('tensorflow', 'tf_keras') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def _commands():
    from edgecv.cli.app import COMMANDS, app as main_app

    return [[name] if owner is main_app else ["device", name] for owner, name, _ in COMMANDS]


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_help_shows_choices_and_no_value_for_flags(command):
    """A flag takes no value, so its help shows none; an option with a fixed set of values lists them."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output and "<str>" not in result.output, result.output


def test_emulate_help_lists_os_releases_and_cores():
    from edgecv.device.armcost import CPUS
    from edgecv.device.emulate import SUITES, PiCpu, PiOs

    assert {s.value for s in PiOs} == set(SUITES) and {c.value for c in PiCpu} == set(CPUS)
    out = runner.invoke(app, ["device", "emulate", "--help"], env={"COLUMNS": "200"}, terminal_width=200).output
    assert "trixie|bookworm" in out and "cortex-a76|cortex-a72|cortex-a53" in out
    refused = run("device", "emulate", "kit", "--cpu", "cortex-a99")
    assert refused.exit_code == 2 and "'cortex-a99' is not one of" in refused.output


def test_missing_data_path(tmp_path):
    assert_one_line_error(run("compress", "--data", tmp_path / "nope", "--out", tmp_path / "o"), 2, "does not exist")
    assert not (tmp_path / "o").exists()  # a refused run leaves no empty run folder behind


def test_a_refused_model_leaves_no_run_folder(tmp_path, image_folder, tiny_tflite):
    r = run("compress", "--data", image_folder, "--model", tiny_tflite["int8"], "--out", tmp_path / "o", "-q")
    assert_one_line_error(r, 2, "is not a Keras model")
    assert not (tmp_path / "o").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    refused = run("compress", "--data", image_folder, "--model", tiny_tflite["int8"], "--out", existing, "-q")
    assert refused.exit_code == 2 and existing.is_dir()  # a folder the user made stays


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("compress", "--data", tmp_path / "empty", "--out", tmp_path / "o"), 2, "holds no data set")


@pytest.mark.parametrize("value", ["1.0", "-0.5", "1.2"])
def test_sparsity_outside_range(tmp_path, image_folder, value):
    result = run("compress", "--data", image_folder, "--sparsity", value, "--out", tmp_path / "o")
    assert_one_line_error(result, 2, "sparsity must be in [0, 1)")


def test_model_that_is_not_keras(tmp_path, image_folder):
    bogus = tmp_path / "model.h5"
    bogus.write_text("hello")
    result = run("compress", "--data", image_folder, "--model", bogus, "--out", tmp_path / "o", "-q")
    assert_one_line_error(result, 2, "model.h5", "not a loadable Keras model")
    assert not (tmp_path / "o" / "baseline.keras").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_unwritable_out_non_root(tmp_path, image_folder):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert_one_line_error(run("compress", "--data", image_folder, "--out", locked / "run"), 2, "cannot write")


def test_out_that_is_a_file(tmp_path, image_folder):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run("compress", "--data", image_folder, "--out", blocker / "run"), 2, "cannot write")


def test_unknown_mode_fails_at_parse_time(tmp_path):
    result = run("quantize", tmp_path / "m.keras", "--mode", "int4")
    assert result.exit_code == 2 and "int4" in result.output + result.stderr


def test_benchmark_of_a_broken_tflite(tmp_path, image_folder):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3" + b"\x00" * 10)
    assert_one_line_error(run("benchmark", broken, "--data", image_folder, "-q"), 2, "broken.tflite")


def test_train_prune_quantize_benchmark_chain(tmp_path, image_folder):
    model, pruned = tmp_path / "m.keras", tmp_path / "p.keras"
    r = run("train", "--data", image_folder, "--epochs", "1", "--batch-size", "16", "--out", model, "-q")
    assert r.exit_code == 0, r.output + r.stderr
    assert "test accuracy" in r.stdout and model.is_file()
    r = run("prune", model, "--data", image_folder, "--sparsity", "0.5", "--epochs", "2", "--batch-size", "16",
            "--out", pruned, "-q")
    assert r.exit_code == 0, r.output + r.stderr
    assert "fc1" in r.stdout and "all kernels" in r.stdout
    r = run("quantize", pruned, "--mode", "int8", "--data", image_folder)
    assert r.exit_code == 0, r.output + r.stderr
    tflite = tmp_path / "p_int8.tflite"
    assert tflite.is_file() and "int8" in r.stdout
    out = tmp_path / "bench.json"
    r = run("benchmark", tflite, pruned, "--data", image_folder, "--runs", "10", "--output", out, "--json", "-q")
    assert r.exit_code == 0, r.output + r.stderr
    printed = json.loads(r.stdout)
    assert [s["stage"] for s in printed["stages"]] == ["p_int8", "p"]
    assert printed["stages"][0]["sparsity"] == pytest.approx(0.5, abs=0.05)
    assert json.loads(out.read_text())["stages"][0]["input"]["dtype"] == "int8"


def test_compress_prints_the_table(tmp_path, image_folder):
    out = tmp_path / "run"
    r = run("compress", "--int8", "--data", image_folder, "--epochs", "1", "--prune-epochs", "1", "--batch-size",
            "16", "--runs", "10", "--out", out, "-q")
    assert r.exit_code == 0, r.output + r.stderr
    for stage in ("keras float", "tflite float32", "tflite int8", "pruned float32", "pruned int8"):
        assert stage in r.stdout
    assert (out / "report.json").is_file() and "wrote" in r.stderr


def test_check_exit_codes(tmp_path, image_folder):
    run_dir = tmp_path / "run"
    r = run("compress", "--data", image_folder, "--epochs", "2", "--batch-size", "16", "--sparsity", "0", "--runs",
            "5", "--out", run_dir, "-q")
    assert r.exit_code == 0, r.stderr
    int8, parent = run_dir / "tflite_int8.tflite", run_dir / "tflite_float32.tflite"
    common = ["--data", image_folder, "--runs", "5", "-q"]
    ok = run("check", int8, "--reference", parent, "--max-drop", "50", *common)
    assert ok.exit_code == 0 and "passed" in ok.stdout
    bad = run("check", int8, "--reference", parent, "--max-drop", "50", "--max-size-kb", "0.5", *common)
    assert bad.exit_code == 1 and "FAIL by" in bad.stdout

    # the verdict for CI systems: JUnit XML and JSON, written also (above all) when the gate fails
    junit, verdict = tmp_path / "ci" / "edgecv.xml", tmp_path / "ci" / "edgecv.json"
    bad = run("check", int8, "--reference", parent, "--max-drop", "50", "--max-size-kb", "0.5", "--junit", junit,
              "-o", verdict, *common)
    assert bad.exit_code == 1
    import xml.etree.ElementTree as ET

    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and int(suite.get("failures")) == 1 and int(suite.get("tests")) == 2
    assert json.loads(verdict.read_text())["passed"] is False
    assert "McNemar p" in ok.stdout and "top-1 changed on" in ok.stdout  # the drop judged image by image

    baseline = tmp_path / "baseline.json"
    assert run("check", int8, "--baseline", baseline, "--update-baseline", *common).exit_code == 0
    assert run("check", int8, "--baseline", baseline, "--max-drop", "0", *common).exit_code == 0
    before = baseline.read_bytes()
    result = run("check", int8, "--baseline", baseline, "--limit", "10", *common)
    assert_one_line_error(result, 2, "other test images")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"nope")
    assert_one_line_error(run("check", broken, "--baseline", baseline, "--update-baseline", *common), 2, "broken.tflite")
    assert baseline.read_bytes() == before
    missing = run("check", int8, "--baseline", tmp_path / "none.json", *common)
    assert_one_line_error(missing, 2, "does not exist")


def test_compress_max_drop_gate_fails_the_run(tmp_path, image_folder):
    r = run("compress", "--data", image_folder, "--epochs", "1", "--batch-size", "16", "--sparsity", "0.9",
            "--prune-epochs", "1", "--runs", "5", "--max-drop", "0", "--out", tmp_path / "run", "-q", "--json")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["gate"]["max_drop"] == 0
    assert r.exit_code == (0 if report["gate"]["passed"] else 1)
    # a 100-point allowance always passes; its verdict as JUnit XML has one case per quantized stage
    r = run("compress", "--data", image_folder, "--epochs", "1", "--batch-size", "16", "--sparsity", "0",
            "--runs", "5", "--max-drop", "100", "--out", tmp_path / "run2", "--junit", tmp_path / "gate.xml", "-q")
    assert r.exit_code == 0 and "gate" in r.stdout
    import xml.etree.ElementTree as ET

    suite = ET.parse(tmp_path / "gate.xml").getroot()
    assert suite.get("failures") == "0" and [c.get("classname") for c in suite.iter("testcase")] == ["tflite int8"]


def test_output_files_are_checked_before_training(tmp_path, image_folder):
    r = run("train", "--data", image_folder, "--out", tmp_path / "model-without-suffix", "-q")
    assert_one_line_error(r, 2, "must end in .keras")


def test_patchnet_layout_options_are_one_line_errors_before_training(tmp_path, image_folder):
    out = tmp_path / "m.keras"
    assert_one_line_error(run("train", "--data", image_folder, "--arch", "resnet8", "--late-pool", "1", "--out", out),
                          2, "lay out patchnet; resnet8")
    assert_one_line_error(run("train", "--data", image_folder, "--arch", "patchnet", "--widths", "24,x", "--out",
                              out), 2, "--widths takes comma-separated whole numbers")
    assert_one_line_error(run("train", "--data", image_folder, "--arch", "patchnet", "--separable", "3", "--out",
                              out), 2, "--separable must be in [0, 2]")
    assert not out.exists()


def test_train_with_a_teacher(tmp_path, image_folder, tiny_trained):
    from edgecv.compress.export import save_keras
    from edgecv.train.models import build

    teacher, out = save_keras(tiny_trained.model, tmp_path / "teacher.keras"), tmp_path / "student.keras"
    assert_one_line_error(run("train", "--data", image_folder, "--distill", "0.5", "--out", out), 2,
                          "needs both a teacher and a weight")
    assert_one_line_error(run("train", "--data", image_folder, "--teacher", teacher, "--distill", "0.5", "--stream",
                              "--out", out), 2, "does not combine with --stream")
    cifar = save_keras(build("seed-cnn", (32, 32, 3), 10), tmp_path / "cifar.keras")
    assert_one_line_error(run("train", "--data", image_folder, "--teacher", cifar, "--distill", "0.5", "--out", out),
                          2, "takes (32, 32, 3)")
    assert not out.exists()
    r = run("train", "--data", image_folder, "--teacher", teacher, "--distill", "0.5", "--distill-temperature", "2",
            "--epochs", "1", "--batch-size", "16", "--out", out, "-q")
    assert r.exit_code == 0, r.output + r.stderr
    assert "test accuracy" in r.stdout and out.is_file()


def test_a_keras_model_that_does_not_fit_the_data(tmp_path, image_folder):
    from edgecv.compress.export import save_keras
    from edgecv.train.models import build

    path = save_keras(build("seed-cnn", (32, 32, 3), 10), tmp_path / "cifar.keras")
    for command in (["benchmark", path], ["prune", path, "--out", tmp_path / "p.keras"], ["quantize", path]):
        assert_one_line_error(run(*command, "--data", image_folder), 2, "takes (32, 32, 3)")


def test_option_errors_are_one_line_from_the_console_script(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgecv", "compress", "--runs", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and "--runs" in lines[0]


@pytest.mark.parametrize("args, message", [
    (["--qat", "--clusters", "8"], "cannot combine"),
    (["--clusters", "1"], ">= 2"),
    (["--sparse", "--sparsity", "0"], "no zeros"),
    (["--keep-float", "fc1", "--keep-float-worst", "1"], "cannot combine"),
    (["--float16", "--qat"], "add --int8"),
])
def test_techniques_that_cannot_combine(tmp_path, image_folder, args, message):
    assert_one_line_error(run("compress", "--data", image_folder, "--out", tmp_path / "o", *args), 2, message)


def test_keep_float_names_a_layer_that_does_not_exist(tmp_path, image_folder):
    r = run("quantize", tmp_path / "none.keras", "--keep-float", "fc9", "--mode", "float16")
    assert_one_line_error(r, 2, "--keep-float")


def test_quantize_names_the_io_type_in_its_file_and_line(tmp_path, image_folder, tiny_trained):
    from edgecv.compress.export import save_keras

    model = save_keras(tiny_trained.model, tmp_path / "m.keras")
    plain = run("quantize", model, "--data", image_folder)
    edge = run("quantize", model, "--io-type", "uint8", "--data", image_folder)
    assert plain.exit_code == 0 and edge.exit_code == 0, plain.output + edge.output
    assert (tmp_path / "m_int8.tflite").is_file() and (tmp_path / "m_int8_uint8_io.tflite").is_file()
    assert "uint8 input and output" in edge.stdout and "int8 input and output" in plain.stdout


def test_quantize_flip_average_writes_its_own_file_and_refuses_layer_choices(tmp_path, image_folder, tiny_trained):
    from edgecv.compress.export import save_keras

    model = save_keras(tiny_trained.model, tmp_path / "m.keras")
    done = run("quantize", model, "--flip-average", "--data", image_folder)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "m_int8_flipavg.tflite").is_file() and not (tmp_path / "m_int8.tflite").exists()
    assert "two inferences per image" in done.stdout and "mirror" in done.stdout
    # for the Edge TPU the mirror is the matrix, which it runs, whatever its share of the work
    edgetpu = run("quantize", model, "--flip-average", "--io-type", "uint8", "--data", image_folder)
    assert edgetpu.exit_code == 0 and "matrix mirror" in edgetpu.stdout, edgetpu.output
    assert (tmp_path / "m_int8_uint8_io_flipavg.tflite").is_file()
    assert_one_line_error(run("quantize", model, "--flip-average", "--mode", "mixed", "--data", image_folder), 2,
                          "does not combine with --keep-float or --mode mixed")


def test_edgetpu_fails_a_float_model(tiny_tflite):
    r = run("edgetpu", tiny_tflite["float32"])
    assert r.exit_code == 1 and "--io-type uint8" in r.stderr
    assert run("edgetpu", tiny_tflite["int8"]).exit_code == 0


def test_compress_table_fits_80_columns_and_wide_shows_all(tmp_path, image_folder):
    from edgecv.measure.report import COLUMNS

    args = ["compress", "--data", image_folder, "--epochs", "1", "--batch-size", "16", "--sparsity", "0", "--runs",
            "5", "--out", tmp_path / "run", "-q"]
    compact = run(*args)
    assert compact.exit_code == 0, compact.output
    table = [line for line in compact.stdout.splitlines() if "│" in line or "┃" in line]
    assert table and max(len(line) for line in table) <= 80, compact.stdout
    wide = run(*args, "--wide")
    header = next(line for line in wide.stdout.splitlines() if "stage" in line)
    assert all(name.split()[0] in header for name, _ in COLUMNS), header
    assert "tflite float32" in wide.stdout and "reused from an earlier run" in wide.stderr  # the rerun said so


def test_doctor_says_one_line_per_fact_and_fails_a_missing_edge_tpu():
    ok = run("doctor")
    assert ok.exit_code == 0, ok.output
    lines = [line for line in ok.stdout.splitlines() if line.strip()]
    assert any(line.split()[1] == "ai_edge_litert" for line in lines) and any(" isa " in f" {line} " for line in lines)
    assert all(line.split()[0] in ("ok", "warn", "fail") for line in lines)
    from edgecv import runtime as rt

    if rt.libedgetpu_version() or rt.edgetpu_devices():
        return  # a machine with an Edge TPU: nothing is missing to report
    tpu = run("doctor", "--edgetpu", "--json")
    checks = {c["name"]: c["status"] for c in json.loads(tpu.stdout)["checks"]}
    assert checks["libedgetpu"] == "fail" and checks["edgetpu device"] == "fail" and tpu.exit_code == 3


def test_quantize_mixed_lists_each_layer_and_its_bits(tmp_path, image_folder, tiny_trained):
    from edgecv.compress.export import save_keras

    model = save_keras(tiny_trained.model, tmp_path / "m.keras")
    r = run("quantize", model, "--mode", "mixed", "--mixed-max-drop", "100", "--data", image_folder)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m_mixed.tflite").is_file() and "made by litert-quantizer" in r.stdout
    assert "weight layers at int4" in r.stdout and "int4 rounding" in r.stdout
    refused = run("quantize", model, "--mode", "mixed", "--io-type", "uint8", "--data", image_folder)
    assert_one_line_error(refused, 2, "cannot write uint8")


def _keras3_cnn(path, size: int):
    """A Keras 3 model built for another input size than the data's, as users bring them."""
    from edgecv._tf import keras3

    k = keras3()
    inputs = k.Input((size, size, 3))
    h = k.layers.Conv2D(4, 3, activation="hard_silu")(k.layers.Rescaling(1 / 255.0)(inputs))
    k.Model(inputs, k.layers.Dense(3, activation="softmax")(k.layers.GlobalAveragePooling2D()(h))).save(path)
    return path


def test_a_model_of_another_input_size_is_told_about_image_size(tmp_path, image_folder):
    model = _keras3_cnn(tmp_path / "big.keras", 24)
    assert_one_line_error(run("benchmark", model, "--data", image_folder), 2,
                          "takes (24, 24, 3) inputs but the data set's images are (16, 16, 3): pass --image-size 24")
    result = run("benchmark", model, "--data", image_folder, "--image-size", 24, "--runs", 3, "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["stages"][0]  # stdout is the JSON alone: nothing Keras printed in between
    assert row["images"] == 30 and row["format"] == "keras" and row["macs"] > 0


def test_an_image_size_the_data_cannot_be_resized_to_is_one_line(tmp_path, image_folder):
    model = _keras3_cnn(tmp_path / "big.keras", 24)
    assert_one_line_error(run("quantize", model, "--data", image_folder, "--image-size", 4), 2,
                          "--image-size must be 8 to 1024 pixels, got 4")
    target = tmp_path / "big_int8.tflite"
    result = run("quantize", model, "--data", image_folder, "--image-size", 24)
    assert result.exit_code == 0, result.output
    assert target.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _app_raising(error):
    import typer

    from edgecv.cli.app import cli_errors

    def boom():
        raise error

    tiny = typer.Typer()
    tiny.command()(cli_errors(boom))
    return tiny


def test_an_error_native_code_raised_for_a_signal_is_the_interrupt(monkeypatch):
    from edgecv import errors

    # what TensorFlow's pybind11 layer raised when SIGTERM landed inside its Python callback
    native = RuntimeError("MISMATCH of original and normalized active exception types")
    monkeypatch.setattr(errors, "_interrupts", [15])
    result = runner.invoke(_app_raising(native), [])
    assert_one_line_error(result, 130, "interrupted")
    monkeypatch.setattr(errors, "_interrupts", [])
    result = runner.invoke(_app_raising(native), [])
    assert result.exit_code == 1 and result.exception is native  # without a signal, a bug keeps its traceback
