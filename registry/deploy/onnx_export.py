"""ONNX export of the frozen inference graph (tf2onnx), checked with onnxruntime where it is made.

OUTPUT/model.onnx      input `input` float32 [N, S, S, 3] (N dynamic; NHWC, preprocessed like the frozen
                       graph's input), or [N, 3, S, S] with `input_layout="NCHW"` (zoo-run export --onnx_layout NCHW)
                       -> `logits`, `probabilities` float32 [N, K]; opset OPSET by default
OUTPUT/onnx_info.json  opset, names and shapes, converter and runtime versions, the validation figures, the
                       model dir's hparams (input convention) and the ones the graph was built with instead

The graph converted is the one `write_frozen_graph` freezes (variables made constants), built with the
plugin's `export_hparams(hparams, "onnx")` and a dynamic batch; tf2onnx folds batch norm into the
convolutions, and `registry.deploy.onnx_graph` then folds its zero `Pad`s into the convolutions and pools and
writes NHWC channel shuffles as NCHW Reshape-Transpose-Reshape (no layout transpose but the input's, none with
an NCHW input). Before the file is written, onnxruntime's logits are compared with the checkpoint's (restored
in TensorFlow with the hparams of the TensorFlow export) on real images at batch 1 and batch N.

onnx, tf2onnx and onnxruntime are optional: `pip install .[onnx]` installs the versions pinned for the
TensorFlow lane in use.
"""
import collections
import json
import os

import numpy as np

from registry.deploy import inference_graph
from registry import optional
from registry.errors import ZooError

OPSET = 13
ONNX_FILE = "model.onnx"
ONNX_INFO = "onnx_info.json"
INPUT_NAME = inference_graph.INPUT_NODE              # the ONNX graph keeps the frozen graph's names
OUTPUT_NAMES = inference_graph.OUTPUT_NODES[:2]      # logits, probabilities (no argmax classes)
# The validation accepts a max abs logit difference of TOLERANCE, or RELATIVE_TOLERANCE of the largest |logit| when
# that is larger: float32 rounding grows with the logits (a full-size g3 with logits up to 243 on the demo photos:
# 1.7e-4 between onnxruntime and TensorFlow, 7e-5 between two TensorFlow implementations of the same checkpoint).
TOLERANCE = 1e-4
RELATIVE_TOLERANCE = 1e-5
VALIDATION_IMAGES = 4    # batch N of the validation (batch 1 is its first image)
PACKAGES = ("onnx", "tf2onnx", "onnxruntime")
LAYOUTS = ("NHWC", "NCHW")   # of the graph input: TensorFlow's, or PyTorch's and most ONNX users'


def require(purpose, packages=PACKAGES):
    """Imports the optional ONNX packages -> {name: module}; a ZooError names each missing one and the extra."""
    return optional.require(purpose, packages, ("onnx", "the `onnx` extra: onnx, tf2onnx and onnxruntime, pinned "
                                                        "per TensorFlow lane"), what="the optional ONNX packages")


def convert(graph_def, opset=OPSET, input_layout="NHWC"):
    """A frozen GraphDef with NHWC `input:0` -> `logits:0`, `probabilities:0` -> ONNX ModelProto with the inputs and
    outputs named `input`, `logits`, `probabilities` (batch dimension as in the GraphDef; None stays dynamic), the
    input in `input_layout` (LAYOUTS), rewritten by `onnx_graph.optimize`."""
    from registry.deploy import onnx_graph
    tf2onnx = require("the ONNX export", ("tf2onnx",))["tf2onnx"]
    check_layout(input_layout)
    tensors = [INPUT_NAME] + list(OUTPUT_NAMES)
    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=[INPUT_NAME + ":0"], output_names=[n + ":0" for n in OUTPUT_NAMES], opset=opset,
        inputs_as_nchw=[INPUT_NAME + ":0"] if input_layout == "NCHW" else None,
        tensors_to_rename={n + ":0": n for n in tensors})
    onnx_graph.optimize(model_proto)
    return model_proto


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ZooError("unknown ONNX input layout %r: choose %s" % (layout, " or ".join(LAYOUTS)))


def to_layout(images, layout):
    """float32 NHWC `images` [N, S, S, 3] -> the same in `layout` ([N, 3, S, S] for NCHW), contiguous."""
    check_layout(layout)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2) if layout == "NCHW" else images, np.float32)


def session(model, threads=0):
    """An onnxruntime CPU InferenceSession of `model` (a path or serialized bytes); threads 0: onnxruntime's
    default (one per physical core)."""
    ort = require("onnxruntime inference", ("onnxruntime",))["onnxruntime"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run(sess, images):
    """{'logits', 'probabilities'}: float32 [N, K] arrays of float32 `images` in the model's input layout."""
    outputs = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images, np.float32)})
    return dict(zip(OUTPUT_NAMES, outputs))


def real_images(model, hparams, count=VALIDATION_IMAGES):
    """float32 [count, S, S, 3]: the first `count` photos of the bundled demo data's validation split (real
    JPEGs), through the plugin's `preprocess_image` eval transform with `hparams` (the model's convention)."""
    import tensorflow as tf
    from registry.data import tfrecord
    from registry.data.demo import demo_data_path
    tf1 = tf.compat.v1
    preprocess = getattr(model, "preprocess_image", None)
    if not callable(preprocess):
        raise ZooError("%r publishes no preprocess_image(image_bytes, hparams): the ONNX export cannot be validated "
                       "on real images" % (model,))
    files = tfrecord.list_split_files(demo_data_path(), "validation")
    with tf.Graph().as_default():
        spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
        dataset = tf.data.TFRecordDataset(files).take(count).map(
            lambda record: preprocess(tf.io.parse_single_example(record, spec)["image/encoded"], hparams))
        batch = tf1.data.make_one_shot_iterator(dataset.batch(count)).get_next()
        with tf1.Session() as sess:
            return sess.run(batch)


