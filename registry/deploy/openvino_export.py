"""OpenVINO: the project's ONNX model as OpenVINO runs it on x86 CPUs, exported and validated like the ONNX export.

OUTPUT/openvino/model.xml, model.bin   OpenVINO IR of the ONNX conversion (`registry.deploy.onnx_export.convert`:
                                       same input `input` in its layout and outputs `logits`, `probabilities`,
                                       N dynamic), float32 weights
OUTPUT/openvino_info.json              input, outputs, packages, the validation figures, the model dir's hparams

OpenVINO reads `model.onnx` as it is, too (`openvino.Core().read_model("model.onnx")`); `zoo-run perf --runtime
openvino` times either: an export dir's IR (or its model.onnx when it has no IR), or fresh weights converted in
memory. Before the IR is kept, its logits are compared with the checkpoint's (restored in TensorFlow) on the
same real images, at batch 1 and N, as the ONNX export's are.

Precision (PRECISIONS; `--precision`, lane tf2 only for bf16 and int8):
- f32: compiled with INFERENCE_PRECISION_HINT f32: TensorFlow's numerics (the validation's 1e-4), comparable with
  TensorFlow's and onnxruntime's figures. Always exported: exact parity stays available.
- bf16: the same IR compiled with INFERENCE_PRECISION_HINT bf16 (OpenVINO's own default on CPUs with AVX512_BF16
  or AMX: ~1.8x float32's images/sec on a 2-core Xeon with AMX). On a CPU without bfloat16 hardware OpenVINO
  silently compiles float32 instead (its OPTIMIZATION_CAPABILITIES lack BF16): `ran_precision` reads what the
  compiled model really uses, and reports say so.
- int8: OUTPUT/openvino/model_int8.xml, NNCF post-training quantization of the f32 IR (registry.deploy.quantize)
  calibrated on `--calibration_data`'s records, compiled with the f32 hint for what stays unquantized.
A bf16 or int8 export is checked on the validation split of `--calibration_data` (registry.deploy.records_eval):
its top-1 against the f32 IR's goes into openvino_info.json, and a drop of more than `max_accuracy_drop` points
refuses the export (nothing written) with the figures. With int8 asked on a CPU where bf16 really runs, bf16 is
checked as well (on a Zen 4, AVX512_BF16: bf16 1.96x f32's images/sec, int8 1.5x). `default_precision` in the info
file is the fastest precision whose accuracy the export has shown within the bound (f32 included), timed by the
export on this machine (`speed` of each: batch SPEED_BATCH, median of SPEED_RUNS requests in alternating rounds); `zoo-run perf` and
`zoo-run eval` of the export dir use it unless `--precision` says otherwise.

`openvino` is optional: `pip install .[openvino]` installs the release pinned for the TensorFlow lane in use.
"""
import collections
import json
import os
import shutil

import numpy as np

from registry.deploy import inference_graph, onnx_export
from registry import optional
from registry.errors import ZooError

MODEL_DIR = "openvino"
MODEL_XML = "model.xml"
INT8_XML = "model_int8.xml"
INFO = "openvino_info.json"
PRECISION = "f32"
PRECISIONS = ("f32", "bf16", "int8")
HINTS = {"f32": "f32", "bf16": "bf16", "int8": "f32"}   # INFERENCE_PRECISION_HINT of each precision's compile
DEFAULT_MAX_ACCURACY_DROP = 1.0   # top-1 points a bf16/int8 export may lose against f32 on the check split


def model_file(precision):
    """The IR file name of `precision` inside OUTPUT/openvino/."""
    return INT8_XML if precision == "int8" else MODEL_XML


def check_precision(precision, purpose):
    """Raises a ZooError for an unknown precision, for bf16/int8 on lane tf1 (naming lane tf2), and for int8
    without nncf."""
    if precision not in PRECISIONS:
        raise ZooError("unknown precision %r: choose from %s" % (precision, ", ".join(PRECISIONS)))
    if precision != "f32":
        from registry import tf_compat
        problem = tf_compat.low_precision_inference_error("%s --precision %s" % (purpose, precision))
        if problem:
            raise ZooError(problem)
    if precision == "int8":
        from registry.deploy import quantize
        quantize.require("%s --precision int8" % purpose)


