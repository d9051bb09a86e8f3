#!/usr/bin/env python3
"""edgecv's AI Camera script: run a model converted by ``edgecv imx500`` on a Raspberry Pi AI Camera (Sony
IMX500) and write the device scripts' result JSON (schema edgecv.report/1, one stage).

Shipped in a kit as ``edgecv_imx500.py`` (``edgecv device kit --imx500 out/packerOut.zip``). It imports nothing
of edgecv: the Pi's own Python with picamera2 (Raspberry Pi OS: ``sudo apt install imx500-all
python3-picamera2``) runs it:

    python3 edgecv_imx500.py --package packerOut.zip --frames 300 --out ai-camera.json
    python3 edgecv_imx500.py --rpk network.rpk --label cat --out cat.json   # camera pointed at a cat

Steps: ``imx500-package -i packerOut.zip -o <folder>`` makes ``network.rpk`` (or ``--rpk`` gives one);
picamera2's ``IMX500`` helper loads it onto the camera (the first load takes minutes); then ``--frames`` frames
are read: each frame's output tensor (its top-1 class), the camera's own DNN and DSP time for it
(``IMX500.get_kpi_info``), and the time between frames (frames/s).

The IMX500 runs its network on its own sensor's frames: picamera2 has no way to feed it stored images, so the
kit's test images cannot be pushed through it. Top-1 is measured on what the camera sees: with ``--label CLASS``
(the scene you point it at) ``accuracy`` is the share of frames whose top-1 is that class; without it,
``accuracy`` is null and the per-frame top-1 classes are kept. ``--keep-inputs`` also saves each frame's input
tensor as the DNN received it (``CnnInputTensor``) beside the JSON, so the host can score MCT's fake-quant model
on exactly those inputs.

Exit codes: 0 ok, 2 bad arguments or files, 3 no imx500-package, no picamera2 or no camera.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime

SCHEMA = "edgecv.report/1"
EXIT_BAD_INPUT, EXIT_MISSING = 2, 3  # as edgecv's ExitCode: a test keeps them equal


class Missing(Exception):
    """Something the Pi lacks: imx500-package, picamera2, the camera."""


def _parser():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description="Run an edgecv imx500 model on the Raspberry Pi AI Camera.")
    parser.add_argument("--package", help="packerOut.zip from edgecv imx500 (default: the one beside this script, "
                        "when no --rpk is given)")
    parser.add_argument("--rpk", help="an already packaged network.rpk (skips imx500-package)")
    parser.add_argument("--samples", default=os.path.join(here, "samples.npz"),
                        help="the kit's sample file: its class names label the camera's outputs")
    parser.add_argument("--label", help="the class the camera is pointed at: accuracy is the share of frames "
                        "whose top-1 is it")
    parser.add_argument("--frames", type=int, default=300, help="frames to read after the network has loaded")
    parser.add_argument("--load-timeout", type=float, default=600,
                        help="seconds to wait for the first output (loading the network onto the camera)")
    parser.add_argument("--keep-inputs", action="store_true",
                        help="also save each frame's input tensor to <out>.inputs.npz")
    parser.add_argument("--out", default="ai-camera.json", help="result JSON")
    return parser


def _fail(code, message):
    sys.stderr.write("error: %s\n" % " ".join(str(message).split()))
    return code


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def class_names(samples):
    """The kit's class names, or None when there is no sample file."""
    if not samples or not os.path.isfile(samples):
        return None
    import numpy as np

    with np.load(samples, allow_pickle=False) as z:
        return [str(c) for c in z["classes"]] if "classes" in z.files else None


def package(zip_path, folder):
    """``imx500-package`` (Raspberry Pi OS's imx500-tools) turns packerOut.zip into network.rpk."""
    tool = shutil.which("imx500-package")
    if tool is None:
        raise Missing("imx500-package is not installed: sudo apt install imx500-tools")
    done = subprocess.run([tool, "-i", zip_path, "-o", folder], capture_output=True, text=True)
    rpk = os.path.join(folder, "network.rpk")
    if done.returncode != 0 or not os.path.isfile(rpk):
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise ValueError("imx500-package could not package %s: %s" % (zip_path, lines[-1] if lines else "no output"))
    return rpk


