"""The graphs the engine runs, built from a plugin's `build_model` and the run's hparams.

- `train_step`: one replica's training step. Loss: softmax cross-entropy with label smoothing plus L2
  weight decay (kernels only unless `weight_decay_on_bn`); optimiser: momentum (Nesterov's when `nesterov`)
  with the learning rate a function of the global step (`schedule.Plan`), wrapped for the device
  (`devices.wrap_optimizer`: TF loss scaling, or the NPU's wrappers); batch-norm moving averages
  (UPDATE_OPS) run with the step. A NaN/Inf loss fails the step before any update is applied.
- `eval_sums`: per-batch sums for top-1, top-5 and the loss over the real (unpadded) images.

Both work on any TensorFlow from 1.15 to 2.21 (tf.compat.v1 graph mode, no tf.estimator).
"""
import collections

import tensorflow as tf

from registry import nn, spec
from registry.engine import devices

tf1 = tf.compat.v1

NAN_LOSS_MESSAGE = "NaN or Inf loss"
TrainStep = collections.namedtuple("TrainStep", "train_op reported")
TrainStep.__doc__ = """train_op: the update; reported: {name: scalar tensor} for progress and the train log:
step (the global step before this update), loss, lr, train_accuracy (top-1 of the batch) and, in loss-scaled modes, loss_scale."""


def _decayed_variables(hparams):
    """Kernels (rank >= 2) always; rank-1 variables (BN gamma/beta, biases) only when asked."""
    include_vectors = hparams.get("weight_decay_on_bn", False)
    return [v for v in tf1.trainable_variables() if include_vectors or v.shape.ndims > 1]


LOW_PRECISION = (tf.float16, tf.bfloat16)


def _float32_master_weights(getter, name, *args, **kwargs):
    """Variable getter for float16/bfloat16 compute: such a request gets a float32 variable, cast at use."""
    requested = kwargs.get("dtype")
    if requested not in LOW_PRECISION:
        return getter(name, *args, **kwargs)
    kwargs["dtype"] = tf.float32
    return tf.cast(getter(name, *args, **kwargs), requested, name=name.split("/")[-1] + "/" + requested.name)


def logits(model, images, is_training, hparams, dtype=tf.float32, convolution_dtype=None):
    """[N, num_classes] float32 logits of `model.build_model` on [N, S, S, 3] `images`; with dtype float16 or
    bfloat16 the network computes in it from float32 master weights (batch norm keeps float32 parameters and
    statistics: registry.nn.batch_norm). `convolution_dtype` (e.g. bfloat16 with a float32 `dtype`): the
    plugin's convolutions compute in it, the rest in `dtype` (registry.nn.convolutions_in; kernels stay float32
    variables, cast at use)."""
    with nn.convolutions_in(convolution_dtype):
        if dtype == tf.float32:
            return tf.cast(spec.build_logits(model, images, is_training, hparams), tf.float32)
        with tf1.variable_scope(tf1.get_variable_scope(), custom_getter=_float32_master_weights):
            return tf.cast(spec.build_logits(model, tf.cast(images, dtype), is_training, hparams), tf.float32)


def _per_example_loss(hparams, logits_, labels):
    """Label-smoothed softmax cross-entropy per example; labels -1 (eval padding) count as class 0, weight 0."""
    one_hot = tf.one_hot(tf.maximum(labels, 0), hparams["num_classes"])
    return tf1.losses.softmax_cross_entropy(one_hot, logits_, label_smoothing=hparams.get("label_smoothing", 0.0),
                                            reduction=tf1.losses.Reduction.NONE)


def train_step(model, hparams, plan, settings, images, labels, warm_start=None):
    """One replica's training step on `images` [N, S, S, 3] float32 and `labels` [N] int (0-based).

    Call it in the graph's (or, under a tf.distribute strategy, each replica's) context after the global step
    exists. `plan` is a `schedule.Plan`; `settings` a `devices.DeviceSettings`; `warm_start`, when given, is
    (checkpoint, {checkpoint name: variable name}) from `registry.engine.warm_start`, which replaces the
    initial values of those variables (a restored checkpoint still wins). Returns a TrainStep."""
    global_step = tf1.train.get_global_step()
    step_before_update = global_step.read_value() + 0  # a copy: an identity would alias the updated variable
    labels = tf.cast(labels, tf.int32)
    logits_ = logits(model, images, True, hparams, devices.compute_dtype(settings),
                     devices.convolution_dtype(settings))
    if warm_start:
        tf1.train.init_from_checkpoint(*warm_start)
    cross_entropy = tf.reduce_mean(_per_example_loss(hparams, logits_, labels), name="cross_entropy")
    decay = hparams.get("weight_decay", 0.0) * tf.add_n(
        [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in _decayed_variables(hparams)])
    loss = tf.debugging.check_numerics(cross_entropy + decay, NAN_LOSS_MESSAGE)
    learning_rate = plan.learning_rate_tensor(global_step)
    optimizer, loss_scale = devices.wrap_optimizer(
        settings, tf1.train.MomentumOptimizer(learning_rate, hparams.get("momentum", 0.9),
                                              use_nesterov=bool(hparams.get("nesterov", False))))
    # Under a tf.distribute strategy the v1 optimizer sums the replicas' gradients (it averages them only inside
    # Estimator), so each replica minimises its share: the sum is then the global batch's mean gradient.
    replicas = tf1.distribute.get_replica_context().num_replicas_in_sync
    with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS) + [step_before_update]):
        train_op = optimizer.minimize(loss / replicas if replicas > 1 else loss, global_step=global_step)
    classes = tf.argmax(logits_, axis=1, output_type=tf.int32)
    train_top1 = tf.reduce_mean(tf.cast(tf.equal(classes, labels), tf.float32))
    reported = {"step": step_before_update, "loss": loss, "lr": learning_rate, "train_accuracy": train_top1}
    if loss_scale is not None:   # TensorBoard: registry.engine.progress writes the reported values
        reported["loss_scale"] = loss_scale
    return TrainStep(train_op, reported)


def eval_sums(model, hparams, images, labels):
    """{top1, top5, loss, num_images}: float32 sums over one batch's real images (labels >= 0; -1 marks the
    padding of the last batch), to be added up over the split and divided by num_images."""
    labels = tf.cast(labels, tf.int32)
    weights = tf.cast(labels >= 0, tf.float32)
    safe_labels = tf.maximum(labels, 0)
    logits_ = logits(model, images, False, hparams)
    k = min(5, hparams["num_classes"])
    top1 = tf.cast(tf.equal(tf.argmax(logits_, axis=1, output_type=tf.int32), safe_labels), tf.float32)
    top5 = tf.cast(tf1.nn.in_top_k(predictions=logits_, targets=safe_labels, k=k), tf.float32)
    return {"top1": tf.reduce_sum(top1 * weights), "top5": tf.reduce_sum(top5 * weights),
            "loss": tf.reduce_sum(_per_example_loss(hparams, logits_, labels) * weights),
            "num_images": tf.reduce_sum(weights)}
