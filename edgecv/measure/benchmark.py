"""Host benchmark: accuracy, batch-1 latency, parameters, sparsity, size, MACs and peak activation memory of
TFLite and Keras models.

TFLite models go through :mod:`edgecv.runtime`, the same core the device script runs; Keras models are
timed as a ``tf.function`` on single images so the two can share one table.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgecv import __version__
from edgecv import runtime as rt
from edgecv.config import BenchConfig
from edgecv.data.datasets import Dataset
from edgecv.errors import DataError, Unsupported, first_line
from edgecv.compress.export import KERAS_SUFFIXES, load_keras
from edgecv.fsutil import captured_stderr
from edgecv.progress import Progress, ProgressFn, ignore
from edgecv.measure.report import Report, StageResult


def find_runtime(preferred: str | None = None) -> rt.Runtime:
    try:
        return rt.find_runtime(preferred)
    except rt.RuntimeMissing as e:
        raise Unsupported(str(e)) from None


def open_tflite(path: str | Path, threads: int = 1, runtime: rt.Runtime | None = None, plain: bool = False):
    """A ``TFLiteModel``, or one DataError line for a file that is not one."""
    try:
        with captured_stderr():  # LiteRT's C++ log line ("Created ... delegate") would cut through the bars
            return rt.TFLiteModel(path, threads=threads, runtime=runtime or find_runtime(), plain=plain)
    except (ValueError, RuntimeError) as e:  # the interpreter's words for a file that is not a model
        raise DataError(f"{path} is not a runnable TFLite model: {first_line(e)}") from None


def scoring_images(dataset: Dataset, config: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """All test images, or a seeded sample of ``config.limit``: image folders are sorted by class, so the
    first N would be a few classes only."""
    sample = dataset.subset(test=config.limit, seed=0)
    return sample.x_test, sample.y_test


def benchmark_tflite(
    path: str | Path, dataset: Dataset, config: BenchConfig = BenchConfig(), on_progress: ProgressFn = ignore,
    name: str | None = None, runtime: rt.Runtime | None = None, plain: bool = False, keep_predictions: bool = False,
) -> StageResult:
    """``plain``: without the runtime's default delegate (XNNPACK), on TFLite's own kernels. The row's
    ``details["delegation"]`` says which ops the delegate ran on the interpreter that was timed.
    ``keep_predictions``: each image's top-1 class in ``details["predictions"]``, for a paired comparison."""
    path = Path(path)
    x, y = scoring_images(dataset, config)
    task = f"benchmark {name or path.stem}"
    model = open_tflite(path, config.threads, runtime, plain)
    try:
        record = rt.benchmark_tflite(
            path, x, y, threads=config.threads, warmup=config.warmup, runs=config.runs, name=name or path.stem,
            on_step=lambda phase, done, total: on_progress(Progress(task, done, total, phase)), model=model,
            keep_predictions=keep_predictions,
        )
    except (ValueError, RuntimeError) as e:  # e.g. images of another shape than the model takes
        raise DataError(f"{path} cannot run on these images: {first_line(e)}") from None
    record["model"] = path.name
    return StageResult.from_dict(record)


def benchmark_keras(
    model, dataset: Dataset, config: BenchConfig = BenchConfig(), on_progress: ProgressFn = ignore,
    name: str = "keras", path: str | Path | None = None, keep_predictions: bool = False,
) -> StageResult:
    """Keras float: accuracy in batches, latency of single images through a compiled ``tf.function``;
    ``keep_predictions`` as for ``benchmark_tflite``.

    MACs are counted layer by layer (:mod:`edgecv.measure.macs`); the peak memory is left to the TFLite rows, where a
    runtime plans it."""
    from edgecv._tf import tf
    from edgecv.measure.macs import total_macs
    from edgecv.compress.prune import count_params, model_sparsity
    from edgecv.train.fit import top1

    task = f"benchmark {name}"
    x, y = scoring_images(dataset, config)
    on_progress(Progress(task, 0, 2, "accuracy"))
    predictions = top1(model, x)
    accuracy = float(np.mean(predictions == y))
    on_progress(Progress(task, 1, 2, "latency"))
    call = tf().function(lambda t: model(t, training=False))
    one = [tf().constant(x[i : i + 1].astype(np.float32)) for i in range(min(len(x), 64))]
    start = time.perf_counter()
    call(one[0]).numpy()  # first call traces the graph: reported apart
    first = time.perf_counter() - start
    for i in range(config.warmup):
        call(one[i % len(one)]).numpy()
    times = []
    for i in range(config.runs):
        start = time.perf_counter()
        call(one[i % len(one)]).numpy()
        times.append(time.perf_counter() - start)
    latency = rt.summarize(times)
    latency.update(first_ms=first * 1000, warmup=config.warmup)
    on_progress(Progress(task, 2, 2, "done"))
    try:
        macs = total_macs(model)
    except ValueError:  # a model of any image size: its MACs depend on the image
        macs = None
    size = gzip = None
    if path is not None:
        size, gzip = rt.file_sizes(Path(path).read_bytes())
    return StageResult(
        stage=name, model=Path(path).name if path else None, format="keras", accuracy=accuracy, images=len(y),
        latency=latency, params=count_params(model), sparsity=model_sparsity(model), size_bytes=size,
        gzip_bytes=gzip, macs=macs, runtime={"name": "tensorflow", "version": tf().__version__}, threads=None,
        details={"threads_note": "TensorFlow's own intra-op thread pool",
                 **({"predictions": [int(p) for p in predictions]} if keep_predictions else {})},
    )


def benchmark_file(
    path: str | Path, dataset: Dataset, config: BenchConfig = BenchConfig(), on_progress: ProgressFn = ignore,
    runtime: rt.Runtime | None = None, keep_predictions: bool = False,
) -> StageResult:
    """Dispatches on the suffix: ``.tflite`` to the TFLite runtime, Keras files to TensorFlow."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist")
    if path.suffix.lower() == ".tflite":
        return benchmark_tflite(path, dataset, config, on_progress, runtime=runtime, keep_predictions=keep_predictions)
    if path.suffix.lower() in KERAS_SUFFIXES:
        return benchmark_keras(load_keras(path, dataset), dataset, config, on_progress, name=path.stem, path=path,
                               keep_predictions=keep_predictions)
    raise DataError(f"{path} is neither a .tflite nor a Keras model ({', '.join(KERAS_SUFFIXES)})")



def host_environment(runtime: rt.Runtime | None, threads: int | None) -> dict:
    """The device-side environment (Python, OS, CPU and its ISA flags under ``"isa"``, numpy, the runtime; see
    ``edgecv.runtime.environment``) plus the host's TensorFlow stack."""
    env = rt.environment(runtime, threads)
    env["edgecv"] = __version__
    from importlib.metadata import PackageNotFoundError, version

    for module, dist in (("tensorflow", "tensorflow"), ("tf_keras", "tf-keras"),
                         ("tensorflow_model_optimization", "tensorflow-model-optimization")):
        try:
            env[module] = version(dist)
        except PackageNotFoundError:
            env[module] = None
    return env


def benchmark_files(
    paths: list[str | Path], dataset: Dataset, config: BenchConfig = BenchConfig(), on_progress: ProgressFn = ignore,
) -> Report:
    """Benchmarks each model file on the same test images; one row each, in the order given."""
    runtime = find_runtime()
    stages = [benchmark_file(p, dataset, config, on_progress, runtime) for p in paths]
    return Report(stages=stages, environment=host_environment(runtime, config.threads), data=dataset.describe(),
                  config={"bench": asdict(config)}, edgecv=__version__, created=now())


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
