"""Runs inside the IMX500 toolchain's own venv (TensorFlow 2.15, Keras 2, Sony's MCT and imx500-converter):
quantizes a Keras 2 model for the IMX500, scores the float and the fake-quant model, exports it and converts it.

This file imports nothing of edgecv (that venv does not have it): ``edgecv.device.imx500`` starts it as
``<venv>/bin/python imx500_worker.py request.json`` and reads back ``result`` (a JSON file). Progress goes to
stdout as ``EDGECV-PROGRESS {json}`` lines; everything the tools log goes to stderr. On a failure the result
file holds ``{"error": one line, "kind": "data" | "missing"}`` and the exit status is 2 or 3.

request.json: {"model": .h5, "calibration": .npy (N,H,W,C) raw pixels, "test_x": .npy, "test_y": .npy,
"choose_x"/"choose_y": .npy or null (train images that decide on GPTQ), "work": folder, "result": path,
"memory_kb": weights-memory target for mixed precision or null, "gptq": "off" | "auto" | "on",
"gptq_epochs": int, "max_drop": points (GPTQ's trigger), "gate_drop": points or null (no conversion when the
fake-quant model loses more), "batch": int, "converter_timeout": seconds}
"""

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

PREFIX = "EDGECV-PROGRESS "


class Failure(Exception):
    def __init__(self, message, kind="data"):
        super().__init__(message)
        self.kind = kind


def progress(task, done, total, message=""):
    sys.stdout.write(PREFIX + json.dumps({"task": task, "done": done, "total": total, "message": message}) + "\n")
    sys.stdout.flush()


def first_line(error):
    """The line that says what went wrong: TensorFlow's graph errors open with "in user code:" and a traceback,
    and name the cause in their last lines."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return next((line for line in reversed(lines) if "Error" in line), lines[-1])
    return lines[0]


def top1_classes(model, x, batch):
    """Each image's top-1 class: kept, so that a gate can compare the two models image by image."""
    import numpy as np

    return np.argmax(model.predict(x.astype(np.float32), batch_size=batch, verbose=0), axis=-1)


def top1(model, x, y, batch):
    import numpy as np

    return float(np.mean(top1_classes(model, x, batch) == y))


_SIZE = re.compile(r"^\s*([0-9.]+)\s*([KMG]?B)\s*$")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def size_bytes(text):
    """The converter's report writes sizes as "269.03KB" (binary units: "8.00MB" is 8,388,608 bytes)."""
    found = _SIZE.match(str(text))
    if not found:
        raise Failure("the converter's memory report has an unreadable size: {!r}".format(text))
    return int(round(float(found.group(1)) * _UNITS[found.group(2)]))


def memory_report(folder):
    reports = sorted(name for name in os.listdir(folder) if name.endswith("_MemoryReport.json"))
    if not reports:
        raise Failure("the converter wrote no memory report")
    with open(os.path.join(folder, reports[0])) as f:
        report = json.load(f)["Memory Report"]
    return reports[0], {
        "memory_bytes": size_bytes(report["Memory Usage"]),
        "available_bytes": size_bytes(report["Total Memory Available On Chip"]),
        "runtime_bytes": size_bytes(report["Runtime Memory Physical Size"]),
        "model_bytes": size_bytes(report["Model Memory Physical Size"]),
        "reserved_bytes": size_bytes(report.get("Reserved Memory", "0B")),
        "fits": bool(report["Fit In Chip"]),
        "utilization": report.get("Memory Utilization", ""),
    }


def tensors(folder):
    """Input and output tensors as dnnParams.xml (what the camera's firmware reads) describes them."""
    path = os.path.join(folder, "dnnParams.xml")
    if not os.path.isfile(path):
        return {"inputs": [], "outputs": []}
    root = ET.parse(path).getroot()

    def read(node):
        dims = sorted(node.iter("dimension"), key=lambda d: int(d.get("ordinal", 0)))
        return {"name": node.get("name"), "shape": [int(d.get("size")) for d in dims],
                "bits": int(node.get("bitsPerElement", 8)), "format": node.get("format"),
                "scale": float(node.get("scale", 1.0)), "shift": int(node.get("shift", 0))}

    return {"inputs": [read(n) for n in root.iter("inputTensor")],
            "outputs": [read(n) for n in root.iter("outputTensor")]}


