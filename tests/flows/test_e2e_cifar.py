"""End to end: the real CLI, in its own process, on a seeded slice of the real CIFAR-10 JPEGs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edgecv.runtime import TFLiteModel


def test_compress_int8_on_real_cifar10(shared_cifar, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgecv", "compress", "--int8", "--data", str(shared_cifar),
           "--train-limit", "2000", "--test-limit", "500", "--epochs", "3", "--optimizer", "adam", "--lr", "0.001",
           "--prune-epochs", "1", "--sparsity", "0.5", "--runs", "50", "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tflite int8" in done.stdout and "pruned int8" in done.stdout

    report = json.loads((out / "report.json").read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    assert report["data"]["train_images"] == 2000 and report["data"]["test_images"] == 500

    model = TFLiteModel(out / "tflite_int8.tflite")
    assert model.input["dtype"] == np.int8 and model.output["dtype"] == np.int8
    int8, parent = stages["tflite int8"], stages["tflite float32"]
    assert int8["accuracy"] > 0.2  # ten classes: chance is 0.1
    assert abs(int8["accuracy"] - parent["accuracy"]) <= 0.03  # 15 of 500 images
    assert int8["size_bytes"] < parent["size_bytes"] / 3.5
    pruned = stages["pruned int8"]
    assert pruned["status"] == "ok" and pruned["sparsity"] == pytest.approx(0.5, abs=0.03)
    assert pruned["gzip_bytes"] < int8["gzip_bytes"]
