"""The host side of on-device benchmarking: build a kit to copy to a device, and merge the results back.

A kit is a folder (or ``.tar.gz``) holding the models, ``samples.npz`` (test images, labels, and each model's
inputs already in its layout), ``edgecv_bench.py`` (this package's own ``runtime.py``, so the device runs the
very code the host does), ``kit.json`` (what the samples are) and a README with the steps for a Pi and a Coral.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv import __version__
from edgecv import runtime as rt
from edgecv.measure.benchmark import find_runtime, now, open_tflite, scoring_images
from edgecv.config import BenchConfig
from edgecv.data.datasets import Dataset, fingerprint
from edgecv.errors import DataError
from edgecv.fsutil import atomic_path, json_text, prepare_out_dir, write_text
from edgecv.measure.report import Report, arm_instructions, latency_axis, save_png

KIT_README = """edgecv device kit
=================

Models: {models}
Samples: samples.npz ({images} test images of {source}, with labels and each model's inputs)

Raspberry Pi (today's Raspberry Pi OS, trixie, Python 3.13; any 64-bit OS with Python 3.9+):
    python3 -m venv ~/edgecv && . ~/edgecv/bin/activate
    pip install ai-edge-litert          # numpy comes with it
    python3 edgecv_bench.py --check     # one line per fact: Python, numpy, runtime, CPU and its ISA flags
    python3 edgecv_bench.py --threads 4 --out pi.json
  Legacy (Raspberry Pi OS bookworm or older, Python <= 3.11 only): pip install "tflite-runtime==2.14.0" "numpy<2"

Coral Dev Board or USB Accelerator (compile on an x86-64 Linux host first: edgetpu_compiler MODEL.tflite):
    sudo apt-get install libedgetpu1-std python3-tflite-runtime    # Coral's apt repository
    python3 edgecv_bench.py --edgetpu --models MODEL_edgetpu.tflite --out coral.json

Copy the result JSON back and merge it with host.json, this kit's models measured on the host that made it,
on the same images (a run's report.json was scored on other images, so its accuracies are not comparable):
    edgecv device merge kit/host.json pi.json coral.json --out merged/

Exit codes: 0 ok, 2 a missing or unreadable model or sample file, 3 no TFLite runtime or no Edge TPU.
"""


@dataclass
class Kit:
    path: Path  # the folder, or the archive
    models: list[str]
    images: int
    host: Path  # host.json: the models measured here on the kit's own images, to merge device results with


def make_kit(models: list[str | os.PathLike], dataset: Dataset, out: str | os.PathLike, samples: int = 500,
             archive: bool = False, host_runs: int = 200, imx500: str | os.PathLike | None = None) -> Kit:
    """Writes a device kit for ``models`` with ``samples`` seeded test images, and ``host.json``: the same
    benchmark core run here on those images (``host_runs`` timed runs each), to merge device results with.
    ``imx500``: a ``packerOut.zip`` from ``edgecv imx500``, carried with the AI Camera script
    (``edgecv_imx500.py``, see ``edgecv.device.imx500_camera``).

    Raises:
        DataError: a model that is missing or not a runnable ``.tflite``.
    """
    models = [Path(m) for m in models]
    if imx500:
        _check_imx500(Path(imx500))  # before anything is written
    names = [p.name for p in models]
    if len(set(names)) != len(names):
        raise DataError(f"two models share a file name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}): "
                        "a kit holds them side by side, so rename one")
    runtime = find_runtime()
    x, y = scoring_images(dataset, BenchConfig(limit=samples))
    arrays = {"images": x, "labels": y, "classes": np.array(dataset.classes)}
    for path in models:
        if path.suffix != ".tflite" or not path.is_file():
            raise DataError(f"{path} is not a .tflite file: a kit carries TFLite models only")
        model = open_tflite(path, runtime=runtime)
        if model.input["shape"][1:].tolist() != list(dataset.input_shape):
            raise DataError(f"{path} takes {tuple(model.input['shape'][1:])} images, the data set has {dataset.input_shape}")
        arrays[rt.sample_key(path)] = model.prepare(x)
    manifest = {
        "edgecv": __version__, "created": now(), "models": [p.name for p in models],
        "data": {"source": dataset.source, "kind": dataset.kind, "test_images": int(len(y)),
                 "test_fingerprint": fingerprint(x, y), "classes": list(dataset.classes)},
    }
    out = Path(out)
    for suffix in (".tar.gz", ".tgz"):
        if out.name.endswith(suffix):
            out = out.with_name(out.name[: -len(suffix)])
    folder = prepare_out_dir(out)
    for stale in folder.glob("*.tflite"):  # the device script runs every .tflite in its folder
        if stale.name not in names:
            stale.unlink()
    for path in models:
        with atomic_path(folder / path.name) as tmp:
            shutil.copyfile(path, tmp)
    with atomic_path(folder / "samples.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    with atomic_path(folder / "edgecv_bench.py") as tmp:
        shutil.copyfile(rt.__file__, tmp)
    write_text(folder / "kit.json", json.dumps(manifest, indent=2) + "\n")
    host = rt.run_device([str(folder / n) for n in names], rt.load_samples(str(folder / "samples.npz")), runtime,
                         runs=host_runs, manifest=manifest)
    write_text(folder / "host.json", json.dumps(host, indent=2) + "\n")
    write_text(folder / "README.txt", KIT_README.format(models=", ".join(p.name for p in models), images=len(y),
                                                         source=dataset.source) + (IMX500_README if imx500 else ""))
    if imx500:
        _add_imx500(folder, Path(imx500))
    if not archive:
        return Kit(folder, manifest["models"], int(len(y)), folder / "host.json")
    target = folder.with_name(folder.name + ".tar.gz")  # kit/ and kit.tar.gz side by side
    with atomic_path(target) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
    return Kit(target, manifest["models"], int(len(y)), folder / "host.json")


IMX500_README = """
Raspberry Pi AI Camera (Sony IMX500; packerOut.zip from edgecv imx500):
    sudo apt install imx500-all python3-picamera2    # Raspberry Pi OS: firmware, imx500-package, picamera2
    python3 edgecv_imx500.py --package packerOut.zip --frames 300 --out ai-camera.json
    python3 edgecv_imx500.py --package packerOut.zip --label cat --out cat.json   # pointed at a cat
  The camera runs the network on its own frames: top-1 is on what it sees (--label), with frames/s and the
  camera's own DNN time per frame. Exit codes: 2 bad arguments, 3 no imx500-package, picamera2 or camera.
"""


def _check_imx500(package: Path) -> None:
    import zipfile

    if not package.is_file() or not zipfile.is_zipfile(package):
        raise DataError(f"{package} is not a packerOut.zip from edgecv imx500")


def _add_imx500(folder: Path, package: Path) -> None:
    """The AI Camera's converted model and its script, beside the TFLite ones."""
    from edgecv.device import imx500_camera

    with atomic_path(folder / "packerOut.zip") as tmp:
        shutil.copyfile(package, tmp)
    with atomic_path(folder / "edgecv_imx500.py") as tmp:
        shutil.copyfile(imx500_camera.__file__, tmp)


# --- merging host and device results ------------------------------------------------------------


@dataclass
class DeviceResult:
    label: str
    report: Report

    @property
    def emulated(self) -> bool:
        return bool((self.report.environment.get("device") or {}).get("emulated"))


@dataclass
class Merged:
    devices: list[DeviceResult]
    models: list[str]  # model file names, in first-seen order

    def cell(self, device: DeviceResult, model: str):
        return next((s for s in device.report.stages if s.model and Path(s.model).name == model), None)

    def top1_differences(self, device: DeviceResult, model: str) -> tuple[int, int, str] | None:
        """(images whose top-1 differs, images, the label compared with): against the first result that kept
        per-image predictions for this model on the same test images, or None when there is none."""
        def predictions(stage):
            p = stage.details.get("predictions") if stage is not None and isinstance(stage.details, dict) else None
            return p if isinstance(p, list) and all(isinstance(v, int) for v in p) else None

        mine = self.cell(device, model)
        if predictions(mine) is None:
            return None
        fingerprint = device.report.data.get("test_fingerprint")
        for other in self.devices:
            if other is device:
                return None  # only later results are compared with earlier ones
            theirs = self.cell(other, model)
            if predictions(theirs) is not None and other.report.data.get("test_fingerprint") == fingerprint:
                a, b = np.asarray(predictions(mine)), np.asarray(predictions(theirs))
                if len(a) == len(b):
                    return int(np.sum(a != b)), int(len(a)), other.label
        return None

    def compared(self) -> bool:
        """Whether any result could be compared image by image with an earlier one."""
        return any(self.top1_differences(d, m) for d in self.devices for m in self.models)

    def mixed_images(self) -> bool:
        """Whether the results were scored on different test images (their accuracies then differ by that too)."""
        return len({d.report.data.get("test_fingerprint") for d in self.devices} - {None}) > 1

    def to_dict(self) -> dict:
        return {
            "schema": "edgecv.merged/1",
            "devices": [{"label": d.label, "emulated": d.emulated, "latency_meaningful": not d.emulated,
                         "environment": d.report.environment, "data": d.report.data} for d in self.devices],
            "models": [
                {"model": m, "results": {d.label: _cell_dict(self.cell(d, m), self.top1_differences(d, m))
                                         for d in self.devices}} for m in self.models
            ],
        }


def _cell_dict(stage, differences=None):
    if stage is None:
        return None
    latency = stage.latency or {}
    cell = {"accuracy": stage.accuracy, "p50_ms": latency.get("p50_ms"), "p90_ms": latency.get("p90_ms"),
            "first_ms": latency.get("first_ms"), "size_bytes": stage.size_bytes, "gzip_bytes": stage.gzip_bytes,
            "status": stage.status, "runtime": stage.runtime, "delegation": stage.details.get("delegation"),
            "arm_cost": arm_instructions(stage)}
    if differences is not None:
        cell["top1_differs"], cell["top1_compared"], cell["top1_reference"] = differences
    return cell


def device_label(report: Report, path: Path) -> str:
    env = report.environment
    device = env.get("device") or {}
    # a board names itself; a host by its CPU (a hostname such as "vm" says nothing)
    where = device.get("board") or (f"host {env.get('cpu')}" if env.get("cpu") else None) or device.get("hostname") or path.stem
    runtime = env.get("runtime") or {}
    tpu = " + Edge TPU" if device.get("edgetpu") else ""
    return f"{where} ({runtime.get('name')} {runtime.get('version')}{tpu})"


def merge(paths: list[str | os.PathLike]) -> Merged:
    """Reads host and device result files (one schema) into one table: a column group per device."""
    devices = []
    for path in paths:
        report = Report.load(path)
        label = device_label(report, Path(path))
        if any(d.label == label for d in devices):
            label = f"{label} [{Path(path).name}]"
        devices.append(DeviceResult(label, report))
    if not devices:
        raise DataError("no result files to merge")
    models = []
    for d in devices:
        for s in d.report.stages:
            if s.model and s.format != "keras" and Path(s.model).name not in models:
                models.append(Path(s.model).name)
    return Merged(devices, models)


def plot_merged(merged: Merged, path: str | os.PathLike) -> Path | None:
    """Accuracy against p50 latency, one marker shape per device and one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    markers = "os^DvP*X"
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = []
    for i, device in enumerate(merged.devices):
        images = device.report.data.get("test_images", "?")
        for j, model in enumerate(merged.models):
            stage = merged.cell(device, model)
            if stage is None or stage.accuracy is None or stage.p50() is None:
                continue
            ax.scatter(stage.p50(), 100 * stage.accuracy, marker=markers[i % len(markers)],
                       color=colours[j % len(colours)], s=60, edgecolors="black",
                       label=f"{model} on {device.label} ({images} images)")
            drawn.append(stage.p50())
    if not drawn:
        plt.close(fig)
        return None
    latency_axis(ax, min(drawn) / 1.5, max(drawn) * 1.5)
    ax.set_xlabel("p50 latency, ms per image (log scale)")
    ax.set_ylabel("accuracy, %")
    ax.set_title("accuracy vs latency per device")
    if merged.mixed_images():  # a 200-image device sample beside a 10,000-image host run differs by chance too
        ax.text(0.01, 0.01, "warning: scored on different test images; accuracies differ by sampling too",
                transform=ax.transAxes, fontsize=8, color="tab:red", va="bottom")
    ax.legend(fontsize=7, loc="best")
    return save_png(fig, path)


def save_merged(merged: Merged, out: str | os.PathLike) -> Path:
    """merged.json and merged.png into ``out``."""
    folder = prepare_out_dir(out)
    write_text(folder / "merged.json", json_text(merged.to_dict()))
    plot_merged(merged, folder / "merged.png")
    return folder