def converter_error(output):
    """The converter's own words for a refusal: its first ERROR line, without the log prefix."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if re.search(r"\b(ERROR|CRITICAL|FATAL)\b", line) or "Exception" in line or "Error:" in line:
            line = re.sub(r"^\S+ \S+ (ERROR|CRITICAL|FATAL)\s*:\s*", "", line)
            line = re.sub(r"\s*\[/\S+\]$", "", line)
            return line
    return lines[-1] if lines else "no output"


def convert(exported, out, timeout):
    imxconv = os.path.join(os.path.dirname(sys.executable), "imxconv-tf")
    started = time.time()
    try:
        done = subprocess.run([imxconv, "-i", exported, "-o", out, "--overwrite-output"], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure("imxconv-tf did not finish within {} s".format(timeout), "missing")
    sys.stderr.write(done.stdout[-20000:] + done.stderr[-20000:])
    text = done.stdout + "\n" + done.stderr
    if done.returncode != 0 or not os.path.isfile(os.path.join(out, "packerOut.zip")):
        if "java: command not found" in text or "java: not found" in text:
            raise Failure("imxconv-tf needs a Java 17 runtime on PATH", "missing")
        raise Failure("imxconv-tf refused the model: " + converter_error(text))
    return time.time() - started


# options that newer tf-keras (2.21, edgecv's) writes and Keras 2.15 does not know, with the value that means
# what 2.15 does anyway
NEWER_OPTIONS = {"InputLayer": {"optional": False}}


def load_model(tf, path):
    """A Keras 2 model file; a newer tf-keras ``.h5`` whose config carries options 2.15 lacks (at their neutral
    value) is read from its config without them, then its weights."""
    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as first:
        if not path.endswith((".h5", ".hdf5")):
            raise
        import h5py

        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
        if config is None:
            raise first
        config = json.loads(config.decode() if isinstance(config, bytes) else config)
        layers = config.get("config", {}).get("layers", [])
        for layer in layers:
            for option, neutral in NEWER_OPTIONS.get(layer.get("class_name"), {}).items():
                if layer["config"].get(option, neutral) != neutral:
                    raise first
                layer["config"].pop(option, None)
        model = tf.keras.models.model_from_json(json.dumps(config))
        model.load_weights(path)
        return model


FOLDABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


def fold_rescaling(tf, model):
    """The converter refuses ``Rescaling``, and edgecv's models start with ``Rescaling(1/255)`` (they take raw
    pixels). A ``Rescaling`` right after the input, with offset 0, whose consumers all multiply it by a kernel
    (Conv2D, DepthwiseConv2D, Dense), is exactly those kernels times its scale (zero padding stays zero): it is
    taken out and the kernels scaled. Returns the model (a new one when folded) and what was done, or None.
    Anything else is left as it is, for the converter to accept or refuse."""
    config = model.get_config()
    sequential = isinstance(config, dict) and "layers" in config and "input_layers" not in config
    layers = config["layers"]
    classes = {layer["config"]["name"]: layer["class_name"] for layer in layers}
    inputs = {name for name, cls in classes.items() if cls == "InputLayer"}

    def sources(layer):
        refs = []
        for node in layer.get("inbound_nodes", []):
            for ref in (node if isinstance(node, list) else []):
                refs.append(ref)
        return refs

    for k, layer in enumerate(layers):
        if layer["class_name"] != "Rescaling":
            continue
        name = layer["config"]["name"]
        offset, scale = layer["config"].get("offset", 0.0), layer["config"].get("scale", 1.0)
        if sequential:
            first = next((j for j, other in enumerate(layers) if other["class_name"] != "InputLayer"), None)
            if k != first or k + 1 >= len(layers):
                return model, None
            consumers = [layers[k + 1]["config"]["name"]]
        else:
            feeds = [ref[0] for ref in sources(layer)]
            if len(feeds) != 1 or feeds[0] not in inputs:
                return model, None
            consumers = [other["config"]["name"] for other in layers
                         if any(ref[0] == name for ref in sources(other))]
        if offset or not isinstance(scale, (int, float)) or not consumers or \
                any(classes[c] not in FOLDABLE for c in consumers):
            return model, None
        if sequential:
            del layers[k]
        else:
            source = sources(layer)[0]
            for other in layers:
                for node in other.get("inbound_nodes", []):
                    for ref in node:
                        if ref[0] == name:
                            ref[0], ref[1], ref[2] = source[0], source[1], source[2]
            for key in ("output_layers",):
                for ref in config[key]:
                    if ref[0] == name:
                        return model, None
            del layers[k]
        rebuilt = (tf.keras.Sequential if sequential else tf.keras.Model).from_config(config)
        for target in rebuilt.layers:
            weights = model.get_layer(target.name).get_weights()
            if target.name in consumers and weights:
                weights[0] = weights[0] * scale  # the kernel; the bias is not multiplied by the input
            target.set_weights(weights)
        return rebuilt, "Rescaling({:g}) folded into {}".format(scale, ", ".join(consumers))
    return model, None


def quantize(mct, model, rep, tpc, request, gptq):
    core = mct.core.CoreConfig()
    target = None
    if request.get("memory_kb"):
        core = mct.core.CoreConfig(mixed_precision_config=mct.core.MixedPrecisionQuantizationConfig(
            num_of_images=min(32, request["calibration_images"])))
        target = mct.core.ResourceUtilization(weights_memory=float(request["memory_kb"]) * 1024)
    if gptq:
        config = mct.gptq.get_keras_gptq_config(n_epochs=int(request.get("gptq_epochs", 5)))
        quantized, info = mct.gptq.keras_gradient_post_training_quantization(
            model, rep, gptq_config=config, target_resource_utilization=target, core_config=core,
            target_platform_capabilities=tpc)
    else:
        quantized, info = mct.ptq.keras_post_training_quantization(
            model, rep, target_resource_utilization=target, core_config=core, target_platform_capabilities=tpc)
    bits = None
    if target is not None and info is not None and getattr(info, "mixed_precision_cfg", None) is not None:
        bits = [int(b) for b in info.mixed_precision_cfg]
    return quantized, bits


def weight_bits(model):
    """Each quantized weight's bit width in the fake-quant model, as {bits: parameters}."""
    counts = {}
    for layer in model.layers:
        quantizers = getattr(layer, "weights_quantizers", None) or {}
        for name, quantizer in quantizers.items():
            bits = getattr(quantizer, "num_bits", None)
            weight = getattr(layer.layer, name, None) if hasattr(layer, "layer") else None
            if bits is None or weight is None:
                continue
            counts[str(int(bits))] = counts.get(str(int(bits)), 0) + int(weight.shape.num_elements())
    return counts


