"""Emulated ARM instruction counts (qemu's TCG plugin API) on tiny models: deterministic, dependent on the CPU
model, fewer for fewer MACs; and what is missing is one line, exit 3.

The counts need root, debootstrap, binfmt support for aarch64 and, on the first run, Debian's package mirror
(the trixie root took 13 minutes of debootstrap and 6 of pip under emulation on 2 busy shared cores, the
counter under a minute; both are cached next to each other in ~/.cache/edgecv or beside ``$EDGECV_PI_ROOT``);
elsewhere those tests skip and say why. With everything cached this file takes under a minute.
"""

import json
import os

import pytest

from edgecv.device import armcost
from edgecv.device import emulated_kit
from edgecv.errors import DataError, Unsupported


@pytest.fixture(scope="module")
def counter(pi_root):
    """The ARM instruction counter, built once beside the root."""
    try:
        armcost.ensure_tools()
    except Unsupported as e:
        pytest.skip(f"cannot build the ARM instruction counter here: {e}")
    return pi_root


@pytest.fixture(scope="module")
def models(tiny_trained, tiny_dataset, tmp_path_factory):
    """The tiny seed-cnn as int8, the same with half its channels cut, and as float32."""
    from edgecv.compress.channels import shrink
    from edgecv.compress.quantize import calibration_images, convert

    folder = tmp_path_factory.mktemp("armcost")
    calibration = calibration_images(tiny_dataset, 50)
    paths = {"int8": folder / "tiny_int8.tflite", "half_int8": folder / "tiny_half_int8.tflite",
             "float32": folder / "tiny_float32.tflite"}
    paths["int8"].write_bytes(convert(tiny_trained.model, "int8", calibration))
    paths["half_int8"].write_bytes(convert(shrink(tiny_trained.model, 0.5)[0], "int8", calibration))
    paths["float32"].write_bytes(convert(tiny_trained.model, "float32"))
    return paths


@pytest.fixture(scope="module")
def counted(counter, models, tiny_dataset):
    """Every model on both Pi cores, twice (4 emulated processes)."""
    images = tiny_dataset.x_test[:6]
    paths = list(models.values())
    return [armcost.arm_costs(paths, images, armcost.PI_CPUS, inferences=5) for _ in range(2)]


def test_the_count_is_deterministic(counted, models):
    first, second = counted
    for name in (p.name for p in models.values()):
        for cpu in armcost.PI_CPUS:
            a, b = first[name][cpu], second[name][cpu]
            assert a.instructions_per_inference > 1000
            assert abs(a.instructions_per_inference - b.instructions_per_inference) <= 0.005 * a.instructions_per_inference
            assert a.counted > a.marker_overhead > 0 and a.inferences == 5
            assert a.unit == armcost.UNIT and "not a time" in a.unit


def test_the_cpu_model_decides_the_kernels(counted, models):
    """The A76 has the dot-product instructions and the int8 kernels use them; the A72 has none to use."""
    costs = counted[0][models["int8"].name]
    a72, a76 = costs["cortex-a72"], costs["cortex-a76"]
    assert "asimddp" in a76.features and "asimddp" not in a72.features
    assert a72.classes["dot_product"] == 0 and a76.classes["dot_product"] > 0
    assert a72.classes["widening_multiply"] > a76.classes["widening_multiply"]
    assert a72.instructions_per_inference != a76.instructions_per_inference
    assert a72.delegate_nodes > 0 and a76.delegate_nodes > 0  # XNNPACK ran: cpuinfo saw an ARM CPU
    assert a72.runtime == "ai_edge_litert" and a72.runtime_version.startswith("2.") and a72.python.startswith("3.13")
    floats = counted[0][models["float32"].name]
    assert floats["cortex-a76"].classes["float_fma"] > 0 and floats["cortex-a76"].classes["dot_product"] == 0


