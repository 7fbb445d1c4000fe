"""The tf.estimator model_fn assembled from a plugin's `build_model` and the run's hparams.

Loss: softmax cross-entropy with label smoothing plus L2 weight decay (kernels only unless
`weight_decay_on_bn`). Optimiser: momentum (Nesterov's when `nesterov`), with the learning rate
computed from the global step. Metrics ignore entries labelled -1 (the eval pipeline's padding).
"""
import tensorflow as tf

from registry.engine import devices, hooks

tf1 = tf.compat.v1

LOSS_NAME = "cross_entropy"


def _decayed_variables(hparams):
    """Kernels (rank >= 2) always; rank-1 variables (BN gamma/beta, biases) only when asked."""
    include_vectors = hparams.get("weight_decay_on_bn", False)
    return [v for v in tf1.trainable_variables() if include_vectors or v.shape.ndims > 1]


def _count_metric(weights):
    """Metric counting the entries with weight 1 (the real, unpadded images)."""
    total = tf1.Variable(0.0, trainable=False, name="num_images_count",
                         collections=[tf1.GraphKeys.LOCAL_VARIABLES, tf1.GraphKeys.METRIC_VARIABLES])
    update = tf1.assign_add(total, tf.reduce_sum(weights))
    return tf.identity(total), update


def _float32_master_weights(getter, name, *args, **kwargs):
    """Variable getter for float16 compute: a float16 request gets a float32 variable, cast at use."""
    requested = kwargs.get("dtype")
    if requested != tf.float16:
        return getter(name, *args, **kwargs)
    kwargs["dtype"] = tf.float32
    return tf.cast(getter(name, *args, **kwargs), tf.float16, name=name.split("/")[-1] + "/float16")


def _build_logits(model, images, is_training, hparams, dtype):
    if dtype == tf.float32:
        return model.build_model(images, is_training, hparams)
    with tf1.variable_scope(tf1.get_variable_scope(), custom_getter=_float32_master_weights):
        return model.build_model(tf.cast(images, dtype), is_training, hparams)


def build_model_fn(model, hparams, plan, warm_start=None, settings=None):
    """A model_fn for tf.estimator.Estimator.

    `plan` is a `schedule.Plan`; `warm_start`, when given, is (checkpoint, assignment map)
    from `registry.engine.warm_start`, applied to freshly initialised variables only;
    `settings` (`devices.DeviceSettings`) wraps the optimizer as the device needs.
    """

    def model_fn(features, labels, mode, config):
        is_training = mode == tf.estimator.ModeKeys.TRAIN
        images = features["images"] if isinstance(features, dict) else features
        logits = _build_logits(model, images, is_training, hparams, devices.compute_dtype(settings))
        logits = tf.cast(logits, tf.float32)
        probabilities = tf.nn.softmax(logits, name="probabilities")
        classes = tf.argmax(logits, axis=1, output_type=tf.int32, name="classes")

        if mode == tf.estimator.ModeKeys.PREDICT:
            return tf.estimator.EstimatorSpec(mode, predictions={
                "classes": classes, "probabilities": probabilities, "logits": logits})

        if warm_start and is_training:
            checkpoint, assignment = warm_start
            tf1.train.init_from_checkpoint(checkpoint, assignment)

        labels = tf.cast(labels, tf.int32)
        weights = tf.cast(labels >= 0, tf.float32)  # -1 marks padding of the last eval batch
        safe_labels = tf.maximum(labels, 0)
        one_hot = tf.one_hot(safe_labels, hparams["num_classes"])
        per_example = tf1.losses.softmax_cross_entropy(
            one_hot, logits, label_smoothing=hparams.get("label_smoothing", 0.0), reduction=tf1.losses.Reduction.NONE)
        cross_entropy = tf.math.divide_no_nan(tf.reduce_sum(per_example * weights), tf.reduce_sum(weights), name=LOSS_NAME)

        if mode == tf.estimator.ModeKeys.EVAL:
            in_top5 = tf.cast(tf1.nn.in_top_k(predictions=logits, targets=safe_labels, k=min(5, hparams["num_classes"])), tf.float32)
            metrics = {
                "top1": tf1.metrics.accuracy(safe_labels, classes, weights=weights),
                "top5": tf1.metrics.mean(in_top5, weights=weights),
                "num_images": _count_metric(weights),
                # Estimator's own "loss" averages batch means, which over-weights a padded last batch.
                "cross_entropy": tf1.metrics.mean(per_example, weights=weights),
            }
            return tf.estimator.EstimatorSpec(mode, loss=cross_entropy, eval_metric_ops=metrics)

        global_step = tf1.train.get_or_create_global_step()
        step_before_update = global_step.read_value() + 0  # a copy: an identity would alias the updated ref
        decay = hparams.get("weight_decay", 0.0) * tf.add_n(
            [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in _decayed_variables(hparams)])
        # A NaN/Inf loss fails the step before any update is applied: the last checkpoint stays good.
        loss = tf.debugging.check_numerics(cross_entropy + decay, hooks.NAN_LOSS_MESSAGE)
        learning_rate = plan.learning_rate_tensor(global_step)
        optimizer, loss_scale = devices.wrap_optimizer(
            settings, tf1.train.MomentumOptimizer(learning_rate, hparams.get("momentum", 0.9),
                                                  use_nesterov=bool(hparams.get("nesterov", False))))
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS) + [step_before_update]):
            train_op = optimizer.minimize(loss, global_step=global_step)

        train_accuracy = tf.reduce_mean(tf.cast(tf.equal(classes, labels), tf.float32))
        tf1.summary.scalar("learning_rate", learning_rate)
        tf1.summary.scalar("cross_entropy", cross_entropy)
        tf1.summary.scalar("train_accuracy", train_accuracy)
        reported = {"loss": loss, "lr": learning_rate, "train_accuracy": train_accuracy}
        if loss_scale is not None:
            tf1.summary.scalar("loss_scale", loss_scale)
            reported["loss_scale"] = loss_scale
        # Multi-worker: only the chief keeps the train log (every worker prints its progress).
        progress = hooks.ProgressHook(plan, step_before_update, reported,
                                      model_dir=config.model_dir if config.is_chief else None)
        return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, training_hooks=[progress])

    return model_fn
