"""``train``: from a data source to a saved model. The budget's clock starts here, before the data is read,
so that ``--budget-minutes`` counts loading and decoding too."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgecv.config import Schedule, TrainConfig
from edgecv.errors import ConfigError
from edgecv.progress import ProgressFn, ignore
from edgecv.train.fit import TrainResult


@dataclass(frozen=True)
class TrainJob:
    config: TrainConfig
    out: Path  # the Keras file to write
    data: str | None = None  # a path; None = EDGECV_DATA, then the caches, then the download
    train_limit: int | None = None
    test_limit: int | None = None
    stream: bool = False  # decode an image folder from disk batch by batch (larger than memory)
    image_size: int | None = None  # with stream: resize to NxN
    cache_dir: Path | None = None  # with stream: keep decoded images here after the first epoch
    teacher: Path | None = None  # a Keras model whose soft targets make up config.distill of the labels

    def __post_init__(self):
        if (self.teacher is None) != (self.config.distill == 0):
            raise ConfigError("distillation needs both a teacher and a weight above 0 (--teacher FILE --distill W)")
        if not self.stream:
            if self.image_size is not None or self.cache_dir is not None:
                raise ConfigError("--image-size and --cache-dir apply to --stream only")
            return
        config = self.config
        if self.data is None:
            raise ConfigError("--stream reads an image folder: pass --data FOLDER")
        if config.budget_minutes is not None:
            raise ConfigError("--budget-minutes fits epochs to in-memory data: it does not combine with --stream")
        if (config.augment or config.label_smoothing or config.schedule is not Schedule.CONSTANT
                or config.weight_decay or config.ema or config.whiten or config.alternate_flips):
            raise ConfigError(f"--stream trains with the classic recipe only: augmentation, schedules, label "
                              f"smoothing, weight decay, EMA and whitening need in-memory data (the "
                              f"{config.arch.value} default recipe has some); add --recipe classic and drop them")
        if self.teacher is not None:
            raise ConfigError("--teacher scores the train images in memory: it does not combine with --stream")
        if config.val_split or self.train_limit or self.test_limit:
            raise ConfigError("--stream reads whole splits: --val-split, --train-limit and --test-limit do not apply")


@dataclass
class TrainedFile:
    result: TrainResult
    out: Path
    epochs: int  # run, not asked for: a budget decides them as it goes
    skipped_files: int  # unreadable images passed over while loading
    source: str


def train_to_file(job: TrainJob, on_progress: ProgressFn = ignore) -> TrainedFile:
    """Loads the data (or streams it), trains ``job.config`` and saves the model to ``job.out``."""
    from edgecv.compress.export import save_keras
    from edgecv.data.datasets import load
    from edgecv.fsutil import prepare_out_dir

    started = time.perf_counter()  # a budget counts data loading too
    prepare_out_dir(Path(job.out).parent)  # before minutes of training, not after
    if job.stream:
        from edgecv.train.fit import train_stream

        if job.cache_dir is not None:
            Path(job.cache_dir).mkdir(parents=True, exist_ok=True)
        size = (job.image_size, job.image_size) if job.image_size else None
        result = train_stream(job.data, job.config, size, 3, on_progress,
                              str(job.cache_dir) if job.cache_dir else None)
        skipped, source = 0, str(job.data)
    else:
        from edgecv.train.fit import train

        dataset = load(job.data, on_progress).subset(job.train_limit, job.test_limit, job.config.seed)
        teacher = None
        if job.teacher is not None:
            from edgecv.compress.export import load_keras

            teacher = load_keras(job.teacher, dataset)
        result = train(dataset, job.config, on_progress, started=started, teacher=teacher)
        skipped, source = dataset.skipped, dataset.source
    save_keras(result.model, job.out)
    epochs = len(next(iter(result.history.values()), [])) or job.config.epochs
    return TrainedFile(result, Path(job.out), epochs, skipped, source)
