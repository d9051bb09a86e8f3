"""CIFAR-10 and image folders as uint8 arrays, found in the usual places and cached once decoded.

Search order: an explicit path, then ``EDGECV_DATA``, then the Keras and edgecv caches, then the official
download. Decoded arrays are kept as ``.npz`` keyed by the source's file sizes and times, so a second run
loads in about a second instead of decoding 60,000 images again.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgecv.errors import DataError, first_line
from edgecv.fsutil import atomic_path
from edgecv.progress import Progress, ProgressFn, ignore

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CACHE_VERSION = 1  # bump when the decoded layout changes


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # uint8, (N, H, W, C), raw pixels 0-255
    y_train: np.ndarray  # int64 class indices
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str  # where it came from, recorded in every report
    kind: str  # image-folder | cifar-python | cifar-archive
    skipped: int = 0  # unreadable files left out of an image folder

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> Dataset:
        """A seeded random slice of each split, for quick runs; ``None`` keeps a split whole."""
        rng = np.random.default_rng(seed)

        def pick(x, y, n):
            if n is None or n >= len(x):
                return x, y
            idx = np.sort(rng.choice(len(x), size=n, replace=False))
            return x[idx], y[idx]

        x_train, y_train = pick(self.x_train, self.y_train, train)
        x_test, y_test = pick(self.x_test, self.y_test, test)
        return replace(self, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    def resized(self, size: int | None) -> Dataset:
        """Every image at ``size`` x ``size`` (bilinear, as Pillow does it), for a model built for another input
        size than the data's: a 96 px MobileNet on 32 px CIFAR-10. ``None`` or the data's own size changes nothing.

        Raises:
            ConfigError: a size outside 8-1024 pixels.
        """
        from edgecv.errors import ConfigError

        if size is None or self.input_shape[:2] == (size, size):
            return self
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise ConfigError(f"--image-size must be {MIN_SIZE} to {MAX_SIZE} pixels, got {size}")
        return replace(self, x_train=_resize(self.x_train, size), x_test=_resize(self.x_test, size))

    def fingerprint(self) -> str:
        return fingerprint(self.x_test, self.y_test)

    def full_fingerprint(self) -> str:
        """Train and test splits both: what a trained model depends on."""
        return fingerprint(self.x_train, self.y_train) + fingerprint(self.x_test, self.y_test)

    def describe(self) -> dict:
        return {
            "source": self.source,
            "kind": self.kind,
            "train_images": int(len(self.x_train)),
            "test_images": int(len(self.x_test)),
            "input_shape": list(self.input_shape),
            "classes": list(self.classes),
            "skipped_files": self.skipped,
            "test_fingerprint": self.fingerprint(),
        }


MIN_SIZE, MAX_SIZE = 8, 1024  # below, nothing is left to classify; above, CIFAR-10's train split alone is 150 GB


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(images), size, size, images.shape[-1]), dtype=np.uint8)
    for i, image in enumerate(images):
        im = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        resized = np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)
        out[i] = resized[..., None] if resized.ndim == 2 else resized
    return out


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """Hash of test images and labels: the same data from another path matches, other data does not."""
    h = hashlib.sha256()
    for array in (images, labels):
        h.update(f"{array.shape}{array.dtype}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("EDGECV_CACHE") or Path.home() / ".cache" / "edgecv")


def load(path: str | os.PathLike | None = None, on_progress: ProgressFn = ignore, download: bool = True,
         image_size: int | None = None) -> Dataset:
    """Find and load a data set: ``path``, then ``EDGECV_DATA``, then the caches, then the download; with
    ``image_size``, every image resized to that square (see :meth:`Dataset.resized`).

    Raises:
        DataError: nothing usable was found, or the source is unreadable.
    """
    return _find(path, on_progress, download).resized(image_size)


def _find(path, on_progress: ProgressFn, download: bool) -> Dataset:
    if path is None and os.environ.get("EDGECV_DATA"):
        path = os.environ["EDGECV_DATA"]
    if path is not None:
        return _load_source(*_classify(Path(path)), on_progress)
    for candidate in (Path.home() / ".keras" / "datasets" / _CIFAR_DIR, cache_dir() / _CIFAR_ARCHIVE):
        if candidate.exists():
            return _load_source(*_classify(candidate), on_progress)
    if not download:
        raise DataError("no CIFAR-10 found: pass --data PATH or set EDGECV_DATA")
    archive = _download_cifar10(on_progress)
    return _load_source("cifar-archive", archive, on_progress)


def _classify(path: Path) -> tuple[str, Path]:
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz")):
            return "cifar-archive", path
        raise DataError(f"{path} is a file but not a CIFAR-10 archive (cifar-10-python.tar.gz)")
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "image-folder", path
    if (path / "data_batch_1").is_file():
        return "cifar-python", path
    if (path / _CIFAR_DIR / "data_batch_1").is_file():
        return "cifar-python", path / _CIFAR_DIR
    if (path / _CIFAR_ARCHIVE).is_file():
        return "cifar-archive", path / _CIFAR_ARCHIVE
    raise DataError(
        f"{path} holds no data set: expected train/<class>/ and test/<class>/ image folders, "
        f"{_CIFAR_DIR}/ or {_CIFAR_ARCHIVE}"
    )


def _load_source(kind: str, path: Path, on_progress: ProgressFn) -> Dataset:
    path = path.resolve()
    cache_file = cache_dir() / f"{kind}-{_fingerprint(path)}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                return Dataset(
                    z["x_train"], z["y_train"], z["x_test"], z["y_test"],
                    tuple(str(c) for c in z["classes"]), str(path), kind, int(z["skipped"]),
                )
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    loader = {"image-folder": _load_image_folder, "cifar-python": _load_cifar_dir, "cifar-archive": _load_cifar_archive}
    dataset = loader[kind](path, on_progress)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f, x_train=dataset.x_train, y_train=dataset.y_train, x_test=dataset.x_test,
                    y_test=dataset.y_test, classes=np.array(dataset.classes), skipped=dataset.skipped,
                )
    except OSError:
        pass  # an unwritable cache costs time on the next run, nothing else
    return dataset


def _fingerprint(path: Path) -> str:
    """Hash of every file's name, size and mtime below ``path``: changes when the data does."""
    h = hashlib.sha256(f"{_CACHE_VERSION}:{path}".encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path) if p != path else p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# --- image folders -----------------------------------------------------------------------------


