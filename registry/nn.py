"""Graph building blocks that plugins share, made of `tf.compat.v1` variables and `tf.nn` ops only.

Why not `tf.compat.v1.layers` or `tf.keras.layers`: with Keras 3 (TensorFlow >= 2.16) `tf.compat.v1.layers.*`
raise "not available with Keras 3", and a Keras 3 `BatchNormalization` built inside a v1 graph never updates its
moving statistics (it adds nothing to `UPDATE_OPS`). These helpers build the same variables, with the same names,
on every TensorFlow from 1.15 to 2.21, so checkpoints written by `tf.compat.v1.layers` keep loading.
"""
import contextlib

import tensorflow as tf

tf1 = tf.compat.v1

_recalibration = []   # the iteration tensor of the innermost `recalibrating` block (graph building is one thread)


@contextlib.contextmanager
def recalibrating(iteration):
    """Within the block, `batch_norm(..., is_training=True)` updates its moving statistics with weight 1 /
    `iteration` (a float32 scalar tensor, 1 at a pass's first batch) instead of 1 - momentum, so after n batches
    each is the plain average of the n batch statistics (Megvii's final BN pass sets PyTorch's momentum to
    1 / iteration). Yields a list to which each batch_norm built inside appends its name."""
    built = []
    _recalibration.append((iteration, built))
    try:
        yield built
    finally:
        _recalibration.pop()


_convolution_dtypes = []   # the dtype of the innermost `convolutions_in` block


@contextlib.contextmanager
def convolutions_in(dtype):
    """Within the block, `convolve` computes in `dtype` (tf.bfloat16 for allow_mix_precision on a CPU with bfloat16
    hardware: registry.engine.devices.training_precision) while the rest of the network keeps its own dtype.
    `None` leaves convolutions in the network's dtype."""
    _convolution_dtypes.append(None if dtype is None else tf.as_dtype(dtype))
    try:
        yield
    finally:
        _convolution_dtypes.pop()


def convolution_dtype(default):
    """The dtype `convolve` computes in: that of the innermost `convolutions_in` block, else `default` (the
    network's dtype, e.g. its input's)."""
    return _convolution_dtypes[-1] if _convolution_dtypes and _convolution_dtypes[-1] is not None else default


def convolve(fn, x, kernel):
    """`fn(x, kernel)` (a convolution or matrix product) computed in `convolution_dtype(kernel.dtype)`: x and kernel
    are cast to it and the result back to kernel's dtype, which is the network's (plugins request their kernels
    in it). Outside a `convolutions_in` block, or when x already is the kernel's dtype and no block asks
    otherwise, this is `fn(x, kernel)`."""
    dtype = convolution_dtype(kernel.dtype)
    if dtype == kernel.dtype and x.dtype == dtype:
        return fn(x, kernel)
    y = fn(x if x.dtype == dtype else tf.cast(x, dtype), tf.cast(kernel, dtype))
    return y if y.dtype == kernel.dtype else tf.cast(y, kernel.dtype)


def _moving_average_update(variable, value, momentum):
    """variable -= (variable - value) * (1 - momentum): the update `tf.layers.batch_normalization` makes (inside
    `recalibrating(iteration)`: * 1 / iteration)."""
    with tf1.name_scope(None, "AssignMovingAvg", [variable, value]) as scope:
        if _recalibration:
            decay = tf.math.reciprocal(tf.cast(_recalibration[-1][0], variable.dtype.base_dtype), name="decay")
        else:   # 1 - momentum in float32, as the layer computed it (1 - 0.9f = 0.100000024, not 0.1f).
            decay = tf.subtract(1.0, tf.constant(momentum, variable.dtype.base_dtype), name="decay")
        return tf1.assign_sub(variable, (variable - tf.cast(value, variable.dtype.base_dtype)) * decay, name=scope)


def batch_norm(x, is_training, name, momentum=0.99, epsilon=1e-3, gamma_initializer=None, beta_initializer=None):
    """Fused batch normalisation over the last axis of NHWC `x`, as `tf.compat.v1.layers.batch_normalization(x,
    axis=3, fused=True, momentum=..., epsilon=..., training=is_training, name=name)` computes it.

    Args:
      x: [N, H, W, C] float32 or float16 tensor.
      is_training: Python bool. True normalises with the batch's statistics and adds the moving-average
        updates to `tf.compat.v1.GraphKeys.UPDATE_OPS` (the engine runs them with each training step);
        False normalises with the moving statistics.
      name: variable scope of the four variables `gamma`, `beta` (trainable) and `moving_mean`,
        `moving_variance` (not trainable), all float32 [C] whatever x's dtype.
      momentum: moving = momentum * moving + (1 - momentum) * batch statistic (PyTorch's momentum 0.1 is 0.9 here);
        inside `recalibrating(iteration)` the weight of the batch statistic is 1 / iteration instead.
      epsilon: added to the variance. `tf.nn.fused_batch_norm` raises anything below 1.001e-5 to 1.001e-5
        (cuDNN's minimum), as it did inside the layer.
      gamma_initializer, beta_initializer: default ones and zeros.

    Returns:
      The normalised tensor, x's shape and dtype.

    The moving variance is updated with the batch variance that `fused_batch_norm` returns (Bessel-corrected,
    n / (n - 1)), as the layer did. The moving statistics are created ON_READ with MEAN aggregation, as the
    layer created them, so each replica of a tf.distribute strategy updates its own copy and a checkpoint holds
    their mean.
    """
    channels = x.shape.as_list()[-1]
    variable = tf1.VariableSynchronization
    with tf1.variable_scope(name):
        gamma = tf1.get_variable("gamma", [channels], tf.float32, gamma_initializer or tf1.initializers.ones())
        beta = tf1.get_variable("beta", [channels], tf.float32, beta_initializer or tf1.initializers.zeros())
        statistics = dict(trainable=False, synchronization=variable.ON_READ, aggregation=tf1.VariableAggregation.MEAN)
        moving_mean = tf1.get_variable("moving_mean", [channels], tf.float32, tf1.initializers.zeros(), **statistics)
        moving_variance = tf1.get_variable("moving_variance", [channels], tf.float32, tf1.initializers.ones(),
                                           **statistics)
        if not is_training:
            y, _, _ = tf1.nn.fused_batch_norm(x, gamma, beta, moving_mean, moving_variance, epsilon=epsilon,
                                              is_training=False)
            return y
        y, mean, variance = tf1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)
        if _recalibration:
            _recalibration[-1][1].append(moving_mean.op.name.rsplit("/", 1)[0])
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, _moving_average_update(moving_mean, mean, momentum))
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, _moving_average_update(moving_variance, variance, momentum))
        return y
