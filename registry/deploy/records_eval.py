"""An exported model's top-1, top-5 and loss over a data dir's validation split, as a model dir's evaluation reports
them (registry.engine.evaluation): the network's eval input pipeline (`input_fn(EVAL)`, every image once, the last
batch padded with label -1 and not counted), label-smoothed cross-entropy with the hparams' `label_smoothing`.

The model is any function of a float32 NHWC batch -> float32 [N, K] logits (onnxruntime, OpenVINO at any
precision, the frozen graph in TensorFlow); nothing here knows which.
"""
import time

import numpy as np

from registry import spec

PROGRESS_SECONDS = 30.0


def batches(model, hparams, data_path):
    """Yields (images float32 [B, S, S, 3], labels int32 [B]) of the eval split through the network's eval
    pipeline, in a TensorFlow graph of its own."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    with tf.Graph().as_default():
        images, labels = tf1.data.make_one_shot_iterator(model.input_fn(spec.EVAL, hparams, data_path)).get_next()
        with tf1.Session() as sess:
            while True:
                try:
                    yield sess.run([images, labels])
                except tf.errors.OutOfRangeError:
                    return


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def sums(logits, labels, label_smoothing=0.0):
    """{top1, top5, loss, num_images}: float sums over the real images (labels >= 0) of one batch; the loss is the
    softmax cross-entropy against one-hot labels smoothed as tf.compat.v1.losses.softmax_cross_entropy does."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    real = labels >= 0
    logits, labels = logits[real], labels[real]
    classes = logits.shape[1]
    k = min(5, classes)
    target = logits[np.arange(len(labels)), labels][:, None]
    rank = (logits > target).sum(axis=1)   # in_top_k: classes strictly above the label's logit
    smoothed = np.full(logits.shape, label_smoothing / classes)
    smoothed[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    loss = -(smoothed * _log_softmax(logits)).sum(axis=1)
    return {"top1": float((logits.argmax(axis=1) == labels).sum()), "top5": float((rank < k).sum()),
            "loss": float(loss.sum()), "num_images": float(len(labels))}


def evaluate(run_logits, model, hparams, data_path, log=print, what="the export"):
    """{top1, top5, loss, num_images, seconds} of `run_logits` (float32 NHWC batch -> [N, K] logits) over the
    validation split of `data_path`; raises ValueError when the split has no images."""
    start, last = time.time(), time.time()
    totals = dict.fromkeys(("top1", "top5", "loss", "num_images"), 0.0)
    for images, labels in batches(model, hparams, data_path):
        for key, value in sums(run_logits(images), labels, float(hparams.get("label_smoothing", 0.0))).items():
            totals[key] += value
        if time.time() - last > PROGRESS_SECONDS:
            last = time.time()
            log("  evaluating %s: %d images, top-1 so far %.4f" % (what, totals["num_images"],
                                                                   totals["top1"] / max(totals["num_images"], 1)))
    count = totals["num_images"]
    if not count:
        raise ValueError("the eval split of %s has no images" % data_path)
    return {"top1": totals["top1"] / count, "top5": totals["top5"] / count, "loss": totals["loss"] / count,
            "num_images": int(round(count)), "seconds": time.time() - start}