def open_camera(rpk):
    """picamera2's IMX500 helper with the network loaded, and a started Picamera2 on that camera."""
    try:
        from picamera2 import Picamera2
        from picamera2.devices import IMX500
    except ImportError as e:
        raise Missing("picamera2 with its IMX500 helper cannot be imported (%s): on Raspberry Pi OS, sudo apt "
                      "install python3-picamera2 imx500-all" % _first_line(e))
    try:
        imx500 = IMX500(rpk)
    except (RuntimeError, OSError) as e:  # "IMX500: Requested camera dev-node not found" without a camera
        raise Missing("no AI Camera (IMX500) found: %s" % _first_line(e))
    picam2 = Picamera2(imx500.camera_num)
    picam2.start(picam2.create_preview_configuration(), show_preview=False)
    return imx500, picam2


def read_frames(imx500, picam2, frames, load_timeout, keep_inputs=False):
    """Per frame: seconds since the previous frame, top-1, the camera's DNN and DSP ms (None when picamera2
    gives none) and, with ``keep_inputs``, the input tensor."""
    import numpy as np

    started = time.time()
    while True:  # the network is still loading until outputs arrive
        metadata = picam2.capture_metadata()
        if imx500.get_outputs(metadata) is not None:
            break
        if time.time() - started > load_timeout:
            raise Missing("the camera gave no network output within %g s of loading the network" % load_timeout)
    records, last = [], time.perf_counter()
    while len(records) < frames:
        metadata = picam2.capture_metadata()
        now = time.perf_counter()
        outputs = imx500.get_outputs(metadata)
        if outputs is None:
            continue
        kpi = imx500.get_kpi_info(metadata)
        record = {"interval_s": now - last, "top1": int(np.argmax(np.asarray(outputs[0]).reshape(-1))),
                  "dnn_ms": kpi[0] if kpi else None, "dsp_ms": kpi[1] if kpi else None,
                  "sensor_timestamp_ns": metadata.get("SensorTimestamp")}
        if keep_inputs and metadata.get("CnnInputTensor") is not None:
            record["input"] = np.asarray(metadata["CnnInputTensor"], dtype=np.uint8)
        records.append(record)
        last = now
    return records


def _summary_ms(values_s):
    import numpy as np

    ms = np.asarray(values_s, dtype=np.float64) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "runs": int(len(ms))}


def report_from_frames(records, model, size_bytes, classes=None, label=None, versions=None, board=None):
    """The result in the device scripts' schema: one stage whose latency is the camera's own DNN time per
    frame (picamera2's KPI), or the time between frames when the camera gives no KPI."""
    if not records:
        raise ValueError("no frames were read")
    intervals = [r["interval_s"] for r in records]
    dnn = [r["dnn_ms"] / 1000.0 for r in records if r.get("dnn_ms") is not None]
    dsp = [r["dsp_ms"] / 1000.0 for r in records if r.get("dsp_ms") is not None]
    predictions = [r["top1"] for r in records]
    accuracy = None
    if label is not None:
        if classes is None or label not in classes:
            raise ValueError("--label %s is not one of the model's classes (%s)" % (
                label, ", ".join(classes or ["no sample file"])))
        accuracy = sum(p == classes.index(label) for p in predictions) / float(len(predictions))
    stage = {
        "stage": "imx500", "model": model, "format": "imx500", "status": "ok", "accuracy": accuracy,
        "images": len(records) if label is not None else 0, "size_bytes": size_bytes,
        "latency": _summary_ms(dnn) if dnn else _summary_ms(intervals),
        "runtime": {"name": "imx500", "version": (versions or {}).get("picamera2")},
        "details": {
            "frames": len(records), "frames_per_second": len(records) / float(sum(intervals)),
            "frame_interval": _summary_ms(intervals), "camera_dnn": _summary_ms(dnn) if dnn else None,
            "camera_dsp": _summary_ms(dsp) if dsp else None,
            "latency_is": "the camera's DNN time per frame (picamera2 KPI)" if dnn else "the time between frames",
            "label": label, "predictions": predictions,
            "top1_classes": [classes[p] if classes and p < len(classes) else p for p in predictions],
            "accuracy_note": ("share of frames whose top-1 is --label" if label is not None else
                              "null: the IMX500 runs on its own sensor's frames and picamera2 cannot feed it the "
                              "kit's images; give --label for the scene it is pointed at"),
        },
    }
    env = {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
           "runtime": stage["runtime"], "device": {"board": board, "camera": "Raspberry Pi AI Camera (IMX500)"},
           "versions": versions or {}}
    return {"schema": SCHEMA, "stages": [stage], "environment": env, "data": {"frames": len(records)},
            "config": {"frames": len(records), "label": label},
            "created": datetime.now().astimezone().isoformat(timespec="seconds")}


