import pytest

from edgecv.measure.benchmark import benchmark_file, benchmark_files
from edgecv.config import BenchConfig
from edgecv.errors import DataError
from edgecv.measure.report import COLUMNS
from edgecv.compress.export import save_keras

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

FAST = BenchConfig(warmup=2, runs=20)


def test_keras_and_tflite_rows_agree_on_accuracy(tiny_trained, tiny_tflite, tiny_dataset, tmp_path):
    keras_path = save_keras(tiny_trained.model, tmp_path / "tiny.keras")
    report = benchmark_files([keras_path, tiny_tflite["float32"], tiny_tflite["int8"]], tiny_dataset, FAST)
    keras_row, float_row, int8_row = report.stages
    assert [s.format for s in report.stages] == ["keras", "tflite", "tflite"]
    assert keras_row.accuracy == pytest.approx(float_row.accuracy, abs=0.02)
    assert abs(int8_row.accuracy - float_row.accuracy) <= 0.05
    assert keras_row.params == float_row.params == int8_row.params
    assert int8_row.size_bytes < float_row.size_bytes / 3
    assert keras_row.macs == float_row.macs == int8_row.macs == 14 * 14 * 32 * 27 + 5 * 5 * 64 * 288 + 256 * 128 + 384
    assert keras_row.peak_memory_bytes is None  # planned by a TFLite runtime only
    assert int8_row.peak_memory_bytes * 4 == float_row.peak_memory_bytes
    mmacs = [h for h, _ in COLUMNS].index("MMACs")
    assert [row[mmacs] for row in report.rows()] == ["0.66"] * 3
    assert report.environment["runtime"]["name"] == "ai_edge_litert" and report.data["test_images"] == 60


def test_limit_scores_fewer_images(tiny_tflite, tiny_dataset):
    row = benchmark_file(tiny_tflite["int8"], tiny_dataset, BenchConfig(warmup=1, runs=5, limit=10))
    assert row.images == 10


@pytest.mark.parametrize("name, content, message", [
    ("junk.tflite", b"\x00" * 64, "not a runnable TFLite model"),
    ("junk.keras", b"PK nope", "not a loadable Keras model"),
    ("model.onnx", b"x", "neither a .tflite nor a Keras model"),
])
def test_bad_model_files_are_one_clear_error(tmp_path, tiny_dataset, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        benchmark_file(path, tiny_dataset, FAST)


def test_missing_model_file(tmp_path, tiny_dataset):
    with pytest.raises(DataError, match="does not exist"):
        benchmark_file(tmp_path / "nope.tflite", tiny_dataset, FAST)
