"""The input pipeline: TF-slim records -> ShuffleNet preprocessing -> batches, checked on values."""
import functools
import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from modelzoo_shufflenet import preprocessing  # noqa: E402
from modelzoo_shufflenet.models import _DEFAULT_HPARAMS, SHUFFLENETV1_G3  # noqa: E402
from registry import spec  # noqa: E402
from registry.data import builder, demo, pipeline, synthetic, tfrecord, transforms  # noqa: E402
from registry.errors import DataError  # noqa: E402

tf1 = tf.compat.v1
MEAN = np.array(preprocessing.MEAN_RGB, np.float32)
STD = np.array(preprocessing.STDDEV_RGB, np.float32)
CLASSES = ("ring", "bar", "blob")
SIZES = [(48, 64), (44, 60), (30, 26), (40, 40), (64, 36), (28, 50), (56, 44)]   # (height, width)
N_PER_CLASS = len(SIZES)
N = N_PER_CLASS * len(CLASSES)                                                     # 21 images


def photo(cls, index, height, width):
    """A distinct picture: gradient background, a class-specific shape, noise."""
    rng = np.random.RandomState(100 * cls + index)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 255], -1)
    base = base + rng.uniform(-20, 20, (1, 1, 3)) + rng.normal(0, 8, base.shape)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(image)
    box = [width * 0.25, height * 0.25, width * 0.75, height * 0.75]
    if cls == 2:
        d.pieslice(box, 0, 300, fill=(250, 240, 20))
    else:
        [d.ellipse, d.rectangle][cls](box, fill=(250, 240, 20))
    return image


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    src = root / "src"
    for c, name in enumerate(CLASSES):
        (src / name).mkdir(parents=True)
        for i, (h, w) in enumerate(SIZES):
            image = photo(c, i, h, w)
            path = str(src / name / ("%s_%d" % (name, i)))
            if i == 2:
                image.save(path + ".png")                     # re-encoded by the builder
            elif i == 3:
                image.convert("L").save(path + ".jpg", quality=95)
            else:
                image.save(path + ".jpg", quality=95)
    out = str(root / "records")
    names = root / "names.txt"
    names.write_text("ring\ta ring\nbar\ta bar\nblob\ta blob\n")
    builder.build(str(src), out, "train", num_shards=4, synset_names=str(names), stream=io.StringIO())
    builder.build(str(src), out, "validation", num_shards=1, synset_names=str(names), stream=io.StringIO())
    return out


def hparams(**overrides):
    params = dict(_DEFAULT_HPARAMS, num_classes=3, image_size=32, batch_size=4, eval_crop_fraction=0.8,
                  shuffle_buffer=64, crop_area_min=0.08)
    params.update(overrides)
    return params


def run(dataset, max_batches=1000):
    batches = []
    next_element = tf1.data.make_one_shot_iterator(dataset).get_next()
    with tf1.Session() as sess:
        try:
            for _ in range(max_batches):
                batches.append(sess.run(next_element))
        except tf.errors.OutOfRangeError:
            pass
    return batches


