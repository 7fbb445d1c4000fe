"""Every record of a TF-slim TFRecord data set checked once, each problem named by shard and record.

`zoo-run data check DIR` reads every record of each split: it must be a `tf.train.Example` with
non-empty `image/encoded` bytes that TensorFlow decodes (as the input pipeline will) and an
`image/class/label` inside the range `num_classes` / `label_offset` allow, and an image within the pixel
limit (`max_pixels`, read from its header: the pipeline would decode a bomb whole). It also counts records
whose image carries an EXIF orientation or a colour profile other than sRGB (the pipeline decodes them as
stored, not as a viewer shows them) and reports the label range it saw with the `label_offset` /
`num_classes` it implies.

`locate` is the same check stopping at the first problem: the runner uses it to name the record
behind a data error that TensorFlow reports without one.
"""
import collections
import multiprocessing
import os
import time

from registry import native_stderr
from registry.data import images, tfrecord
from registry.errors import DataError

Problem = collections.namedtuple("Problem", "file record filename message")
Problem.__doc__ = "file: the shard's path; record: its 0-based index in the shard; filename: image/filename or ''."
FileReport = collections.namedtuple("FileReport", "file records labels problems oriented profiles digests",
                                    defaults=((),))
FileReport.__doc__ = ("oriented: records whose image carries an EXIF orientation; profiles: {ICC profile description: "
                      "records} of images whose colour profile is not sRGB; digests: [(images.digest of the image, "
                      "label, record, image/filename)] of the records whose image decodes.")
Checked = collections.namedtuple("Checked", "problem label filename oriented profile digest", defaults=(None,))
Checked.__doc__ = ("One record: problem text or None, label or None, image/filename or '', whether its image "
                   "carries an EXIF orientation, the description of its colour profile when that is not sRGB (else "
                   "None), images.digest of its image (None when it was not decoded).")
CHECKS = ("records", "labels")   # what `locate` can look for: everything, or labels only (no decoding)


def clean_tf_message(message):
    """The first line of a TensorFlow error message without graph internals (registry.tf_compat.op_error_line)."""
    from registry import tf_compat
    return tf_compat.op_error_line(message)


def describe(problem):
    """'record 17 of DIR/train-00001-of-00003 (image/filename truncated.jpg): ...'."""
    return "record %d of %s%s: %s" % (problem.record, problem.file, " (image/filename %s)" % problem.filename
                                      if problem.filename else "", problem.message)


class Decoder(object):
    """Decodes encoded image bytes with TensorFlow's decoders, as the input pipeline does."""

    def __init__(self):
        import tensorflow as tf
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._data = tf.compat.v1.placeholder(tf.string, [])
            self._shape = tf.shape(tf.io.decode_image(self._data, channels=3, expand_animations=False))
        config = tf.compat.v1.ConfigProto(device_count={"GPU": 0}, intra_op_parallelism_threads=1,
                                          inter_op_parallelism_threads=1)
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        self._errors = tf.errors.OpError

    def problem(self, data):
        """None when `data` decodes to an image with pixels, else what is wrong."""
        try:
            with native_stderr.filtered():   # libjpeg's own lines: the problem returned names the image
                shape = self._session.run(self._shape, {self._data: data})
        except self._errors as err:
            return "the image does not decode (%s)" % clean_tf_message(err.message)
        if shape[0] < 1 or shape[1] < 1:
            return "the image has no pixels (%dx%d)" % (shape[1], shape[0])
        return None

    def close(self):
        self._session.close()


def _first(feature):
    values = feature.bytes_list.value or feature.int64_list.value or feature.float_list.value
    return values[0] if values else None