def _load_image_folder(root: Path, on_progress: ProgressFn) -> Dataset:
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}/train has no class folders (expected train/<class>/<image>)")
    files = {split: _list_split(root, split, classes) for split in ("train", "test")}
    total = sum(len(f) for f in files.values())
    done = 0
    images: dict[str, list] = {}
    skipped = 0
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
        for split, items in files.items():
            decoded = []
            for img, (_, label) in zip(pool.map(_open_image, [p for p, _ in items]), items):
                done += 1
                if img is None:
                    skipped += 1
                else:
                    decoded.append((img, label))
                if done % 1000 == 0 or done == total:
                    on_progress(Progress("load data", done, total, f"{skipped} unreadable" if skipped else ""))
            if not decoded:
                raise DataError(f"no readable images under {root / split}")
            images[split] = decoded
    all_images = [img for split in images.values() for img, _ in split]
    mode = "L" if all(im.mode in ("1", "L", "I;16", "I") for im in all_images) else "RGB"
    size = Counter(im.size for im in all_images).most_common(1)[0][0]  # odd sizes are resized to the usual one

    def to_array(pairs):
        x = np.stack([_to_pixels(im, mode, size) for im, _ in pairs])
        y = np.array([label for _, label in pairs], dtype=np.int64)
        return x, y

    x_train, y_train = to_array(images["train"])
    x_test, y_test = to_array(images["test"])
    return Dataset(x_train, y_train, x_test, y_test, tuple(classes), str(root), "image-folder", skipped)