def in_graph(fn):
    """Runs `fn` in a fresh graph (tests share one process)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with tf.Graph().as_default():
            return fn(*args, **kwargs)
    return wrapper


def records(out, split):
    result = []
    for raw in tf1.io.tf_record_iterator(tfrecord.list_split_files(out, split)[0]) if split == "validation" else \
            [r for f in tfrecord.list_split_files(out, split) for r in tf1.io.tf_record_iterator(f)]:
        feature = tf.train.Example.FromString(raw).features.feature
        result.append({"image": feature["image/encoded"].bytes_list.value[0],
                       "label": feature["image/class/label"].int64_list.value[0],
                       "text": feature["image/class/text"].bytes_list.value[0].decode(),
                       "filename": feature["image/filename"].bytes_list.value[0].decode()})
    return result


# ------------------------------------------------------------------ independent numpy reference

def np_resize_bilinear(image, out_h, out_w):
    """TF2 bilinear resize (half-pixel centres, no antialias), written out in numpy."""
    image = image.astype(np.float64)

    def weights(out_size, in_size):
        scale = in_size / out_size
        src = (np.arange(out_size) + 0.5) * scale - 0.5
        floor = np.floor(src)
        lower = np.maximum(floor, 0).astype(int)
        upper = np.minimum(np.ceil(src), in_size - 1).astype(int)
        return lower, upper, src - floor

    y0, y1, fy = weights(out_h, image.shape[0])
    x0, x1, fx = weights(out_w, image.shape[1])
    top = image[y0][:, x0] * (1 - fx)[None, :, None] + image[y0][:, x1] * fx[None, :, None]
    bottom = image[y1][:, x0] * (1 - fx)[None, :, None] + image[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def decode_jpegs(buffers):
    """The decoded pixels the eval pipeline starts from (the accurate integer DCT: Pillow's pixels)."""
    with tf.Graph().as_default():
        data = tf1.placeholder(tf.string, [])
        decoded = tf.image.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
        with tf1.Session() as sess:
            return [sess.run(decoded, {data: b}) for b in buffers]


def np_eval_image(image, size=32, resize_to=40, mode="square"):
    h, w = image.shape[:2]
    if mode == "square":
        nh = nw = resize_to
    else:   # Megvii's OpencvResize and torchvision's CenterCrop roundings
        nh, nw = (resize_to, int(resize_to / h * w + 0.5)) if h < w else (int(resize_to / w * h + 0.5), resize_to)
    resized = np_resize_bilinear(image, nh, nw)
    oy, ox = ((nh - size) // 2, (nw - size) // 2) if mode == "square" else (int(round((nh - size) / 2.0)),
                                                                            int(round((nw - size) / 2.0)))
    crop = resized[oy:oy + size, ox:ox + size]
    return ((crop / 255.0 - MEAN) / STD).astype(np.float32)


def match_eval_outputs(batches, expected):
    """Index of the expected image each real output matches (-1 padding excluded)."""
    matched = []
    for images, labels in batches:
        for image, label in zip(images, labels):
            if label < 0:
                continue
            errors = [np.abs(image - e).mean() for e in expected]
            best = int(np.argmin(errors))
            matched.append((best, int(label), errors[best], np.abs(image - expected[best]).max()))
    return matched


# ------------------------------------------------------------------ round trip and eval

@pytest.mark.parametrize("mode", ["square", "aspect"])
@in_graph
def test_eval_round_trip_matches_numpy_and_covers_every_image_once(data, mode):
    recs = records(data, "validation")
    assert len(recs) == N
    pixels = decode_jpegs([r["image"] for r in recs])
    for r, p in zip(recs, pixels):                        # the decoder gives PIL's pixels
        assert np.array_equal(p, np.asarray(Image.open(io.BytesIO(r["image"])).convert("RGB")))
    expected = [np_eval_image(p, mode=mode) for p in pixels]
    batches = run(preprocessing.input_fn(spec.EVAL, hparams(eval_resize=mode), data))

    assert len(batches) == pipeline.num_batches(N, 4, False) == 6
    for images, labels in batches:
        assert images.shape == (4, 32, 32, 3) and images.dtype == np.float32
        assert labels.shape == (4,) and labels.dtype == np.int32
    labels = np.concatenate([b[1] for b in batches])
    assert list(labels[N:]) == [-1, -1, -1]                 # padding only at the end
    assert (labels[:N] >= 0).all()
    assert (batches[-1][0][1:] == 0).all()

    matched = match_eval_outputs(batches, expected)
    assert sorted(m[0] for m in matched) == list(range(N))  # every image exactly once
    for index, label, mean_err, max_err in matched:
        assert label == recs[index]["label"] - 1            # label_offset 1
        assert mean_err < 1e-4 and max_err < 1e-3, (recs[index]["filename"], mean_err, max_err)
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD
    real = np.concatenate([b[0] for b in batches])[:N]
    assert (real >= low - 1e-4).all() and (real <= high + 1e-4).all()
    assert real.min() < low[2] + 0.5 and real.max() > high[0] - 0.5   # the full range is used


def test_records_keep_labels_and_class_text(data):
    recs = records(data, "train")
    assert len(recs) == N
    for r in recs:
        name = r["filename"].split("_")[0]
        assert r["label"] == sorted(CLASSES).index(name) + 1
        assert r["text"] == "a " + name


@in_graph
def test_train_batches_are_static_normalised_and_repeat(data):
    dataset = preprocessing.input_fn(spec.TRAIN, hparams(batch_size=8), data)
    assert tf1.data.get_output_shapes(dataset)[0].as_list() == [8, 32, 32, 3]
    batches = run(dataset, max_batches=8)                   # 64 images > 3 epochs of 21
    assert len(batches) == 8
    labels = np.concatenate([b[1] for b in batches])
    assert labels.dtype == np.int32 and set(labels) == {0, 1, 2}
    images = np.concatenate([b[0] for b in batches])
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD
    assert images.dtype == np.float32 and (images >= low - 1e-4).all() and (images <= high + 1e-4).all()
    assert images.std() > 0.3


@in_graph
def test_seeded_training_is_reproducible(data):
    def first_batches(seed):
        with tf.Graph().as_default():
            return run(preprocessing.input_fn("train", hparams(seed=seed), data), max_batches=3)

    a, b, c = first_batches(5), first_batches(5), first_batches(6)
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(ia, ib)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


@in_graph
def test_data_threads_sets_the_parallel_calls_and_seeded_batches_do_not_depend_on_it(data):
    assert pipeline.map_parallelism(0) == pipeline.usable_cores() == len(os.sched_getaffinity(0))
    assert pipeline.map_parallelism(-1) == pipeline.AUTOTUNE
    assert pipeline.map_parallelism(3) == 3
    with pytest.raises(DataError, match="data_threads must be 0.*-1.*got -2"):
        preprocessing.input_fn("train", hparams(data_threads=-2), data)

    def first_batches(threads):
        with tf.Graph().as_default():
            return run(preprocessing.input_fn("train", hparams(seed=3, data_threads=threads), data), max_batches=3)

    for (ia, la), (ib, lb) in zip(first_batches(1), first_batches(3)):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(ia, ib)


# ------------------------------------------------------------------ train transforms

@in_graph
def test_crop_windows_stay_inside_the_image():
    shape = tf.constant([120, 200, 3], tf.int32)
    seed = tf1.placeholder(tf.int64, [2])
    stateful = transforms.distorted_crop_window(shape, area_range=(0.2, 1.0))
    stateless = transforms.distorted_crop_window(shape, area_range=(0.2, 1.0), seed=seed)
    with tf1.Session() as sess:
        windows = [sess.run(stateful) for _ in range(150)] + \
                  [sess.run(stateless, {seed: [3, i]}) for i in range(150)]
    windows = np.array(windows)
    y, x, h, w = windows.T
    assert (y >= 0).all() and (x >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (y + h <= 120).all() and (x + w <= 200).all()
    area = h * w / (120.0 * 200.0)
    assert area.min() >= 0.19 and area.max() <= 1.0
    assert len(set(map(tuple, windows))) > 250                # they vary
    assert (area < 0.6).sum() > 50                              # and cover the area range


@in_graph
def test_fused_crop_takes_the_window_pixels():
    yy, xx = np.mgrid[0:100, 0:160]
    coded = np.stack([yy * 2, xx * 1.5, np.full_like(yy, 128)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(coded).save(buf, "JPEG", quality=100)
    jpeg = tf.constant(buf.getvalue())
    seed = tf1.placeholder(tf.int64, [2])
    window = transforms.distorted_crop_window(transforms.image_shape(jpeg), seed=seed, area_range=(0.1, 0.5))
    crop = transforms.decode_and_crop(jpeg, window)
    with tf1.Session() as sess:
        for i in range(10):
            (oy, ox, h, w), pixels = sess.run([window, crop], {seed: [1, i]})
            assert pixels.shape == (h, w, 3)
            np.testing.assert_allclose(pixels[..., 0], coded[oy:oy + h, ox:ox + w, 0], atol=6)
            np.testing.assert_allclose(pixels[..., 1], coded[oy:oy + h, ox:ox + w, 1], atol=6)


@in_graph
def test_train_image_flips_and_otherwise_keeps_the_image():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :20] = 255                                      # bright left half
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    png = tf.constant(buf.getvalue())
    params = hparams(crop_area_min=1.0, random_flip=True)  # area 1: the crop is the whole image
    seed = tf1.placeholder(tf.int64, [2])
    seeded = preprocessing.train_image(png, params, seed=seed)
    unseeded = preprocessing.train_image(png, params)
    no_flip = preprocessing.train_image(png, hparams(crop_area_min=1.0, random_flip=False))
    with tf1.Session() as sess:
        outs = [sess.run(seeded, {seed: [0, i]}) for i in range(40)] + [sess.run(unseeded) for _ in range(40)]
        plain = sess.run(no_flip)
    expected = (np_resize_bilinear(image, 32, 32) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(plain, expected, atol=1e-4)
    flipped = [bool(o[:, :16].mean() < o[:, 16:].mean()) for o in outs]
    for o, f in zip(outs, flipped):
        np.testing.assert_allclose(o, expected[:, ::-1] if f else expected, atol=1e-4)
    assert 8 <= sum(flipped[:40]) <= 32 and 8 <= sum(flipped[40:]) <= 32


# ------------------------------------------------------------------ sharding

class Context(object):
    def __init__(self, workers, index):
        self.num_input_pipelines, self.input_pipeline_id = workers, index


def filename_preprocess(record, seed):
    parsed = tfrecord.parse_record(record, 1, 3, with_bbox=False)
    return parsed["filename"], parsed["label"]


def seen_filenames(files, is_training, context, batches):
    with tf.Graph().as_default():
        ds = pipeline.build_dataset(files, is_training, filename_preprocess, 1, shuffle_buffer=4,
                                    input_context=context)
        return [b[0][0].decode() for b in run(ds, batches) if b[1][0] >= 0]


def test_two_workers_read_disjoint_halves_of_the_files(data):
    files = tfrecord.list_split_files(data, "train")        # 4 shards: sharded by file
    counts = [tfrecord.count_records([f]) for f in files]
    halves = []
    for w in range(2):
        expected = counts[w] + counts[w + 2]
        names = seen_filenames(files, True, Context(2, w), 3 * expected)
        assert len(set(names)) == expected                  # training repeats its own half only
        halves.append(set(names))
    assert not halves[0] & halves[1]
    assert len(halves[0] | halves[1]) == N


def test_sharded_by_record_when_fewer_files_than_workers(data, monkeypatch):
    files = tfrecord.list_split_files(data, "validation")   # 1 file, 2 workers
    parts = [seen_filenames(files, False, Context(2, w), 100) for w in range(2)]
    assert sorted(len(p) for p in parts) == [10, 11]
    assert len(set(parts[0] + parts[1])) == len(parts[0] + parts[1]) == N
    assert sorted(set(seen_filenames(files, True, Context(2, 1), 40))) == sorted(parts[1])   # trains on its share
    monkeypatch.setenv("RANK_SIZE", "2")    # the NPU launcher's variables reach the pipeline only as a context
    monkeypatch.setenv("RANK_ID", "1")      # from the runner (registry.engine.environment), never directly
    assert sorted(seen_filenames(files, False, None, 100)) == sorted(parts[0] + parts[1])
    assert sorted(set(seen_filenames(files, True, None, 60))) == sorted(parts[0] + parts[1])


# ------------------------------------------------------------------ errors

def test_missing_or_empty_data_paths_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--data_path"):
        preprocessing.input_fn("train", hparams(), str(tmp_path / "nowhere"))
    (tmp_path / "README").write_text("x")
    (tmp_path / "train.tfrecord").write_text("x")
    with pytest.raises(DataError, match=r"validation-\*-of-\*.*README, train.tfrecord"):
        preprocessing.input_fn("eval", hparams(), str(tmp_path))
    with pytest.raises(DataError, match="no data path"):
        preprocessing.input_fn("train", hparams(), None)
    with pytest.raises(DataError, match="eval_resize"):
        with tf.Graph().as_default():
            preprocessing.input_fn("eval", hparams(eval_resize="stretch"), demo.demo_data_path())


@in_graph
def test_label_outside_the_range_stops_with_a_clear_message(data):
    dataset = preprocessing.input_fn("eval", hparams(num_classes=2), data)   # labels go to 2
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside 1..2.*num_classes"):
        run(dataset)


@in_graph
def test_record_without_image_stops_with_a_clear_message(tmp_path):
    path = str(tmp_path / "validation-00000-of-00001")
    with tf.io.TFRecordWriter(path) as writer:
        example = tfrecord.make_example(b"", 1, 10, 10, filename="empty.jpg")
        del example.features.feature["image/encoded"]
        writer.write(example.SerializeToString())
    with pytest.raises(tf.errors.InvalidArgumentError, match="no image/encoded.*empty.jpg"):
        run(preprocessing.input_fn("eval", hparams(), str(tmp_path)))


# ------------------------------------------------------------------ synthetic and demo

@in_graph
def test_synthetic_data():
    params = hparams(batch_size=5, image_size=64, num_classes=7, num_eval_images=12)
    train = synthetic.synthetic_dataset("train", params)
    assert tf1.data.get_output_shapes(train)[0].as_list() == [5, 64, 64, 3]
    batches = run(train, max_batches=4)
    assert len(batches) == 4
    images, labels = batches[0]
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 7 and images.std() > 0.5
    assert len(run(synthetic.synthetic_dataset("eval", params))) == 3


@in_graph
def test_demo_data_feeds_the_plugin():
    params = dict(_DEFAULT_HPARAMS, **dict(SHUFFLENETV1_G3.presets["demo"], batch_size=100))
    batches = run(preprocessing.input_fn("eval", params, demo.demo_data_path()))
    labels = np.concatenate([b[1] for b in batches])
    assert len(batches) == 4 and (labels >= 0).sum() == 360 and (labels == -1).sum() == 40
    assert set(labels[labels >= 0]) == set(range(10))
    assert batches[0][0].shape == (100, 32, 32, 3)