def run(request):
    import numpy as np

    timings = {}
    started = time.time()
    progress("imx500", 0, 5, "loading TensorFlow 2.15 and MCT")
    import tensorflow as tf
    import model_compression_toolkit as mct
    from importlib.metadata import version

    tf.get_logger().setLevel("ERROR")
    try:
        model = load_model(tf, request["model"])
    except Exception as e:
        raise Failure("TensorFlow 2.15 cannot load the model: " + first_line(e))
    original = model
    try:
        model, folded = fold_rescaling(tf, model)
    except Exception as e:  # a config this reader does not know: the model goes as it is
        folded = None
        sys.stderr.write("not folding Rescaling: {}\n".format(first_line(e)))
    calibration = np.load(request["calibration"]).astype(np.float32)
    x_test, y_test = np.load(request["test_x"]), np.load(request["test_y"])
    batch = int(request.get("batch", 32))
    request["calibration_images"] = int(len(calibration))

    def rep():
        for i in range(0, len(calibration), batch):
            yield [calibration[i:i + batch]]

    tpc = mct.get_target_platform_capabilities("tensorflow", "imx500")
    timings["load_s"] = time.time() - started
    progress("imx500", 1, 5, "MCT post-training quantization")
    t = time.time()
    mode = request.get("gptq", "off")
    try:
        quantized, bits = quantize(mct, model, rep, tpc, request, gptq=(mode == "on"))
    except Exception as e:
        raise Failure("MCT cannot quantize the model for the IMX500: " + first_line(e))
    timings["quantize_s"] = time.time() - t
    method = "gptq" if mode == "on" else "ptq"
    chosen = None
    if mode == "auto" and request.get("choose_x"):
        x_choose, y_choose = np.load(request["choose_x"]), np.load(request["choose_y"])
        float_choose = top1(model, x_choose, y_choose, batch)
        ptq_choose = top1(quantized, x_choose, y_choose, batch)
        chosen = {"images": int(len(y_choose)), "float": float_choose, "ptq": ptq_choose}
        if 100 * (float_choose - ptq_choose) > float(request.get("max_drop", 1.0)):
            progress("imx500", 1, 5, "PTQ lost more than the margin: gradient-based PTQ")
            t = time.time()
            try:
                tuned, tuned_bits = quantize(mct, model, rep, tpc, request, gptq=True)
            except Exception as e:  # auto: PTQ's model stands, and the row says why GPTQ did not
                tuned, chosen["gptq_error"] = None, first_line(e)
            timings["gptq_s"] = time.time() - t
            if tuned is not None:
                chosen["gptq"] = top1(tuned, x_choose, y_choose, batch)
                if chosen["gptq"] > ptq_choose:
                    quantized, bits, method = tuned, tuned_bits, "gptq"
    progress("imx500", 2, 5, "scoring float and fake-quant models")
    t = time.time()
    float_classes, imx500_classes = top1_classes(original, x_test, batch), top1_classes(quantized, x_test, batch)
    float_accuracy = float(np.mean(float_classes == y_test))
    imx500_accuracy = float(np.mean(imx500_classes == y_test))
    fold_diff = None
    if folded:  # the fold must not change what the model computes
        probe = x_test[:64].astype(np.float32)
        fold_diff = float(np.max(np.abs(original.predict(probe, verbose=0) - model.predict(probe, verbose=0))))
        if fold_diff > 1e-3:
            raise Failure("folding the input Rescaling changed the outputs by {:.2g}".format(fold_diff))
    timings["score_s"] = time.time() - t
    scored = {"float_accuracy": float_accuracy, "imx500_accuracy": imx500_accuracy, "test_images": int(len(y_test)),
              "calibration_images": int(len(calibration)), "method": method, "chosen_on": chosen,
              "folded": folded, "fold_max_diff": fold_diff,
              "predictions": {"float": [int(c) for c in float_classes], "imx500": [int(c) for c in imx500_classes]}}
    gate = request.get("gate_drop")
    if gate is not None and 100 * (float_accuracy - imx500_accuracy) > float(gate):
        timings["total_s"] = time.time() - started
        return dict(scored, gated=True, timings=timings)  # no conversion for a model that is refused anyway
    progress("imx500", 3, 5, "exporting")
    exported = os.path.join(request["work"], request.get("name", "model") + "_imx500.keras")
    try:
        mct.exporter.keras_export_model(model=quantized, save_model_path=exported)
    except Exception as e:
        raise Failure("MCT cannot export the quantized model: " + first_line(e))
    progress("imx500", 4, 5, "imxconv-tf (Java backend)")
    out = os.path.join(request["work"], "out")
    timings["convert_s"] = convert(exported, out, int(request.get("converter_timeout", 1800)))
    report_name, memory = memory_report(out)
    progress("imx500", 5, 5, "done")
    timings["total_s"] = time.time() - started
    return dict(
        scored, gated=False, **{
        "memory_kb_target": request.get("memory_kb"), "mixed_precision_bits": bits,
        "weight_bits": weight_bits(quantized),
        "input_shape": [int(d) for d in model.input_shape[1:]], "classes": int(model.output_shape[-1]),
        **memory, **tensors(out), "files": {"exported": exported, "out": out, "memory_report": report_name},
        "timings": timings,
        "versions": {"tensorflow": tf.__version__, "model-compression-toolkit": version("model-compression-toolkit"),
                     "mct-quantizers": version("mct-quantizers"), "imx500-converter": version("imx500-converter"),
                     "python": "{}.{}.{}".format(*sys.version_info[:3])},
    })


def main(argv):
    with open(argv[0]) as f:
        request = json.load(f)
    try:
        result = run(request)
        code = 0
    except Failure as e:
        result, code = {"error": first_line(e), "kind": e.kind}, (3 if e.kind == "missing" else 2)
    except MemoryError:
        result, code = {"error": "the toolchain ran out of memory", "kind": "missing"}, 3
    with open(request["result"] + ".part", "w") as f:
        json.dump(result, f)
    os.replace(request["result"] + ".part", request["result"])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
