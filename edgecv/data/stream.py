"""Image folders too large for memory, streamed from disk through tf.data.

Files are listed once (class folders sorted, as ``data.load`` does), decoded by TensorFlow in parallel,
resized to one size, cached to a file on disk after the first epoch, shuffled within a bounded buffer,
batched and prefetched: memory holds a few batches and the shuffle buffer, whatever the folder's size.
Unreadable files are skipped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from edgecv._tf import tf
from edgecv.errors import DataError


@dataclass
class Stream:
    dataset: object  # tf.data.Dataset of (float32 pixels 0-255, one-hot labels), batched
    files: int
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]


def list_folder(root: Path, split: str) -> tuple[list[str], list[int], tuple[str, ...]]:
    classes = tuple(sorted(d.name for d in (root / "train").iterdir() if d.is_dir() and not d.name.startswith(".")))
    if not classes:
        raise DataError(f"{root}/train has no class folders (expected train/<class>/<image>)")
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = root / split / name
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    files.append(str(path))
                    labels.append(label)
    if not files:
        raise DataError(f"{root / split} holds no image files")
    return files, labels, classes


def stream_folder(root: str | os.PathLike, split: str, image_size: tuple[int, int], channels: int = 3,
                  batch_size: int = 64, shuffle: bool = True, seed: int = 0, cache_file: str | None = None,
                  shuffle_buffer: int = 2048) -> Stream:
    """A batched tf.data stream of ``root/split``; ``cache_file`` keeps decoded images on disk after epoch 1."""
    root = Path(root)
    if not (root / split).is_dir():
        raise DataError(f"{root / split} does not exist")
    files, labels, classes = list_folder(root, split)
    t = tf()
    if cache_file is not None:  # a cache of other files, sizes or shapes must never be read back
        key = hashlib.sha256(repr((tuple(image_size), channels)).encode())
        for path in files:
            st = os.stat(path)
            key.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        cache_file = f"{cache_file}-{key.hexdigest()[:16]}"
        for lock in Path(cache_file).parent.glob(Path(cache_file).name + "*.lockfile"):
            lock.unlink()  # left by a killed run; nothing else writes this cache
    height, width = image_size

    def decode(path, label):  # uint8 until batched: the cache and the shuffle buffer hold a quarter of float32
        image = t.io.decode_image(t.io.read_file(path), channels=channels, expand_animations=False)
        if t.shape(image)[0] != height or t.shape(image)[1] != width:
            image = t.cast(t.round(t.image.resize(t.cast(image, t.float32), (height, width))), t.uint8)
        image = t.ensure_shape(image, (height, width, channels))
        return image, label

    def to_model(images, labels):
        return t.cast(images, t.float32), t.one_hot(labels, len(classes))

    data = t.data.Dataset.from_tensor_slices((files, labels))
    if shuffle:  # the file order first, so the bounded buffer below mixes classes from the start
        data = data.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    data = data.map(decode, num_parallel_calls=t.data.AUTOTUNE).ignore_errors()
    if cache_file is not None:
        data = data.cache(cache_file)
    if shuffle:
        data = data.shuffle(min(shuffle_buffer, len(files)), seed=seed)
    data = data.batch(batch_size).map(to_model).prefetch(t.data.AUTOTUNE)
    return Stream(data, len(files), classes, (height, width, channels))
