"""INT8 post-training quantization of an OpenVINO model with NNCF (`nncf.quantize`), calibrated on the user's records.

Calibration images: up to `count` records of a data dir's train split (its validation split when it has no train
split), read round-robin across its files, through the network's own eval transform (`preprocess_image`, as
`zoo-run predict` and the exports' validation use it). NNCF's defaults for CPU are kept (symmetric 8-bit weights
quantized per output channel, activations per tensor, fast bias correction, the "performance" preset) but for one
thing: the first convolution, the one reading the image (3 input channels, ~6% of ShuffleNetV1 g3's multiply-adds),
stays float32, as is common practice. Measured on the bundled demo model (`zoo-run train shufflenetv1_g3`, 32x32,
360 held-out images, 300 calibration images of its train split): float32 top-1 0.9944; NNCF's defaults 0.9778
(-1.67 points); with the first convolution in float32 0.9889 (-0.56); leaving the classifier's MatMul in float32
instead changed nothing (0.9778); per-tensor weights 0.9944 (NNCF keeps the 16 depthwise convolutions per channel
even then). NNCF's defaults quantize all 16 depthwise and 31 grouped 1x1 convolutions per channel. Per-channel weights matter here: depthwise convolutions quantized per tensor can collapse a
MobileNet-class network's accuracy (NNCF's own reports: mobilenetv3_small_050 57.9 -> 41.9 top-1), so
`weight_granularity` reads back what the quantized model holds, and every quantized export is checked on
records (registry.deploy.openvino_export).

`nncf` is optional: the `openvino` extra brings it on lane tf2 (`pip install .[openvino]`).
"""
import collections

import numpy as np

from registry import optional
from registry.errors import ZooError

DEFAULT_IMAGES = 300    # NNCF's default subset_size
CALIBRATION_SPLITS = ("train", "validation")


def require(purpose):
    """The nncf module; a ZooError naming the extra when it is missing."""
    return optional.require(purpose, ("nncf",), ("openvino", "the `openvino` extra brings NNCF on lane tf2"))["nncf"]


def calibration_images(model, hparams, data_dir, count=DEFAULT_IMAGES, log=print):
    """(float32 NHWC [n, S, S, 3] images, the split read): up to `count` images of `data_dir`'s train split (else
    its validation split), round-robin across its files, through the plugin's eval transform. Raises a ZooError
    when the data dir has neither split or the plugin publishes no `preprocess_image`."""
    import tensorflow as tf
    from registry.data import tfrecord
    from registry.errors import DataError
    tf1 = tf.compat.v1
    preprocess = getattr(model, "preprocess_image", None)
    if not callable(preprocess):
        raise ZooError("%r publishes no preprocess_image(image_bytes, hparams): INT8 calibration cannot read "
                       "records" % (model,))
    files, split, problems = None, None, []
    for split in CALIBRATION_SPLITS:
        try:
            files = tfrecord.list_split_files(data_dir, split)
            break
        except DataError as err:
            problems.append(str(err))
    if not files:
        raise ZooError("--calibration_data %s: no TFRecords to calibrate INT8 on (%s)" % (data_dir, "; ".join(problems)))
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    with tf.Graph().as_default():
        dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=len(files), block_length=1)
        dataset = dataset.take(count).map(
            lambda record: preprocess(tf.io.parse_single_example(record, spec)["image/encoded"], hparams))
        batch = tf1.data.make_one_shot_iterator(dataset.batch(count)).get_next()
        with tf1.Session() as sess:
            images = sess.run(batch)
    log("  calibration: %d images of %s's %s split (eval transform)" % (len(images), data_dir, split))
    return images, split


def quantize(ov_model, images, batch_size=1):
    """The INT8 OpenVINO model NNCF makes of float32 `ov_model` calibrated on `images` (already in the model's
    input layout), in batches of `batch_size`; the first convolution stays float32 (module doc)."""
    nncf = require("INT8 quantization")
    batches = [np.ascontiguousarray(images[i:i + batch_size], np.float32) for i in range(0, len(images), batch_size)]
    first = first_convolution(ov_model)
    return nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=len(images),
                         ignored_scope=nncf.IgnoredScope(names=[first]) if first else None)


def first_convolution(ov_model):
    """The friendly name of the first Convolution in `ov_model`'s topological order (the one reading the image),
    or None."""
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() == "Convolution":
            return op.get_friendly_name()
    return None


def version():
    return require("INT8 quantization").__version__


def weight_granularity(ov_model):
    """{convolution op type: {"per_channel": n, "per_tensor": n}} of the quantized weights of `ov_model`'s
    Convolution and GroupConvolution (depthwise, grouped) ops: the scale of each weight's dequantization (or
    FakeQuantize range) holding one value per output channel, or one value for the whole tensor."""
    counts = collections.defaultdict(lambda: collections.Counter())
    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution"):
            continue
        scale = _weight_scale(op.input_value(1).get_node())
        if scale is None:
            counts[kind]["float"] += 1
        else:
            counts[kind]["per_tensor" if int(np.prod(scale)) == 1 else "per_channel"] += 1
    return {kind: dict(counter) for kind, counter in counts.items()}


def _weight_scale(node, depth=0):
    """The shape of the scale that dequantizes a weight input (Multiply by a constant after an int8 Convert, or a
    FakeQuantize's output range), found walking up through Reshape/Convert/Subtract; None for float weights."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return list(node.input_value(3).get_partial_shape().to_shape())
    if kind == "Multiply":
        for i in range(2):
            other = node.input_value(1 - i).get_node()
            if other.get_type_name() == "Constant" and _holds_int8(node.input_value(i).get_node()):
                return list(other.get_output_shape(0))
    if depth < 4 and kind in ("Reshape", "Convert", "Subtract", "Multiply", "Transpose"):
        return _weight_scale(node.input_value(0).get_node(), depth + 1)
    return None


def _holds_int8(node, depth=0):
    if node.get_type_name() == "Constant":
        return node.get_output_element_type(0).get_type_name() in ("i8", "u8", "i4", "u4")
    if depth < 3 and node.get_type_name() in ("Convert", "Subtract"):
        return _holds_int8(node.input_value(0).get_node(), depth + 1)
    return False
