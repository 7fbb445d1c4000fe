"""Megvii's ShuffleNetV1 recipe (issue 23), without PyTorch: JPEGs decoded as Pillow decodes them, the eval crop of
the import-weights convention (OpencvResize(256) + CenterCrop(224)) against its formulas and a numpy reference,
torchvision's ColorJitter semantics, and BN recalibration on a small model."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from modelzoo_shufflenet import models, preprocessing
from registry import nn
from registry.data import transforms
from registry.engine import checkpoints, recalibration

tf1 = tf.compat.v1


def _photo(height, width, seed):
    """A photo-like JPEG (smooth gradients, edges and noise: the fast and accurate DCTs differ on it)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([127 + 100 * np.sin(x / (7.0 + c) + y / (11.0 - c)) for c in range(3)], -1)
    image[(x // 17 + y // 13) % 3 == 0] *= 0.4
    image += rng.normal(0, 12, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.randint(75, 96)))
    return buffer.getvalue()


def _pillow(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def _run(fetch, feed=None):
    with tf1.Session() as session:
        return session.run(fetch, feed)


def _hparams(**overrides):
    return dict(models.SHUFFLENETV1_G3.default_hparams(), **overrides)


def test_eval_decodes_jpegs_as_pillow_does():
    """The eval transform's pixels are Pillow's (the accurate integer DCT); TensorFlow's default fast DCT is not."""
    sizes = [(61, 83), (96, 96), (50, 131)]
    jpegs = [_photo(h, w, i) for i, (h, w) in enumerate(sizes)]
    with tf.Graph().as_default():
        data = tf1.placeholder(tf.string, [])
        fast = transforms.decode_image(data)
        window = tf.constant([3, 5, 40, 44])
        crop = transforms.decode_and_crop(data, window, dct_method="INTEGER_ACCURATE")
        images = {}
        for h, w in sizes:   # eval at the image's own size, no resize: the decoded pixels themselves
            hparams = _hparams(image_size=h, eval_crop_fraction=1.0, input_normalization="none") if h == w else None
            if hparams:
                images[(h, w)] = preprocessing.eval_image(data, hparams)
        with tf1.Session() as session:
            differs = []
            for jpeg, size in zip(jpegs, sizes):
                pillow = _pillow(jpeg)
                got_fast, got_crop = session.run([fast, crop], {data: jpeg})
                np.testing.assert_array_equal(got_crop, pillow[3:43, 5:49])
                differs.append(np.abs(got_fast.astype(int) - pillow).max())
                if size in images:
                    np.testing.assert_array_equal(session.run(images[size], {data: jpeg}), pillow)
    assert max(differs) >= 2, differs   # the images tell the two decoders apart


def _megvii_size(height, width, size=256):
    """OpencvResize(256)'s (height, width), as Megvii's train.py computes it."""
    if height < width:
        return size, int(size / height * width + 0.5)
    return int(size / width * height + 0.5), size


def _bilinear(image, out_h, out_w):
    """float64 bilinear resize with half-pixel centres and edge clamping, no antialiasing: the sampling of OpenCV's
    INTER_LINEAR (and TensorFlow's); rounded to uint8 as cv2.resize returns it. Our own numpy, not OpenCV."""
    def axis(n_in, n_out):
        source = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, n_in - 1), source - low
    y0, y1, wy = axis(image.shape[0], out_h)
    x0, x1, wx = axis(image.shape[1], out_w)
    image = image.astype(np.float64)
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255)


def test_aspect_eval_matches_opencv_resize_and_center_crop():
    """eval_resize=aspect (the import-weights convention): the long side is int(256 / short * long + 0.5), the crop
    offsets int(round((side - 224) / 2)) (round half to even), and the BGR 0..255 crop is within a mean of 0.3 and
    a max of 2 of Megvii's input computed with a numpy bilinear resize of Pillow's pixels."""
    shapes = [(257, 300), (300, 257), (225, 999), (383, 511), (256, 256), (229, 230), (480, 361)]
    convention = "megvii"
    with tf.Graph().as_default():
        shape = tf1.placeholder(tf.int32, [2])
        sizes = transforms.short_side_size(shape, 256, convention)
        offsets = [transforms.crop_offset(sizes[i], 224, convention) for i in range(2)]
        with tf1.Session() as session:
            for h, w in shapes + [(257, 2000), (1000, 259)]:
                new_h, new_w = _megvii_size(h, w)
                got = session.run([sizes, offsets], {shape: [h, w]})
                assert list(got[0]) == [new_h, new_w], (h, w)
                assert list(got[1]) == [int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0))], (h, w)
    assert _megvii_size(257, 300) == (256, 299) and int(round((299 - 224) / 2.0)) == 38   # 37.5: rounds to 38
    assert int(round((297 - 224) / 2.0)) == 36                                          # 36.5: rounds to 36

    hparams = _hparams(eval_resize="aspect", input_channel_order="bgr", input_normalization="none")
    with tf.Graph().as_default():
        data = tf1.placeholder(tf.string, [])
        image = preprocessing.eval_image(data, hparams)
        with tf1.Session() as session:
            for i, (h, w) in enumerate(shapes):
                jpeg = _photo(h, w, 10 + i)
                new_h, new_w = _megvii_size(h, w)
                top, left = int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0))
                reference = _bilinear(_pillow(jpeg), new_h, new_w)[top:top + 224, left:left + 224, ::-1]
                difference = np.abs(session.run(image, {data: jpeg}) - reference)
                assert difference.mean() <= 0.3 and difference.max() <= 2.0, ((h, w), difference.mean(),
                                                                               difference.max())


