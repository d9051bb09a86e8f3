"""The benchmark core that also runs on devices: numpy and a TFLite runtime only, Python 3.7 syntax."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecv import runtime as rt

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

RUNTIME_FILE = Path(rt.__file__)


def test_runtime_module_is_python37_syntax():
    tree = ast.parse(RUNTIME_FILE.read_text(), feature_version=(3, 7))  # a SyntaxError fails the test
    assert any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def test_runtime_module_imports_nothing_from_edgecv_or_tensorflow():
    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('devrt', r'{RUNTIME_FILE}')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "r = m.find_runtime()\n"
        "print(r.name, 'tensorflow' in sys.modules, any(k.startswith('edgecv') for k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["ai_edge_litert", "False", "False"]


def test_unknown_runtime_is_named_in_the_error():
    with pytest.raises(rt.RuntimeMissing, match="nope"):
        rt.find_runtime("nope")


def test_inputs_are_quantized_with_the_models_own_parameters(tiny_tflite):
    model = rt.TFLiteModel(tiny_tflite["int8"])
    scale, zero_point = model.input["quantization"]
    pixels = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    q = model.prepare(pixels)
    assert q.dtype == np.int8
    expected = np.clip(np.round(pixels / scale + zero_point), -128, 127)
    assert np.array_equal(q, expected.astype(np.int8))
    float_model = rt.TFLiteModel(tiny_tflite["float32"])
    assert float_model.prepare(pixels).dtype == np.float32


def test_tflite_accuracy_matches_keras(tiny_tflite, tiny_trained, tiny_dataset):
    model = rt.TFLiteModel(tiny_tflite["float32"])
    accuracy, predictions = rt.measure_accuracy(model, model.prepare(tiny_dataset.x_test), tiny_dataset.y_test)
    keras_predictions = np.argmax(tiny_trained.model.predict(tiny_dataset.x_test, verbose=0), axis=1)
    assert np.mean(predictions == keras_predictions) >= 0.98
    assert accuracy == pytest.approx(tiny_trained.test_accuracy, abs=0.02)
    scores = model.scores(tiny_dataset.x_test)
    np.testing.assert_allclose(scores, tiny_trained.model.predict(tiny_dataset.x_test, verbose=0), atol=1e-4)
    assert np.array_equal(np.argmax(scores, axis=1), predictions)


def test_latency_summary_is_ordered_and_counts_runs(tiny_tflite, tiny_dataset):
    model = rt.TFLiteModel(tiny_tflite["int8"])
    steps = []
    latency = rt.measure_latency(model, model.prepare(tiny_dataset.x_test), warmup=3, runs=60,
                                 on_step=lambda d, t: steps.append((d, t)))
    assert latency["runs"] == 60 and latency["warmup"] == 3
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
    assert latency["first_ms"] > 0
    assert steps[-1] == (60, 60)


class _Logged:
    """A real interpreter that notes, in a shared log, each timed invoke (set_input marks them all)."""

    def __init__(self, model, name, log):
        self.model, self.name, self.log = model, name, log

    def set_input(self, one):
        self.model.set_input(one)

    def invoke(self):
        self.log.append(self.name)
        self.model.invoke()


def test_models_timed_in_turns_rotate_their_order_round_by_round(tiny_tflite, tiny_dataset):
    log = []
    models = [rt.TFLiteModel(tiny_tflite[mode]) for mode in ("float32", "int8")]
    prepared = [m.prepare(tiny_dataset.x_test[:10]) for m in models]
    logged = [_Logged(m, name, log) for m, name in zip(models, "ab")]
    results = rt.measure_latency_in_turns(logged, prepared, rounds=4, runs=5, warmup=2)
    timed = log[4:]  # after two warm-up invokes each
    blocks = ["".join(timed[i:i + 5]) for i in range(0, len(timed), 5)]
    assert blocks == ["aaaaa", "bbbbb", "bbbbb", "aaaaa", "aaaaa", "bbbbb", "bbbbb", "aaaaa"]
    for r in results:
        assert r["runs"] == 20 and r["rounds"] == 4 and len(r["round_p50_ms"]) == 4
        assert 0 < r["p50_ms"] <= r["p99_ms"] and min(r["round_p50_ms"]) > 0
    with pytest.raises(ValueError, match="one prepared input array per model"):
        rt.measure_latency_in_turns(models, prepared[:1])


def test_turn_ratio_is_the_median_of_the_per_round_ratios():
    candidate = {"round_p50_ms": [1.0, 3.0, 2.0, 8.0]}
    reference = {"round_p50_ms": [2.0, 2.0, 2.0, 2.0]}
    assert rt.turn_ratio(candidate, reference) == {"ratio": 1.25, "lowest": 0.5, "highest": 4.0, "rounds": 4}


def test_weight_stats_skip_shape_constants_and_read_float16(tiny_dataset):
    from edgecv._tf import keras
    from edgecv.compress.quantize import calibration_images, convert

    L = keras().layers
    inputs = keras().Input((16, 16, 3))
    x = L.Conv2D(4, 3)(inputs)
    x = L.Cropping2D(2)(x)  # a STRIDED_SLICE or SLICE with begin/end/size constants
    x = L.ZeroPadding2D(1)(x)  # a PAD with a paddings constant of rank 2
    model = keras().Model(inputs, L.Dense(3)(L.Flatten()(x)))
    rng = np.random.default_rng(0)  # non-zero biases: the converter drops an all-zero bias
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    for mode in ("float32", "float16", "int8"):
        content = convert(model, mode, calibration_images(tiny_dataset, 10))
        params, _ = rt.weight_stats(rt.TFLiteModel(content=content, plain=True).interpreter)
        assert params == model.count_params(), mode


def test_weight_stats_count_the_keras_parameters(tiny_tflite, tiny_trained):
    for mode in ("float32", "int8"):
        params, sparsity = rt.weight_stats(rt.TFLiteModel(tiny_tflite[mode]).interpreter)
        assert params == tiny_trained.model.count_params(), mode
        assert 0 <= sparsity < 0.05


def test_benchmark_record_is_complete(tiny_tflite, tiny_dataset):
    record = rt.benchmark_tflite(tiny_tflite["int8"], tiny_dataset.x_test, tiny_dataset.y_test, warmup=2, runs=20)
    assert record["format"] == "tflite" and record["images"] == len(tiny_dataset.y_test)
    assert record["input"]["dtype"] == "int8"
    size = tiny_tflite["int8"].stat().st_size
    assert record["size_bytes"] == size and 0 < record["gzip_bytes"] < size
    assert record["runtime"]["name"] == "ai_edge_litert" and record["runtime"]["version"]


def test_records_carry_macs_and_peak_memory(tiny_tflite, tiny_dataset):
    records = {mode: rt.benchmark_tflite(tiny_tflite[mode], tiny_dataset.x_test, tiny_dataset.y_test, warmup=1, runs=5)
               for mode in ("float32", "int8")}
    macs = 14 * 14 * 32 * 27 + 5 * 5 * 64 * 288 + 256 * 128 + 128 * 3  # seed-cnn on 16x16 images, 3 classes
    for record in records.values():
        assert record["macs"] == macs
        assert record["details"]["macs_by_op"] == {"CONV_2D": macs - 256 * 128 - 128 * 3,
                                                   "FULLY_CONNECTED": 256 * 128 + 128 * 3}
    # int8 activations are one byte, float32 four
    assert records["int8"]["peak_activation_bytes"] * 4 == records["float32"]["peak_activation_bytes"] > 0


def test_device_script_is_a_copy_of_this_module():
    assert (RUNTIME_FILE.parents[1] / "tools" / "edgecv_bench.py").read_bytes() == RUNTIME_FILE.read_bytes(), (
        "cp edgecv/runtime.py tools/edgecv_bench.py")


def test_environment_records_what_it_reads():
    env = rt.environment(rt.find_runtime(), 1)
    assert env["python"] and env["numpy"] == np.__version__ and env["threads"] == 1
    assert env["runtime"]["name"] == "ai_edge_litert"
    assert rt.environment(None, None)["runtime"] is None


# --- know the runtime: ISA flags, delegation coverage, the device script's own check -------------------------

# /proc/cpuinfo of a Raspberry Pi 5 (Cortex-A76, 64-bit Raspberry Pi OS), two of its four cores
PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

processor\t: 1
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

Revision\t: d04170
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
# a Raspberry Pi 4 under a 32-bit kernel: NEON is "neon", and the ARMv8 dot product is not shown
PI4_ARMV7_CPUINFO = """processor\t: 0
model name\t: ARMv7 Processor rev 3 (v7l)
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
"""


def test_isa_flags_are_what_proc_cpuinfo_says_here():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        assert rt.isa_flags() is None  # unreadable: None, never a guess
        return
    lines = [line for line in cpuinfo.read_text().splitlines() if line.split(":")[0].strip() in ("flags", "Features")]
    present = set(lines[0].split(":", 1)[1].split())
    flags = rt.isa_flags()
    assert flags == [f for f in rt.ISA_FLAGS if f in present]
    assert ("avx2" in flags) == ("avx2" in present) and ("asimd" in flags) == ("asimd" in present)
    assert "sse2" not in flags and "fpu" not in flags  # only the flags that decide kernels
    assert rt.environment(None, None)["isa"] == flags
    assert rt.isa_flags(str(Path("/nonexistent/cpuinfo"))) is None


def test_isa_flags_parse_arm_cpuinfo_texts():
    assert rt.parse_isa_flags(PI5_CPUINFO) == ["asimd", "asimdhp", "asimddp"]
    assert rt.parse_isa_flags(PI4_ARMV7_CPUINFO) == ["neon"]
    # a flag one core lacks is not the machine's (big.LITTLE parts can differ)
    mixed = PI5_CPUINFO.replace("dcpop asimddp\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\nRevision",
                                "dcpop\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\nRevision")
    assert mixed != PI5_CPUINFO and rt.parse_isa_flags(mixed) == ["asimd", "asimdhp"]
    assert rt.parse_isa_flags("processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16 sve2\n") == [
        "asimd", "i8mm", "sve", "sve2", "bf16"]
    assert rt.parse_isa_flags("processor\t: 0\nmodel name\t: something\n") is None  # no flags line: unknown
    # an arm64 Python under qemu-user reading the x86 host's text: unknown, not "no NEON"
    assert rt.parse_isa_flags("flags\t\t: fpu sse2 avx avx2 fma\n", machine="aarch64") is None
    assert rt.parse_isa_flags("flags\t\t: fpu sse2 avx avx2 fma\n", machine="x86_64") == ["avx", "avx2", "fma"]
    assert rt.parse_isa_flags(PI5_CPUINFO, machine="aarch64") == ["asimd", "asimdhp", "asimddp"]


def test_delegation_of_the_tiny_models_as_measured(tiny_tflite):
    """ai-edge-litert's XNNPACK takes the whole float graph; of the int8 one it leaves SOFTMAX to TFLite."""
    coverage = {}
    for mode in ("float32", "int8"):
        model = rt.TFLiteModel(tiny_tflite[mode])
        coverage[mode] = rt.delegation(model.interpreter, model.delegate)
        plain_ops = [op["op_name"] for op in rt.TFLiteModel(tiny_tflite[mode], plain=True).interpreter._get_ops_details()]
        d = coverage[mode]
        assert d["delegate"] == "XNNPACK" and d["partitions"] >= 1
        # every op of the graph is counted once, on one side or the other
        assert d["delegated_ops"] + sum(d["fallback_ops"].values()) == len(plain_ops)
        assert sum(d["delegated_by_op"].values()) == d["delegated_ops"]
    assert coverage["float32"]["fallback_ops"] == {} and not coverage["float32"]["quantized"]
    assert not coverage["float32"]["split"] and rt.delegation_warning(coverage["float32"]) is None
    int8 = coverage["int8"]
    assert int8["quantized"] and int8["fallback_ops"] == {"SOFTMAX": 1} and int8["split"]
    assert int8["delegated_by_op"]["CONV_2D"] == 2 and int8["delegated_by_op"]["FULLY_CONNECTED"] == 2
    warning = rt.delegation_warning(int8)
    assert "split" in warning and "SOFTMAX" in warning and "XNNPACK" in warning
    assert "SOFTMAX on TFLite's kernels" in rt.delegation_summary(int8)


