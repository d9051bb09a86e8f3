"""Edge TPU readiness: the static check on real converted models, and the compiler's log and summary formats.

The compiler itself cannot be installed here (x86-64 Linux packages from Coral's own repository); its
invocation is tested against a stand-in that writes the log format Coral's compiler writes.
"""

import os
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecv._tf import keras
from edgecv.cli.app import app
from edgecv.device.edgetpu import (AFTER_CUT, DATA_TYPE, MAPPED, MAX_OP_VERSIONS, NOT_SUPPORTED, UNPARSED, VERSION,
                                    check_model, parse_log, parse_summary, static_report, too_new_for_compiler)
from edgecv.errors import DataError
from edgecv.compress.quantize import convert

# verbatim from a compiler 14.1 log in a public repository (rajansaini691/retinanet-model-tflite)
LOG = """Edge TPU Compiler version 14.1.317412892
Input: tiny_yolo.tflite
Output: tiny_yolo_edgetpu.tflite

Operator                       Count      Status

CONCATENATION                  1          More than one subgraph is not supported
MAX_POOL_2D                    6          Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        1          Operation version not supported
CONV_2D                        11         Mapped to Edge TPU
CONV_2D                        2          More than one subgraph is not supported
QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation
QUANTIZE                       1          More than one subgraph is not supported
QUANTIZE                       2          Mapped to Edge TPU
"""

# compiler 16 console output as quoted in google-coral/edgetpu issues
STDOUT = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 96 ms.

Input model: m.tflite
Input size: 7.02MiB
Output model: m_edgetpu.tflite
Output size: 7.14MiB
On-chip memory used for caching model parameters: 80.00KiB
On-chip memory remaining for caching model parameters: 6.04MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 191
Operation log: m_edgetpu.log
Number of operations that will run on Edge TPU: 1
Number of operations that will run on CPU: 190
"""


def _calibration(shape):
    return np.random.default_rng(0).integers(0, 256, size=(16, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_trained):
    folder = tmp_path_factory.mktemp("edgetpu")
    L = keras().layers
    inputs = keras().Input((16, 16, 3))
    x = L.Conv2D(8, 3)(inputs)
    x = L.LeakyReLU()(x)  # LEAKY_RELU: not on Coral's list
    x = L.Conv2D(8, 3, activation="relu")(x)
    x = L.Flatten()(x)
    leaky = keras().Model(inputs, L.Dense(3, activation="softmax")(x))
    cal = _calibration((16, 16, 3))
    files = {
        "int8_uint8io": convert(tiny_trained.model, "int8", cal, "uint8"),
        "int8_floatio": convert(tiny_trained.model, "int8", cal, "float32"),
        "float32": convert(tiny_trained.model, "float32"),
        "leaky": convert(leaky, "int8", cal, "uint8"),
        "dynamic_batch": convert(tiny_trained.model, "int8", cal, "uint8", batch_size=None),
    }
    for name, content in files.items():
        (folder / f"{name}.tflite").write_bytes(content)
    return folder


def test_a_full_integer_model_with_8bit_io_maps_entirely(models):
    report = static_report(models / "int8_uint8io.tflite")
    assert report.fully_mapped and report.tpu_ops == len(report.ops) == 10
    # uint8 in and out: an int8<->uint8 QUANTIZE at each end, which the Edge TPU runs (runtime 13+)
    assert {op for op, _, _ in report.table()} == {"QUANTIZE", "CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                                                  "SOFTMAX"}
    assert not static_report(models / "int8_uint8io.tflite", target_runtime=12).fully_mapped


def test_the_first_unsupported_op_sends_the_rest_to_the_cpu(models):
    ops = static_report(models / "leaky.tflite").ops
    statuses = [(o.op, o.status) for o in ops]
    first_bad = next(i for i, o in enumerate(ops) if not o.on_tpu)
    assert statuses[first_bad] == ("LEAKY_RELU", NOT_SUPPORTED)
    assert all(o.on_tpu for o in ops[:first_bad]) and first_bad >= 1
    assert all(o.status == AFTER_CUT for o in ops[first_bad + 1 :])
    assert any(o.op == "CONV_2D" and o.status == AFTER_CUT for o in ops)  # supported, yet on the CPU


def test_float_io_runs_its_edges_on_the_cpu_without_splitting(models):
    ops = static_report(models / "int8_floatio.tflite").ops
    assert ops[0].op == "QUANTIZE" and not ops[0].on_tpu
    assert ops[-1].op == "DEQUANTIZE" and ops[-1].status == DATA_TYPE
    assert all(o.on_tpu for o in ops[1:-1])


def test_float_and_dynamic_models_are_refused_op_by_op(models):
    float_ops = static_report(models / "float32.tflite").ops
    assert float_ops[0].status == DATA_TYPE and "float32" in float_ops[0].reason
    assert not any(o.on_tpu for o in float_ops)
    dynamic = static_report(models / "dynamic_batch.tflite").ops
    assert "dynamic shape" in dynamic[0].reason


def test_log_and_summary_parsers_read_the_compilers_formats():
    rows = parse_log(LOG)
    assert len(rows) == 8
    assert ("MAX_POOL_2D", 6, MAPPED) in rows
    assert ("RESIZE_NEAREST_NEIGHBOR", 1, "Operation version not supported") in rows
    assert sum(n for _, n, _ in rows) == 25
    summary = parse_summary(STDOUT)
    assert summary["subgraphs"] == 1 and summary["operations"] == 191
    assert summary["tpu_ops"] == 1 and summary["cpu_ops"] == 190
    assert summary["on_chip_memory"] == "80.00KiB" and summary["compiler_version"] == "16.0.384591198"


def test_the_compiler_is_used_when_on_path(models, tmp_path, monkeypatch):
    """A stand-in edgetpu_compiler that checks its arguments and writes Coral's log format."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "edgetpu_compiler"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "-s" ] && [ "$2" = "-m" ] && [ "$3" = "13" ] && [ "$4" = "-o" ] || exit 9\n'
        'name=$(basename "$6" .tflite)\n'
        f"cat > \"$5/${{name}}_edgetpu.log\" <<'LOG'\n{LOG}LOG\n"
        f"cat <<'OUT'\n{STDOUT}OUT\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    report = check_model(models / "int8_uint8io.tflite", tmp_path, target_runtime=13)
    assert report.method == "compiler" and report.tpu_ops == 19 and report.cpu_ops == 6
    assert report.summary["subgraphs"] == 1
    assert report.compiled.endswith("int8_uint8io_edgetpu.tflite")


