"""ShuffleNetV1 (Zhang et al. 2017) in NHWC, graph mode, numerically matching Megvii's
ShuffleNet-Series reference so that its trained weights reproduce its outputs:

- padding is symmetric, as PyTorch's (TF 'SAME' pads only bottom/right at stride 2);
- the 3x3/2 average pool of the shortcut counts padded zeros (count_include_pad);
- batch norm epsilon 1e-5, momentum 0.1 in PyTorch terms (0.9 here);
- channel shuffle in the reference's order (see `channel_shuffle`);
- the reference's initialisation: normal(0, 0.01) for the first conv and the classifier,
  normal(0, 1 / fan-in-per-group) for the other convs, BN gamma 1 and beta 1e-4.
"""
import collections

import tensorflow as tf

from modelzoo_shufflenet import grouped_conv
from registry import nn
from registry.hparams import HParamsError

tf1 = tf.compat.v1

STAGE_REPEATS = (4, 8, 4)
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
BN_BETA_INIT = 1e-4

# Output channels of (first conv, stage 2, stage 3, stage 4), as the reference tabulates them.
_STAGE_CHANNELS = {
    (1, "1.0x"): (24, 144, 288, 576),
    (2, "1.0x"): (24, 200, 400, 800),
    (3, "0.5x"): (12, 120, 240, 480),
    (3, "1.0x"): (24, 240, 480, 960),
    (3, "1.5x"): (24, 360, 720, 1440),
    (3, "2.0x"): (48, 480, 960, 1920),
    (4, "1.0x"): (24, 272, 544, 1088),
    (8, "0.5x"): (16, 192, 384, 768),
    (8, "1.0x"): (24, 384, 768, 1536),
    (8, "1.5x"): (24, 576, 1152, 2304),
    (8, "2.0x"): (48, 768, 1536, 3072),
}

Architecture = collections.namedtuple("Architecture", "groups width first_channels stage_channels")


def architecture(groups, width):
    """The channel plan of one variant; raises ValueError for a combination the reference lacks."""
    try:
        channels = _STAGE_CHANNELS[(groups, width)]
    except KeyError:
        known = ", ".join("g%d %s" % key for key in sorted(_STAGE_CHANNELS))
        raise ValueError("ShuffleNetV1 has no variant groups=%r width=%r; known: %s" % (groups, width, known))
    return Architecture(groups, width, channels[0], channels[1:])


SHUFFLE_IMPLEMENTATIONS = ("reshape", "slices")