def check_record(serialized, label_range, decoder, max_pixels=images.DEFAULT_MAX_IMAGE_PIXELS):
    """Checked of one serialized record. `label_range`: (lowest, highest) allowed label, or None to accept any
    label >= 0; `decoder`: a Decoder, or None to check the labels only; `max_pixels`: the pixel limit (width x
    height, from the image's header, before it is decoded)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    try:
        feature = tf.train.Example.FromString(serialized).features.feature
    except DecodeError as err:
        return Checked("not a tf.train.Example (%s)" % err, None, "", False, None)
    filename = _first(feature["image/filename"]) if "image/filename" in feature else None
    filename = filename.decode("utf-8", "replace") if isinstance(filename, bytes) else ""
    label = _first(feature["image/class/label"]) if "image/class/label" in feature else None
    if label is None:
        return Checked("no image/class/label", None, filename, False, None)
    label = int(label)
    if label_range and not label_range[0] <= label <= label_range[1]:
        return Checked("image/class/label %d is outside %d..%d" % ((label,) + tuple(label_range)), label, filename,
                       False, None)
    if label < 0:
        return Checked("image/class/label %d is negative" % label, label, filename, False, None)
    if decoder is None:
        return Checked(None, label, filename, False, None)
    data = _first(feature["image/encoded"]) if "image/encoded" in feature else None
    if not data:
        return Checked("no image/encoded bytes", label, filename, False, None)
    kind = images.image_format(data)
    if kind not in images.TF_FORMATS:
        return Checked("image/encoded holds %s, which TensorFlow does not decode (JPEG, PNG, GIF, BMP)"
                       % (kind or "no known image format (it starts with %r)" % data[:8]), label, filename, False,
                       None)
    head = images.inspect(data, max_pixels)
    if head.refusal:
        return Checked("the image is %s; the input pipeline would decode it whole" % head.refusal, label, filename,
                       False, None)
    return Checked(decoder.problem(data), label, filename, head.orientation != 1, head.profile, images.digest(data))


def _records(path):
    """(index, serialized record) of a TFRecord file; a final (index, DataLossError text) when it is corrupt."""
    import tensorflow as tf
    index = 0
    try:
        for serialized in tf.compat.v1.io.tf_record_iterator(path):
            yield index, serialized
            index += 1
    except tf.errors.OpError as err:
        yield index, err


def check_file(path, label_range, decoder, max_pixels=images.DEFAULT_MAX_IMAGE_PIXELS):
    """FileReport of one TFRecord file."""
    labels, problems, oriented, count, profiles = collections.Counter(), [], 0, 0, collections.Counter()
    digests = []
    for index, serialized in _records(path):
        if not isinstance(serialized, bytes):
            problems.append(Problem(path, index, "", "the file is not a valid TFRecord file from here on "
                                                    "(%s)" % clean_tf_message(serialized.message)))
            break
        count += 1
        checked = check_record(serialized, label_range, decoder, max_pixels)
        if checked.label is not None:
            labels[checked.label] += 1
        oriented += checked.oriented
        if checked.profile:
            profiles[checked.profile] += 1
        if checked.problem:
            problems.append(Problem(path, index, checked.filename, checked.problem))
        elif checked.digest:
            digests.append((checked.digest, checked.label, index, checked.filename))
    return FileReport(path, count, labels, problems, oriented, dict(profiles), digests)


def locate(files, label_range, what="records", seconds=60.0, max_pixels=images.DEFAULT_MAX_IMAGE_PIXELS):
    """The first Problem in `files` (in order), or None when none is found within `seconds`.
    `what`: 'records' checks everything, 'labels' only the labels (fast: nothing is decoded)."""
    decoder = Decoder() if what == "records" else None
    deadline = time.time() + seconds
    try:
        for path in files:
            for index, serialized in _records(path):
                if not isinstance(serialized, bytes):
                    return Problem(path, index, "", "the file is not a valid TFRecord file from here on (%s)"
                                   % clean_tf_message(serialized.message))
                checked = check_record(serialized, label_range, decoder, max_pixels)
                if checked.problem:
                    return Problem(path, index, checked.filename, checked.problem)
                if time.time() > deadline:
                    return None
    finally:
        if decoder:
            decoder.close()
    return None


def find_bad_record(data_path, split, label_range, what="records", seconds=60.0):
    """describe() of the first bad record of `split` in `data_path` (see `locate`), or None."""
    try:
        files = tfrecord.list_split_files(data_path, split)
    except DataError:
        return None
    problem = locate(files, label_range, what, seconds)
    return describe(problem) if problem else None


_worker_decoder = None


def _check_in_worker(args):
    global _worker_decoder
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _worker_decoder is None:
        from registry import tf_import
        tf = tf_import.import_tensorflow()   # a spawned process: without TF 2.21's start-up notes
        tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
        _worker_decoder = Decoder()
    return check_file(args[0], args[1], _worker_decoder, args[2])


def check_files(files, label_range, workers=1, max_pixels=images.DEFAULT_MAX_IMAGE_PIXELS):
    """[FileReport] of `files`, in order; `workers` > 1 checks files in parallel processes."""
    if workers <= 1 or len(files) <= 1:
        decoder = Decoder()
        try:
            return [check_file(path, label_range, decoder, max_pixels) for path in files]
        finally:
            decoder.close()
    with multiprocessing.get_context("spawn").Pool(min(workers, len(files))) as pool:
        return list(pool.imap(_check_in_worker, [(path, label_range, max_pixels) for path in files]))


def implied_labels(labels):
    """(label_offset, num_classes) that a set of labels implies: 0-based when label 0 occurs, else 1-based
    (TF-slim's ImageNet convention); None for no labels."""
    if not labels:
        return None
    offset = 0 if min(labels) == 0 else 1
    return offset, max(labels) - offset + 1


def _has_split(data_path, split):
    try:
        return bool(tfrecord.find_split_files(data_path, split)[0])
    except DataError:
        return False


def _note_duplicates(digests, log, shown=20):
    """Notes the images (by {digest: [(label, record, file, filename)]}) whose bytes are identical under two or more
    labels: a note, not a problem (ImageNet itself has such duplicates)."""
    groups = sorted(sorted(group) for group in digests.values() if len(set(g[0] for g in group)) > 1)
    if not groups:
        return
    log("note: %d image(s) have identical bytes under different labels (the same image trains, or is scored, as "
        "two classes; remove the wrong copies from the source and build again if that is not meant):" % len(groups))
    for group in groups[:shown]:
        log("  " + ", ".join("label %d (record %d of %s%s)" % (label, record, path, ", image/filename %s" % filename
                                                                if filename else "")
                             for label, record, path, filename in group))
    if len(groups) > shown:
        log("  ... and %d more" % (len(groups) - shown))


def check(data_path, splits=None, num_classes=None, label_offset=None, workers=1, log=print,
          max_pixels=images.DEFAULT_MAX_IMAGE_PIXELS):
    """Checks every record of each split in `data_path`; prints every problem and a summary; returns the
    number of problems. `splits` None: every split the data set has (a missing one is noted, as a train-only
    set is a valid data set; none at all is a problem); a split named in `splits` must be there. Labels must lie
    in label_offset..label_offset+num_classes-1; by default `label_offset` is what the data implies
    (`tfrecord.implied_label_offset`, else 1) and `num_classes` the classes of DATA/labels.txt; with neither, any
    label >= 0 is accepted and the range seen is reported."""
    known = tfrecord.read_labels_file(data_path)
    if num_classes is None and known:
        num_classes = len(known)
    label_range = None
    if num_classes is not None or label_offset is not None:
        if label_offset is None:
            label_offset = tfrecord.implied_label_offset(data_path)[0]
            label_offset = 1 if label_offset is None else label_offset
        label_range = (label_offset, label_offset + num_classes - 1 if num_classes is not None else 2 ** 62)
    total_problems, seen, digests = 0, collections.Counter(), collections.defaultdict(list)
    present = splits or [split for split in tfrecord.SPLITS if _has_split(data_path, split)]
    for split in present or tfrecord.SPLITS:
        try:
            files, note = tfrecord.find_split_files(data_path, split)
        except DataError as err:
            log("%s: %s" % (split, err))
            total_problems += 1
            continue
        if note:
            log(note)
        started = time.time()
        reports = check_files(files, label_range, workers, max_pixels)
        problems = [p for r in reports for p in r.problems]
        records = sum(r.records for r in reports)
        oriented = sum(r.oriented for r in reports)
        profiles = collections.Counter()
        for report in reports:
            profiles.update(report.profiles)
        for report in reports:
            seen.update(report.labels)
            for digest, label, record, filename in report.digests:
                digests[digest].append((label, record, report.file, filename))
        for problem in problems:
            log("  " + describe(problem))
        log("%s: %d files, %d records, %d problem(s)%s%s (%.0f records/s)" % (
            split, len(files), records, len(problems),
            "; %d image(s) carry an EXIF orientation, which the pipeline ignores (rebuild from the images with "
            "`zoo-run data build`, which applies it)" % oriented if oriented else "",
            "; %d image(s) carry a colour profile other than sRGB (%s), which the pipeline ignores (rebuild from "
            "the images with `zoo-run data build`, which converts them to sRGB)" % (
                sum(profiles.values()), ", ".join("%s %d" % kv for kv in sorted(profiles.items())))
            if profiles else "", records / max(time.time() - started, 1e-6)))
        total_problems += len(problems)
    if seen:
        offset, classes = implied_labels(seen)
        line = "labels: %d..%d, %d distinct; they imply label_offset=%d, num_classes=%d" % (
            min(seen), max(seen), len(seen), offset, classes)
        outside = label_range and (min(seen) < label_range[0] or max(seen) > label_range[1])
        if not label_range:
            line += " (--set label_offset=%d num_classes=%d)" % (offset, classes)
        else:
            line += "; checked against %d..%s" % (label_range[0], label_range[1] if num_classes is not None else "")
            if outside:   # the records named above are wrong, or the range is: the data alone cannot say which
                line += ("; the records outside it are named above: fix them, or, if the range is what is wrong, "
                         "--num_classes/--label_offset here and --set num_classes=%d label_offset=%d for training"
                         % (classes, offset))
        log(line)
    _note_duplicates(digests, log)
    for split in [] if splits or not present else sorted(set(tfrecord.SPLITS) - set(present)):
        log("note: %s has no %s split (%s): `zoo-run train` evaluates on it; build it with `zoo-run data build SRC "
            "%s --split %s`" % (data_path, split, tfrecord.split_pattern(split), data_path, split))
    log("%s: %d problem(s)" % (data_path, total_problems))
    return total_problems