def test_a_plain_interpreter_delegates_nothing(tiny_tflite):
    model = rt.TFLiteModel(tiny_tflite["int8"], plain=True)
    d = rt.delegation(model.interpreter, model.delegate)
    assert model.delegate is None and d["delegate"] is None
    assert d["partitions"] == 0 and d["delegated_ops"] == 0 and d["fallback_ops"]["CONV_2D"] == 2
    assert not d["split"]  # all on TFLite's kernels is not a split graph


def test_records_carry_the_delegation_of_the_timed_interpreter(tiny_tflite, tiny_dataset):
    int8 = rt.benchmark_tflite(tiny_tflite["int8"], tiny_dataset.x_test, tiny_dataset.y_test, warmup=1, runs=5)
    assert int8["details"]["delegation"]["split"] and int8["details"]["delegation"]["fallback_ops"] == {"SOFTMAX": 1}
    plain = rt.TFLiteModel(tiny_tflite["int8"], plain=True)
    record = rt.benchmark_tflite(tiny_tflite["int8"], tiny_dataset.x_test, tiny_dataset.y_test, warmup=1, runs=5,
                                 model=plain)
    assert record["details"]["delegation"]["delegate"] is None  # the model that was timed, not a fresh one
    assert record["details"]["delegation"]["delegated_ops"] == 0


