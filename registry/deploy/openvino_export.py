"""OpenVINO: the project's ONNX model as OpenVINO runs it on x86 CPUs, exported and validated like the ONNX export.

OUTPUT/openvino/model.xml, model.bin   OpenVINO IR of the ONNX conversion (`registry.deploy.onnx_export.convert`:
                                       same input `input` in its layout and outputs `logits`, `probabilities`,
                                       N dynamic), float32 weights
OUTPUT/openvino_info.json              input, outputs, packages, the validation figures, the model dir's hparams

OpenVINO reads `model.onnx` as it is, too (`openvino.Core().read_model("model.onnx")`); `zoo-run perf --runtime
openvino` times either: an export dir's IR (or its model.onnx when it has no IR), or fresh weights converted in
memory. Before the IR is kept, its logits are compared with the checkpoint's (restored in TensorFlow) on the
same real images, at batch 1 and N, as the ONNX export's are.

Precision: every model is compiled with INFERENCE_PRECISION_HINT f32. On CPUs with AVX512_BF16 or AMX the CPU
plugin's default is bfloat16 (measured on a 2-core AMD EPYC Zen 4, ShuffleNetV1 g3, batch 32, one thread:
~2x float32's images/sec), which no longer gives the checkpoint's logits within the validation's 1e-4; float32
keeps TensorFlow's numerics and makes its figures comparable with TensorFlow's and onnxruntime's (all float32).
On CPUs without bfloat16 (e.g. AVX2-only ones) float32 is the default anyway.

`openvino` is optional: `pip install .[openvino]` installs the release pinned for the TensorFlow lane in use.
"""
import collections
import importlib
import json
import os
import shutil

import numpy as np

from registry.deploy import inference_graph, onnx_export
from registry.errors import ZooError

MODEL_DIR = "openvino"
MODEL_XML = "model.xml"
INFO = "openvino_info.json"
PRECISION = "f32"


def require(purpose):
    """The openvino module; a ZooError naming the extra when it is missing."""
    try:
        return importlib.import_module("openvino")
    except ImportError as err:
        raise ZooError("%s needs the optional package openvino, which is missing (%s). Install it with "
                       "`pip install .[openvino]` in this repository (the `openvino` extra, pinned per TensorFlow lane)"
                       % (purpose, err))


def version():
    return require("OpenVINO").__version__.split("-")[0]


def session(source, threads=0):
    """An OpenVINO infer request on the CPU, float32, tuned for the latency of one request (all cores on it):
    `source` an IR .xml or .onnx path, or serialized ONNX bytes; `threads` 0: OpenVINO's default."""
    ov = require("OpenVINO inference")
    core = ov.Core()
    model = core.read_model(source, b"") if isinstance(source, bytes) else core.read_model(source)
    config = {"INFERENCE_PRECISION_HINT": PRECISION, "PERFORMANCE_HINT": "LATENCY"}
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


def artifact(export_dir):
    """The OpenVINO model of an export dir: its IR, else its model.onnx (None when it has neither)."""
    for path in (os.path.join(export_dir, MODEL_DIR, MODEL_XML), os.path.join(export_dir, onnx_export.ONNX_FILE)):
        if os.path.exists(path):
            return path
    return None


def write(model, hparams, checkpoint, output, opset=onnx_export.OPSET, info=None, log=print, input_layout="NHWC"):
    """Converts the checkpoint's frozen inference graph to ONNX and then to OpenVINO IR, validates the IR read back
    from disk against TensorFlow, and keeps OUTPUT/openvino/ and OUTPUT/openvino_info.json; returns the info dict.
    `hparams`: the model dir's."""
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
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    size = int(hparams["image_size"])
    info = collections.OrderedDict(info or ())
    info.update([
        ("path", os.path.join(target, MODEL_XML)),
        ("input", onnx_export.input_info(size, input_layout)),
        ("outputs", {n: "float32 [N, %d]" % int(hparams["num_classes"]) for n in onnx_export.OUTPUT_NAMES}),
        ("precision", "float32 weights; compiled with INFERENCE_PRECISION_HINT=%s" % PRECISION),
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
