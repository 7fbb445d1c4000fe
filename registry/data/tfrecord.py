"""TF-slim image TFRecords: the file layout, the feature spec, parsing and writing one record.

Layout (as TF-slim's `build_imagenet_data.py` writes it):

    DATA/train-00000-of-01024 ... DATA/train-01023-of-01024
    DATA/validation-00000-of-00128 ...

Also read as they are: the names of TF-slim's dataset converters (`download_and_convert_data.py`:
`flowers_train_00000-of-00005.tfrecord`, `cifar10_train.tfrecord`, `mnist_test.tfrecord`, ...), whose
labels are 0-based (label_offset=0); see `find_split_files` and `implied_label_offset`.

Each record is a `tf.train.Example` with `image/encoded` (JPEG bytes), `image/class/label`
(int64, 1..N; 0 is slim's background slot, so readers subtract a `label_offset`),
`image/class/synset`, `image/class/text`, `image/height`, `image/width`, `image/channels`,
`image/colorspace`, `image/format`, `image/filename` and optional `image/object/bbox/*`
boxes (normalised [0, 1] coordinates).
"""
import glob
import os

from registry.errors import DataError

SPLITS = ("train", "validation")
LABELS_FILENAME = "labels.txt"


# Other file names a split is read from, in order, when no `<split>-*-of-*` file exists: TF-slim's dataset
# converters ({dataset}_{split}_{i:05d}-of-{n:05d}.tfrecord; {dataset}_{split}.tfrecord for cifar10 and
# mnist, whose held-out split is 'test'). Their labels are 0-based.
CONVERTER_PATTERNS = {"train": ("*_train_*-of-*.tfrecord", "*_train.tfrecord"),
                      "validation": ("*_validation_*-of-*.tfrecord", "*_validation.tfrecord", "*_test.tfrecord")}


def split_pattern(split):
    """The file-name pattern of a split: 'train-*-of-*' or 'validation-*-of-*'."""
    if split not in SPLITS:
        raise DataError("unknown split %r; use one of %s" % (split, ", ".join(SPLITS)))
    return "%s-*-of-*" % split


def shard_name(split, index, num_shards):
    """'train-00003-of-01024' (TF-slim's naming)."""
    return "%s-%05d-of-%05d" % (split, index, num_shards)


def mode_to_split(mode):
    """An input_fn mode (registry.spec: 'train', 'eval', 'infer') -> 'train' or 'validation'."""
    return "train" if str(mode).lower() == "train" else "validation"


def _describe_dir(path, limit=8):
    try:
        names = sorted(n for n in os.listdir(path) if not n.startswith("."))
    except OSError as err:
        return "(cannot list it: %s)" % err.strerror
    if not names:
        return "nothing (the directory is empty)"
    shown = ", ".join(names[:limit])
    return shown + (", ... (%d entries in all)" % len(names) if len(names) > limit else "")


def _glob_files(data_path, pattern):
    return sorted(f for f in glob.glob(os.path.join(data_path, pattern)) if os.path.isfile(f))


def find_split_files(data_path, split):
    """(sorted paths of the split's TFRecord files in `data_path`, a note or None), or a DataError saying what
    is wrong. `<split>-*-of-*` files first; else TF-slim's dataset-converter names, with a note saying so and
    what label offset they imply."""
    pattern = split_pattern(split)
    if not data_path:
        raise DataError("no data path given; pass --data_path DIR (a directory of TF-slim TFRecords, "
                        "e.g. made by `zoo-run data build`), or use --synthetic for random images")
    data_path = os.path.expanduser(str(data_path))
    if not os.path.exists(data_path):
        raise DataError("data path %s does not exist; pass --data_path pointing at a directory of TF-slim "
                        "TFRecords (%s; convert an image folder with `zoo-run data build SRC %s --split SPLIT`, "
                        "SPLIT one of %s)" % (data_path, ", ".join(split_pattern(s) for s in SPLITS), data_path,
                                             ", ".join(SPLITS)))
    if not os.path.isdir(data_path):
        raise DataError("data path %s is a file, not a directory; pass the directory that holds the %s files"
                        % (data_path, pattern))
    files = _glob_files(data_path, pattern)
    if files:
        return files, None
    for other in CONVERTER_PATTERNS[split]:
        files = _glob_files(data_path, other)
        if files:
            return files, ("%s: %d file(s) %s, named as TF-slim's dataset converters name them; their labels are "
                           "0-based (label_offset=0)" % (split, len(files), other))
    raise DataError("no %s files matching %s in %s; it holds: %s. The data set is a directory of "
                    "TF-slim TFRecords (%s, or TF-slim dataset-converter names such as %s), or build them with "
                    "`zoo-run data build SRC %s --split %s`" % (
                        split, pattern, data_path, _describe_dir(data_path), pattern,
                        " ".join(CONVERTER_PATTERNS[split]), data_path, split))


def list_split_files(data_path, split):
    """Sorted paths of the split's TFRecord files in `data_path` (see `find_split_files`)."""
    return find_split_files(data_path, split)[0]


def implied_label_offset(data_path):
    """(label offset the data implies, why) or (None, None): 0 when DATA/labels.txt numbers a class 0 or
    the files carry TF-slim's dataset-converter names (no labels.txt); 1 for ids from 1 in labels.txt."""
    labels = read_labels_file(data_path)
    if labels:
        lowest = min(labels)
        return (0 if lowest == 0 else 1), "%s numbers the classes %d..%d" % (
            os.path.join(data_path, LABELS_FILENAME), lowest, max(labels))
    for split in SPLITS:
        try:
            note = find_split_files(data_path, split)[1]
        except DataError:
            continue
        if note:
            return 0, note
    return None, None