def ran_precision(request, precision):
    """What a compiled request really computes in: 'int8', 'bf16', 'f32', or for bf16 on a CPU without bfloat16
    hardware 'f32, bf16 asked: ...'."""
    hint = str(request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT"))
    ran = "bf16" if "bfloat16" in hint or "bf16" in hint else "f32"
    if precision == "int8":
        return "int8"
    if precision == "bf16" and ran != "bf16":
        return "f32, bf16 asked: OpenVINO fell back to float32 on this CPU, which has no bfloat16 hardware"
    return ran


def require(purpose):
    """The openvino module; a ZooError naming the extra when it is missing."""
    return optional.require(purpose, ("openvino",),
                            ("openvino", "the `openvino` extra, pinned per TensorFlow lane"))["openvino"]


def version():
    return require("OpenVINO").__version__.split("-")[0]


def session(source, threads=0, precision="f32"):
    """An OpenVINO infer request on the CPU, compiled with `precision`'s INFERENCE_PRECISION_HINT (HINTS), tuned for
    the latency of one request (all cores on it): `source` an IR .xml or .onnx path, serialized ONNX bytes or an
    openvino.Model; `threads` 0: OpenVINO's default."""
    ov = require("OpenVINO inference")
    core = ov.Core()
    if isinstance(source, ov.Model):
        model = source
    else:
        model = core.read_model(source, b"") if isinstance(source, bytes) else core.read_model(source)
    config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config).create_infer_request()


def run(request, images):
    """{'logits', 'probabilities'}: float32 [N, K] arrays of float32 `images` in the model's input layout."""
    outputs = request.infer({0: np.ascontiguousarray(images, np.float32)})
    by_name = {}
    for port, value in outputs.items():
        for name in port.get_names():
            by_name[name] = np.asarray(value)
    return {name: by_name[name] for name in onnx_export.OUTPUT_NAMES}


def artifact(export_dir, precision="f32"):
    """The OpenVINO model of an export dir for `precision`: its IR, else (f32, bf16) its model.onnx (None when it
    has neither)."""
    ir = os.path.join(export_dir, MODEL_DIR, model_file(precision))
    for path in (ir,) if precision == "int8" else (ir, os.path.join(export_dir, onnx_export.ONNX_FILE)):
        if os.path.exists(path):
            return path
    return None


def write(model, hparams, checkpoint, output, opset=onnx_export.OPSET, info=None, log=print, input_layout="NHWC",
          precision="f32", calibration_data=None, max_accuracy_drop=DEFAULT_MAX_ACCURACY_DROP,
          calibration_images=None):
    """Converts the checkpoint's frozen inference graph to ONNX and then to OpenVINO IR, validates the IR read back
    from disk against TensorFlow, and keeps OUTPUT/openvino/ and OUTPUT/openvino_info.json; returns the info dict.
    `hparams`: the model dir's. `precision` bf16/int8: see the module doc (`calibration_data`: a TFRecord dir, its
    train split calibrates INT8 and its validation split checks accuracy; `calibration_images`: how many, default
    quantize.DEFAULT_IMAGES)."""
    ov = require("--format openvino")
    onnx_packages = onnx_export.versions(("onnx", "tf2onnx"))
    model_proto, onnx_hparams = onnx_export.convert_checkpoint(model, hparams, checkpoint, opset, input_layout)
    target = os.path.join(output, MODEL_DIR)
    staging = target + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    ir = ov.Core().read_model(model_proto.SerializeToString(), b"")
    ov.save_model(ir, os.path.join(staging, MODEL_XML), compress_to_fp16=False)   # float32 weights, as converted
    images, expected = onnx_export.reference(model, hparams, checkpoint)
    request = session(os.path.join(staging, MODEL_XML))
    try:
        differences, limit = onnx_export.validate(
            None, onnx_export.to_layout(images, input_layout), expected, lambda batch: run(request, batch)["logits"],
            what="the OpenVINO model", written=target)
    except ZooError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        precisions, default = _low_precisions(model, hparams, ir, staging, target, input_layout, request, precision,
                                              calibration_data, max_accuracy_drop, calibration_images, log)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    size = int(hparams["image_size"])
    info = collections.OrderedDict(info or ())
    info.update([
        ("path", os.path.join(target, MODEL_XML)),
        ("input", onnx_export.input_info(size, input_layout)),
        ("outputs", {n: "float32 [N, %d]" % int(hparams["num_classes"]) for n in onnx_export.OUTPUT_NAMES}),
        ("precision", "float32 weights; compiled with INFERENCE_PRECISION_HINT=%s" % PRECISION),
        ("precisions", precisions),
        ("default_precision", default),
        ("packages", collections.OrderedDict([("openvino", version())] + list(onnx_packages.items()))),
        ("validation", onnx_export.validation_info(images, expected, limit, differences)),
        ("built_with", inference_graph.changed_hparams(hparams, onnx_hparams)),
    ])
    with open(os.path.join(output, INFO), "w") as f:
        json.dump(info, f, indent=2)
    log("  OpenVINO     %s  (IR of the ONNX conversion, input %s float32 [%s] %s, outputs %s)"
        % (info["path"], onnx_export.INPUT_NAME, ", ".join(map(str, info["input"]["shape"])), input_layout,
           ", ".join(onnx_export.OUTPUT_NAMES)))
    log("  validated: OpenVINO %s (float32) logits = the checkpoint's on %d real images, max abs difference %.1e at "
        "batch 1, %.1e at batch %d (tolerance %.1e)" % (version(), len(images), differences["batch_1"],
                                                        differences["batch_%d" % len(images)], len(images), limit))
    return info


