"""``edgecv npu``: the real Vela (a dependency) on tiny int8 models built in seconds, and the MLPerf int8 file when
the shared folder has it. Estimates must repeat exactly; every bad input is one line with its exit code."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPO
from edgecv.cli.app import app
from edgecv.device.vela import NpuConfig, compile_model, npu_report
from edgecv.errors import DataError

MLPERF = Path(REPO.parent / "shared" / "models" / "mlperf-tiny-resnet8" / "pretrainedResnet_quant.tflite")


def int8_graph(fn, path: Path, shape=(1, 8, 8, 3)) -> Path:
    """A full-integer TFLite file of ``fn`` (a conv first, so there is something for the NPU)."""
    from edgecv._tf import tf

    tf = tf()

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def f(x):
        return fn(tf, x)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    rng = np.random.default_rng(0)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


KERNEL = np.random.default_rng(1).random((3, 3, 3, 4), dtype=np.float32)


@pytest.fixture(scope="session")
def odd_models(tmp_path_factory):
    """REVERSE_V2 (Vela leaves it to the CPU, TFLite Micro runs it) and TOPK_V2 (neither runs it)."""
    folder = tmp_path_factory.mktemp("odd")
    conv = lambda tf, x: tf.nn.conv2d(x, KERNEL, 1, "SAME")  # noqa: E731
    return {
        "reverse": int8_graph(lambda tf, x: tf.reverse(conv(tf, x), axis=[2]), folder / "reverse.tflite"),
        "topk": int8_graph(lambda tf, x: tf.math.top_k(tf.reshape(conv(tf, x), [1, -1]), k=3).values,
                           folder / "topk.tflite"),
    }


def test_int8_model_compiles_onto_the_npu_with_an_estimate(tiny_tflite, tmp_path):
    estimate = compile_model(tiny_tflite["int8"], NpuConfig.U55_128, tmp_path)
    assert estimate.ops and all(o.target == "NPU" for o in estimate.ops) and estimate.cpu_ops == 0
    assert estimate.cycles_total >= estimate.cycles_npu > 0
    assert estimate.inferences_per_second == pytest.approx(estimate.clock_hz / estimate.cycles_total, rel=1e-3)
    assert estimate.sram_bytes > 0 and estimate.flash_bytes > 0 and estimate.macs > 0
    compiled = Path(estimate.compiled)
    assert compiled.name == "tiny_int8_ethos-u55-128_vela.tflite" and compiled.parent == tmp_path
    assert b"ethos-u" in compiled.read_bytes()  # the NPU part is one custom op
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no work folder left behind


def test_two_runs_give_identical_estimates(tiny_tflite, tmp_path):
    first, second = (compile_model(tiny_tflite["int8"], NpuConfig.U65_256, tmp_path / str(k)).to_dict()
                     for k in range(2))
    first.pop("compiled"), second.pop("compiled")
    assert first == second


def test_configurations_differ_as_the_hardware_does(tiny_tflite, tmp_path):
    report = npu_report(tiny_tflite["int8"], out_dir=tmp_path)  # the default pair
    u55, u65 = report.estimates
    assert (u55.accelerator, u65.accelerator) == ("ethos-u55-128", "ethos-u65-256")
    assert u65.clock_hz > u55.clock_hz  # Vela's default systems: 500 MHz embedded, 1 GHz client-server
    assert u55.weights_in != u65.weights_in  # flash on the embedded system, DRAM on the U65's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_int8_ethos-u55-128_vela.tflite",
                                                          "tiny_int8_ethos-u65-256_vela.tflite"]


def test_an_op_the_npu_lacks_goes_to_the_cpu_with_velas_reason(odd_models, tmp_path):
    estimate = npu_report(odd_models["reverse"], [NpuConfig.U55_128], tmp_path).estimates[0]
    cpu = estimate.cpu_placed
    assert [o.op for o in cpu] == ["REVERSE_V2"] and cpu[0].reason
    assert [o.op for o in estimate.ops if o.target == "NPU"] == ["CONV_2D"]


def test_an_op_neither_npu_nor_micro_runs_is_refused_and_nothing_is_written(odd_models, tmp_path):
    with pytest.raises(DataError, match="TOPK_V2.*neither on the Ethos-U NPU"):
        npu_report(odd_models["topk"], out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not MLPERF.is_file(), reason=f"the MLPerf Tiny int8 ResNet-8 is not at {MLPERF}")
def test_mlperf_resnet8_is_wholly_on_the_npu_and_repeats(tmp_path):
    a, b = (compile_model(MLPERF, NpuConfig.U55_128, tmp_path / str(k)) for k in range(2))
    assert all(o.target == "NPU" for o in a.ops) and len(a.ops) == 16
    assert (a.cycles_npu, a.cycles_total, a.sram_bytes, a.flash_bytes) == \
        (b.cycles_npu, b.cycles_total, b.sram_bytes, b.flash_bytes)
    assert 40 * 1024 < a.sram_bytes < 80 * 1024 and 60 * 1024 < a.flash_bytes < 100 * 1024  # ~78 KB of weights


# --- the command ---------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_json_and_files_beside_the_model(tiny_tflite, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_tflite["int8"].read_bytes())
    done = runner.invoke(app, ["npu", str(model), "-a", "ethos-u55-64", "--json"])
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert [e["accelerator"] for e in report["estimates"]] == ["ethos-u55-64"]
    assert report["estimates"][0]["boards"].startswith("Himax WE2")
    assert (tmp_path / "m_ethos-u55-64_vela.tflite").is_file()


def test_cli_table_names_the_cpu_op_and_the_boundary(odd_models, tmp_path):
    done = runner.invoke(app, ["npu", str(odd_models["reverse"]), "-o", str(tmp_path)])
    assert done.exit_code == 0, done.stderr
    assert "op 1 REVERSE_V2: CPU on ethos-u55-128, ethos-u65-256" in done.stdout
    assert "not a board" in done.stdout


def _one_line(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_cli_float_model_is_bad_input(tiny_tflite, tmp_path):
    done = runner.invoke(app, ["npu", str(tiny_tflite["float32"]), "-o", str(tmp_path)])
    assert done.exit_code == 2 and "is a float model" in _one_line(done) and "--mode int8" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_op_neither_runs_is_bad_input(odd_models, tmp_path):
    done = runner.invoke(app, ["npu", str(odd_models["topk"]), "-o", str(tmp_path)])
    assert done.exit_code == 2 and "TOPK_V2" in _one_line(done)


def test_cli_missing_vela_is_exit_3(tiny_tflite, monkeypatch):
    monkeypatch.setenv("EDGECV_VELA", "/nonexistent/vela")
    done = runner.invoke(app, ["npu", str(tiny_tflite["int8"])])
    assert done.exit_code == 3 and "EDGECV_VELA=/nonexistent/vela is not an executable" in _one_line(done)


def test_cli_missing_file_and_unknown_accelerator(tmp_path):
    missing = runner.invoke(app, ["npu", str(tmp_path / "none.tflite")])
    assert missing.exit_code == 2 and "does not exist" in _one_line(missing)
    wrong = runner.invoke(app, ["npu", str(tmp_path / "none.tflite"), "-a", "ethos-u99"])
    assert wrong.exit_code == 2 and "ethos-u55-128" in wrong.stderr


# --- in the flows: compress --npu --micro, search --objective npu-cycles, check --max-npu-cycles-ratio ----------


def test_search_ranks_int8_candidates_by_velas_cycles(tmp_path, tiny_tflite):
    from edgecv.config import Objective, QuantMode
    from edgecv.device.vela import estimate_into
    from edgecv.flows.search import Candidate, choose, to_markdown
    from edgecv.measure.report import StageResult

    wide = np.random.default_rng(2).random((3, 3, 3, 64), dtype=np.float32)
    files = {"narrow": int8_graph(lambda tf, x: tf.nn.conv2d(x, KERNEL, 1, "SAME"), tmp_path / "narrow.tflite",
                                  (1, 32, 32, 3)),
             "wide": int8_graph(lambda tf, x: tf.nn.conv2d(x, wide, 1, "SAME"), tmp_path / "wide.tflite", (1, 32, 32, 3)),
             "float": tiny_tflite["float32"]}
    candidates = [Candidate(name, 0.0, 0.0, QuantMode.FLOAT32 if name == "float" else QuantMode.INT8,
                            StageResult(name, accuracy=0.8, latency={"p50_ms": 1.0}, size_bytes=1000, images=10,
                                        model=path.name), drop=0.0) for name, path in files.items()]
    estimate_into([(files[c.name], c.result) for c in candidates], ["ethos-u55-128"])
    assert "float model" in candidates[2].result.details["npu_error"]
    narrow, wide_, floating = (c.cost(Objective.NPU_CYCLES) for c in candidates)
    assert floating is None and 0 < narrow < wide_  # 16x the output channels cost more cycles
    result = choose(candidates, StageResult("parent", accuracy=0.8, images=10), Objective.NPU_CYCLES, 1.0)
    assert result.chosen.name == "narrow" and "ethos-u55-128 cycles (Vela's estimate)" in to_markdown(result)


def test_compress_adds_npu_and_micro_to_the_int8_rows(image_folder, tmp_path):
    run = tmp_path / "run"
    done = runner.invoke(app, ["compress", "--data", str(image_folder), "--epochs", "1", "--batch-size", "16",
                               "--sparsity", "0", "--runs", "3", "--npu", "ethos-u55-128", "--npu", "ethos-u65-256",
                               "--micro", "--out", str(run), "-q", "--wide"])
    assert done.exit_code == 0, done.stderr
    stages = {s["stage"]: s for s in json.loads((run / "report.json").read_text())["stages"]}
    int8, float32 = stages["tflite int8"]["details"], stages["tflite float32"]["details"]
    assert list(k for k in int8["npu"] if k != "unit") == ["ethos-u55-128", "ethos-u65-256"]
    assert int8["npu"]["ethos-u55-128"]["cycles_total"] > 0 and int8["micro"]["arena_bytes"] > 0
    assert int8["micro"]["images"] == 30 and 0 <= int8["micro"]["agreement"] <= 1
    assert "npu" not in float32 and "micro" not in float32
    assert "ethos-u65-256 (Vela's estimate" in (run / "report.md").read_text()
    assert "NPU" in done.stdout and "arena" in done.stdout


def test_compress_npu_needs_int8(image_folder, tmp_path):
    done = runner.invoke(app, ["compress", "--data", str(image_folder), "--float16", "--npu", "ethos-u55-128",
                               "--out", str(tmp_path / "r"), "-q"])
    assert done.exit_code == 2 and "--npu makes int8 models" in _one_line(done)


@pytest.mark.parametrize("limit, code", [("1.0", 0), ("0.5", 1)])
def test_check_gates_on_npu_cycles(tiny_tflite, image_folder, limit, code):
    model = str(tiny_tflite["int8"])  # against itself: a ratio of exactly 1 on every configuration
    done = runner.invoke(app, ["check", model, "--reference", model, "--data", str(image_folder), "--runs", "3",
                               "--max-npu-cycles-ratio", limit, "--npu", "ethos-u55-128", "--npu", "ethos-u85-256",
                               "--json"])
    assert done.exit_code == code, done.stderr
    criteria = [c for c in json.loads(done.stdout)["criteria"] if c["name"].startswith("NPU cycles")]
    assert [c["measured"] for c in criteria] == [1.0, 1.0] and "ethos-u85-256" in criteria[1]["name"]


def test_check_npu_ratio_of_a_float_model_is_bad_input(tiny_tflite, image_folder):
    done = runner.invoke(app, ["check", str(tiny_tflite["float32"]), "--reference", str(tiny_tflite["int8"]),
                               "--data", str(image_folder), "--runs", "3", "--max-npu-cycles-ratio", "1.2"])
    assert done.exit_code == 2 and "is a float model" in _one_line(done)


def test_check_npu_ratio_without_vela_is_exit_3(tiny_tflite, image_folder, monkeypatch):
    monkeypatch.setenv("EDGECV_VELA", "/nonexistent/vela")
    done = runner.invoke(app, ["check", str(tiny_tflite["int8"]), "--reference", str(tiny_tflite["int8"]),
                               "--data", str(image_folder), "--runs", "3", "--max-npu-cycles-ratio", "1.2"])
    assert done.exit_code == 3 and "EDGECV_VELA" in _one_line(done)


def test_doctor_names_vela_and_tflite_micro(monkeypatch):
    from edgecv.device.doctor import micro_check, vela_check

    assert vela_check().status == "ok" and vela_check().value.startswith("5.2")
    assert micro_check().status == "ok"
    monkeypatch.setenv("EDGECV_VELA", "/nonexistent/vela")
    missing = vela_check()
    assert missing.status == "warn" and "edgecv npu needs it" in missing.note


def test_compress_without_vela_fails_before_training(image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECV_VELA", "/nonexistent/vela")
    done = runner.invoke(app, ["compress", "--data", str(image_folder), "--npu", "ethos-u55-128",
                               "--out", str(tmp_path / "r"), "-q"])
    assert done.exit_code == 3 and "EDGECV_VELA" in _one_line(done)
    assert not (tmp_path / "r" / "baseline.keras").exists()  # nothing was trained


def test_vela_not_installed_is_exit_3(tiny_tflite, monkeypatch):
    from edgecv.device import vela

    monkeypatch.delenv("EDGECV_VELA", raising=False)
    monkeypatch.setattr(vela, "find_spec", lambda name: None)  # as on a host without ethos-u-vela
    done = runner.invoke(app, ["npu", str(tiny_tflite["int8"])])
    assert done.exit_code == 3 and "Vela is not installed: pip install 'ethos-u-vela==5.2.*'" in _one_line(done)


def test_search_by_npu_cycles_end_to_end(image_folder, tmp_path):
    out = tmp_path / "search"
    done = runner.invoke(app, ["search", "--data", str(image_folder), "--epochs", "1", "--channels", "0,0.5",
                               "--sparsity", "0", "--modes", "int8,float32", "--objective", "npu-cycles",
                               "--finetune-epochs", "1", "--max-drop", "100", "--runs", "3", "--out", str(out), "-q"])
    assert done.exit_code == 0, done.stderr
    found = json.loads((out / "search.json").read_text())
    int8 = [c for c in found["candidates"] if c["mode"] == "int8"]
    assert all(c["result"]["details"]["npu"]["ethos-u55-128"]["cycles_total"] > 0 for c in int8)
    cycles = {c["name"]: c["result"]["details"]["npu"]["ethos-u55-128"]["cycles_total"] for c in int8}
    assert found["chosen"] == min(cycles, key=cycles.get) and "int8" in found["chosen"]  # float32 is never ranked
    assert (out / "best.tflite").is_file()