def read_labels_file(data_path):
    """{label id: class name} from DATA/labels.txt ('1:n01440764' lines), or {} when there is none."""
    path = os.path.join(data_path, LABELS_FILENAME)
    labels = {}
    if not os.path.isfile(path):
        return labels
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            key, sep, name = line.partition(":")
            if not sep or not key.strip().isdigit():
                raise DataError("%s line %d is %r; expected 'id:class_name' lines like '1:n01440764'"
                                % (path, number, line))
            labels[int(key)] = name.strip()
    return labels


def write_labels_file(data_path, labels):
    """Writes {label id: class name} to DATA/labels.txt, TF-slim style ('1:n01440764')."""
    path = os.path.join(data_path, LABELS_FILENAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for key in sorted(labels):
            f.write("%d:%s\n" % (key, labels[key]))
    os.replace(tmp, path)
    return path


def feature_spec(with_bbox=True):
    """The parsing spec of a TF-slim image record (missing fields get harmless defaults)."""
    import tensorflow as tf
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/format": tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "image/class/text": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    if with_bbox:
        for key in ("xmin", "ymin", "xmax", "ymax"):
            spec["image/object/bbox/" + key] = tf.io.VarLenFeature(tf.float32)
    return spec


def check_label(raw_label, label_offset, num_classes, filename=None):
    """`raw_label - label_offset` as int32, with a run-time assertion that it lies in [0, num_classes).

    A record outside the range stops the run with a message naming the label, the file and the fix.
    """
    import tensorflow as tf
    label = tf.cast(raw_label, tf.int64) - label_offset
    in_range = tf.logical_and(label >= 0, label < num_classes)
    data = ["Bad image/class/label:", raw_label, "(file", filename if filename is not None else "?",
            ") is outside %d..%d, the range num_classes=%d with label_offset=%d allows. Fix: set the "
            "num_classes / label_offset hparams to match the data (TF-slim ImageNet: 1000 and 1; "
            "records from `zoo-run data build`: number of classes and 1)."
            % (label_offset, label_offset + num_classes - 1, num_classes, label_offset)]
    check = tf.debugging.Assert(in_range, data, summarize=1)
    with tf.control_dependencies([check]):
        return tf.cast(tf.identity(label), tf.int32)


def check_image(image_buffer, filename=None):
    """`image_buffer` with a run-time assertion that the record holds image bytes."""
    import tensorflow as tf
    check = tf.debugging.Assert(
        tf.strings.length(image_buffer) > 0,
        ["A record has no image/encoded bytes (file", filename if filename is not None else "?",
         "). Fix: rebuild the TFRecords with `zoo-run data build`, which writes JPEG bytes to image/encoded."],
        summarize=1)
    with tf.control_dependencies([check]):
        return tf.identity(image_buffer)


def parse_record(serialized, label_offset, num_classes, with_bbox=True):
    """One serialized TF-slim record -> dict of tensors.

    image: the encoded image bytes (checked non-empty); label: int32 in [0, num_classes)
    (checked); bbox: float32 [1, N, 4] (ymin, xmin, ymax, xmax) boxes, N may be 0;
    text, filename: strings.
    """
    import tensorflow as tf
    features = tf.io.parse_single_example(serialized, feature_spec(with_bbox))
    filename = features["image/filename"]
    parsed = {
        "image": check_image(features["image/encoded"], filename),
        "label": check_label(features["image/class/label"], label_offset, num_classes, filename),
        "text": features["image/class/text"],
        "filename": filename,
    }
    if with_bbox:
        coords = [tf.expand_dims(features["image/object/bbox/" + k].values, 0)
                  for k in ("ymin", "xmin", "ymax", "xmax")]
        bbox = tf.concat(coords, axis=0)                       # [4, N]
        parsed["bbox"] = tf.expand_dims(tf.transpose(bbox, [1, 0]), 0)  # [1, N, 4]
    return parsed


def _bytes(values):
    import tensorflow as tf
    values = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _floats(values):
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def make_example(encoded, label, height, width, channels=3, colorspace="RGB", image_format="JPEG",
                 filename="", synset="", text="", bboxes=()):
    """A TF-slim image `tf.train.Example`; `bboxes` are (ymin, xmin, ymax, xmax) in [0, 1]."""
    import tensorflow as tf
    bboxes = list(bboxes)
    feature = {
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([image_format]),
        "image/filename": _bytes([filename]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/channels": _ints([channels]),
        "image/colorspace": _bytes([colorspace]),
        "image/class/label": _ints([label]),
        "image/class/synset": _bytes([synset]),
        "image/class/text": _bytes([text]),
    }
    if bboxes:                                   # absent boxes parse as empty lists
        for i, key in enumerate(("ymin", "xmin", "ymax", "xmax")):
            feature["image/object/bbox/" + key] = _floats(b[i] for b in bboxes)
        feature["image/object/bbox/label"] = _ints([label] * len(bboxes))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def count_records(files):
    """Number of records in `files` (reads them all; cheap for validation sets)."""
    import tensorflow as tf
    return sum(1 for path in files for _ in tf.compat.v1.io.tf_record_iterator(path))
