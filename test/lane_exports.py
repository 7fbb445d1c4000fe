"""Run by either lane's Python for test_lanes_exports.py: makes an export, or serves one and saves what it gives.

    python test/lane_exports.py make OUT        imports the tiny reference weights into OUT/model and runs
                                                `zoo-run export --format all --batch_size 3` into OUT/export
    python test/lane_exports.py serve EXPORT RESULT.npz
                                                loads EXPORT's SavedModel (both signatures), frozen graph and
                                                model.onnx in this lane's TensorFlow and onnxruntime, runs them
                                                on the committed reference inputs and on image bytes made from
                                                them, and saves every output to RESULT.npz
"""
import io
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from deploy_helpers import TINY, TINY_NAME, ZIP_FILE, reference_inputs  # noqa: E402

BATCH = 3


def image_bytes():
    """PNG and JPEG bytes of the reference inputs (BGR 0..255) as RGB photos: what serving_default is sent."""
    from PIL import Image
    data = []
    for i, array in enumerate(reference_inputs()):
        buffer = io.BytesIO()
        Image.fromarray(np.clip(array[..., ::-1], 0, 255).astype(np.uint8)).save(buffer, "PNG" if i % 2 else "JPEG")
        data.append(buffer.getvalue())
    return data


def make(out):
    from unittest import mock

    from deploy_helpers import tiny_model, zoo_run
    from registry import discovery
    model = tiny_model()
    real = discovery.get_model
    with mock.patch.object(discovery, "get_model", lambda name: model if name == TINY_NAME else real(name)):
        model_dir = os.path.join(out, "model")
        assert zoo_run("import-weights", TINY_NAME, "--from", ZIP_FILE, "--model_dir", model_dir,
                       "--set", "image_size=%d" % TINY["image_size"]) == 0
        assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", os.path.join(out, "export"),
                       "--format", "all", "--batch_size", BATCH) == 0


def serve(export, result):
    import onnxruntime
    import tensorflow as tf
    tf1 = tf.compat.v1
    inputs = reference_inputs()
    outputs = {"tensorflow": np.array(tf.__version__)}
    with tf.Graph().as_default(), tf1.Session() as sess:
        meta = tf1.saved_model.loader.load(sess, ["serve"], os.path.join(export, "saved_model"))
        for signature, feeds in (("predict_images", {"images": inputs}),
                                 ("serving_default", {"image_bytes": np.array(image_bytes(), dtype=object)})):
            sig = meta.signature_def[signature]
            values = sess.run({k: v.name for k, v in sig.outputs.items()},
                              {sig.inputs[k].name: v for k, v in feeds.items()})
            outputs.update(("%s/%s" % (signature, k), v) for k, v in values.items())
    graph_def = tf1.GraphDef()
    with open(os.path.join(export, "frozen_graph.pb"), "rb") as f:
        graph_def.ParseFromString(f.read())
    with tf.Graph().as_default(), tf1.Session() as sess:
        tf1.import_graph_def(graph_def, name="")
        for name, value in zip(("logits", "probabilities", "classes"),
                               sess.run(["logits:0", "probabilities:0", "classes:0"], {"input:0": inputs})):
            outputs["frozen_graph/" + name] = value
    session = onnxruntime.InferenceSession(os.path.join(export, "model.onnx"), providers=["CPUExecutionProvider"])
    for name, value in zip(("logits", "probabilities"), session.run(["logits", "probabilities"], {"input": inputs})):
        outputs["onnx/" + name] = value
    if tf.__version__.startswith("2."):   # TF 2's own loader too: the serving signature as a concrete function
        loaded = tf.saved_model.load(os.path.join(export, "saved_model"))
        served = loaded.signatures["serving_default"](image_bytes=tf.constant(image_bytes()))
        outputs["tf2_load/serving_default/probabilities"] = served["probabilities"].numpy()
    np.savez(result, **outputs)


if __name__ == "__main__":
    {"make": make, "serve": serve}[sys.argv[1]](*sys.argv[2:])
