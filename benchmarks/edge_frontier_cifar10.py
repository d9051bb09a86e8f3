"""Edge frontier v2 and v3: patchnet, its layouts and the recipe options, ablated in short budgeted runs and confirmed over seeds.

Usage:
    python benchmarks/edge_frontier_cifar10.py throughput --data ../shared/datasets/cifar10-jpg
    python benchmarks/edge_frontier_cifar10.py ablate --data ../shared/datasets/cifar10-jpg --row patchnet \\
        [--minutes 10] [--threads 1]
    python benchmarks/edge_frontier_cifar10.py table
    python benchmarks/edge_frontier_cifar10.py confirm --data ../shared/datasets/cifar10-jpg \\
        --reference ../shared/models/mlperf-tiny-resnet8/pretrainedResnet_quant.tflite --row edge2 \\
        [--minutes 30] [--seeds 0 1 2]
    python benchmarks/edge_frontier_cifar10.py flip --data ../shared/datasets/cifar10-jpg \\
        --reference ../shared/models/mlperf-tiny-resnet8/pretrainedResnet_quant.tflite --row edge2
    python benchmarks/edge_frontier_cifar10.py layouts \\
        --reference ../shared/models/mlperf-tiny-resnet8/pretrainedResnet_quant.tflite --widths 24,48,64 16,32,256:1

``throughput``: training images/s of patchnet beside resnet8, and of the throughput switches (batch size, op
determinism, oneDNN, bfloat16), each in its own process so that one setting cannot leak into the next.
``ablate``: one row of the ablation: a budgeted run from scratch (data loading counts), int8 and float32
accuracy on the full JPEG test set. v2 rows change one thing from ``patchnet`` (the edge recipe, unchanged),
v3 rows one thing from edge2 (``--reference`` times the MLPerf int8 file beside each row); the distill rows train
a teacher for the first half of the clock and the student on its soft targets for the rest.
``table``: the ablation rows so far as Markdown. ``confirm``: the chosen row for each seed at the full budget,
the MLPerf reference int8 file timed in the same run, and the issue's targets judged as ratios from that run.
``flip``: each confirmed seed's model (or the ablated one's, without a confirm run in ``--out``) with test-time
flip averaging built into its int8 file with each mirror (REVERSE_V2, or the matrix an Edge TPU also runs),
timed in rotating turns with the plain file and the MLPerf reference.
``layouts``: patchnet widths timed before any training (untrained weights: int8 latency does not depend on
their values), plain and flip-averaged, in turns with the MLPerf reference, to find the layouts worth a run.
Results go to ``benchmarks/results/edge_frontier/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from edgecv.config import Arch, Optimizer, Recipe

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "edge_frontier"

SGD = dict(optimizer=Optimizer.NESTEROV, learning_rate=0.1, weight_decay=5e-4)  # replaces Adam (3e-3, no decay)
ROWS = {  # name: (what changes, TrainConfig overrides of the edge recipe [, teacher=(budget share, its overrides)])
    "resnet8": ("ResNet-8, edge recipe (the reference layout)", dict(arch=Arch.RESNET8)),
    "patchnet": ("patchnet, edge recipe (Adam 3e-3, smoothing 0.1, random flips, 4-px shifts)",
                 dict(arch=Arch.PATCHNET)),
    "sgd": ("+ SGD-Nesterov 0.1, decoupled weight decay 5e-4", dict(arch=Arch.PATCHNET, **SGD)),
    "smooth02": ("+ label smoothing 0.2", dict(arch=Arch.PATCHNET, label_smoothing=0.2)),
    "shift2": ("+ 2-pixel shifts", dict(arch=Arch.PATCHNET, shift=2)),
    "altflip": ("+ alternating flips", dict(arch=Arch.PATCHNET, alternate_flips=True)),
    "ema": ("+ weight EMA, momentum 0.999", dict(arch=Arch.PATCHNET, ema=0.999)),
    "whiten": ("+ whitening stem start", dict(arch=Arch.PATCHNET, whiten=True)),
    "batch256": ("+ batch 256 (rate unchanged)", dict(arch=Arch.PATCHNET, batch_size=256)),
    # what the ablation kept: the preset patchnet trains with by default
    "edge2": ("patchnet, edge2 recipe", dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2)),
    # v3: one change each from edge2 (the sgd row above is edge2 at 10 minutes: the base of these rows)
    "latepool1": ("edge2 + block 1 pools after its second conv (that conv at 16x16)",
                  dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, late_pool=1)),
    "stem32": ("edge2 + a 32-channel stem (block 2 at 62 to stay under 100k parameters)",
               dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, widths=(32, 48, 62))),
    "b1wide": ("edge2 + 56 channels in both blocks (more of the work at 16x16, same parameter budget)",
               dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, widths=(24, 56, 56))),
    "e2shift2": ("edge2 + 2-pixel shifts", dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, shift=2)),
    "e2batch256": ("edge2 + batch 256 (rate unchanged)", dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, batch_size=256)),
    "e2b256lr02": ("edge2 + batch 256 at rate 0.2 (the rate scaled with the batch, so the decay per epoch is unchanged)",
                   dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, batch_size=256, learning_rate=0.2)),
    "e2nosmooth": ("edge2 + label smoothing off", dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, label_smoothing=0.0)),
    "e2wd1e-4": ("edge2 + weight decay 1e-4 instead of 5e-4 (less regularisation for a net that under-fits)",
                 dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, weight_decay=1e-4)),
    # half the latency budget, so that flip averaging (two inferences) fits 0.65x: fewer channels where the
    # pixels are many, the parameters moved to block 2 (int8 0.30x the MLPerf p50 here, flip-averaged 0.62-0.64x)
    "slim80": ("edge2 + widths (16, 32, 80): 4.2M MACs against 6.4M, the parameters moved to 8x8 and 4x4",
               dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, widths=(16, 32, 80))),
    # capacity within 100k parameters: block 2 depthwise-separable buys 256 channels for slim80's 96,426 parameters
    "sep256": ("edge2 + widths (16, 32, 256), block 2 depthwise-separable (slim80's parameters, 3.2x its channels)",
               dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, widths=(16, 32, 256), separable=1)),
    # what the v3 ablation kept (the one row over +0.2 points against sgd = edge2)
    "edge3": ("patchnet, edge2 recipe with 2-pixel shifts", dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, shift=2)),
    # distillation inside the budget: a teacher trains for the first half of the clock, then the student (edge2,
    # from scratch) trains on its soft targets for the rest; both clocks start before the data is loaded
    "distill-wide": ("edge2 student of a wider patchnet (32,64,96) teacher trained for the first half, weight 0.5",
                     dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, distill=0.5,
                          teacher=(0.5, dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, widths=(32, 64, 96))))),
    "distill-self": ("edge2 student of an edge2 patchnet teacher trained for the first half, weight 0.5",
                     dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2, distill=0.5,
                          teacher=(0.5, dict(arch=Arch.PATCHNET, recipe=Recipe.EDGE2)))),
}


def log(p, last={}) -> None:
    key = (p.task, p.message.split(" loss")[0])
    if key not in last:
        print(f"  {p.task} {p.message}", flush=True)
        last[key] = True


def threads(n: int | None) -> None:
    if n:
        from edgecv._tf import tf

        tf().config.threading.set_intra_op_parallelism_threads(n)
        tf().config.threading.set_inter_op_parallelism_threads(n)


def config_for(row: str, seed: int, minutes: float):
    """The row's TrainConfig and, for a distillation row, (share of the budget, the teacher's TrainConfig)."""
    overrides = dict(ROWS[row][1])
    teacher = overrides.pop("teacher", None)
    config = _config(overrides, seed, minutes)
    # the teacher starts from another seed: a student drawn like its teacher would retrace its first steps
    return config, (teacher[0], _config(dict(teacher[1]), seed + 100, minutes * teacher[0])) if teacher else None


def _config(overrides: dict, seed: int, minutes: float):
    from edgecv.config import Recipe, recipe_config

    return recipe_config(overrides.pop("recipe", Recipe.EDGE), seed=seed, budget_minutes=minutes, **overrides)


def run(row: str, data: str, seed: int, minutes: float, work: Path, bench, reserve: float = 0.0) -> dict:
    """One budgeted run from scratch: the clock starts before the data is loaded and stops when the int8 file
    is written. Training gets ``minutes - reserve``: the reserve is for saving and converting."""
    from edgecv.compress.export import save_keras
    from edgecv.compress.quantize import calibration_images, convert
    from edgecv.config import QuantMode
    from edgecv.data.datasets import load
    from edgecv.device.edgetpu import static_report
    from edgecv.measure.benchmark import benchmark_tflite, find_runtime
    from edgecv.measure.macs import total_macs
    from edgecv.train.fit import train

    started = time.perf_counter()
    dataset = load(data, log)
    config, teaching = config_for(row, seed, minutes - reserve)
    teacher = None
    if teaching:  # the teacher's clock and the student's both started before the data was loaded
        teacher = train(dataset, teaching[1], log, started=started)
    result = train(dataset, config, log, started=started, track_test=2000,
                   teacher=teacher.model if teacher else None)
    trained = time.perf_counter() - started
    stem = work / f"{row}-seed{seed}"
    save_keras(result.model, stem.with_suffix(".keras"))
    calibration = calibration_images(dataset, 200, seed)
    paths = {mode: Path(f"{stem}-{mode.value}.tflite") for mode in (QuantMode.FLOAT32, QuantMode.INT8)}
    for mode, path in paths.items():  # int8 last: the clock stops when it is written
        path.write_bytes(convert(result.model, mode, calibration))
    wall = time.perf_counter() - started
    measured = {mode.value: asdict(benchmark_tflite(path, dataset, bench, log, name=f"{row} seed {seed} "
                                                    f"{mode.value}", runtime=find_runtime()))
                for mode, path in paths.items()}
    plan = result.plan
    edgetpu = static_report(Path(f"{stem}-int8.tflite"))
    return {
        "row": row, "change": ROWS[row][0], "seed": seed, "budget_minutes": minutes,
        "train_budget_minutes": minutes - reserve, "trained_minutes": trained / 60, "wall_minutes": wall / 60,
        "epochs": plan.epochs, "cut_off": plan.cut_off, "keras_accuracy": result.test_accuracy,
        "curve": {"minutes": [t / 60 for t in plan.epoch_ends], "test_accuracy_2000": plan.test_accuracy},
        "params": result.model.count_params(), "macs": total_macs(result.model),
        "float32": measured["float32"], "int8": measured["int8"],
        "edgetpu_fully_mapped": edgetpu.fully_mapped, "edgetpu_cpu_ops": edgetpu.cpu_ops,
        "config": json.loads(json.dumps(asdict(config), default=str)),
        **({"teacher": {"budget_share": teaching[0], "params": teacher.model.count_params(),
                        "macs": total_macs(teacher.model), "epochs": teacher.plan.epochs,
                        "trained_minutes": teacher.plan.epoch_ends[-1] / 60, "keras_accuracy": teacher.test_accuracy,
                        "config": json.loads(json.dumps(asdict(teaching[1]), default=str))}} if teaching else {}),
    }


def write(path: Path, record: dict) -> None:
    from edgecv.fsutil import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {path}", flush=True)


def ablate(args) -> None:
    from edgecv.config import BenchConfig
    from edgecv.measure.benchmark import host_environment

    threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bench = BenchConfig(warmup=10, runs=50)
    record = run(args.row, args.data, args.seed, args.minutes, work, bench)
    if args.reference:  # timed right after, in the same process, for the latency ratio of this layout
        from edgecv.data.datasets import load
        from edgecv.measure.benchmark import benchmark_tflite, find_runtime

        record["reference_int8"] = asdict(benchmark_tflite(args.reference, load(args.data), bench, log,
                                                           name="MLPerf reference int8", runtime=find_runtime()))
    record["threads"] = args.threads
    record["environment"] = host_environment(None, 1)
    record["command"] = " ".join(["python benchmarks/edge_frontier_cifar10.py", *sys.argv[1:]])
    write(Path(args.out) / f"ablation-{args.row}.json", record)


def table(args) -> str:
    from edgecv.fsutil import write_text

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads((out / f"ablation-{name}.json").read_text()) for name in ROWS
            if (out / f"ablation-{name}.json").exists()]
    base = next((r for r in rows if r["row"] == "patchnet"), None)
    edge2 = next((r for r in rows if r["row"] == "sgd"), None)  # edge2 is the edge recipe + the sgd row's change

    def delta(r, against):
        return f"{100 * (r['int8']['accuracy'] - against['int8']['accuracy']):+.2f}" if against and r is not against \
            else ""

    lines = ["| row | change | params | MMACs | epochs | float % | int8 % | int8 vs patchnet row | int8 vs sgd "
             "(= edge2) row | int8 p50 / MLPerf int8 p50, same run |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = (f"{r['int8']['latency']['p50_ms'] / r['reference_int8']['latency']['p50_ms']:.2f}x"
                 if "reference_int8" in r else "")
        lines.append(f"| {r['row']} | {r['change']} | {r['params']:,} | {r['macs'] / 1e6:.2f} | {r['epochs']} | "
                     f"{100 * r['float32']['accuracy']:.2f} | {100 * r['int8']['accuracy']:.2f} | {delta(r, base)} | "
                     f"{delta(r, edge2)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    write_text(out / "ablation.md", text)
    print(text)
    for path in sorted(out.glob("confirm-*.json")):
        print(confirm_table(path))
    return text


def confirm_table(path: Path) -> str:
    """The seeds of a confirm run and its targets, as Markdown beside its JSON."""
    from edgecv.fsutil import write_text

    record = json.loads(path.read_text())
    lines = ["| seed | params | MMACs | epochs | minutes, data to int8 file | float % | int8 % | int8 p50 ms | "
             "MLPerf int8 p50 ms | ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in record["runs"]:
        ours, theirs = r["int8"]["latency"]["p50_ms"], r["reference_int8"]["latency"]["p50_ms"]
        lines.append(f"| {r['seed']} | {r['params']:,} | {r['macs'] / 1e6:.2f} | {r['epochs']} | "
                     f"{r['wall_minutes']:.1f} | {100 * r['float32']['accuracy']:.2f} | "
                     f"{100 * r['int8']['accuracy']:.2f} | {ours:.4f} | {theirs:.4f} | {ours / theirs:.2f}x |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in record["targets"]:
        lines.append(f"| {t['target']} {t['op']} {t['limit']:,g}{t['unit']} | "
                     f"{t['measured']:,.{3 if t['unit'] else 0}f}{t['unit']} | "
                     f"{'yes' if t['met'] else 'no'} |")
    text = "\n".join(lines) + "\n"
    write_text(path.with_suffix(".md"), text)
    return text


THROUGHPUT = [  # label, settings (each in its own process)
    ("resnet8", dict(arch="resnet8")),
    ("patchnet", dict(arch="patchnet")),
    ("patchnet, batch 256", dict(arch="patchnet", batch_size=256)),
    ("patchnet, batch 512", dict(arch="patchnet", batch_size=512)),
    ("patchnet, no op determinism", dict(arch="patchnet", deterministic=False)),
    ("patchnet, oneDNN off", dict(arch="patchnet", env={"TF_ENABLE_ONEDNN_OPTS": "0"})),
    ("patchnet, mixed bfloat16 (the CPU has AVX512_BF16)", dict(arch="patchnet", policy="mixed_bfloat16")),
]


def throughput(args) -> None:
    """Each setting in a child process (determinism, thread pools and oneDNN are process-wide)."""
    if args.child:
        return throughput_child(args, json.loads(args.child))
    results = []
    for label, setting in THROUGHPUT:
        env = {**os.environ, **setting.get("env", {})}
        out = subprocess.run([sys.executable, __file__, "throughput", "--data", args.data, "--child",
                              json.dumps(setting)], capture_output=True, text=True, env=env)
        if out.returncode:  # a setting this stack cannot run is a finding, not the end of the benchmark
            error = (out.stderr.strip().splitlines() or ["no output"])[-1]
            results.append({"setting": label, **setting, "images_per_second": None, "error": error})
            print(f"  {label}: failed: {error}", flush=True)
            continue
        images_per_second = float(out.stdout.strip().splitlines()[-1])
        results.append({"setting": label, **setting, "images_per_second": images_per_second})
        print(f"  {label}: {images_per_second:.0f} images/s", flush=True)
    from edgecv.measure.benchmark import host_environment

    command = f"python benchmarks/edge_frontier_cifar10.py throughput --data {args.data}"
    write(Path(args.out) / "throughput.json", {"command": command, "environment": host_environment(None, 1),
                                    "train_images": 12800, "results": results})


def throughput_child(args, setting: dict) -> None:
    """The second of two epochs over 12,800 train images (the first traces the graph), edge recipe."""
    from edgecv._tf import keras, tf
    from edgecv.config import Recipe, recipe_config
    from edgecv.data.datasets import load
    from edgecv.train.fit import compile_model, one_hot
    from edgecv.train.models import build
    from edgecv.train.recipe import training_data, with_augmentation

    keras().utils.set_random_seed(0)
    if setting.get("deterministic", True):
        tf().config.experimental.enable_op_determinism()
    if setting.get("policy"):
        keras().mixed_precision.set_global_policy(setting["policy"])
    dataset = load(args.data).subset(train=12800, seed=0)
    config = recipe_config(Recipe.EDGE, arch=setting["arch"], batch_size=setting.get("batch_size"))
    x, y = dataset.x_train, one_hot(dataset.y_train, dataset.num_classes)
    data, steps = training_data(x, y, config)
    trainer = with_augmentation(build(config.arch, dataset.input_shape, dataset.num_classes), config, steps)
    compile_model(trainer, config.optimizer, config.learning_rate, config.label_smoothing)
    times = []

    class Clock(keras().callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    trainer.fit(data, epochs=2, verbose=0, callbacks=[Clock()])
    print(len(x) / times[-1])


def confirm(args) -> None:
    from edgecv.config import BenchConfig
    from edgecv.data.datasets import load
    from edgecv.measure.benchmark import benchmark_tflite, find_runtime, host_environment

    threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bench = BenchConfig(warmup=200, runs=2000)
    path = Path(args.out) / f"confirm-{args.row}.json"
    if path.exists() and not args.resume:
        raise SystemExit(f"{path} exists: pass --resume to add seeds to it, or move it away")
    record = json.loads(path.read_text()) if path.exists() else {"runs": []}
    if any(r["budget_minutes"] != args.minutes for r in record["runs"]):
        raise SystemExit(f"{path} holds runs of another budget than {args.minutes:g} minutes")
    done = {r["seed"] for r in record["runs"]}
    for seed in args.seeds:
        if seed in done:
            continue
        one = run(args.row, args.data, seed, args.minutes, work, bench, reserve=args.reserve)
        # the reference timed right after, in the same process and run, for the ratio
        one["reference_int8"] = asdict(benchmark_tflite(args.reference, load(args.data), bench, log,
                                                        name="MLPerf reference int8", runtime=find_runtime()))
        record["runs"].append(one)
        record.update(command=" ".join(["python benchmarks/edge_frontier_cifar10.py", *sys.argv[1:]]),
                      environment=host_environment(find_runtime(), 1), targets=judge(record["runs"], args.minutes))
        write(path, record)
    for t in record["targets"]:
        print(f"{'MET ' if t['met'] else 'MISS'} {t['target']}: {t['measured']:.3f}{t['unit']} "
              f"(target {t['op']} {t['limit']}{t['unit']})")


def flip(args) -> None:
    """Test-time flip averaging of each confirmed seed's model, built into its int8 file (two inferences per
    image) with each mirror ``flip_averaged`` builds, scored on the full test set, then timed with the plain int8
    file and the MLPerf reference in rotating turns (``measure_latency_in_turns``), so that each ratio to the
    reference is taken round by round on the same host at the same moment."""
    from edgecv.compress.export import load_keras
    from edgecv.compress.flip import Mirror, flip_averaged
    from edgecv.compress.quantize import calibration_images, convert
    from edgecv.config import BenchConfig
    from edgecv.data.datasets import load
    from edgecv.measure.benchmark import benchmark_tflite, find_runtime, host_environment
    from edgecv.runtime import TFLiteModel, measure_latency_in_turns, turn_ratio

    threads(args.threads)
    confirmed, ablated = Path(args.out) / f"confirm-{args.row}.json", Path(args.out) / f"ablation-{args.row}.json"
    if not (confirmed.exists() or ablated.exists()):
        raise SystemExit(f"neither {confirmed} nor {ablated} exists: run confirm or ablate for {args.row} first")
    seeds = ([r["seed"] for r in json.loads(confirmed.read_text())["runs"]] if confirmed.exists()
             else [json.loads(ablated.read_text())["seed"]])
    dataset, work, runtime = load(args.data, log), Path(args.work), find_runtime()
    bench = BenchConfig(warmup=10, runs=10)  # accuracy and the file's facts; latency comes from the turns
    layouts = {"int8_flip_reverse": dict(mirror=Mirror.REVERSE), "int8_flip_matrix": dict(mirror=Mirror.MATRIX)}
    runs = []
    for seed in seeds:
        stem = work / f"{args.row}-seed{seed}"
        model, calibration = load_keras(stem.with_suffix(".keras")), calibration_images(dataset, 200, seed)
        files = {"int8": Path(f"{stem}-int8.tflite")}
        for name, layout in layouts.items():
            files[name] = Path(f"{stem}-{name.replace('_', '-')}.tflite")
            files[name].write_bytes(convert(flip_averaged(model, **layout), "int8", calibration))
        files["reference_int8"] = Path(args.reference)
        one = {"seed": seed, "layouts": {name: {k: str(getattr(v, "value", v)) for k, v in layout.items()}
                                         for name, layout in layouts.items()}}
        for name, path in files.items():
            one[name] = asdict(benchmark_tflite(path, dataset, bench, log, name=f"seed {seed} {name}",
                                                runtime=runtime))
        models = [TFLiteModel(path, runtime=runtime) for path in files.values()]
        timed = measure_latency_in_turns(models, [m.prepare(dataset.x_test[:500]) for m in models],
                                         rounds=args.rounds, runs=args.round_runs, warmup=200)
        reference = timed[-1]
        for name, latency in zip(files, timed):
            one[name]["latency"] = latency
            one[name]["ratio_to_reference"] = turn_ratio(latency, reference)
            one[name]["ratio_to_int8"] = turn_ratio(latency, timed[0])
        runs.append(one)
    record = {"command": " ".join(["python benchmarks/edge_frontier_cifar10.py", *sys.argv[1:]]),
              "environment": host_environment(runtime, 1), "row": args.row, "runs": runs}
    write(Path(args.out) / f"flip-{args.row}.json", record)
    for r in runs:
        for name in ("int8", *layouts):
            ratio, over_int8 = r[name]["ratio_to_reference"], r[name]["ratio_to_int8"]["ratio"]
            print(f"seed {r['seed']} {name}: {100 * r[name]['accuracy']:.2f} %, p50 {r[name]['latency']['p50_ms']:.4f}"
                  f" ms, {over_int8:.2f}x int8, {ratio['ratio']:.2f}x the MLPerf int8 p50 "
                  f"({ratio['lowest']:.2f}-{ratio['highest']:.2f} over {ratio['rounds']} rounds)")


def layouts(args) -> None:
    import tempfile

    import numpy as np

    from edgecv.compress.flip import Mirror, flip_averaged
    from edgecv.compress.quantize import convert
    from edgecv.measure.benchmark import find_runtime, host_environment
    from edgecv.measure.macs import total_macs
    from edgecv.runtime import TFLiteModel, measure_latency_in_turns, turn_ratio
    from edgecv.train.models import patchnet

    threads(args.threads)
    rng, runtime = np.random.default_rng(0), find_runtime()
    calibration = rng.integers(0, 256, (64, 32, 32, 3)).astype(np.float32)  # only the ranges matter here
    rows, paths = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.widths:
            channels, _, separable = text.partition(":")
            widths, separable = tuple(int(w) for w in channels.split(",")), int(separable or 0)
            model = patchnet(widths=widths, separable=separable)
            for flip_averaged_file in (False, True):
                path = Path(tmp) / f"{len(paths)}.tflite"
                built = flip_averaged(model, mirror=Mirror.MATRIX) if flip_averaged_file else model
                path.write_bytes(convert(built, "int8", calibration))
                rows.append({"widths": widths, "separable": separable, "params": model.count_params(),
                             "macs": total_macs(model), "flip_averaged": flip_averaged_file})
                paths.append(path)
        models = [TFLiteModel(p, runtime=runtime) for p in [*paths, Path(args.reference)]]
        images = rng.integers(0, 256, (100, 32, 32, 3)).astype(np.uint8)
        timed = measure_latency_in_turns(models, [m.prepare(images) for m in models], rounds=args.rounds,
                                         runs=args.round_runs, warmup=200)
    for row, latency in zip(rows, timed):
        row.update(p50_ms=latency["p50_ms"], ratio_to_reference=turn_ratio(latency, timed[-1]))
        r = row["ratio_to_reference"]
        print(f"{row['widths']} separable {row['separable']} {'flip-averaged' if row['flip_averaged'] else 'plain'}, "
              f"{row['params']:,} params, {row['macs'] / 1e6:.2f} MMACs: "
              f"{r['ratio']:.2f}x the MLPerf int8 p50 ({r['lowest']:.2f}-{r['highest']:.2f})")
    write(Path(args.out) / "layouts.json", {
        "command": " ".join(["python benchmarks/edge_frontier_cifar10.py", *sys.argv[1:]]),
        "environment": host_environment(runtime, 1), "reference_p50_ms": timed[-1]["p50_ms"], "rows": rows})


def judge(runs: list[dict], minutes: float) -> list[dict]:
    import numpy as np

    def target(name, measured, op, limit, unit=""):
        met = measured <= limit if op == "<=" else measured >= limit
        return {"target": name, "measured": float(measured), "op": op, "limit": limit, "unit": unit, "met": bool(met)}

    int8 = float(np.mean([100 * r["int8"]["accuracy"] for r in runs]))
    ratio = max(r["int8"]["latency"]["p50_ms"] / r["reference_int8"]["latency"]["p50_ms"] for r in runs)
    return [
        target(f"int8 top-1, mean of {len(runs)} seeds", int8, ">=", 85.0, " %"),
        target(f"int8 top-1, mean of {len(runs)} seeds (stretch)", int8, ">=", 88.0, " %"),
        target("int8 p50 / MLPerf reference int8 p50, same run (worst seed)", ratio, "<=", 0.65, "x"),
        target("parameters", max(r["params"] for r in runs), "<=", 100_000),
        target("float minus int8 top-1 (worst seed)",
               max(100 * (r["float32"]["accuracy"] - r["int8"]["accuracy"]) for r in runs), "<=", 0.5, " points"),
        target("whole run, data to int8 file (worst seed)", max(r["wall_minutes"] for r in runs), "<=", minutes,
               " min"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "ablate", "table", "confirm", "flip", "layouts"])
    parser.add_argument("--data")
    parser.add_argument("--row", default="patchnet", choices=list(ROWS))
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, help="TensorFlow's thread pools (default: all cores)")
    parser.add_argument("--reference", help="the MLPerf Tiny int8 .tflite, timed beside each seed")
    parser.add_argument("--work", default="runs/edge-frontier", help="trained models and .tflite files")
    parser.add_argument("--out", default=str(OUT), help="results (JSON, Markdown)")
    parser.add_argument("--resume", action="store_true", help="confirm: keep seeds already in the results")
    parser.add_argument("--widths", nargs="+", default=["24,48,64"],
                        help="layouts: patchnet widths, STEM,B1,B2[:N], N the blocks made depthwise-separable")
    parser.add_argument("--rounds", type=int, default=20, help="flip, layouts: rounds of timing in turns")
    parser.add_argument("--round-runs", type=int, default=1000, help="flip, layouts: timed invokes per model and round")
    parser.add_argument("--reserve", type=float, default=0.5,
                        help="confirm: minutes of the budget kept for saving and converting, not training")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode in ("throughput", "ablate", "confirm", "flip") and not args.data:
        parser.error("--data is required")
    if args.mode in ("confirm", "flip", "layouts") and not (args.reference and Path(args.reference).is_file()):
        parser.error(f"--reference must be the MLPerf Tiny int8 .tflite file, got {args.reference}")
    if args.minutes is None:
        args.minutes = 30.0 if args.mode == "confirm" else 10.0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    {"throughput": throughput, "ablate": ablate, "table": table, "confirm": confirm, "flip": flip,
     "layouts": layouts}[args.mode](args)


if __name__ == "__main__":
    main()
