"""``edgecv micro``: the real TFLite Micro interpreter (a dependency) on tiny int8 models, against LiteRT on the
same inputs; the arena it reports must be what the model needs; the C sources must hold the model's bytes."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecv.cli.app import app
from edgecv.device import micro
from edgecv.device.micro import WORKER, export_c, measure_micro
from edgecv.errors import DataError

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

runner = CliRunner()


def test_micro_agrees_with_litert_on_the_same_images(tiny_tflite, tiny_dataset):
    result = measure_micro(tiny_tflite["int8"], tiny_dataset.x_test, tiny_dataset.y_test)
    assert result.images == len(tiny_dataset.y_test)
    assert result.agreement >= 0.9  # the same integers, reference kernels against TFLite's
    assert abs(result.drop) <= 100 * (1 - result.agreement) + 1e-9  # accuracy can differ only where answers do
    assert result.reference_accuracy > 0.5 and result.runtime.startswith("tflite-micro")


def test_the_arena_is_what_the_model_needs(tiny_tflite, tiny_dataset, tmp_path):
    arena = measure_micro(tiny_tflite["int8"], tiny_dataset.x_test[:2], tiny_dataset.y_test[:2]).arena_bytes
    activation = 16 * 16 * 3  # the int8 input alone lives in the arena
    assert arena > activation
    job = tmp_path / "job.json"
    for size, fits in ((arena, True), (arena - 2048, False)):
        job.write_text(json.dumps({"model": str(tiny_tflite["int8"]), "probe": True, "arena_size": size}))
        done = subprocess.run([sys.executable, "-c", WORKER, str(job)], capture_output=True, text=True)
        assert (done.returncode == 0) is fits, (size, done.stderr[-300:])


def test_c_sources_hold_the_model_and_the_arena(tiny_tflite, tmp_path):
    written = export_c(tiny_tflite["int8"], tmp_path, 12345)
    assert sorted(p.name for p in written) == ["model_data.cc", "model_data.h"]
    source = (tmp_path / "model_data.cc").read_text()
    body = source[source.index("{") + 1: source.index("};")]
    data = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body))
    assert data == tiny_tflite["int8"].read_bytes()
    assert f"g_model_len = {len(data)};" in source and "alignas(16)" in source
    assert "constexpr size_t kTensorArenaSize = 12345;" in (tmp_path / "model_data.h").read_text()


def test_an_op_micro_lacks_is_named(tmp_path):
    from test_vela import KERNEL, int8_graph

    model = int8_graph(lambda tf, x: tf.math.top_k(tf.reshape(tf.nn.conv2d(x, KERNEL, 1, "SAME"), [1, -1]), k=3)
                       .values, tmp_path / "topk.tflite")
    with pytest.raises(DataError, match="op TFLite Micro lacks: TOPK_V2"):
        measure_micro(model, np.zeros((2, 8, 8, 3)), np.zeros(2, dtype=int))


# --- the command ---------------------------------------------------------------------------------


def test_cli_micro_reports_and_exports(tiny_tflite, image_folder, tmp_path):
    out = tmp_path / "c"
    done = runner.invoke(app, ["micro", str(tiny_tflite["int8"]), "--data", str(image_folder), "--samples", "20",
                               "-o", str(out), "--json"])
    assert done.exit_code == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["images"] == 20 and result["arena_bytes"] > 0 and 0 <= result["accuracy"] <= 1
    header = (out / "model_data.h").read_text()
    assert f"kTensorArenaSize = {result['arena_bytes']};" in header


def _one_line(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_cli_wrong_image_size_is_bad_input(image_folder, tmp_path):
    from test_vela import KERNEL, int8_graph

    model = int8_graph(lambda tf, x: tf.nn.conv2d(x, KERNEL, 1, "SAME"), tmp_path / "small.tflite")
    done = runner.invoke(app, ["micro", str(model), "--data", str(image_folder), "--samples", "4"])
    assert done.exit_code == 2 and "takes 8x8x3 images, these are 16x16x3" in _one_line(done)


def test_cli_missing_model_is_bad_input(image_folder, tmp_path):
    done = runner.invoke(app, ["micro", str(tmp_path / "none.tflite"), "--data", str(image_folder)])
    assert done.exit_code == 2 and "does not exist" in _one_line(done)


def test_cli_missing_tflite_micro_is_exit_3(tiny_tflite, image_folder, monkeypatch):
    monkeypatch.setattr(micro, "find_spec", lambda name: None)  # as on a host where it is not installed
    done = runner.invoke(app, ["micro", str(tiny_tflite["int8"]), "--data", str(image_folder)])
    assert done.exit_code == 3 and "TFLite Micro is not installed" in _one_line(done)