def test_cli_reports_and_refuses(models, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["edgetpu", str(models / "leaky.tflite")])
    assert ok.exit_code == 0 and "LEAKY_RELU" in ok.stdout and "static check" in ok.stdout
    missing = runner.invoke(app, ["edgetpu", str(tmp_path / "none.tflite")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    with pytest.raises(DataError):
        static_report(models / "nothing.tflite")


# --- op versions: compiler 16 refuses a model holding an op version its TFLite does not know ------------------


def test_op_versions_are_read_from_the_file(models):
    from ai_edge_litert.tools import flatbuffer_utils

    report = static_report(models / "int8_uint8io.tflite")
    assert report.op_versions_note.startswith("read from the file") and not report.refused
    model = flatbuffer_utils.read_model(str(models / "int8_uint8io.tflite"))
    codes = model.operatorCodes
    assert [o.version for o in report.ops] == [codes[op.opcodeIndex].version for op in model.subgraphs[0].operators]
    assert all(o.version <= MAX_OP_VERSIONS[o.op] for o in report.ops)


def test_the_version_rule_on_a_parsed_op_list():
    ops = [("CONV_2D", 5), ("CONV_2D", 6), ("QUANTIZE", 3), ("QUANTIZE", 2), ("GELU", 1), ("FULLY_CONNECTED", None)]
    flagged = too_new_for_compiler(ops)
    assert sorted(flagged) == [1, 2]  # unknown ops and unread versions are not judged
    assert "CONV_2D version 6" in flagged[1] and "at most version 5" in flagged[1]
    # the refusals reported against compiler 16.0.384591198 in Coral's trackers are all flagged
    assert len(too_new_for_compiler([("QUANTIZE", 3), ("CONV_2D", 6), ("TRANSPOSE_CONV", 4), ("EXP", 2)])) == 4


def test_an_op_version_newer_than_compiler_16_refuses_the_whole_model(models, tmp_path):
    """The int8 model with its CONV_2D stated as version 6 (TF 2.9's), as in google-coral/edgetpu#631."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(models / "int8_uint8io.tflite"))
    for i, code in enumerate(model.operatorCodes):
        if flatbuffer_utils.opcode_to_name(model, i) == "CONV_2D":
            code.version = 6
    flatbuffer_utils.write_model(model, str(tmp_path / "conv_v6.tflite"))
    report = static_report(tmp_path / "conv_v6.tflite")
    assert report.tpu_ops == 0 and "CONV_2D version 6" in report.refused
    convs = [o for o in report.ops if o.op == "CONV_2D"]
    assert convs and all(o.status == VERSION and o.version == 6 for o in convs)
    assert all(o.status == UNPARSED and not o.reason for o in report.ops if o.op != "CONV_2D")
    assert [o.op for o in report.unmapped()] == ["CONV_2D"] * len(convs)
    assert report.to_dict()["refused"] == report.refused


def test_tf221_dynamic_range_model_is_refused_for_its_fully_connected_version(tiny_trained, tmp_path):
    """Measured: TensorFlow 2.21 writes a dynamic-range FULLY_CONNECTED as version 12 (TF 2.5 knew up to 9)."""
    (tmp_path / "dynamic.tflite").write_bytes(convert(tiny_trained.model, "dynamic"))
    report = static_report(tmp_path / "dynamic.tflite")
    fc = [o for o in report.ops if o.op == "FULLY_CONNECTED"]
    assert fc and all(o.version > MAX_OP_VERSIONS["FULLY_CONNECTED"] for o in fc)
    assert report.refused and report.tpu_ops == 0
