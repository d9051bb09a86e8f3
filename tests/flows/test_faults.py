"""A killed compress leaves nothing half-written, and a rerun continues from what finished and verifies."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecv.config import BenchConfig, CompressConfig, Optimizer, PruneConfig, TrainConfig
from edgecv.flows.pipeline import compress

FAST = dict(train=TrainConfig(epochs=2, batch_size=16, optimizer=Optimizer.ADAM, learning_rate=3e-3),
            prune=PruneConfig(sparsity=0.5, epochs=2, batch_size=16), bench=BenchConfig(warmup=1, runs=5))
ARGS = ["--epochs", "2", "--batch-size", "16", "--optimizer", "adam", "--lr", "0.003", "--sparsity", "0.5",
        "--prune-epochs", "2", "--runs", "5", "-q"]


def _numbers(report):
    return [(s.stage, s.status, s.accuracy, s.size_bytes, s.sparsity) for s in report.stages]


def test_a_rerun_reuses_every_finished_stage(image_folder, tmp_path):
    config = CompressConfig(out=tmp_path / "run", data=str(image_folder), **FAST)
    first = compress(config)
    again = compress(config)
    assert first.resumed == []
    assert set(again.resumed) >= {"baseline", "keras float", "tflite int8", "pruned", "pruned int8"}
    assert _numbers(again) == _numbers(first)


def test_other_options_or_changed_files_are_never_reused(image_folder, tmp_path):
    out = tmp_path / "run"
    compress(CompressConfig(out=out, data=str(image_folder), **FAST))
    other = compress(CompressConfig(out=out, data=str(image_folder), **{**FAST, "prune": PruneConfig(sparsity=0.7)}))
    assert other.resumed == []  # other options: a new key, nothing reused
    (out / "tflite_int8.tflite").write_bytes(b"changed")
    again = compress(CompressConfig(out=out, data=str(image_folder), **{**FAST, "prune": PruneConfig(sparsity=0.7)}))
    assert "tflite int8" not in again.resumed and "tflite float32" in again.resumed
    assert again.stage("tflite int8").status == "ok" and (out / "tflite_int8.tflite").stat().st_size > 1000
    (out / "baseline.keras").unlink()  # a parent made again: nothing built from the old one is reused
    rebuilt = compress(CompressConfig(out=out, data=str(image_folder), **{**FAST, "prune": PruneConfig(sparsity=0.7)}))
    assert rebuilt.resumed == []


def _complete(out: Path) -> None:
    """Every file a killed run left is whole: models load, JSON parses, and no report claims it finished."""
    from edgecv.compress.export import load_keras
    from edgecv.runtime import TFLiteModel

    assert not (out / "report.json").exists()
    for path in out.iterdir():
        if path.name.startswith("."):
            continue  # a temporary file of SIGKILL; the next run removes it, nothing reads it
        if path.suffix == ".tflite":
            TFLiteModel(path)
        elif path.suffix == ".keras":
            load_keras(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())


def _start(image_folder, out):
    return subprocess.Popen([sys.executable, "-m", "edgecv", "compress", "--int8", "--data", str(image_folder),
                             "--out", str(out), *ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _recorded(out: Path, stage: str) -> bool:
    try:
        return stage in json.loads((out / "run.json").read_text())["stages"]
    except (OSError, ValueError, KeyError):
        return False


def _wait_for(out: Path, stage: str, proc, timeout=300):
    """Until the manifest records ``stage``: the moment a kill can no longer lose it."""
    end = time.time() + timeout
    while not _recorded(out, stage):
        assert proc.poll() is None, f"the run ended before {stage} finished: {proc.stderr.read()[-500:]}"
        assert time.time() < end, f"{stage} did not finish"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    from conftest import synthetic_images, write_image_folder

    base = tmp_path_factory.mktemp("faults")
    x, y = synthetic_images(90, seed=3)
    folder = write_image_folder(base / "images", x[:60], y[:60], x[60:], y[60:], ("left", "middle", "right"))
    out = base / "clean"
    done = subprocess.run([sys.executable, "-m", "edgecv", "compress", "--int8", "--data", str(folder), "--out",
                           str(out), *ARGS], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return folder, json.loads((out / "report.json").read_text())


# a kill in training and one in conversion run by default; the later stages, a minute more, in the slow tier
@pytest.mark.parametrize("after", ["baseline", pytest.param("tflite int8", marks=pytest.mark.slow),
                                   pytest.param("pruned", marks=pytest.mark.slow),
                                   pytest.param("pruned float32", marks=pytest.mark.slow)])
def test_sigkill_at_any_stage_then_rerun_gives_the_same_results(clean_run, tmp_path, after):
    folder, clean = clean_run
    out = tmp_path / "run"
    proc = _start(folder, out)
    _wait_for(out, after, proc)
    proc.kill()
    proc.wait()
    _complete(out)
    done = subprocess.run([sys.executable, "-m", "edgecv", "compress", "--int8", "--data", str(folder), "--out",
                           str(out), *ARGS], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert "baseline" in report["resumed"]  # the baseline was not trained again
    got = [(s["stage"], s["accuracy"], s["size_bytes"], s["sparsity"]) for s in report["stages"]]
    want = [(s["stage"], s["accuracy"], s["size_bytes"], s["sparsity"]) for s in clean["stages"]]
    assert got == want
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_end_with_one_line(clean_run, tmp_path, sig):
    folder, _ = clean_run
    out = tmp_path / "run"
    proc = _start(folder, out)
    _wait_for(out, "baseline", proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 130 and lines == ["error: interrupted"], stderr
    _complete(out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the temporary files went with it


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_one_line(image_folder, tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("could not mount a tmpfs here")
    try:
        done = subprocess.run([sys.executable, "-m", "edgecv", "compress", "--data", str(image_folder), "--out",
                               str(disk / "run"), *ARGS], capture_output=True, text=True)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and "No space left on device" in lines[0], done.stderr
        assert not list(disk.rglob(".*"))  # no temporary file left, and an empty run folder is removed too
    finally:
        subprocess.run(["umount", str(disk)])