def test_without_an_arm_cpuinfo_xnnpack_does_not_start(counter, models, counted):
    """What the count would measure without the generated /proc and /sys: cpuinfo finds no processor, XNNPACK
    stays off, TFLite's builtin kernels run (the same on both cores), and the count is another one."""
    blind = armcost.arm_costs([models["int8"]], None, ["cortex-a76"], inferences=3,
                              present_cpu=False)[models["int8"].name]
    seen = counted[0][models["int8"].name]["cortex-a76"]
    assert blind["cortex-a76"].delegate_nodes == 0 and seen.delegate_nodes > 0
    assert blind["cortex-a76"].classes["dot_product"] == 0
    assert blind["cortex-a76"].instructions_per_inference != seen.instructions_per_inference


def test_fewer_macs_cost_fewer_instructions(counted, models):
    for cpu in armcost.PI_CPUS:
        full = counted[0][models["int8"].name][cpu].instructions_per_inference
        half = counted[0][models["half_int8"].name][cpu].instructions_per_inference
        assert half < 0.8 * full


def test_emulated_results_carry_the_counts(counter, tiny_tflite, tiny_dataset, tmp_path):
    from edgecv.device.kit import make_kit

    kit = make_kit([tiny_tflite["int8"]], tiny_dataset, tmp_path / "kit", samples=8, host_runs=5).path
    done = emulated_kit.emulate_kit(kit, None, tmp_path / "out", runs=2, arm_cost_cpus=armcost.PI_CPUS, arm_cost_inferences=3)
    result = json.loads((tmp_path / "out" / "emulated-ai_edge_litert.json").read_text())
    cost = result["stages"][0]["details"]["arm_cost"]
    assert cost["unit"] == armcost.UNIT
    assert cost["cortex-a72"]["instructions_per_inference"] > 0 and cost["cortex-a76"]["inferences"] == 3
    merged = json.loads((tmp_path / "out" / "merged.json").read_text())
    cells = [cell for cell in merged["models"][0]["results"].values() if cell and cell.get("arm_cost")]
    assert len(cells) == 1 and set(cells[0]["arm_cost"]) == set(armcost.PI_CPUS)  # the emulated column only
    assert done.arm_costs["ai_edge_litert"]["tiny_int8.tflite"]["cortex-a76"].cpu == "cortex-a76"


# --- no emulation needed ---------------------------------------------------------------------------------------


