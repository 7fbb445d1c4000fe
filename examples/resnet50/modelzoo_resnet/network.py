"""ResNet-50 v1.5 in NHWC, graph mode, in the layout of TensorFlow's official models (He et al. 2016,
with the stride of each downsampling bottleneck on its 3x3 convolution, "v1.5"):

- stem: 7x7/2 convolution, 64 channels, BN, ReLU, then a 3x3/2 max pool ('SAME');
- four stages of 3, 4, 6 and 3 bottlenecks (1x1 -> 3x3 -> 1x1, widths 64, 128, 256, 512, outputs
  4x wider); the first bottleneck of stages 3-5 downsamples: stride 2 on its 3x3 convolution and on
  its 1x1 projection shortcut;
- strided convolutions pad explicitly and symmetrically (k - 1 split evenly, as the official
  `fixed_padding`), stride-1 ones use 'SAME'; no convolution has a bias;
- global average pool, then a fully connected layer with a bias.

With 1000 classes: 25,557,032 trainable parameters (batch-norm gamma and beta included).
Any input size works (no size constraint): at 32x32 the last stage sees 1x1 feature maps.
"""
import tensorflow as tf

from registry import nn

tf1 = tf.compat.v1

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
BN_EPSILON = 1e-5


def _fixed_padding(x, kernel_size):
    total = kernel_size - 1
    begin = total // 2
    return tf.pad(x, [[0, 0], [begin, total - begin], [begin, total - begin], [0, 0]])


def conv2d(x, channels, kernel_size, stride, name):
    """Convolution without bias; kernel [k, k, in, out] in x's dtype, He-normal initialised."""
    in_channels = x.shape.as_list()[-1]
    with tf1.variable_scope(name):
        kernel = tf1.get_variable(
            "kernel", [kernel_size, kernel_size, in_channels, channels], x.dtype,
            tf1.initializers.variance_scaling(scale=2.0, mode="fan_in", distribution="truncated_normal"))
    if stride == 1:
        return tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "SAME")
    return tf.nn.conv2d(_fixed_padding(x, kernel_size), kernel, [1, stride, stride, 1], "VALID")


def batch_norm(x, is_training, momentum, name, zero_gamma=False):
    """Fused batch norm over channels (float32 parameters whatever x's dtype); moving averages are
    updated through the UPDATE_OPS collection, which the engine runs with each training step."""
    return nn.batch_norm(x, is_training, name, momentum=momentum, epsilon=BN_EPSILON,
                         gamma_initializer=tf1.initializers.zeros() if zero_gamma else tf1.initializers.ones())


def bottleneck(x, width, stride, is_training, bn_momentum, zero_init_residual, name):
    """relu(shortcut + 1x1 -> 3x3/stride -> 1x1 expansion); a 1x1/stride projection shortcut when the
    shape changes. `zero_init_residual` starts the last BN's gamma at 0 (the block starts as identity)."""
    out_channels = width * EXPANSION
    with tf1.variable_scope(name):
        shortcut = x
        if stride != 1 or x.shape.as_list()[-1] != out_channels:
            shortcut = conv2d(x, out_channels, 1, stride, "projection")
            shortcut = batch_norm(shortcut, is_training, bn_momentum, "projection_bn")
        y = tf.nn.relu(batch_norm(conv2d(x, width, 1, 1, "conv1"), is_training, bn_momentum, "bn1"))
        y = tf.nn.relu(batch_norm(conv2d(y, width, 3, stride, "conv2"), is_training, bn_momentum, "bn2"))
        y = batch_norm(conv2d(y, out_channels, 1, 1, "conv3"), is_training, bn_momentum, "bn3",
                       zero_gamma=zero_init_residual)
        return tf.nn.relu(y + shortcut)


def resnet50_v1_5(images, is_training, num_classes=1000, bn_momentum=0.997, zero_init_residual=True,
                  scope="resnet50"):
    """Builds ResNet-50 v1.5 on NHWC float `images` [N, H, W, 3]; returns logits [N, num_classes].

    Convolution and classifier variables are requested in the images' dtype (the engine keeps
    float32 master weights for float16 compute); batch norm keeps float32 parameters.
    `bn_momentum` is the moving-average decay of the batch-norm statistics (0.997 in TF's official
    models; a short run needs a faster one, e.g. 0.9).
    """
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1, got %r" % (num_classes,))
    with tf1.variable_scope(scope):
        x = conv2d(images, 64, 7, 2, "conv1")
        x = tf.nn.relu(batch_norm(x, is_training, bn_momentum, "bn1"))
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        for stage, (blocks, width) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS)):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = bottleneck(x, width, stride, is_training, bn_momentum, zero_init_residual,
                               "stage%d/block%d" % (stage + 2, block + 1))
        x = tf.reduce_mean(x, axis=[1, 2], name="global_pool")
        with tf1.variable_scope("classifier"):
            kernel = tf1.get_variable("kernel", [x.shape.as_list()[-1], num_classes], x.dtype,
                                      tf1.initializers.glorot_uniform())
            bias = tf1.get_variable("bias", [num_classes], x.dtype, tf1.initializers.zeros())
        return tf.nn.bias_add(tf.matmul(x, kernel), bias, name="logits")