def test_the_probe_model_runs_here():
    """(A runtime that imports but cannot run it is skipped: tests/device/test_doctor.py, under numpy 2.)"""
    runtime = rt.find_runtime()
    assert rt.runs_a_model(runtime) is None
    model = rt.TFLiteModel(content=__import__("base64").b64decode(rt.PROBE_MODEL), plain=True)
    assert [op["op_name"] for op in model.interpreter._get_ops_details()] == ["RELU"]


def test_known_bad_pairings_are_named():
    assert rt.known_bad_pairings("3.11.2", "1.26.4", "2.14.0") == []
    assert rt.known_bad_pairings("3.11.2", "2.4.6", None) == []  # no tflite-runtime, nothing to pair
    numpy2 = rt.known_bad_pairings("3.11.2", "2.0.1", "2.14.0")
    assert len(numpy2) == 1 and "numpy<2" in numpy2[0]
    assert "3.12" in rt.known_bad_pairings("3.12.1", "1.26.4", "2.14.0")[0]
    pycoral = rt.known_bad_pairings("3.9.2", "1.26.4", "2.14.0", pycoral="2.0.0")
    assert len(pycoral) == 1 and "2.5.0.post1" in pycoral[0]
    assert rt.known_bad_pairings("3.9.2", "1.26.4", "2.5.0.post1", pycoral="2.0.0") == []
    coral = rt.known_bad_pairings("3.9.2", "1.26.4", "2.14.0", runtime=rt.Runtime("tflite_runtime", "2.14.0", None, None),
                                  libedgetpu={"package": "libedgetpu1-std", "version": "16.0"})
    assert len(coral) == 1 and "libedgetpu 16.0" in coral[0]