def test_not_root_is_one_line_exit_3(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECV_PI_ROOT", str(tmp_path / "root"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Unsupported, match="needs root") as e:
        armcost.ensure_tools()
    assert e.value.exit_code == 3 and "\n" not in str(e.value)


def test_no_network_for_the_first_build_is_one_line_exit_3(tmp_path, monkeypatch):
    """An unreachable mirror (offline, nothing cached): one line naming what failed, nothing half-built used."""
    monkeypatch.setenv("EDGECV_PI_ROOT", str(tmp_path / "root"))
    if os.geteuid() != 0:
        pytest.skip("needs root to reach the download step")
    monkeypatch.setattr(armcost, "private_sources", lambda mirror=None: [
        "deb http://127.0.0.1:9/debian bookworm main", "deb-src http://127.0.0.1:9/debian bookworm main"])
    with pytest.raises(Unsupported) as e:
        armcost.ensure_tools()
    assert e.value.exit_code == 3 and "\n" not in str(e.value)
    assert not armcost.tools_are_complete(armcost.tools_dir())


def test_no_compiler_is_one_line_exit_3(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECV_PI_ROOT", str(tmp_path / "root"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real = armcost.shutil.which
    monkeypatch.setattr(armcost.shutil, "which", lambda name: None if name == "gcc" else real(name))
    with pytest.raises(Unsupported, match="gcc is not installed"):
        armcost.ensure_tools()


def test_bad_input_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a .tflite"):
        armcost.arm_costs([tmp_path / "none.tflite"])
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(DataError, match="not offered"):
        armcost.arm_costs([tmp_path / "m.tflite"], cpus=["pentium"])
    with pytest.raises(Unsupported, match="no wheel for Python 3.13"):
        armcost.arm_costs([tmp_path / "m.tflite"], runtime="tflite_runtime")


def test_the_presented_cpu_is_the_board_core():
    caps = (1 << 0) | (1 << 1) | (1 << 20)  # fp asimd asimddp
    assert armcost.features(caps, 1 << 13) == ["fp", "asimd", "asimddp", "i8mm"]
    view = armcost.cpu_view("cortex-a76", ["fp", "asimd", "asimddp"])
    text = view["proc/cpuinfo"]
    assert text.count("processor\t:") == 4 and "CPU part\t: 0xd0b" in text and "CPU variant\t: 0x4" in text
    assert "Features\t: fp asimd asimddp" in text and "CPU revision\t: 1" in text
    assert view["sys/devices/system/cpu/possible"] == "0-3\n"
    assert view["sys/devices/system/cpu/cpu0/regs/identification/midr_el1"] == "0x00000000414fd0b1\n"
    a72 = armcost.cpu_view("cortex-a72", ["fp", "asimd"])["proc/cpuinfo"]
    assert "CPU part\t: 0xd08" in a72 and "CPU variant\t: 0x0" in a72 and "CPU revision\t: 3" in a72


def test_the_plugin_source_marks_what_the_runner_calls():
    assert hex(armcost.MARK) in armcost.PLUGIN_C and hex(armcost.MARK) in armcost.RUNNER
    assert "qemu_plugin_register_vcpu_syscall_cb" in armcost.PLUGIN_C
    compile(armcost.RUNNER, "runner.py", "exec")  # valid Python for the root's interpreter


def test_the_gate_on_arm_cost_has_no_timing_noise(counter, models, tiny_dataset):
    """A model against itself is exactly 1.0x on both cores: it passes a 1.0 ceiling and fails 0.99."""
    from edgecv.config import BenchConfig
    from edgecv.flows.checking import check_models as check
    from edgecv.measure.gate import GateConfig

    bench = BenchConfig(warmup=1, runs=5)
    same = check(models["int8"], tiny_dataset, GateConfig(max_drop=None, max_arm_cost_ratio=1.0), bench,
                 reference_model=models["int8"])
    ratios = [c for c in same.criteria if c.name.startswith("ARM instructions")]
    assert len(ratios) == 2 and all(c.measured == 1.0 for c in ratios) and same.passed
    tighter = check(models["int8"], tiny_dataset, GateConfig(max_drop=None, max_arm_cost_ratio=0.99), bench,
                    reference_model=models["int8"])
    assert not tighter.passed
    smaller = check(models["half_int8"], tiny_dataset, GateConfig(max_drop=None, max_arm_cost_ratio=0.99), bench,
                    reference_model=models["int8"])
    assert smaller.passed  # half the channels: fewer instructions on both cores


def test_search_can_minimise_the_arm_cost(counter, tiny_trained, tiny_dataset, tmp_path, monkeypatch):
    import edgecv.flows.search
    from edgecv.compress.export import save_keras
    from edgecv.config import BenchConfig, Objective, QuantMode, SearchConfig

    monkeypatch.setattr(edgecv.flows.search, "load", lambda data, on_progress: tiny_dataset)
    parent = save_keras(tiny_trained.model, tmp_path / "parent.keras")
    config = SearchConfig(out=tmp_path / "s", model=parent, channel_ratios=(0.0,), sparsities=(0.0,),
                          modes=(QuantMode.INT8, QuantMode.FLOAT32), max_drop=100.0, objective=Objective.ARM_COST,
                          bench=BenchConfig(warmup=1, runs=5))
    result = edgecv.flows.search.search(config)
    costs = {c.mode: c.cost(Objective.ARM_COST) for c in result.candidates}
    assert all(costs.values()) and result.chosen.cost(Objective.ARM_COST) == min(costs.values())
    assert "A76 M instr" in (tmp_path / "s" / "search.md").read_text()
