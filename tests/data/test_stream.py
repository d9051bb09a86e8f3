"""Streaming an image folder from disk: training works, and memory stays bounded whatever the folder's size."""

import subprocess
import sys

import numpy as np
import pytest

from edgecv.config import Optimizer, TrainConfig
from edgecv.train.fit import train_stream

MEASURE = """
import resource, sys
from edgecv.data.stream import stream_folder
stream = stream_folder(sys.argv[1], "train", (48, 48), batch_size=64, cache_file=sys.argv[2])
for epoch in range(2):  # the first epoch fills the disk cache, the second reads it
    count = sum(int(images.shape[0]) for images, _ in stream.dataset)
print(count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _folder(root, n, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("test", 10)):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count // 2):
                small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)  # smooth images: small JPEGs
                Image.fromarray(small).resize((48, 48)).save(folder / f"{i}.jpg", quality=80)
    return root


def _peak_rss_kb(folder, cache):
    done = subprocess.run([sys.executable, "-c", MEASURE, str(folder), str(cache)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-1000:]
    count, rss = done.stdout.split()
    return int(count), int(rss)


@pytest.mark.slow  # 16 s: a folder larger than the memory limit
def test_memory_stays_bounded_on_a_folder_larger_than_it(tmp_path):
    """Both folders fill the shuffle buffer (2,048 images); beyond that, 15,000 more images (99 MB of pixels as
    uint8, 396 MB as float32) must cost next to no memory. Measured here: about 10 MB more peak RSS, against
    62 MB from 200 images to 20,000, most of it the buffer."""
    medium = _folder(tmp_path / "medium", 5000, 1)
    large = _folder(tmp_path / "large", 20000, 2)
    extra_mb = 15000 * 48 * 48 * 3 / 2**20
    n_medium, rss_medium = _peak_rss_kb(medium, tmp_path / "medium.cache")
    n_large, rss_large = _peak_rss_kb(large, tmp_path / "large.cache")
    assert (n_medium, n_large) == (5000, 20000)
    growth_mb = (rss_large - rss_medium) / 1024
    assert growth_mb < 0.3 * extra_mb, f"peak memory grew {growth_mb:.0f} MB for {extra_mb:.0f} MB more images"


def test_training_from_a_stream_learns(image_folder, tmp_path):
    result = train_stream(image_folder, TrainConfig(epochs=3, batch_size=16, optimizer=Optimizer.ADAM,
                                                     learning_rate=3e-3), cache_dir=str(tmp_path))
    assert result.test_accuracy > 0.6 and len(result.history["loss"]) == 3
    assert len(list(tmp_path.glob("train.tfcache-*.index"))) == 1
    # another image size is another cache, never the old one read back with the wrong shape
    again = train_stream(image_folder, TrainConfig(epochs=1, batch_size=16), image_size=(20, 20),
                         cache_dir=str(tmp_path))
    assert again.model.input_shape == (None, 20, 20, 3)
    assert len(list(tmp_path.glob("train.tfcache-*.index"))) == 2


def test_stream_of_a_missing_split(tmp_path):
    from edgecv.errors import DataError
    from edgecv.data.stream import stream_folder

    with pytest.raises(DataError, match="does not exist"):
        stream_folder(tmp_path, "train", (32, 32))