# ------------------------------------------------------------------ colour jitter

def _gray(image):
    return image @ np.array(transforms.GRAY_WEIGHTS)


def _jitter_reference(image, factors, order):
    """torchvision's ColorJitter on float pixels (numpy): brightness scales, contrast blends with the grayscale
    mean, saturation with the grayscale image; clipped to 0..255 after each."""
    image = image.astype(np.float64)
    for op in order:
        f = factors[op]
        if op == 0:
            image = image * f
        elif op == 1:
            image = f * image + (1 - f) * _gray(image).mean()
        else:
            image = f * image + (1 - f) * _gray(image)[..., None]
        image = np.clip(image, 0, 255)
    return image


def test_color_jitter_has_torchvisions_semantics():
    rng = np.random.RandomState(0)
    picture = rng.uniform(0, 255, (9, 7, 3)).astype(np.float32)
    picture[0, 0] = 250.0   # some values clip under brightness 1.4
    with tf.Graph().as_default():
        seed = tf1.placeholder(tf.int64, [2])
        factors, order = transforms.color_jitter_params(0.4, seed)
        jittered = transforms.color_jitter(tf.constant(picture), 0.4, seed)
        identity = transforms.color_jitter(tf.constant(picture), 0.0, seed)
        unseeded = transforms.color_jitter_params(0.4)
        with tf1.Session() as session:
            draws = [session.run([factors, order, jittered], {seed: [s, 7]}) for s in range(300)]
            np.testing.assert_array_equal(session.run(identity, {seed: [0, 0]}), picture)
            assert session.run(unseeded)[0].tolist() != session.run(unseeded)[0].tolist()
    all_factors = np.array([d[0] for d in draws])
    assert all_factors.min() >= 0.6 and all_factors.max() <= 1.4
    assert all_factors.min() < 0.62 and all_factors.max() > 1.38 and abs(all_factors.mean() - 1.0) < 0.03
    orders = {tuple(d[1]) for d in draws}
    assert orders == {(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)}
    for f, o, got in draws[:40]:
        np.testing.assert_allclose(got, _jitter_reference(picture, f, o), atol=2e-3)
    assert max(np.abs(d[2] - picture).max() for d in draws) > 20


def test_train_transform_jitters_after_the_resize_and_before_normalisation():
    """The plugin's train_image with color_jitter s is the jitter of its image at s = 0 (same crop and flip)."""
    jpeg = _photo(80, 90, 3)
    base = _hparams(image_size=48, input_normalization="none", train_dct_method="INTEGER_ACCURATE")
    with tf.Graph().as_default():
        seed = tf.constant([5, 9], tf.int64)
        plain = preprocessing.train_image(tf.constant(jpeg), base, seed=seed)
        jittered = preprocessing.train_image(tf.constant(jpeg), dict(base, color_jitter=0.4), seed=seed)
        params = transforms.color_jitter_params(0.4, transforms.fold_seed(seed, 3))
        plain, jittered, (factors, order) = _run([plain, jittered, params])
    np.testing.assert_allclose(jittered, _jitter_reference(plain, factors, order), atol=2e-3)


# ------------------------------------------------------------------ BN recalibration

class _TinyModel(object):
    """A network with the plugin contract: images [B, 4, 4, 3] -> batch norm -> 1x1 conv -> batch norm -> mean ->
    dense, with registry.nn.batch_norm; its train data: 4 fixed batches of 6, in order, repeated; eval: the same
    24 images once."""

    presets = {}

    def __init__(self, batches):
        self.batches = batches

    def default_hparams(self):
        return {"batch_size": 6, "learning_rate": 0.1, "epochs": 1.0, "num_classes": 2, "image_size": 4,
                "num_train_images": 24, "num_eval_images": 24, "save_checkpoints_steps": 100, "eval_every_epochs": 0.0,
                "bn_recalibration_epochs": 0.0, "label_offset": 0}

    def input_fn(self, mode, hparams, data_path, input_context=None):
        images = np.concatenate(self.batches).astype(np.float32)
        labels = (images.mean((1, 2, 3)) > images.mean()).astype(np.int32)
        data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(len(self.batches[0]))
        return data.repeat() if mode == "train" else data

    def build_model(self, images, is_training, hparams):
        x = nn.batch_norm(images, is_training, "bn0", momentum=0.9, epsilon=1e-5)
        kernel = tf1.get_variable("conv", [1, 1, 3, 5], initializer=tf1.initializers.random_normal(seed=1))
        x = nn.batch_norm(tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "VALID"), is_training, "bn1", momentum=0.9)
        dense = tf1.get_variable("dense", [5, 2], initializer=tf1.initializers.random_normal(seed=2))
        return tf.matmul(tf.reduce_mean(x, [1, 2]), dense)