def _list_split(root: Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    split_dir = root / split
    extra = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and d.name not in classes and not d.name.startswith("."))
    if extra:
        raise DataError(f"{split_dir} has class folders that train/ lacks: {', '.join(extra)}")
    items = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if class_dir.is_dir():
            items += [(p, label) for p in sorted(class_dir.iterdir()) if p.is_file() and not p.name.startswith(".")]
    if not items:
        raise DataError(f"{split_dir} holds no image files")
    return items


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _to_pixels(im, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if im.mode != mode:
        im = im.convert(mode)
    if im.size != size:
        im = im.resize(size, Image.BILINEAR)
    x = np.asarray(im, dtype=np.uint8)
    return x[..., None] if x.ndim == 2 else x


# --- the official CIFAR-10 python version ------------------------------------------------------


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what CIFAR-10's batch files contain, so a crafted pickle cannot run code."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}: not part of a CIFAR-10 batch")


def _unpickle(data: bytes, name: str) -> dict:
    try:
        batch = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # broken bytes fail in many ways; the restricted unpickler has run no code either way
        raise DataError(f"{name} is not a CIFAR-10 batch: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{name} is not a CIFAR-10 batch: holds {type(batch).__name__}, not a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _batches_to_dataset(read, source: str, kind: str, on_progress: ProgressFn) -> Dataset:
    """Builds the data set from a ``read(name) -> bytes`` over the batch files, dir or archive alike."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    parts = []
    for i, name in enumerate(names):
        batch = _unpickle(read(name), name)
        try:
            x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            y = np.asarray(batch["labels"], dtype=np.int64)
        except (KeyError, ValueError) as e:
            raise DataError(f"{name} is not a CIFAR-10 batch: {first_line(e)}") from None
        if len(x) != len(y):
            raise DataError(f"{name} has {len(x)} images but {len(y)} labels")
        parts.append((x, y))
        on_progress(Progress("load data", i + 1, len(names)))
    classes = CIFAR10_CLASSES
    try:
        meta = _unpickle(read("batches.meta"), "batches.meta")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"])
    except (DataError, KeyError):
        pass  # the label names are CIFAR-10's own when the meta file is absent
    x_train = np.concatenate([x for x, _ in parts[:5]])
    y_train = np.concatenate([y for _, y in parts[:5]])
    return Dataset(x_train, y_train, parts[5][0], parts[5][1], classes, source, kind)


def _load_cifar_dir(path: Path, on_progress: ProgressFn) -> Dataset:
    def read(name):
        try:
            return (path / name).read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {path / name}: {e.strerror or e}") from None

    return _batches_to_dataset(read, str(path), "cifar-python", on_progress)


def _load_cifar_archive(path: Path, on_progress: ProgressFn) -> Dataset:
    """Reads the batches straight out of the archive: nothing is extracted, so no path can escape."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}

            def read(name):
                if name not in members:
                    raise DataError(f"{path} lacks {name}: not the CIFAR-10 python archive")
                return tar.extractfile(members[name]).read()

            return _batches_to_dataset(read, str(path), "cifar-archive", on_progress)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .tar.gz archive: {first_line(e)}") from None


def _download_cifar10(on_progress: ProgressFn) -> Path:
    target = cache_dir() / _CIFAR_ARCHIVE
    target.parent.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(CIFAR10_URL, timeout=30) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            with open(tmp, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    md5.update(chunk)
                    done += len(chunk)
                    on_progress(Progress("download CIFAR-10", done, total))
            if md5.hexdigest() != CIFAR10_MD5:
                raise DataError(f"the download of {CIFAR10_URL} is damaged (MD5 mismatch); try again")
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise DataError(
            f"no CIFAR-10 found and the download failed ({getattr(e, 'reason', e)}): "
            "pass --data PATH or set EDGECV_DATA"
        ) from None
    return target
