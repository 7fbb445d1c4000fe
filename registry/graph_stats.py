"""Parameter and multiply-add counts measured from a built graph, for any registered network."""
import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


def _static(shape):
    dims = shape.as_list()
    if any(d is None for d in dims):
        raise ValueError("cannot count MACs of a tensor with unknown shape %s" % dims)
    return dims


def op_macs(op):
    """Multiply-adds of one Conv2D, DepthwiseConv2dNative or MatMul op (0 for any other op)."""
    if op.type == "Conv2D":
        out = _static(op.outputs[0].shape)
        kh, kw, cin, _ = _static(op.inputs[1].shape)
        return int(np.prod(out)) * kh * kw * cin
    if op.type == "DepthwiseConv2dNative":
        out = _static(op.outputs[0].shape)
        kh, kw, _, _ = _static(op.inputs[1].shape)
        return int(np.prod(out)) * kh * kw
    if op.type == "MatMul":
        a, b = _static(op.inputs[0].shape), _static(op.inputs[1].shape)
        inner = a[0] if op.get_attr("transpose_a") else a[1]
        return int(np.prod(_static(op.outputs[0].shape))) * inner
    return 0


def count_params(variables):
    return int(sum(np.prod(v.shape.as_list()) for v in variables))


def measure(model, hparams, image_size=None):
    """(trainable parameters, multiply-adds per image) of `model` at batch 1.

    The training graph is measured: a network may compute inference with redundant work
    (e.g. grouped convolutions as dense block-diagonal kernels), which is not its cost.
    """
    size = image_size or hparams["image_size"]
    with tf.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [1, size, size, 3])
        model.build_model(images, True, hparams)
        params = count_params(tf1.trainable_variables())
        macs = sum(op_macs(op) for op in graph.get_operations())
    return params, macs