def _board():
    try:
        with open("/proc/device-tree/model") as f:
            return f.read().strip("\x00\n ")
    except OSError:
        return None


def _versions():
    found = {}
    try:
        from importlib.metadata import version

        for name in ("picamera2", "numpy"):
            try:
                found[name] = version(name)
            except Exception:
                found[name] = None
    except ImportError:
        pass
    return found


def _write(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".result-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv=None):
    args = _parser().parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    if args.frames < 1 or args.load_timeout <= 0:
        return _fail(EXIT_BAD_INPUT, "--frames must be >= 1 and --load-timeout > 0")
    if args.package and args.rpk:
        return _fail(EXIT_BAD_INPUT, "give --package or --rpk, not both")
    source = args.rpk or args.package or os.path.join(here, "packerOut.zip")
    if not os.path.isfile(source):
        return _fail(EXIT_BAD_INPUT, "%s does not exist: give --package packerOut.zip (from edgecv imx500) or "
                     "--rpk network.rpk" % source)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        return _fail(EXIT_BAD_INPUT, "cannot write the result into %s" % out_dir)  # checked before the work
    try:
        classes = class_names(args.samples)
    except Exception as e:
        return _fail(EXIT_BAD_INPUT, "cannot read sample file %s: %s" % (args.samples, _first_line(e)))
    if args.label is not None and (classes is None or args.label not in classes):
        return _fail(EXIT_BAD_INPUT, "--label %s is not one of the model's classes (%s)" % (
            args.label, ", ".join(classes or ["no sample file"])))
    work = tempfile.mkdtemp(prefix="edgecv-imx500-")
    try:
        rpk = args.rpk or package(source, work)
        imx500, picam2 = open_camera(rpk)
        try:
            records = read_frames(imx500, picam2, args.frames, args.load_timeout, args.keep_inputs)
        finally:
            picam2.stop()
        report = report_from_frames(records, os.path.basename(source), os.path.getsize(rpk), classes, args.label,
                                    _versions(), _board())
    except Missing as e:
        return _fail(EXIT_MISSING, e)
    except (ValueError, RuntimeError, OSError) as e:
        return _fail(EXIT_BAD_INPUT, _first_line(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.keep_inputs:
        import numpy as np

        inputs = [r.pop("input") for r in records if "input" in r]
        if inputs:
            np.savez_compressed(args.out + ".inputs.npz", inputs=np.stack(inputs),
                                top1=np.array([r["top1"] for r in records]))
    _write(args.out, json.dumps(report, indent=2) + "\n")
    stage = report["stages"][0]
    sys.stdout.write("%s: %.1f frames/s, camera DNN p50 %s ms, top-1 %s\nwrote %s\n" % (
        stage["model"], stage["details"]["frames_per_second"],
        "%.2f" % stage["details"]["camera_dnn"]["p50_ms"] if stage["details"]["camera_dnn"] else "n/a",
        "n/a (no --label)" if stage["accuracy"] is None else "%.2f %%" % (100 * stage["accuracy"]), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
