"""Fixtures that build tiny data and models in seconds, and find the shared CIFAR-10 when it is there."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(os.environ.get("EDGECV_SHARED", REPO.parent / "shared")) / "datasets" / "cifar10-jpg"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session decodes into its own cache, never the user's ~/.cache/edgecv."""
    monkeypatch.setenv("EDGECV_CACHE", str(tmp_path_factory.getbasetemp() / "edgecv-cache"))
    monkeypatch.delenv("EDGECV_DATA", raising=False)


def synthetic_images(n: int, num_classes: int = 3, size: int = 16, seed: int = 0):
    """Class k is a bright square in one of ``num_classes`` places over noise: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    x = rng.integers(0, 80, size=(n, size, size, 3), dtype=np.uint8)
    step = size // num_classes
    for i, label in enumerate(y):
        x[i, :, label * step : (label + 1) * step, :] = 200 + rng.integers(0, 55, dtype=np.uint8)
    return x, y.astype(np.int64)


@pytest.fixture(scope="session")
def tiny_dataset():
    from edgecv.data.datasets import Dataset

    x_train, y_train = synthetic_images(240, seed=1)
    x_test, y_test = synthetic_images(60, seed=2)
    y_test[::10] = (y_test[::10] + 1) % 3  # every tenth test label wrong: no model scores 100 %, gates can fail
    return Dataset(x_train, y_train, x_test, y_test, ("left", "middle", "right"), "synthetic", "synthetic")


@pytest.fixture(scope="session")
def tiny_trained(tiny_dataset):
    """seed-cnn on 16x16 synthetic images, trained briefly: a real model in a few seconds."""
    from edgecv.config import Optimizer, TrainConfig
    from edgecv.train.fit import train

    return train(tiny_dataset, TrainConfig(epochs=3, batch_size=32, optimizer=Optimizer.ADAM, learning_rate=3e-3))


@pytest.fixture(scope="session")
def tiny_tflite(tiny_trained, tiny_dataset, tmp_path_factory):
    """The tiny model as float32 and int8 TFLite files."""
    from edgecv.compress.quantize import calibration_images, convert

    folder = tmp_path_factory.mktemp("tflite")
    paths = {}
    for mode in ("float32", "int8"):
        paths[mode] = folder / f"tiny_{mode}.tflite"
        paths[mode].write_bytes(convert(tiny_trained.model, mode, calibration_images(tiny_dataset, 50)))
    return paths


def write_image_folder(root: Path, x_train, y_train, x_test, y_test, classes, fmt="png") -> Path:
    from PIL import Image

    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (img, label) in enumerate(zip(xs, ys)):
            folder = root / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.squeeze() if img.shape[-1] == 1 else img).save(folder / f"{i:04d}.{fmt}")
    return root


@pytest.fixture
def image_folder(tmp_path):
    x_train, y_train = synthetic_images(60, seed=3)
    x_test, y_test = synthetic_images(30, seed=4)
    return write_image_folder(tmp_path / "images", x_train, y_train, x_test, y_test, ("left", "middle", "right"))


def write_cifar_batches(folder: Path, per_batch: int = 4, seed: int = 0) -> dict:
    """The official CIFAR-10 python layout: pickled dicts of (N, 3072) uint8 rows, channel-first."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, f, protocol=2)
        written[name] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    return written


@pytest.fixture
def cifar_python(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    return folder, write_cifar_batches(folder)


@pytest.fixture
def cifar_archive(tmp_path, cifar_python):
    folder, written = cifar_python
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return archive, written


@pytest.fixture(scope="session")
def shared_cifar():
    if not (SHARED_CIFAR / "train").is_dir():
        pytest.skip(f"real CIFAR-10 JPEGs not found at {SHARED_CIFAR} (set EDGECV_SHARED to the shared folder)")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def pi_root():
    """The emulated Pi the device tests share: ``$EDGECV_PI_ROOT`` or the user's edgecv cache, never rebuilt
    into a temporary cache; skips with the reason where a Pi cannot be emulated."""
    from edgecv.device import emulate as em
    from edgecv.errors import Unsupported

    root = Path(os.environ.get("EDGECV_PI_ROOT") or Path.home() / ".cache" / "edgecv" / "pi-root-trixie-arm64")
    os.environ["EDGECV_PI_ROOT"] = str(root)
    try:
        em.check_host()
    except Unsupported as e:
        if not em.root_is_complete(root, em.DEFAULT_SUITE):
            pytest.skip(f"cannot emulate a Pi here: {e}")
    found = em._read_stamp(root)
    if found and found.get("suite") != em.DEFAULT_SUITE:
        pytest.skip(f"EDGECV_PI_ROOT={root} holds a {found.get('suite')} root")
    return root


@pytest.hookimpl(tryfirst=True)  # before -m selects: the marks must be there to select by
def pytest_collection_modifyitems(items):
    """Every test that runs on the emulated Pi (through the ``pi_root`` fixture, however deep) is marked
    ``emulated``, so ``-m "not emulated"`` leaves out exactly those."""
    for item in items:
        if "pi_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.emulated)