def _low_precisions(model, hparams, ir, staging, target, layout, f32_request, precision, data, max_drop, count, log):
    """({precision: its record}, the default precision) of an export: the f32 IR, and for `precision` bf16/int8 the
    checked low-precision model (written into `staging`). With int8 asked on a CPU that really runs bf16, bf16 is
    checked too. Raises a ZooError, with the figures, when the asked precision's top-1 is more than `max_drop`
    points below f32's on `data`'s validation split. The default is the fastest precision whose accuracy was shown
    within the bound (`_fastest`)."""
    from registry.deploy import quantize, records_eval
    records = collections.OrderedDict([("f32", collections.OrderedDict([
        ("path", os.path.join(target, MODEL_XML)), ("hint", HINTS["f32"]),
        ("ran", ran_precision(f32_request, "f32"))]))])
    if precision == "f32" and not data:
        return records, "f32"
    if not data:   # bf16 without records to check it on: kept available, not the default
        records["bf16"] = collections.OrderedDict([
            ("path", os.path.join(target, MODEL_XML)), ("hint", HINTS["bf16"]),
            ("ran", ran_precision(session(os.path.join(staging, MODEL_XML), precision="bf16"), "bf16")),
            ("accuracy", "not shown: export with --calibration_data DIR to check it on DIR's validation split")])
        return records, "f32"

    def accuracy(request, name):
        log("  checking %s on %s's validation split ..." % (name, data))
        try:
            metrics = records_eval.evaluate(lambda batch: run(request, onnx_export.to_layout(batch, layout))["logits"],
                                            model, hparams, data, log, name)
        except ValueError as err:
            raise ZooError("--calibration_data %s: %s" % (data, err))
        return collections.OrderedDict((k, metrics[k]) for k in ("top1", "top5", "loss", "num_images"))

    records["f32"]["accuracy"] = reference = accuracy(f32_request, "the f32 IR")
    requests = {"f32": f32_request}
    asked = [precision] if precision != "f32" else []
    if precision == "int8":   # where bf16 really runs, it may be the faster one: check it too
        bf16 = session(os.path.join(staging, MODEL_XML), precision="bf16")
        if ran_precision(bf16, "bf16") == "bf16":
            asked.append("bf16")
            requests["bf16"] = bf16
    for name in asked:
        low = collections.OrderedDict([("path", os.path.join(target, model_file(name))), ("hint", HINTS[name])])
        if name == "int8":
            images, split = quantize.calibration_images(model, hparams, data, count or quantize.DEFAULT_IMAGES, log)
            quantized = quantize.quantize(ir, onnx_export.to_layout(images, layout))
            require("--format openvino").save_model(quantized, os.path.join(staging, INT8_XML), compress_to_fp16=False)
            requests[name] = session(os.path.join(staging, INT8_XML), precision="int8")
            low["quantization"] = collections.OrderedDict([
                ("tool", "nncf %s nncf.quantize (defaults: per-channel symmetric int8 weights, per-tensor "
                         "activations, fast bias correction; the first convolution kept float32)" % quantize.version()),
                ("calibration", "%d images of %s's %s split, eval transform" % (len(images), data, split)),
                ("weights", quantize.weight_granularity(quantized))])
        elif name not in requests:
            requests[name] = session(os.path.join(staging, MODEL_XML), precision=name)
        low["ran"] = ran_precision(requests[name], name)
        low["accuracy"] = figures = accuracy(requests[name], "the %s model" % name)
        drop = 100.0 * (reference["top1"] - figures["top1"])
        low["check"] = collections.OrderedDict([
            ("data", "%s (validation split)" % data), ("top1_f32", reference["top1"]),
            ("top1_%s" % name, figures["top1"]), ("top1_drop_points", round(drop, 4)),
            ("max_accuracy_drop_points", max_drop)])
        text = ("%s top-1 %.4f vs f32 %.4f (top-5 %.4f vs %.4f) over %d images of %s's validation split: %+.2f points"
                % (name, figures["top1"], reference["top1"], figures["top5"], reference["top5"],
                   figures["num_images"], data, -drop))
        if drop > max_drop and name == precision:
            raise ZooError("the %s export is refused: %s, more than --max_accuracy_drop %g. Nothing was written to %s; "
                           "export --precision f32 (exact parity), or calibrate on more or other records"
                           % (name, text, max_drop, target))
        log("  accuracy: %s (bound %g)%s%s" % (text, max_drop, "; ran as %s" % low["ran"] if low["ran"] != name else "",
                                               "; over the bound: not a default" if drop > max_drop else ""))
        if name == "int8":
            log("  int8 weights: %s" % ", ".join("%s %s" % (kind, " ".join("%d %s" % (n, g)
                                                                           for g, n in sorted(c.items())))
                                                 for kind, c in sorted(low["quantization"]["weights"].items())))
        records[name] = low
    shown = [name for name, record in records.items()
             if record["ran"] == name and record.get("check", {}).get("top1_drop_points", 0) <= max_drop]
    size = int(hparams["image_size"])
    speeds = _speeds({name: requests[name] for name in shown},
                     onnx_export.to_layout(np.zeros((SPEED_BATCH, size, size, 3), np.float32), layout))
    for name in shown:
        records[name]["speed"] = speeds[name]
    default = _fastest({name: records[name]["speed"]["images_per_sec"] for name in shown})
    log("  speed (OpenVINO, batch %d, median of %d alternating rounds): %s; default_precision %s (the fastest whose accuracy was "
        "checked)" % (SPEED_BATCH, SPEED_RUNS, ", ".join("%s %.0f images/s" % (n, records[n]["speed"]["images_per_sec"])
                                                         for n in shown), default))
    return records, default


SPEED_BATCH = 32   # images per request when an export times its precisions
SPEED_RUNS = 5


def _speeds(requests, images, runs=SPEED_RUNS):
    """{name: {'images_per_sec', 'batch', 'runs'}} of {name: request}: after one untimed request each, `runs`
    rounds time one request of `images` on each in turn (alternating, so that a change in the machine's load
    falls on all of them); each one's median."""
    import time
    seconds = {name: [] for name in requests}
    for request in requests.values():
        run(request, images)
    for _ in range(runs):
        for name, request in requests.items():
            started = time.perf_counter()
            run(request, images)
            seconds[name].append(time.perf_counter() - started)
    return {name: collections.OrderedDict([("images_per_sec", round(len(images) / float(np.median(times)), 1)),
                                           ("batch", len(images)), ("runs", runs)])
            for name, times in seconds.items()}


def _fastest(images_per_sec):
    """The precision with the most images/sec of {precision: images/sec}; f32 on a tie (exact parity)."""
    return max(images_per_sec, key=lambda name: (images_per_sec[name], name == "f32"))