def channel_shuffle(x, groups, impl="reshape"):
    """The reference's shuffle: channel c = i * groups + j moves to j * (C / groups) + i.

    (PyTorch: reshape(N, C/g, g, H, W).permute(0, 2, 1, 3, 4); the paper's figure shows the inverse
    permutation, which is equally valid for training but would not load the reference's weights.)

    impl "reshape": reshape to [N, H, W, C/g, g], transpose, reshape back (one copy; TensorFlow's graphs).
    impl "slices": concat of the g strided channel slices x[..., j::g] (the same permutation, g copies). tf2onnx
    moves its layout transposes through it; the ONNX export now rewrites the reshape form instead
    (registry.deploy.onnx_graph), which is one copy in every runtime.

    Measured on lane tf2 (TF 2.21, oneDNN, g3 batch 32, 2-core AMD EPYC Zen 4; alternating steps of graphs in
    one process, median of paired ratios, see grouped_conv.py): against "reshape", "slices" trained at
    0.70-0.78x and a single `tf.gather` of the permuted channels at 0.82-0.94x (its gradient is a scatter); in
    the frozen inference graph the gather ran at 0.81-0.83x. "auto" is "reshape" on both lanes.
    """
    if impl == "slices":
        return tf.concat([x[..., j::groups] for j in range(groups)], axis=3)
    _, height, width, channels = x.shape.as_list()
    x = tf.reshape(x, [-1, height, width, channels // groups, groups])
    x = tf.transpose(x, [0, 1, 2, 4, 3])
    return tf.reshape(x, [-1, height, width, channels])


def _normal(stddev):
    return tf1.initializers.random_normal(stddev=stddev)


def _pad(x, amount):
    """Symmetric spatial zero padding (PyTorch's padding=amount) of NHWC `x`, as its own op before a VALID
    convolution or pool. Measured on lane tf2 (TF 2.21, oneDNN; see `channel_shuffle`): explicit paddings in the
    convolutions instead (`padding=[[0, 0], [1, 1], [1, 1], [0, 0]]` for the stem and the stride-2 depthwise
    convolutions) trained at 0.95-1.01x and inferred at 0.98-1.06x: no difference beyond noise, and TF 1.15's
    depthwise convolution has no explicit padding, so the pads stay (the ONNX export folds them,
    registry.deploy.onnx_graph)."""
    return tf.pad(x, [[0, 0], [amount, amount], [amount, amount], [0, 0]])


def _batch_norm(x, is_training, name):
    return nn.batch_norm(x, is_training, name, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                         beta_initializer=tf1.initializers.constant(BN_BETA_INIT))


def _conv3x3(x, out_channels, stride, name, stddev):
    in_channels = x.shape.as_list()[-1]
    with tf1.variable_scope(name):
        kernel = tf1.get_variable("kernel", [3, 3, in_channels, out_channels], x.dtype, _normal(stddev))
    return nn.convolve(lambda x_, k: tf.nn.conv2d(_pad(x_, 1), k, [1, stride, stride, 1], "VALID"), x, kernel)


def _depthwise3x3(x, stride, name):
    channels = x.shape.as_list()[-1]
    with tf1.variable_scope(name):
        # Reference init: std = 1 / (in_channels / groups) = 1 for a depthwise conv.
        kernel = tf1.get_variable("depthwise_kernel", [3, 3, channels, 1], x.dtype, _normal(1.0))
    if stride == 1:  # 'SAME' pads 1 on every side here: the same as PyTorch, without a pad op
        return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d(_pad(x, 1), kernel, [1, stride, stride, 1], "VALID")


def _group_conv1x1(x, out_channels, groups, name, impl):
    in_channels = x.shape.as_list()[-1]
    with tf1.variable_scope(name):
        kernel = tf1.get_variable("kernel", [1, 1, in_channels // groups, out_channels], x.dtype,
                                  _normal(1.0 / (in_channels // groups)))
    return nn.convolve(lambda x_, k: grouped_conv.conv1x1(x_, k, groups, impl), x, kernel)


def shuffle_unit(x, out_channels, groups, stride, first_unit, is_training, impl, name, shuffle_impl="reshape"):
    """One ShuffleNetV1 unit. Stride 1: relu(x + branch(x)); stride 2: concat(avgpool(x), relu(branch))."""
    in_channels = x.shape.as_list()[-1]
    mid_channels = out_channels // 4
    branch_channels = out_channels - in_channels if stride == 2 else out_channels
    with tf1.variable_scope(name):
        # The first unit of the network sees only 24 channels: its 1x1 is not grouped.
        y = _group_conv1x1(x, mid_channels, 1 if first_unit else groups, "pw_conv", impl)
        y = tf.nn.relu(_batch_norm(y, is_training, "pw_bn"))
        y = _depthwise3x3(y, stride, "dw_conv")
        y = _batch_norm(y, is_training, "dw_bn")
        if groups > 1:
            y = channel_shuffle(y, groups, shuffle_impl)
        y = _group_conv1x1(y, branch_channels, groups, "pwl_conv", impl)
        y = _batch_norm(y, is_training, "pwl_bn")
        if stride == 1:
            return tf.nn.relu(x + y)
        # x is post-ReLU, so relu(concat) == concat(avgpool(x), relu(y)) as in the reference.
        shortcut = tf.nn.avg_pool2d(_pad(x, 1), 3, 2, "VALID")
        return tf.concat([shortcut, tf.nn.relu(y)], axis=3)


def shufflenet_v1(images, is_training, groups=3, width="1.0x", num_classes=1000, grouped_conv_impl="auto",
                  scope="shufflenet_v1", channels=None, channel_shuffle_impl="auto"):
    """Builds ShuffleNetV1 on NHWC float `images` and returns `[N, num_classes]` logits.

    Kernels are requested in the images' dtype (float16 images: float16 compute, under a
    variable getter that keeps float32 master weights); batch norm keeps float32 parameters. The dense and
    1x1 convolutions compute in `registry.nn.convolution_dtype` (bfloat16 inside the engine's
    `nn.convolutions_in(tf.bfloat16)` block for allow_mix_precision on a CPU with bfloat16 hardware; their
    results come back in the images' dtype); the depthwise ones, batch norm and the classifier do not.

    The spatial size must be a multiple of 32 (five stride-2 reductions). `channels`, when given,
    is a custom (first conv, stage 2, stage 3, stage 4) plan replacing the variant's table entry
    (e.g. a tiny-width test variant); the variable names do not change. `channel_shuffle_impl`:
    "auto" (= "reshape"), "reshape" or "slices" (see `channel_shuffle`); every choice computes the same.
    """
    if channels is None:
        arch = architecture(groups, width)
    else:
        arch = Architecture(groups, width, channels[0], tuple(channels[1:]))
    _, height, width_px, _ = images.shape.as_list()
    if height is None or width_px is None or height % 32 or width_px % 32:
        raise HParamsError("ShuffleNetV1 needs a static input size that is a multiple of 32, got %sx%s; "
                           "set image_size to e.g. 224 or 96" % (height, width_px))
    impl = grouped_conv.resolve_impl(grouped_conv_impl, is_training, nn.convolution_dtype(images.dtype))
    shuffle_impl = "reshape" if channel_shuffle_impl == "auto" else channel_shuffle_impl
    if shuffle_impl not in SHUFFLE_IMPLEMENTATIONS:
        raise HParamsError("channel_shuffle_impl must be 'auto' or one of %s, got %r"
                           % (", ".join(SHUFFLE_IMPLEMENTATIONS), channel_shuffle_impl))
    with tf1.variable_scope(scope):
        x = _conv3x3(images, arch.first_channels, 2, "first_conv", stddev=0.01)
        x = tf.nn.relu(_batch_norm(x, is_training, "first_bn"))
        # Max pool with symmetric padding; zeros are as good as -inf because x >= 0 after ReLU.
        x = tf.nn.max_pool2d(_pad(x, 1), 3, 2, "VALID")
        for stage, (repeats, out_channels) in enumerate(zip(STAGE_REPEATS, arch.stage_channels)):
            for unit in range(repeats):
                x = shuffle_unit(x, out_channels, groups, stride=2 if unit == 0 else 1,
                                 first_unit=(stage == 0 and unit == 0), is_training=is_training,
                                 impl=impl, name="stage%d/unit%d" % (stage + 2, unit + 1),
                                 shuffle_impl=shuffle_impl)
        x = tf.reduce_mean(x, axis=[1, 2], name="global_pool")
        with tf1.variable_scope("classifier"):
            weights = tf1.get_variable("kernel", [x.shape.as_list()[-1], num_classes], x.dtype, _normal(0.01))
        return tf.matmul(x, weights, name="logits")
