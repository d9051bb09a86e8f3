"""The device kit on an emulated Raspberry Pi OS (Debian trixie arm64 under qemu, the default; bookworm for the
legacy tflite-runtime), and the checks that need no emulation.

The emulated run needs root, debootstrap and binfmt support for aarch64 (``.ci/run`` installs them); it
skips with the reason elsewhere. The root is cached between runs (``$EDGECV_PI_ROOT`` or the edgecv cache);
building the trixie root and its ai-edge-litert venv took 19 minutes under emulation on 2 busy cores, once.
"""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecv.device import emulate as em
from edgecv.device import emulated_kit
from edgecv.cli.app import app
from edgecv.errors import DataError, Unsupported
from edgecv.measure.gate import GateConfig, check_result
from edgecv.measure.report import Report


@pytest.fixture(scope="module")
def emulated(pi_root, tmp_path_factory):
    from conftest import synthetic_images, write_image_folder
    from edgecv.config import BenchConfig, CompressConfig, Optimizer, PruneConfig, TrainConfig
    from edgecv.data.datasets import load
    from edgecv.device.kit import make_kit
    from edgecv.flows.pipeline import compress

    base = tmp_path_factory.mktemp("emulate")
    x, y = synthetic_images(120, seed=21)
    folder = write_image_folder(base / "images", x[:80], y[:80], x[80:], y[80:], ("left", "middle", "right"))
    compress(CompressConfig(out=base / "run", data=str(folder), prune=PruneConfig(sparsity=0.0),
                            train=TrainConfig(epochs=2, batch_size=16, optimizer=Optimizer.ADAM, learning_rate=3e-3),
                            bench=BenchConfig(warmup=1, runs=5)))
    kit = make_kit([base / "run" / "tflite_int8.tflite", base / "run" / "tflite_float32.tflite"], load(folder),
                   base / "kit", samples=40).path
    out = base / "out"
    result = CliRunner().invoke(app, ["device", "emulate", str(kit), "--runtime", "ai_edge_litert", "--runs", "3",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return out, result.stdout, kit


def test_litert_runs_on_todays_pi_os_and_agrees_with_the_host(emulated):
    out, stdout, _ = emulated
    host = Report.load(out / "host.json")
    report = Report.load(out / "emulated-ai_edge_litert.json")  # the host's own reader
    env = report.environment
    assert env["python"].startswith("3.13") and env["machine"] == "aarch64"  # trixie: Raspberry Pi OS today
    assert env["runtime"]["name"] == "ai_edge_litert" and env["device"]["emulated"]["root"] == "Debian trixie arm64"
    for stage, host_stage in zip(report.stages, host.stages):
        assert stage.model == host_stage.model
        assert abs(stage.accuracy - host_stage.accuracy) <= 0.05
    merged = json.loads((out / "merged.json").read_text())
    cells = [cell for m in merged["models"] for cell in m["results"].values() if cell and "top1_differs" in cell]
    assert len(cells) == 2 and all(0 <= c["top1_differs"] <= c["top1_compared"] == 40 for c in cells)
    assert [d["latency_meaningful"] for d in merged["devices"]] == [True, False]
    assert "EMULATED" in stdout and "top-1 ≠" in stdout


def test_the_legacy_runtime_on_bookworm(emulated, tmp_path, monkeypatch):
    """tflite-runtime 2.14 has no wheel for trixie's Python 3.13: it is refused there and runs on bookworm
    (its root is used when cached, never built here: a second root costs minutes)."""
    _, _, kit = emulated
    with pytest.raises(Unsupported, match="no wheel for Python 3.13"):
        emulated_kit.emulate(kit, ["tflite_runtime"], tmp_path / "o")
    bookworm = Path.home() / ".cache" / "edgecv" / "pi-root-bookworm-arm64"
    if not em.root_is_complete(bookworm, "bookworm"):
        pytest.skip(f"no cached bookworm root at {bookworm} (build one with suite='bookworm')")
    monkeypatch.setenv("EDGECV_PI_ROOT", str(bookworm))
    runs = emulated_kit.emulate(kit, ["tflite_runtime"], tmp_path / "o", runs=2, suite="bookworm")
    report = Report.load(runs[0].result)
    assert runs[0].python.startswith("3.11") and report.environment["runtime"]["name"] == "tflite_runtime"
    assert report.environment["device"]["emulated"]["runtime"] == "tflite_runtime (legacy)"


def test_check_gates_on_the_accuracy_a_device_runtime_measured(emulated, tmp_path):
    out, _, kit = emulated
    result = out / "emulated-ai_edge_litert.json"
    int8, parent = kit / "tflite_int8.tflite", kit / "tflite_float32.tflite"
    ok = check_result(int8, result, GateConfig(max_drop=50), reference_model=parent)
    assert ok.passed and ok.candidate.runtime["name"] == "ai_edge_litert"
    strict = check_result(int8, result, GateConfig(max_drop=50, max_size_kb=0.5), reference_model=parent)
    assert not strict.passed
    cli = CliRunner().invoke(app, ["check", str(int8), "--measured-by", str(result), "--reference", str(parent),
                                   "--max-drop", "50"])
    assert cli.exit_code == 0 and "passed" in cli.stdout
    other = tmp_path / "tflite_int8.tflite"  # same name, another file: its numbers are not these
    other.write_bytes(parent.read_bytes())
    with pytest.raises(DataError, match="measured another"):
        check_result(other, result, GateConfig(), reference_model=parent)


# --- no emulation needed ---------------------------------------------------------------------------


def test_a_half_built_root_is_not_used(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)  # what an interrupted debootstrap leaves: no stamp
    assert not em.root_is_complete(root)
    (root / em.STAMP_NAME).write_text(json.dumps({**em.STAMP, "packages": ["python3"]}))
    assert not em.root_is_complete(root)  # built for other packages
    (root / em.STAMP_NAME).write_text(json.dumps(em.STAMP))
    assert em.root_is_complete(root) and em.STAMP["suite"] == em.DEFAULT_SUITE == "trixie"
    assert not em.root_is_complete(root, "bookworm")


def test_a_root_of_another_suite_is_refused_not_deleted(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    (root / em.STAMP_NAME).write_text(json.dumps(em.stamp("bookworm")))
    monkeypatch.setenv("EDGECV_PI_ROOT", str(root))
    with pytest.raises(DataError, match="holds a bookworm root, not trixie"):
        em.ensure_root()
    assert em.root_is_complete(root, "bookworm")


def test_runtimes_per_suite():
    assert em.check_runtimes(None) == [em.PiRuntime.AI_EDGE_LITERT] == em.check_runtimes([], "bookworm")
    assert list(em.PiRuntime)[0] == em.DEFAULT_RUNTIME == "ai_edge_litert"
    with pytest.raises(Unsupported, match="tflite_runtime \\(legacy\\) has no wheel for Python 3.13 on trixie") as e:
        em.check_runtimes(["ai_edge_litert", "tflite_runtime"])
    assert e.value.exit_code == 3 and "\n" not in str(e.value)
    assert em.check_runtimes(["tflite_runtime", "ai_edge_litert"], "bookworm") == [em.PiRuntime.TFLITE_RUNTIME,
                                                                                   em.PiRuntime.AI_EDGE_LITERT]
    assert em.runtime_label("tflite_runtime") == "tflite_runtime (legacy)"
    with pytest.raises(DataError, match="suite buster is not offered"):
        em.check_runtimes(None, "buster")


def test_the_mirror_comes_from_the_hosts_apt_sources(tmp_path, monkeypatch):
    listed = tmp_path / "sources.list"
    listed.write_text("# a comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n"
                      "deb-src http://mirror.example/debian bookworm main\n")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://other.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://other.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://third.example/node\nSuites: nodistro\nComponents: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n")
    (parts / "old.list.disabled").write_text("deb http://ignored.example/debian bookworm main\n")
    sources = em.host_apt_sources(listed, parts)
    assert [s.uri for s in sources] == ["http://mirror.example/debian", "http://mirror.example/debian",
                                        "http://other.example/debian", "http://other.example/debian-security",
                                        "http://third.example/node"]
    assert sources[0].signed_by == "/k.gpg" and sources[0].components == ["main", "contrib"]
    debian = em.host_debian_sources(sources, "bookworm")
    assert [s.uri for s in debian] == ["http://mirror.example/debian", "http://other.example/debian",
                                       "http://other.example/debian-security"]  # not the third-party one
    assert debian[1].lines() == [
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://other.example/debian bookworm main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://other.example/debian bookworm-updates main",
        "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://other.example/debian bookworm main",
        "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://other.example/debian bookworm-updates main"]
    monkeypatch.setattr(em, "host_codename", lambda: "bookworm")
    monkeypatch.delenv(em.MIRROR_ENV, raising=False)
    assert em.debian_mirror(sources=sources) == "http://mirror.example/debian"
    assert em.debian_mirror("http://given.example/debian/") == "http://given.example/debian"
    monkeypatch.setenv(em.MIRROR_ENV, "http://env.example/debian")
    assert em.debian_mirror(sources=sources) == "http://env.example/debian"
    with pytest.raises(DataError, match="not an http"):
        em.debian_mirror("deb.debian.org")
    monkeypatch.delenv(em.MIRROR_ENV)
    with pytest.raises(Unsupported, match="set EDGECV_APT_MIRROR"):
        em.debian_mirror(sources=[s for s in sources if "debian" not in s.uri])


def test_not_root_is_one_line_exit_3(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Unsupported, match="needs root"):
        em.check_host()


@pytest.mark.parametrize("remove", ["edgecv_bench.py", "samples.npz", "model"])
def test_a_folder_that_is_not_a_kit(tmp_path, remove, tiny_tflite, tiny_dataset):
    from edgecv.device.kit import make_kit

    kit = make_kit([tiny_tflite["int8"]], tiny_dataset, tmp_path / "kit", samples=5).path
    if remove == "model":
        (kit / "tiny_int8.tflite").unlink()
    else:
        (kit / remove).unlink()
    result = CliRunner().invoke(app, ["device", "emulate", str(kit), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "is not a device kit" in result.stderr


def test_a_runtime_that_is_not_offered(tmp_path, tiny_tflite, tiny_dataset):
    from edgecv.device.kit import make_kit

    kit = make_kit([tiny_tflite["int8"]], tiny_dataset, tmp_path / "kit", samples=5).path
    with pytest.raises(DataError, match="not offered"):
        emulated_kit.emulate(kit, ["tensorflow"], tmp_path / "o")


def test_check_result_names_what_the_file_lacks(tmp_path):
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"stages": [{"stage": "a", "model": "a.tflite", "accuracy": 0.5}]}))
    (tmp_path / "b.tflite").write_bytes(b"x")
    with pytest.raises(DataError, match="no result for b.tflite"):
        check_result(tmp_path / "b.tflite", result, GateConfig(), reference_model=tmp_path / "a.tflite")
    with pytest.raises(DataError, match="does not exist"):
        check_result(tmp_path / "none.tflite", result, GateConfig(), reference_model=tmp_path / "a.tflite")