def _batches():
    rng = np.random.RandomState(0)
    return [rng.normal(k, 1 + k, (6, 4, 4, 3)) for k in range(4)]


def _variables(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_bn_recalibration_averages_the_batch_statistics_and_resumes(tmp_path):
    batches = _batches()
    model = _TinyModel(batches)
    hparams = model.default_hparams()
    model_dir = str(tmp_path)
    with tf.Graph().as_default():   # a "trained" checkpoint at step 50
        step = tf1.train.get_or_create_global_step()
        model.build_model(tf.zeros([6, 4, 4, 3]), True, hparams)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            session.run(tf1.assign(step, 50))
            checkpoints.make_saver(5).save(session, model_dir + "/model.ckpt", global_step=50, write_meta_graph=False)
    start = _variables(model_dir + "/model.ckpt-50")
    evaluated = []

    def evaluate(checkpoint):
        evaluated.append(checkpoints.checkpoint_step(checkpoint))
        return {"top1": 0.5, "loss": 1.0, "global_step": evaluated[-1]}

    # 2 epochs = 8 iterations, stopped after 3, then resumed: its input restarts at the first batch
    stop = tf1.train.StopAtStepHook(last_step=53)
    assert recalibration.recalibrate(model, hparams, None, model_dir, 50, 2, evaluate, log=lambda *a: None,
                                     hooks=[stop]) is None
    assert checkpoints.checkpoint_step(checkpoints.latest(model_dir)) == 53
    record = recalibration.recalibrate(model, hparams, None, model_dir, 50, 2, evaluate, log=lambda *a: None)
    assert record["done"] and record["steps"] == 8 and evaluated == [50, 58]
    assert record["before"]["global_step"] == 50 and record["after"]["global_step"] == 58
    assert recalibration.read_record(model_dir) == record
    after = _variables(checkpoints.latest(model_dir))
    seen = [batches[i] for i in (0, 1, 2, 0, 1, 2, 3, 0)]
    np.testing.assert_allclose(after["bn0/moving_mean"], np.mean([b.mean((0, 1, 2)) for b in seen], 0), rtol=1e-5)
    np.testing.assert_allclose(after["bn0/moving_variance"],
                               np.mean([b.reshape(-1, 3).var(0, ddof=1) for b in seen], 0), rtol=1e-5)
    assert not np.allclose(after["bn1/moving_mean"], start["bn1/moving_mean"])
    for name, value in start.items():
        if "moving" not in name and name != "global_step":
            np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert after["global_step"] == 58


def test_bn_recalibration_ends_a_finished_schedule_and_runs_as_a_command(tmp_path, capsys, monkeypatch):
    """`bn_recalibration_epochs` runs after the schedule's last step (not when --max_steps stops the run first), with
    the evaluations before and after in the records; `zoo-run recalibrate-bn` does another pass on the model dir."""
    from registry import cli, discovery, hparams as hp
    from registry.engine import results, runner
    model, model_dir = _TinyModel(_batches()), str(tmp_path)
    params = hp.resolve(model, set_args=["bn_recalibration_epochs=0.5"])   # 4 steps, then 2 of recalibration
    runner.train(model, params, None, model_dir, max_steps=2, skip_eval=True, log=lambda *a: None)
    assert recalibration.read_record(model_dir) is None          # stopped early: no pass
    record = runner.train(model, params, None, model_dir, log=lambda *a: None)
    assert record["global_step"] == 4 + 2
    summary = results.read_json(model_dir, results.RUN_SUMMARY)["bn_recalibration"]
    assert summary["before"]["global_step"] == 4 and summary["after"] == record and summary["done"]
    assert [r["global_step"] for r in results.read_eval_history(model_dir)] == [4, 6]
    trained, recalibrated = _variables(model_dir + "/model.ckpt-4"), _variables(model_dir + "/model.ckpt-6")
    assert set(trained) == set(recalibrated)                      # the optimiser's slots are kept
    moved = [name for name in trained if name != "global_step" and not np.array_equal(trained[name],
                                                                                         recalibrated[name])]
    assert sorted(moved) == ["bn0/moving_mean", "bn0/moving_variance", "bn1/moving_mean", "bn1/moving_variance"]
    assert runner.train(model, params, None, model_dir, log=lambda *a: None)["global_step"] == 6   # done: no rerun

    monkeypatch.setattr(discovery, "get_model", lambda name: model)
    assert cli.main(["recalibrate-bn", "tiny", "--model_dir", model_dir, "--epochs", "0.5"]) == 0
    assert "top-1" in capsys.readouterr().out
    again = recalibration.read_record(model_dir)
    assert (again["start_step"], again["before"]["global_step"], again["after"]["global_step"]) == (6, 6, 8)
    assert results.read_json(model_dir, results.RUN_SUMMARY)["bn_recalibration"] == again
    assert results.read_json(model_dir, results.EVAL_RESULTS)["global_step"] == 8
