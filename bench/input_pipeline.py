"""Input pipeline benchmark: the full ShuffleNet train pipeline's images/sec on TF-slim TFRecords,
beside the bare JPEG-decode rate of the same files on the same cores, measured in the same run.

    # once: an ImageNet-like set (~500x375 photos) made from the real photos scikit-learn ships
    .venv/tf1/bin/pip install scikit-learn
    .venv/tf1/bin/python bench/input_pipeline.py make-photos /tmp/photos --count 512
    # then
    .venv/tf1/bin/python bench/input_pipeline.py run /tmp/photos/records

The bare decode rate: the same JPEG bytes, held in memory, decoded whole by tf.image.decode_jpeg in a
parallel tf.data map (as many calls as cores) and discarded. The pipeline: files -> interleave ->
shuffle -> parse -> fused random decode-and-crop -> flip -> resize 224 -> normalise -> batch 32 ->
prefetch, all of registry.data + the plugin's preprocessing, unchanged. Rounds alternate so that
both see the same machine state; the best round of each is reported.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ------------------------------------------------------------------ an ImageNet-like photo set

def make_photos(out, count, seed=0, shards=8):
    """`count` distinct ~500x375 JPEG photos cut from scikit-learn's sample photos (china.jpg,
    flower.jpg: real 640x427 photographs), in class folders, then built into TFRecords."""
    import io
    import numpy as np
    from PIL import Image, ImageEnhance
    from sklearn.datasets import load_sample_images
    from registry.data import builder

    samples = load_sample_images()
    rng = np.random.RandomState(seed)
    src = os.path.join(out, "images")
    sizes = []
    for i in range(count):
        k = i % len(samples.images)
        name = os.path.splitext(os.path.basename(samples.filenames[k]))[0] if hasattr(samples, "filenames") else str(k)
        photo = Image.fromarray(samples.images[k])
        w, h = photo.size
        portrait = rng.rand() < 0.25
        target = (375, 500) if portrait else (500, 375)
        ratio = target[0] / float(target[1])
        scale = rng.uniform(0.35, 1.0)
        ch = min(h, int(h * scale)) if not portrait else h * scale
        cw = min(w, int(ch * ratio))
        ch = int(cw / ratio)
        x, y = rng.randint(0, w - cw + 1), rng.randint(0, h - ch + 1)
        image = photo.crop((x, y, x + cw, y + ch)).resize(target, Image.BICUBIC)
        if rng.rand() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
        folder = os.path.join(src, name)
        os.makedirs(folder, exist_ok=True)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=int(rng.randint(85, 96)))
        sizes.append(buf.tell())
        with open(os.path.join(folder, "%s_%05d.JPEG" % (name, i)), "wb") as f:
            f.write(buf.getvalue())
    print("%d photos, mean %.0f KB" % (count, sum(sizes) / len(sizes) / 1024.0))
    records = os.path.join(out, "records")
    builder.build(src, records, "train", num_shards=shards, workers=1, seed=seed)
    print("TFRecords in %s" % records)
    return records


# ------------------------------------------------------------------ measurements

def _rate(fetch, batch, seconds, warmup_batches, session_config):
    import tensorflow as tf
    with tf.compat.v1.Session(config=session_config) as sess:
        for _ in range(warmup_batches):
            sess.run(fetch)
        n, start = 0, time.time()
        while time.time() - start < seconds:
            sess.run(fetch)
            n += 1
        return n * batch / (time.time() - start)


def decode_rate(jpegs, batch, seconds, threads, session_config, dct_method=""):
    import tensorflow as tf
    with tf.Graph().as_default():
        data = tf.data.Dataset.from_tensor_slices(tf.constant(jpegs)).repeat()
        data = data.map(lambda b: tf.shape(tf.image.decode_jpeg(b, channels=3, dct_method=dct_method))[0],
                        num_parallel_calls=threads)
        data = data.batch(batch).prefetch(2)
        fetch = tf.compat.v1.data.make_one_shot_iterator(data).get_next()
        return _rate(fetch, batch, seconds, 5, session_config)


def pipeline_rate(data_path, hparams, seconds, session_config):
    import tensorflow as tf
    from modelzoo_shufflenet import preprocessing
    from registry import spec
    with tf.Graph().as_default():
        data = preprocessing.input_fn(spec.TRAIN, hparams, data_path)
        images, labels = tf.compat.v1.data.make_one_shot_iterator(data).get_next()
        fetch = [images[0, 0, 0, 0], labels[0]]   # the batch is produced in full; fetch a scalar of it
        return _rate(fetch, hparams["batch_size"], seconds, 10, session_config)


def stage_rate(data_path, hparams, stage, seconds, session_config):
    """The train pipeline cut after `stage` ('crop': fused decode-and-crop; 'resize': + flip and
    resize), same reading, threads and batching: where the time goes."""
    import tensorflow as tf
    from registry.data import pipeline, tfrecord, transforms
    size = hparams["image_size"]

    def preprocess(record, seed):
        parsed = tfrecord.parse_record(record, 1, hparams["num_classes"])
        image = transforms.decode_and_random_crop(parsed["image"], parsed["bbox"],
                                                  area_range=(hparams["crop_area_min"], 1.0))
        if stage == "crop":
            return tf.shape(image)[0], parsed["label"]
        image = transforms.resize(transforms.random_flip_left_right(image), size, size)
        image.set_shape([size, size, 3])
        return image, parsed["label"]

    with tf.Graph().as_default():
        files = tfrecord.list_split_files(data_path, "train")
        data = pipeline.build_dataset(files, True, preprocess, hparams["batch_size"],
                                      shuffle_buffer=hparams["shuffle_buffer"],
                                      num_parallel_calls=pipeline.map_parallelism(hparams["data_threads"]))
        images, labels = tf.compat.v1.data.make_one_shot_iterator(data).get_next()
        fetch = [tf.reshape(images, [-1])[0], labels[0]]
        return _rate(fetch, hparams["batch_size"], seconds, 10, session_config)


def run(args):
    import tensorflow as tf
    from modelzoo_shufflenet.models import _DEFAULT_HPARAMS
    from registry.data import pipeline, tfrecord
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)

    files = tfrecord.list_split_files(args.data_path, "train")
    jpegs = []
    for path in files:
        for raw in tf.compat.v1.io.tf_record_iterator(path):
            jpegs.append(tf.train.Example.FromString(raw).features.feature["image/encoded"].bytes_list.value[0])
    hparams = dict(_DEFAULT_HPARAMS, batch_size=args.batch_size, image_size=args.image_size,
                   num_classes=args.num_classes, label_offset=1, shuffle_buffer=min(10000, len(jpegs)),
                   data_threads=args.data_threads)
    cores = pipeline.usable_cores()
    config = tf.compat.v1.ConfigProto()
    print("%d images in %d files, %d cores, batch %d, image_size %d, data_threads %d, %d rounds of %.0f s each"
          % (len(jpegs), len(files), cores, args.batch_size, args.image_size, args.data_threads, args.rounds,
             args.seconds))
    if args.compare_dct:
        return compare_dct(args, jpegs, hparams, cores, config)
    decode, full = [], []
    for r in range(args.rounds):
        decode.append(decode_rate(jpegs, args.batch_size, args.seconds, cores, config))
        full.append(pipeline_rate(args.data_path, hparams, args.seconds, config))
        print("round %d: bare decode %7.1f images/sec   train pipeline %7.1f images/sec   (%.0f%%)"
              % (r + 1, decode[-1], full[-1], 100.0 * full[-1] / decode[-1]))
    if args.stages:
        crop = stage_rate(args.data_path, hparams, "crop", args.seconds, config)
        resize = stage_rate(args.data_path, hparams, "resize", args.seconds, config)
        print("stages: decode-and-crop only %.1f, + flip and resize %.1f, + normalise (full) %.1f images/sec"
              % (crop, resize, full[-1]))
    best_decode, best_full = max(decode), max(full)
    print("bare JPEG decode : %7.1f images/sec (best of %d)" % (best_decode, args.rounds))
    print("train pipeline   : %7.1f images/sec (best of %d) = %.0f%% of the decode rate"
          % (best_full, args.rounds, 100.0 * best_full / best_decode))
    return 0


def compare_dct(args, jpegs, hparams, cores, config):
    """The train pipeline and the bare decode with the fast and the accurate integer DCT (train_dct_method), in
    alternating rounds (the order flips each round); prints each round's accurate / fast ratios and their median."""
    import statistics
    methods = ("INTEGER_FAST", "INTEGER_ACCURATE")
    ratios = {"decode": [], "pipeline": []}
    for r in range(args.rounds):
        rates = {}
        for method in methods if r % 2 == 0 else methods[::-1]:
            rates["decode", method] = decode_rate(jpegs, args.batch_size, args.seconds, cores, config,
                                                  "" if method == "INTEGER_FAST" else method)
            rates["pipeline", method] = pipeline_rate(args.data_path, dict(hparams, train_dct_method=method),
                                                      args.seconds, config)
        for kind in ratios:
            ratios[kind].append(rates[kind, methods[1]] / rates[kind, methods[0]])
        print("round %d: bare decode fast %7.1f accurate %7.1f (x%.3f)   train pipeline fast %7.1f accurate %7.1f "
              "(x%.3f) images/sec" % (r + 1, rates["decode", methods[0]], rates["decode", methods[1]],
                                      ratios["decode"][-1], rates["pipeline", methods[0]],
                                      rates["pipeline", methods[1]], ratios["pipeline"][-1]))
    print("accurate / fast, median of %d rounds: bare decode x%.3f, train pipeline x%.3f"
          % (args.rounds, statistics.median(ratios["decode"]), statistics.median(ratios["pipeline"])))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    sub.required = True
    p = sub.add_parser("make-photos", help="build an ImageNet-like TFRecord set from scikit-learn's sample photos")
    p.add_argument("out")
    p.add_argument("--count", type=int, default=512)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("run", help="pipeline images/sec vs bare decode images/sec")
    p.add_argument("data_path", help="directory with train-*-of-* TF-slim TFRecords")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data_threads", type=int, default=0,
                   help="the data_threads hparam: 0 one preprocess call per core, -1 tf.data AUTOTUNE, N")
    p.add_argument("--compare_dct", action="store_true",
                   help="time the fast and the accurate integer DCT (train_dct_method) in alternating rounds")
    p.add_argument("--stages", action="store_true", help="also time the pipeline cut after crop and after resize")
    args = parser.parse_args(argv)
    if args.command == "make-photos":
        make_photos(args.out, args.count, args.seed, args.shards)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
