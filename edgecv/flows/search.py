"""``search``: the fastest (or smallest) model within an allowed accuracy drop, from a grid of channel ratio x
magnitude sparsity x quantization mode around one parent.

Each parent is made once and reused: the float model is trained (or loaded) once, each channel ratio is cut
and fine-tuned once, each sparsity is applied to that once, and only the conversions multiply. Every
candidate is measured on the same test images and the same runtime; the drop is against the parent's float
accuracy on those images.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, replace

from edgecv.measure.benchmark import benchmark_keras, find_runtime, host_environment, now
from edgecv.config import Objective, QuantMode, SearchConfig
from edgecv.data.datasets import load
from edgecv.compress.export import load_keras, save_keras
from edgecv.fsutil import run_dir, write_text
from edgecv.progress import Progress, ProgressFn, ignore
from edgecv.flows.stages import tflite_stage
from edgecv.measure.report import (Report, StageResult, StageStatus, arm_instructions, drop_in_words, npu_estimates,
                                  pareto_front, save_png)

ARM_COST_CPU = "cortex-a76"  # the Pi 5's core: what --objective arm-cost minimises (the A72's count is kept too)
NPU_CONFIG = "ethos-u55-128"  # what --objective npu-cycles minimises: Vela's total cycles on an Ethos-U55-128


@dataclass
class Candidate:
    name: str
    channel_ratio: float
    sparsity: float
    mode: QuantMode
    result: StageResult
    drop: float | None = None  # accuracy points below the parent's float accuracy
    on_front: bool = False
    macs: int | None = None

    def cost(self, objective: Objective) -> float | None:
        if objective is Objective.ARM_COST:
            return (arm_instructions(self.result) or {}).get(ARM_COST_CPU)
        if objective is Objective.IMX500_MEMORY:
            return (self.result.details.get("imx500") or {}).get("memory_bytes")
        if objective is Objective.NPU_CYCLES:  # int8 candidates only: Vela compiles no float model
            return (npu_estimates(self.result).get(NPU_CONFIG) or {}).get("cycles_total")
        return self.result.p50() if objective is Objective.LATENCY else self.result.size_bytes


@dataclass
class SearchResult:
    parent: StageResult  # the float parent, as Keras
    candidates: list[Candidate]
    objective: Objective
    max_drop: float
    chosen: Candidate | None  # the cheapest within max_drop; None when none is
    most_accurate: Candidate | None  # what the search can offer when nothing is within max_drop
    seconds: float
    environment: dict = field(default_factory=dict)

    @property
    def miss(self) -> float | None:
        """Points by which the most accurate candidate misses the constraint (None when one meets it)."""
        if self.chosen is not None or self.most_accurate is None or self.most_accurate.drop is None:
            return None
        return self.most_accurate.drop - self.max_drop

    def to_dict(self) -> dict:
        return {"schema": "edgecv.search/1", "objective": self.objective.value, "max_drop": self.max_drop,
                "parent": asdict(self.parent), "chosen": self.chosen.name if self.chosen else None,
                "most_accurate": self.most_accurate.name if self.most_accurate else None, "miss_points": self.miss,
                "seconds": self.seconds, "environment": self.environment,
                "candidates": [asdict(c) for c in self.candidates]}


class Eta:
    """Time left, from what the finished jobs took: fine-tunes by images seen, benchmarks by count."""

    def __init__(self):
        self.image_seconds: float | None = None  # seconds per training image
        self.bench_seconds: float | None = None

    def learn_training(self, seconds: float, images: int) -> None:
        if images:
            self.image_seconds = seconds / images

    def learn_bench(self, seconds: float) -> None:
        self.bench_seconds = seconds if self.bench_seconds is None else 0.5 * (self.bench_seconds + seconds)

    def left(self, training_images: int, benchmarks: int) -> str:
        if (training_images and self.image_seconds is None) or (benchmarks and self.bench_seconds is None):
            return "estimating time left"
        seconds = training_images * (self.image_seconds or 0) + benchmarks * (self.bench_seconds or 0)
        return f"about {int(seconds // 60)} min {int(seconds % 60):02d} s left"


def search(config: SearchConfig, on_progress: ProgressFn = ignore) -> SearchResult:
    """Measures every candidate of the grid, marks the Pareto front, picks the cheapest within ``max_drop``;
    writes ``search.json``, ``search.md``, ``search.png`` and the chosen model as ``best.tflite``."""
    with run_dir(config.out) as out:
        return _search(config, out, on_progress)


def _search(config: SearchConfig, out, on_progress: ProgressFn) -> SearchResult:
    from edgecv.compress.channels import prune_channels
    from edgecv.measure.macs import total_macs
    from edgecv.compress.prune import prune
    from edgecv.compress.quantize import calibration_images, make_tflite

    start = time.perf_counter()
    if config.objective is Objective.ARM_COST:  # what the count needs is checked before minutes of training
        from edgecv.device.armcost import prepare

        prepare(on_progress)
    if config.objective is Objective.NPU_CYCLES:
        from edgecv.device.vela import vela_command

        vela_command()  # a missing Vela fails now (exit 3), not after the grid
    if config.target == "imx500":
        from edgecv.device.imx500 import java_runtime

        java_runtime()  # the converter's backend: a missing Java fails now (exit 3)
    for stale in ("search.json", "best.tflite", "best_packerOut.zip"):
        (out / stale).unlink(missing_ok=True)  # their presence says this run finished
    runtime = find_runtime()
    dataset = load(config.data, on_progress).subset(config.train_limit, config.test_limit, config.train.seed).resized(
        config.image_size)
    calibration = calibration_images(dataset, config.calibration_samples, config.train.seed)
    ratios = sorted(set(config.channel_ratios))
    sparsities = sorted(set(config.sparsities))
    n_train = len(dataset.x_train)
    eta = Eta()
    total = len(ratios) * len(sparsities) * len(config.modes)
    finished = 0

    def report_progress(name: str) -> None:
        cuts_left = sum(1 for r in ratios if r > 0 and r not in cut)
        prunes_left = sum(1 for r in ratios for s in sparsities if s > 0 and (r, s) not in thinned)
        images = n_train * (cuts_left * config.finetune_epochs + prunes_left * config.prune.epochs)
        on_progress(Progress("search", finished, total, f"{name}; {eta.left(images, total - finished)}"))

    # the parent
    cut: dict[float, object] = {}
    thinned: dict[tuple[float, float], object] = {}
    if config.model is not None:
        parent = load_keras(config.model, dataset, trust=config.trust_model)
    else:
        from edgecv.train.fit import train

        trained = train(dataset, config.train, on_progress)
        parent = trained.model
        eta.learn_training(trained.seconds, n_train * config.train.epochs)
    if any(r > 0 for r in ratios):
        from edgecv.compress.channels import check_prunable

        check_prunable(parent)  # before anything is measured: a model that cannot be cut fails now, not midway
    save_keras(parent, out / "parent.keras")
    parent_row = benchmark_keras(parent, dataset, config.bench, on_progress, "parent keras float", out / "parent.keras")
    cut[0.0] = parent

    candidates: list[Candidate] = []
    finetune = replace(config.train, epochs=config.finetune_epochs, learning_rate=config.train.learning_rate / 3,
                       warmup_epochs=min(config.train.warmup_epochs, config.finetune_epochs / 10))
    for ratio in ratios:
        if ratio not in cut:
            report_progress(f"cutting {100 * ratio:g}% of the channels")
            t0 = time.perf_counter()
            structured = prune_channels(parent, dataset, ratio, finetune, on_progress)
            eta.learn_training(time.perf_counter() - t0, n_train * config.finetune_epochs)
            cut[ratio] = structured.model
        for sparsity in sparsities:
            key = (ratio, sparsity)
            if sparsity == 0:
                thinned[key] = cut[ratio]
            else:
                report_progress(f"pruning {100 * sparsity:g}% of the weights")
                t0 = time.perf_counter()
                prune_config = replace(config.prune, sparsity=sparsity, seed=config.train.seed)
                thinned[key] = prune(cut[ratio], dataset, prune_config, on_progress).model
                eta.learn_training(time.perf_counter() - t0, n_train * config.prune.epochs)
            macs = total_macs(thinned[key])
            if config.target == "imx500":  # one candidate per grid point: MCT quantizes the Keras model itself
                name = f"channels-{100 * ratio:g}% sparsity-{100 * sparsity:g}% imx500"
                report_progress(name)
                row = imx500_candidate(thinned[key], name, out, dataset, config, on_progress)
                drop = None if row.accuracy is None else 100 * (parent_row.accuracy - row.accuracy)
                candidates.append(Candidate(name, ratio, sparsity, QuantMode.INT8, row, drop, macs=macs))
                finished += len(config.modes)
                continue
            for mode in config.modes:
                name = f"channels-{100 * ratio:g}% sparsity-{100 * sparsity:g}% {mode.value}"  # distinct per grid point
                report_progress(name)
                t0 = time.perf_counter()
                path = out / f"{name.replace(' ', '_').replace('%', '')}.tflite"
                details = {"mode": mode.value}
                row = tflite_stage(name, path, lambda: make_tflite(
                    thinned[key], mode, calibration, config.io_type, details, dataset, config.mixed, config.train.seed,
                    on_progress=on_progress), dataset, config.bench, runtime, on_progress, details)
                eta.learn_bench(time.perf_counter() - t0)
                drop = None if row.accuracy is None else 100 * (parent_row.accuracy - row.accuracy)
                candidates.append(Candidate(name, ratio, sparsity, mode, row, drop, macs=macs))
                finished += 1
    if config.objective is Objective.ARM_COST:
        from edgecv.device.armcost import count_into

        count_into([(out / c.result.model, c.result) for c in candidates if c.result.status is StageStatus.OK],
                   dataset.x_test[:6], inferences=5, on_progress=on_progress)
    if config.objective is Objective.NPU_CYCLES:
        from edgecv.device.vela import estimate_into

        estimate_into([(out / c.result.model, c.result) for c in candidates if c.result.status is StageStatus.OK
                       and c.mode is QuantMode.INT8], [NPU_CONFIG], on_progress)
    report_progress("done")

    result = choose(candidates, parent_row, config.objective, config.max_drop)
    result.seconds = time.perf_counter() - start
    result.environment = host_environment(runtime, config.bench.threads)
    if result.chosen is not None:
        best = "best_packerOut.zip" if config.target == "imx500" else "best.tflite"
        shutil.copyfile(out / result.chosen.result.model, out / f".{best}.part")
        (out / f".{best}.part").replace(out / best)
    write_text(out / "search.md", to_markdown(result))
    plot_search(result, out / "search.png")
    import json

    write_text(out / "search.json", json.dumps(result.to_dict(), indent=2, default=str) + "\n")  # last
    return result


def choose(candidates: list[Candidate], parent: StageResult, objective: Objective, max_drop: float) -> SearchResult:
    """Marks the Pareto front (cost down, accuracy up) and picks the cheapest candidate within ``max_drop``."""
    objective = Objective(objective)
    measured = [c for c in candidates if c.result.status is StageStatus.OK and c.cost(objective) is not None]
    for c, on in zip(measured, pareto_front([c.cost(objective) for c in measured], [c.result.accuracy for c in measured])):
        c.on_front = on
    allowed = [c for c in measured if c.drop <= max_drop + 1e-9]
    chosen = min(allowed, key=lambda c: (c.cost(objective), -c.result.accuracy), default=None)
    most_accurate = max(measured, key=lambda c: (c.result.accuracy, -c.cost(objective)), default=None)
    return SearchResult(parent, candidates, objective, max_drop, chosen, most_accurate, 0.0)


def to_markdown(result: SearchResult) -> str:
    header, _, what, value_of = _AXES[result.objective]
    lines = [f"# edgecv search: {what} within {result.max_drop:g} points", "",
             f"Parent (Keras float): {100 * result.parent.accuracy:.2f} % on {result.parent.images} test images.", "",
             f"| candidate | acc % | drop, points | {header} | MMACs | KB | front | chosen |", "|---|---|---|---|---|---|---|---|"]
    for c in result.candidates:
        r = c.result
        if r.status is not StageStatus.OK:
            lines.append(f"| {c.name} | failed: {r.reason} | | | | | | |")
            continue
        value = "" if c.cost(result.objective) is None else f"{value_of(c):,.4g}"  # e.g. no NPU estimate of a float file
        lines.append(f"| {c.name} | {100 * r.accuracy:.2f} | {c.drop:.2f} | {value} | "
                     f"{(c.macs or 0) / 1e6:.2f} | {r.size_bytes / 1024:,.1f} | {'yes' if c.on_front else ''} | "
                     f"{'**yes**' if c is result.chosen else ''} |")
    lines.append("")
    lines.append(verdict(result))
    return "\n".join(lines) + "\n"


def verdict(result: SearchResult) -> str:
    if result.chosen is not None:
        c = result.chosen
        arm, npu = c.cost(Objective.ARM_COST), c.cost(Objective.NPU_CYCLES)
        if result.objective is Objective.IMX500_MEMORY:
            return (f"chosen: {c.name}, {100 * c.result.accuracy:.2f} % on the IMX500 (MCT fake-quant; "
                    f"{drop_in_words(c.drop, 'the parent')}), {c.cost(result.objective) / 1024:,.1f} KB of the "
                    f"chip's 8 MB: {c.result.model}")
        return (f"chosen: {c.name}, {100 * c.result.accuracy:.2f} % ({drop_in_words(c.drop, 'the parent')}), "
                f"{c.result.p50():.4f} ms p50, {c.result.size_bytes / 1024:,.1f} KB"
                + (f", {arm / 1e6:.3f} M emulated A76 instructions" if arm else "")
                + (f", {npu:,} {NPU_CONFIG} cycles (Vela's estimate)" if npu else ""))
    if result.most_accurate is None:
        return "no candidate could be measured"
    c = result.most_accurate
    return (f"no candidate is within {result.max_drop:g} points of the parent's {100 * result.parent.accuracy:.2f} %: "
            f"the most accurate, {c.name}, drops {c.drop:.2f} points and misses by {result.miss:.2f}")


def imx500_candidate(model, name: str, out, dataset, config: SearchConfig, on_progress: ProgressFn) -> StageResult:
    """A grid point's Keras model through ``edgecv imx500`` into ``imx500/<name>/``, scored on the same test
    images as the parent; a refused or unfit model keeps its row, with why."""
    from edgecv.device.imx500 import quantize_for_imx500
    from edgecv.errors import DataError, first_line

    slug = name.replace(" ", "_").replace("%", "")
    keras_file = out / f"{slug}.keras"
    save_keras(model, keras_file)
    images = config.bench.limit or len(dataset.y_test)
    try:
        result = quantize_for_imx500(keras_file, dataset, out / "imx500" / slug, calibration=config.calibration_samples,
                                     test_images=images, max_drop=None, trust=True, on_progress=on_progress)
    except DataError as e:
        return StageResult(name, status=StageStatus.FAILED, reason=first_line(e), format="imx500")
    finally:
        keras_file.unlink(missing_ok=True)
    return result.row(name, out)


# objective -> (table header, plot axis, what the search looks for, a candidate's value in those units)
_AXES = {
    Objective.LATENCY: ("p50 ms", "p50 latency, ms (1 image, this host)", "fastest", lambda c: c.result.p50()),
    Objective.SIZE: ("KB", "model size, KB", "smallest", lambda c: c.result.size_bytes / 1024),
    Objective.ARM_COST: ("A76 M instr", "emulated instructions per inference on a Pi 5 core (A76), millions",
                         "fewest ARM instructions", lambda c: c.cost(Objective.ARM_COST) / 1e6),
    Objective.IMX500_MEMORY: ("IMX500 KB", "IMX500 memory (runtime + model) of its 8 MB, KB", "smallest IMX500 memory",
                              lambda c: c.cost(Objective.IMX500_MEMORY) / 1024),
    Objective.NPU_CYCLES: ("U55-128 kcycles", "Vela's estimated cycles per inference on an Ethos-U55-128, thousands",
                           "fewest NPU cycles", lambda c: c.cost(Objective.NPU_CYCLES) / 1e3),
}


def plot_search(result: SearchResult, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [c for c in result.candidates if c.result.status is StageStatus.OK
                and c.cost(result.objective) is not None]
    if not measured:
        return
    _, label, _, x = _AXES[result.objective]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([x(c) for c in measured], [100 * c.result.accuracy for c in measured], color="0.6", label="candidates")
    front = sorted((c for c in measured if c.on_front), key=x)
    ax.plot([x(c) for c in front], [100 * c.result.accuracy for c in front], "o-", color="tab:blue",
            label="Pareto front")
    for c in measured:
        ax.annotate(c.name.replace("channels-", "ch").replace("sparsity-", "sp"), (x(c), 100 * c.result.accuracy),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    floor = 100 * result.parent.accuracy - result.max_drop
    ax.axhline(floor, color="tab:red", linestyle="--", label=f"allowed: parent - {result.max_drop:g} pts")
    if result.chosen is not None:
        ax.scatter([x(result.chosen)], [100 * result.chosen.result.accuracy], marker="*", s=250, color="tab:orange",
                   zorder=3, label="chosen")
    ax.set_xlabel(label)
    ax.set_ylabel("top-1 accuracy, %")
    ax.set_title("edgecv search")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_png(fig, path)
    plt.close(fig)


def as_report(result: SearchResult) -> Report:
    """The candidates as a compress-style report, for the CLI's table."""
    return Report(stages=[result.parent] + [c.result for c in result.candidates], environment=result.environment,
                  created=now(), seconds=result.seconds)
