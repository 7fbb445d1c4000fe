"""registry.nn.batch_norm: the same variables and numbers as the tf.compat.v1.layers batch norm it replaces."""
import numpy as np
import pytest
import tensorflow as tf

from registry import nn, tf_compat

tf1 = tf.compat.v1
MOMENTUM, EPSILON = 0.9, 1e-5


def _inputs():
    return np.random.RandomState(0).randn(4, 6, 6, 5).astype(np.float32) * 3 + 1


def _run(build, steps=3):
    """(training output, variables after `steps` moving-average updates, inference output, trainable names)."""
    with tf.Graph().as_default():
        x = tf.constant(_inputs())
        train_out, infer_out = build(x)
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            first = session.run(train_out)
            for _ in range(steps):
                session.run(updates)
            values = {v.op.name: session.run(v) for v in tf1.global_variables()}
            return first, values, session.run(infer_out), [v.op.name for v in tf1.trainable_variables()]


def _ours(x):
    beta = tf1.initializers.constant(1e-4)
    train_out = nn.batch_norm(x, True, "bn", MOMENTUM, EPSILON, beta_initializer=beta)
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
        return train_out, nn.batch_norm(x, False, "bn", MOMENTUM, EPSILON)


def test_batch_norm_statistics_and_updates():
    """Training normalises with the batch statistics; each update moves the moving statistics by (1 - momentum)
    towards the batch mean and the Bessel-corrected batch variance; inference uses the moving statistics."""
    first, values, inferred, trainable = _run(_ours)
    x = _inputs().reshape(-1, 5).astype(np.float64)
    mean, variance = x.mean(0), x.var(0)
    np.testing.assert_allclose(first.reshape(-1, 5), (x - mean) / np.sqrt(variance + EPSILON) + 1e-4, atol=2e-5)
    unbiased = variance * len(x) / (len(x) - 1)
    moving_mean = mean * (1 - MOMENTUM ** 3)
    moving_variance = MOMENTUM ** 3 + unbiased * (1 - MOMENTUM ** 3)
    np.testing.assert_allclose(values["bn/moving_mean"], moving_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values["bn/moving_variance"], moving_variance, rtol=1e-5)
    np.testing.assert_allclose(inferred.reshape(-1, 5), (x - moving_mean) / np.sqrt(moving_variance + EPSILON) + 1e-4,
                               atol=2e-5)
    assert sorted(values) == ["bn/beta", "bn/gamma", "bn/moving_mean", "bn/moving_variance"]
    assert trainable == ["bn/gamma", "bn/beta"]


@pytest.mark.skipif(tf_compat.LANE != "tf1", reason="tf.compat.v1.layers raise under Keras 3 (TensorFlow >= 2.16)")
def test_batch_norm_equals_the_layer_it_replaces():
    """Bit for bit what tf.compat.v1.layers.batch_normalization(fused=True) computes and stores, so checkpoints
    written with the layer (every model dir before registry.nn) load and continue unchanged."""
    def layer(x):
        kwargs = dict(axis=3, momentum=MOMENTUM, epsilon=EPSILON, fused=True, name="bn")
        train_out = tf1.layers.batch_normalization(
            x, training=True, beta_initializer=tf1.initializers.constant(1e-4), **kwargs)
        return train_out, tf1.layers.batch_normalization(x, training=False, reuse=True, **kwargs)

    ours, theirs = _run(_ours), _run(layer)
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert sorted(ours[1]) == sorted(theirs[1])
    for name in ours[1]:
        np.testing.assert_array_equal(ours[1][name], theirs[1][name], err_msg=name)
    np.testing.assert_array_equal(ours[2], theirs[2])
    assert ours[3] == theirs[3]