def tolerance(expected):
    """The largest max abs logit difference the validation accepts for checkpoint logits `expected`."""
    return max(TOLERANCE, RELATIVE_TOLERANCE * float(np.abs(expected).max()))


def validate(sess, images, expected, run_batch=None, what="the ONNX model", written="model.onnx"):
    """({'batch_1': d, 'batch_N': d}, tolerance): max abs differences of the logits of `run_batch(images)` (default
    onnxruntime's, of `sess`) from `expected` at batch 1 (the first image) and batch N; raises a ZooError naming
    `what` and the file not `written` when either exceeds `tolerance(expected)`. `images`: in the model's layout."""
    run_batch = run_batch or (lambda batch: run(sess, batch)["logits"])
    differences = collections.OrderedDict()
    for batch in (1, len(images)):
        logits = run_batch(images[:batch])
        differences["batch_%d" % batch] = float(np.abs(logits - expected[:batch]).max())
    limit = tolerance(expected)
    worst = max(differences.values())
    if not worst <= limit:
        raise ZooError("%s's logits differ from the checkpoint's by %.3g (batch 1: %.3g, batch %d: %.3g), more than "
                       "%.3g: the conversion is wrong for this network; %s was not written"
                       % (what, worst, differences["batch_1"], len(images), differences["batch_%d" % len(images)],
                          limit, written))
    return differences, limit


def versions(packages=PACKAGES):
    """{package: version} of the ONNX packages."""
    modules = require("the ONNX export", packages)
    return collections.OrderedDict((name, modules[name].__version__) for name in packages)


def convert_checkpoint(model, hparams, checkpoint, opset=OPSET, input_layout="NHWC"):
    """(ONNX ModelProto of the checkpoint's frozen inference graph (`checkpoint` None: fresh weights), the hparams
    it was built with). `hparams`: the model dir's."""
    onnx_hparams = inference_graph.export_hparams(model, hparams, "onnx")
    graph_def = inference_graph.frozen_graph_def(model, onnx_hparams, checkpoint, batch_size=None)
    return convert(graph_def, opset, input_layout), onnx_hparams


def reference(model, hparams, checkpoint):
    """(real NHWC images, the checkpoint's float32 [N, K] logits on them in TensorFlow): what exports validate
    against."""
    images = real_images(model, hparams)
    built = inference_graph.export_hparams(model, hparams, "tensorflow")
    return images, inference_graph.checkpoint_logits(model, built, checkpoint, images)


def input_info(size, input_layout):
    """The graph input of an exported model, for its info file: name, dtype, layout and shape (N dynamic)."""
    return {"name": INPUT_NAME, "dtype": "float32", "format": input_layout,
            "shape": ["N", size, size, 3] if input_layout == "NHWC" else ["N", 3, size, size]}


def validation_info(images, expected, limit, differences):
    """How an exported model was checked against TensorFlow, for its info file."""
    return collections.OrderedDict([
        ("images", "%d photos of the bundled demo data (validation split), eval transform" % len(images)),
        ("reference", "the checkpoint restored in TensorFlow"),
        ("tolerance", limit), ("max_abs_logit", float(np.abs(expected).max())),
        ("max_abs_logit_difference", differences)])


def write(model, hparams, checkpoint, output, opset=OPSET, info=None, log=print, input_layout="NHWC"):
    """Converts the checkpoint's frozen inference graph, validates it, writes OUTPUT/model.onnx and
    OUTPUT/onnx_info.json (`info`: fields shared with the TensorFlow export, e.g. checkpoint and hparams);
    returns the onnx_info dict. `hparams`: the model dir's; `input_layout`: of the graph input (LAYOUTS)."""
    packages = versions()
    model_proto, onnx_hparams = convert_checkpoint(model, hparams, checkpoint, opset, input_layout)
    serialized = model_proto.SerializeToString()
    images, expected = reference(model, hparams, checkpoint)
    differences, limit = validate(session(serialized), to_layout(images, input_layout), expected)
    path = os.path.join(output, ONNX_FILE)
    with open(path, "wb") as f:
        f.write(serialized)
    size = int(hparams["image_size"])
    ops = collections.Counter(node.op_type for node in model_proto.graph.node)
    info = collections.OrderedDict(info or ())
    info.update([
        ("path", path),
        ("opset", opset),
        ("input", input_info(size, input_layout)),
        ("outputs", {n: "float32 [N, %d]" % int(hparams["num_classes"]) for n in OUTPUT_NAMES}),
        ("packages", packages),
        ("ops", collections.OrderedDict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))),
        ("validation", validation_info(images, expected, limit, differences)),
        ("built_with", inference_graph.changed_hparams(hparams, onnx_hparams)),
    ])
    with open(os.path.join(output, ONNX_INFO), "w") as f:
        json.dump(info, f, indent=2)
    log("  ONNX         %s  (opset %d, input %s float32 [%s] %s, N dynamic, outputs %s; %d nodes)"
        % (path, opset, INPUT_NAME, ", ".join(map(str, info["input"]["shape"])), input_layout, ", ".join(OUTPUT_NAMES),
           sum(ops.values())))
    log("  validated: onnxruntime %s logits = the checkpoint's on %d real images, max abs difference %.1e at "
        "batch 1, %.1e at batch %d (tolerance %.1e)" % (packages["onnxruntime"], len(images), differences["batch_1"],
                                                        differences["batch_%d" % len(images)], len(images), limit))
    return info