def run_check(*args):
    return subprocess.run([sys.executable, str(RUNTIME_FILE.parents[1] / "tools" / "edgecv_bench.py"), "--check",
                           *args], capture_output=True, text=True, timeout=120)


def test_check_mode_prints_one_line_per_fact_and_exits_0_here():
    done = run_check()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    facts = {}
    for line in lines:
        status, name = line[:4].strip(), line[6:22].strip()
        assert status in ("ok", "warn", "fail"), line
        facts.setdefault(name, []).append(line[22:].strip())
    for name in ("python", "os", "cpu", "isa", "numpy", "ai_edge_litert", "tflite_runtime", "tensorflow",
                 "libedgetpu", "edgetpu device", "pycoral", "pairing", "runtime"):
        assert name in facts, name
    assert facts["numpy"] == [np.__version__]
    isa = rt.isa_flags()
    if isa:
        assert facts["isa"] == [" ".join(isa)]
    assert facts["ai_edge_litert"][0].startswith(rt.find_runtime("ai_edge_litert").version)
    assert "not loaded" in facts["tensorflow"][0]  # a lighter runtime runs: TensorFlow is not imported
    assert facts["runtime"] == ["ai_edge_litert %s will run the models" % rt.find_runtime().version]
    assert len(lines) == len(rt.device_checks())  # nothing else on stdout, no fact spread over two lines


def test_check_mode_probes_the_runtime_asked_for_by_name():
    """Asked for tensorflow, the check loads and probes it even though a lighter runtime runs."""
    done = run_check("--runtime", "tensorflow")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line[6:22].strip() == "runtime")
    assert "tensorflow" in line and "will run the models" in line


def test_check_mode_exits_3_when_the_edge_tpu_is_asked_for_and_missing():
    if rt.libedgetpu_version() or rt.edgetpu_devices():
        pytest.skip("this machine has an Edge TPU runtime or device")
    done = run_check("--edgetpu")
    assert done.returncode == 3
    failed = [line for line in done.stdout.splitlines() if line.startswith("fail")]
    assert any("libedgetpu" in line for line in failed) and any("edgetpu delegate" in line for line in failed)
    assert "Traceback" not in done.stderr


def test_host_rows_and_environment_carry_delegation_and_isa(tiny_tflite, tiny_dataset, tmp_path):
    from edgecv.config import BenchConfig
    from edgecv.measure.benchmark import benchmark_files, benchmark_tflite
    from edgecv.measure.report import Report

    row = benchmark_tflite(tiny_tflite["int8"], tiny_dataset, BenchConfig(warmup=1, runs=5))
    assert row.details["delegation"]["fallback_ops"] == {"SOFTMAX": 1} and row.details["delegation"]["split"]
    plain = benchmark_tflite(tiny_tflite["int8"], tiny_dataset, BenchConfig(warmup=1, runs=5), plain=True)
    assert plain.details["delegation"]["delegate"] is None
    report = benchmark_files([tiny_tflite["float32"]], tiny_dataset, BenchConfig(warmup=1, runs=5))
    assert report.environment["isa"] == rt.isa_flags()
    report.save(tmp_path / "r.json")
    again = Report.load(tmp_path / "r.json")  # what a reader of the saved report gets back
    assert again.environment["isa"] == rt.isa_flags()
    assert again.stages[0].details["delegation"]["fallback_ops"] == {}
