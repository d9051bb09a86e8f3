import hashlib
import os
import pickle
import tarfile

import numpy as np
import pytest

from conftest import synthetic_images, write_image_folder
from edgecv.data import datasets as data
from edgecv.errors import DataError


def test_image_folder_keeps_classes_labels_and_pixels(image_folder):
    ds = data.load(image_folder)
    assert ds.classes == ("left", "middle", "right")
    assert ds.x_train.shape == (60, 16, 16, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (30, 16, 16, 3)
    assert sorted(set(ds.y_train.tolist())) == [0, 1, 2]
    expected, labels = synthetic_images(60, seed=3)
    # the folder is read class by class; every image comes back lossless (PNG) under its own label
    for label in range(3):
        got = ds.x_train[ds.y_train == label]
        want = expected[labels == label]
        assert np.array_equal(np.sort(got.reshape(len(got), -1), axis=0), np.sort(want.reshape(len(want), -1), axis=0))
    assert ds.kind == "image-folder" and ds.skipped == 0


def test_grayscale_folder_gives_one_channel_and_other_class_counts(tmp_path):
    x, y = synthetic_images(20, num_classes=2, seed=5)
    gray = x[..., :1]
    root = write_image_folder(tmp_path / "g", gray, y, gray[:6], y[:6], ("no", "yes"))
    ds = data.load(root)
    assert ds.input_shape == (16, 16, 1)
    assert ds.classes == ("no", "yes") and ds.num_classes == 2


def test_odd_sized_images_are_resized_to_the_common_size(image_folder):
    from PIL import Image

    odd = image_folder / "train" / "left" / "odd.png"
    Image.new("RGB", (40, 24), (255, 0, 0)).save(odd)
    ds = data.load(image_folder)
    assert ds.x_train.shape[1:] == (16, 16, 3)
    assert len(ds.x_train) == 61


def test_unreadable_files_are_skipped_and_counted(image_folder):
    (image_folder / "train" / "left" / "broken.png").write_bytes(b"not an image")
    (image_folder / "test" / "right" / "notes.txt").write_text("hello")
    ds = data.load(image_folder)
    assert ds.skipped == 2
    assert len(ds.x_train) == 60 and len(ds.x_test) == 30


def test_a_folder_with_no_readable_images_is_refused(tmp_path):
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    (tmp_path / "d" / "test" / "a").mkdir(parents=True)
    (tmp_path / "d" / "train" / "a" / "x.jpg").write_bytes(b"garbage")
    (tmp_path / "d" / "test" / "a" / "y.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="no readable images"):
        data.load(tmp_path / "d")


@pytest.mark.parametrize("make", ["missing", "empty", "plain-file"])
def test_bad_data_paths_say_what_is_expected(tmp_path, make):
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    elif make == "plain-file":
        path.write_text("x")
    with pytest.raises(DataError) as e:
        data.load(path)
    assert str(path) in str(e.value)


def test_test_classes_must_exist_in_train(image_folder):
    (image_folder / "test" / "extra").mkdir()
    with pytest.raises(DataError, match="extra"):
        data.load(image_folder)


def test_cifar_python_folder_and_archive_give_the_same_arrays(cifar_python, cifar_archive):
    folder, written = cifar_python
    archive, _ = cifar_archive
    a, b = data.load(folder), data.load(archive)
    assert a.kind == "cifar-python" and b.kind == "cifar-archive"
    assert a.x_train.shape == (20, 32, 32, 3) and a.x_test.shape == (4, 32, 32, 3)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert a.classes == data.CIFAR10_CLASSES
    # channel-first rows become HWC: pixel (0, 0) of the first image is bytes 0, 1024 and 2048 of its row
    row = written["data_batch_1"][0][0]
    assert a.x_train[0, 0, 0].tolist() == [row[0], row[1024], row[2048]]
    # the parent folder is recognised too
    assert data.load(folder.parent).kind == "cifar-python"


def test_a_crafted_pickle_is_refused_without_running(tmp_path, cifar_python):
    folder, _ = cifar_python
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match="refused"):
        data.load(folder)
    assert not marker.exists()


def test_archive_members_are_read_not_extracted(tmp_path, cifar_python, monkeypatch):
    folder, _ = cifar_python
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "data_batch_1", arcname="../../escaped")
        for name in os.listdir(folder):
            tar.add(folder / name, arcname=f"cifar-10-batches-py/{name}")
    work = tmp_path / "a" / "b" / "cwd"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGECV_CACHE", str(cache))
    before = {p for p in tmp_path.rglob("*")}
    assert len(data.load(archive).x_train) == 20
    written = {p for p in tmp_path.rglob("*")} - before
    assert written and all(p.is_relative_to(cache) for p in written)  # only the decoded-array cache


def test_a_damaged_archive_is_one_clear_error(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08 truncated")
    with pytest.raises(DataError, match="not a readable"):
        data.load(bad)


def test_decoded_arrays_are_cached_and_refreshed_when_the_data_change(image_folder, monkeypatch):
    first = data.load(image_folder)
    calls = []
    real = data._load_image_folder
    monkeypatch.setattr(data, "_load_image_folder", lambda *a: calls.append(1) or real(*a))
    again = data.load(image_folder)
    assert calls == [] and np.array_equal(first.x_train, again.x_train)
    x, _ = synthetic_images(1, seed=9)
    from PIL import Image

    Image.fromarray(x[0]).save(image_folder / "train" / "middle" / "new.png")
    changed = data.load(image_folder)
    assert calls == [1] and len(changed.x_train) == 61


def test_search_order_uses_edgecv_data(image_folder, monkeypatch):
    monkeypatch.setenv("EDGECV_DATA", str(image_folder))
    assert data.load().source == str(image_folder.resolve())


def test_offline_with_nothing_found_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EDGECV_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="--data"):
        data.load(download=False)


def test_download_path_fetches_checks_and_loads(tmp_path, monkeypatch, cifar_archive):
    """The real download code, pointed at a local file:// URL instead of the network."""
    archive, _ = cifar_archive
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGECV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    ds = data.load()
    assert ds.kind == "cifar-archive" and len(ds.x_train) == 20
    assert (tmp_path / "cache" / "cifar-10-python.tar.gz").is_file()


def test_a_damaged_download_is_refused_and_not_kept(tmp_path, monkeypatch, cifar_archive):
    archive, _ = cifar_archive
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGECV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "CIFAR10_URL", archive.as_uri())
    with pytest.raises(DataError, match="MD5"):
        data.load()
    assert not (tmp_path / "cache" / "cifar-10-python.tar.gz").exists()


def test_subset_is_seeded_and_sized(tiny_dataset):
    a = tiny_dataset.subset(50, 10, seed=1)
    b = tiny_dataset.subset(50, 10, seed=1)
    assert len(a.x_train) == 50 and len(a.x_test) == 10
    assert np.array_equal(a.y_train, b.y_train) and np.array_equal(a.x_test, b.x_test)
    assert len(tiny_dataset.subset(None, None).x_train) == len(tiny_dataset.x_train)


@pytest.mark.slow  # decodes all 60,000 JPEGs; the default tier reads a slice of them (test_regression_cifar)
def test_real_cifar10_jpeg_folder(shared_cifar):
    ds = data.load(shared_cifar)
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert ds.classes == data.CIFAR10_CLASSES
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
