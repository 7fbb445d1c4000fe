"""The ShuffleNetV1 network: exact sizes, shapes, and the building blocks against their definitions."""
import numpy as np
import pytest
import tensorflow as tf

from modelzoo_shufflenet import grouped_conv, models, network
from registry import graph_stats

tf1 = tf.compat.v1

# Trainable parameters with 1000 classes and no classifier bias, as the reference network.
EXPECTED_PARAMS = {
    (1, "1.0x"): 1530936, (2, "1.0x"): 1732848, (3, "1.0x"): 1864728, (4, "1.0x"): 1967344,
    (8, "1.0x"): 2433768, (3, "0.5x"): 717324, (3, "1.5x"): 3441168, (3, "2.0x"): 5449776,
    (8, "0.5x"): 1010448, (8, "1.5x"): 4268952, (8, "2.0x"): 6521232,
}


def _hparams(**overrides):
    hparams = models.SHUFFLENETV1_G3.default_hparams()
    hparams.update(overrides)
    return hparams


REGISTERED = {(m.groups, m.width): m for m in (getattr(models, n) for n in dir(models) if n.startswith("SHUFFLENETV1_"))}


@pytest.mark.parametrize("groups,width", sorted(EXPECTED_PARAMS))
def test_parameter_count_matches_reference_and_metadata(groups, width):
    model = REGISTERED[(groups, width)]
    params, macs = graph_stats.measure(model, _hparams())
    assert params == EXPECTED_PARAMS[(groups, width)] == model.metadata["params"]
    assert macs == model.metadata["macs"]


def test_every_variant_is_registered():
    assert sorted(REGISTERED) == sorted(EXPECTED_PARAMS)


def test_g3_multiply_adds_at_224():
    params, macs = graph_stats.measure(models.SHUFFLENETV1_G3, _hparams())
    assert (params, macs) == (1864728, 137460672)


@pytest.mark.parametrize("size,impl", [(224, "split"), (64, "block_diagonal"), (64, "split")])
def test_output_shapes(size, impl):
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.float32, [2, size, size, 3])
        logits = models.SHUFFLENETV1_G3.build_model(images, False, _hparams(num_classes=10, grouped_conv_impl=impl))
        assert logits.shape.as_list() == [2, 10]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            out = sess.run(logits, {images: np.random.RandomState(0).rand(2, size, size, 3)})
    assert out.shape == (2, 10) and np.all(np.isfinite(out))


def test_rejects_input_size_not_multiple_of_32():
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.float32, [1, 100, 100, 3])
        with pytest.raises(ValueError, match="multiple of 32"):
            models.SHUFFLENETV1_G3.build_model(images, False, _hparams())


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="no variant groups=5"):
        network.architecture(5, "1.0x")


@pytest.mark.parametrize("impl", network.SHUFFLE_IMPLEMENTATIONS)
def test_channel_shuffle_is_the_reference_permutation(impl):
    groups, channels = 3, 12
    x = np.arange(2 * 2 * 2 * channels, dtype=np.float32).reshape(2, 2, 2, channels)
    # Definition (reference, NCHW): reshape(N, C/g, g, H, W).permute(0, 2, 1, 3, 4): output channel
    # j * (C/g) + i takes input channel i * g + j.
    expected = np.empty_like(x)
    for i in range(channels // groups):
        for j in range(groups):
            expected[..., j * (channels // groups) + i] = x[..., i * groups + j]
    with tf.Graph().as_default(), tf1.Session() as sess:
        out = sess.run(network.channel_shuffle(tf.constant(x), groups, impl))
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, x)


def test_unknown_channel_shuffle_impl_is_a_clear_error():
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.float32, [1, 64, 64, 3])
        with pytest.raises(ValueError, match="channel_shuffle_impl must be 'auto' or one of reshape, slices, got 'x'"):
            models.SHUFFLENETV1_G3.build_model(images, False, dict(_hparams(), channel_shuffle_impl="x"))


@pytest.mark.parametrize("impl", ["split", "block_diagonal"])
def test_grouped_1x1_equals_dense_with_zeroed_off_diagonal_blocks(impl):
    rng = np.random.RandomState(1)
    groups, cin, cout = 3, 12, 9
    x = rng.randn(2, 4, 4, cin).astype(np.float32)
    kernel = rng.randn(1, 1, cin // groups, cout).astype(np.float32)
    dense = np.zeros((cin, cout), np.float32)
    for g in range(groups):
        dense[g * 4:(g + 1) * 4, g * 3:(g + 1) * 3] = kernel[0, 0, :, g * 3:(g + 1) * 3]
    expected = x.reshape(-1, cin).dot(dense).reshape(2, 4, 4, cout)
    with tf.Graph().as_default(), tf1.Session() as sess:
        out = sess.run(grouped_conv.conv1x1(tf.constant(x), tf.constant(kernel), groups, impl))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_implementations_share_variables_and_agree(tmp_path):
    """A checkpoint trained with one grouped-conv implementation evaluates identically with another."""
    x = np.random.RandomState(2).rand(2, 64, 64, 3).astype(np.float32)
    checkpoint, outputs = str(tmp_path / "model.ckpt"), {}
    for impl in ("split", "block_diagonal"):
        with tf.Graph().as_default():
            logits = models.SHUFFLENETV1_G3.build_model(tf.constant(x), False, _hparams(grouped_conv_impl=impl))
            saver = tf1.train.Saver()
            with tf1.Session() as sess:
                if impl == "split":
                    sess.run(tf1.global_variables_initializer())
                    saver.save(sess, checkpoint)
                else:
                    saver.restore(sess, checkpoint)
                outputs[impl] = sess.run(logits)
    np.testing.assert_allclose(outputs["split"], outputs["block_diagonal"], rtol=1e-4, atol=1e-4)


def test_reference_initialisation():
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        models.SHUFFLENETV1_G3.build_model(tf1.placeholder(tf.float32, [1, 224, 224, 3]), True, _hparams())
        variables = {v.op.name: v for v in tf1.global_variables()}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            values = sess.run(variables)
    assert abs(values["shufflenet_v1/first_conv/kernel"].std() - 0.01) < 0.002
    assert abs(values["shufflenet_v1/classifier/kernel"].std() - 0.01) < 0.001
    # 1 / (input channels per group): stage 3 unit 2 maps 480 channels in 3 groups -> std 1/160.
    assert abs(values["shufflenet_v1/stage3/unit2/pw_conv/kernel"].std() - 1.0 / 160) < 0.0005
    assert np.all(values["shufflenet_v1/stage3/unit2/pw_bn/gamma"] == 1.0)
    np.testing.assert_allclose(values["shufflenet_v1/stage3/unit2/pw_bn/beta"], 1e-4)


def test_export_hparams_replace_only_the_auto_choices():
    model = models.SHUFFLENETV1_G3
    hparams = model.default_hparams()
    assert model.export_hparams(hparams, "tensorflow")["grouped_conv_impl"] == "block_diagonal"
    onnx = model.export_hparams(hparams, "onnx")
    assert (onnx["grouped_conv_impl"], onnx["channel_shuffle_impl"]) == ("native", "auto")   # the reshape shuffle
    forced = model.export_hparams(dict(hparams, grouped_conv_impl="split", channel_shuffle_impl="slices"), "onnx")
    assert (forced["grouped_conv_impl"], forced["channel_shuffle_impl"]) == ("split", "slices")
    assert hparams == model.default_hparams()   # the caller's dict is left alone
