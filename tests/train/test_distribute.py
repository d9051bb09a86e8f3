"""Training under tf.distribute: two real worker processes on 127.0.0.1, and the strategy's bad input."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from edgecv.cli.app import app


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _train(image_folder, out, strategy, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "edgecv", "train", "--data", str(image_folder), "--epochs", "1", "--batch-size", "16",
         "--strategy", strategy, "--out", str(out), "-q"],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _weights(path):
    from edgecv.compress.export import load_keras

    return load_keras(path).get_weights()


def test_two_workers_on_localhost_train_and_agree(image_folder, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(_train(image_folder, tmp_path / f"w{index}.keras", "multi-worker",
                            {"TF_CONFIG": json.dumps(config)}))
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-1000:]
    a, b = _weights(tmp_path / "w0.keras"), _weights(tmp_path / "w1.keras")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # one model, trained by both
    from edgecv.train.models import build

    fresh = build("seed-cnn", (16, 16, 3), 3)
    assert not all(np.array_equal(x, y) for x, y in zip(a, fresh.get_weights()))


def test_mirrored_strategy_on_this_machine(image_folder, tmp_path):
    proc = _train(image_folder, tmp_path / "m.keras", "mirrored")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "test accuracy" in stdout, stderr[-1000:]


def test_multi_worker_without_tf_config_is_one_line(image_folder, tmp_path):
    proc = _train(image_folder, tmp_path / "x.keras", "multi-worker", {"TF_CONFIG": ""})
    _, stderr = proc.communicate(timeout=300)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "TF_CONFIG" in lines[0]


def test_compress_refuses_multi_worker(image_folder, tmp_path):
    result = CliRunner().invoke(app, ["compress", "--data", str(image_folder), "--strategy", "multi-worker",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "edgecv train --strategy multi-worker" in result.stderr
