"""Image folder -> TF-slim TFRecords (`zoo-run data build`), replacing TF-slim's old scripts.

Layouts of SRC:
  class folders   SRC/<class>/<image>   (ImageNet train: train/n01440764/*.JPEG); train or validation.
                  Files in sub-folders of a class folder belong to that class (as torchvision's ImageFolder)
  flat + labels   SRC/<image> and --labels_file: one class per line, in sorted file-name order
                  (TF-slim's imagenet_2012_validation_synset_labels.txt), or `filename,label` CSV lines

Class ids follow sorted class names and are written 1..N (TF-slim's convention: 0 is the
background slot, so readers use label_offset=1). They are written to OUT/labels.txt; a later build
into the same OUT (e.g. validation after train) reuses that file, so both splits agree. A class
folder without images keeps its id (it is named on screen and in the report): ids never shift.

Every file under SRC is accounted for in OUT/<split>-build-report.txt: written (as it is, or
re-encoded), skipped as undecodable (with the reason) or ignored (with the reason: hidden, not an
image, outside the layout). Images are recognised by content as well as by name (a JPEG named
.jfif or .jpe is a JPEG). Every image is decoded (TensorFlow's decoders, as the pipeline will use)
after `registry.data.images.prepare` (EXIF orientation applied, colour profiles converted to sRGB, TIFF
and WebP read by Pillow); RGB JPEGs stored upright in sRGB are stored as they are, other images are
re-encoded as RGB JPEG. An image above the pixel limit (`max_pixels`, --max_image_pixels) is skipped
before it is decoded, with its size in the report.

Files are shuffled across shards with --seed; each shard is written to a temporary name and
renamed when complete, and complete shards are skipped on a re-run, so a killed build resumes.
"""
import collections
import csv
import hashlib
import json
import multiprocessing
import os
import random
import sys
import time
import traceback

from registry import native_stderr, paths
from registry.data import images, tfrecord
from registry.data import walk as walk_module
from registry.engine import storage
from registry.errors import DataError, ZooError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic",
                    ".heif", ".avif")
DEFAULT_SHARDS = {"train": 1024, "validation": 128}
JPEG_QUALITY = 95

Entry = collections.namedtuple("Entry", "path synset")
Ignored = collections.namedtuple("Ignored", "path reason files")
Listing = collections.namedtuple("Listing", "entries ignored classes links", defaults=((),))
Listing.__doc__ = """entries: [Entry] to convert; ignored: [Ignored] (a path, why, how many files it stands for);
classes: every class name of the layout (class folders without images included); links: [walk.Link] met under SRC
(followed or not, and why)."""
BuildResult = collections.namedtuple(
    "BuildResult", "out split num_shards written skipped converted labels report_path shards_reused ignored "
                   "empty_classes colour_converted links duplicates")
BuildResult.__doc__ = """written: images in the records; skipped: [(path, reason)]; converted: {kind: count} of the
re-encoded images; labels: {class name: id}; shards_reused: complete shards found from an earlier run; ignored:
[(path, reason)] of files that are not images; empty_classes: class names with no image written (they keep their
ids); colour_converted: {ICC profile description: count} of the images converted to sRGB; links: [(path, what was
done and why)] of the links under SRC; duplicates: [[(class, path), ...]] of the images whose bytes are identical
under two or more classes (a note, not an error). Paths are `walk.printable`."""


# ---------------------------------------------------------------------------------------------- listing

def _is_candidate(path):
    """An image to decode: by its extension, or by its content (the checker decides whether it decodes)."""
    return images.extension(path) in IMAGE_EXTENSIONS or images.sniff_file(path) is not None


def _folder(path, reason):
    return Ignored(path + os.sep, reason, sum(len(files) for _, _, files in os.walk(path)))


def _hidden(path):
    return _folder(path, "hidden folder") if os.path.isdir(path) else Ignored(path, "hidden file", 1)


def _scan(folder, recursive, walk=None, name=None):
    """(sorted candidate image paths, [Ignored]) of the files in `folder` (and below it when `recursive`);
    `walk`: the SourceWalk of SRC (its links are noted there), `name`: the class `folder` belongs to."""
    walk = walk or walk_module.SourceWalk(folder)
    candidates, ignored = [], []
    hidden = lambda path: ignored.append(_hidden(path))   # noqa: E731
    flat = lambda path: ignored.append(_folder(path, "a sub-folder of a flat SRC"))   # noqa: E731
    for path in walk.files(folder, name, recursive, on_hidden=hidden, on_folder=flat):
        if _is_candidate(path):
            candidates.append(path)
        else:
            ignored.append(Ignored(path, "not an image (neither its name nor its content is)", 1))
    return candidates, ignored


def list_class_folders(src):
    """Listing of SRC/<class>/<image> (files below a class folder belong to it), sorted by class then path.
    Class names are `walk.printable` (a name that is not UTF-8 is escaped); every real file is listed once, for
    the class whose folder holds it (SourceWalk)."""
    names = sorted(os.listdir(src))
    folders = {n: os.path.join(src, n) for n in names if not n.startswith(".") and os.path.isdir(os.path.join(src, n))}
    walk = walk_module.SourceWalk(src, folders)
    entries, ignored = [], []
    for name in names:
        path = os.path.join(src, name)
        if name.startswith("."):
            ignored.append(_hidden(path))
        elif name not in folders:
            ignored.append(Ignored(path, "not in a class folder (the layout is SRC/<class>/<image>)", 1))
    for name, folder in sorted(folders.items()):
        problem = os.path.islink(folder) and walk.class_folder_problem(name, folder)
        if problem:
            walk.links.append(walk_module.Link(folder, os.path.realpath(folder), False, problem + ": not followed"))
            continue
        candidates, skipped = _scan(folder, True, walk, name)
        synset = walk_module.printable(name)
        entries.extend(Entry(path, synset) for path in candidates)
        ignored.extend(skipped)
    return Listing(entries, ignored, [walk_module.printable(n) for n in sorted(folders)], walk.links)


def read_label_lines(labels_file):
    """Non-empty stripped lines of a labels file."""
    try:
        with open(labels_file) as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise DataError("cannot read labels file %s: %s; pass --labels_file with one class per line "
                        "(sorted file-name order) or filename,label CSV lines" % (labels_file, err.strerror))


def list_flat_with_labels(src, labels_file):
    """Listing of a flat folder labelled by `labels_file` (one class per line, or filename,label CSV)."""
    lines = read_label_lines(labels_file)
    if not lines:
        raise DataError("labels file %s is empty; it needs one class per image" % labels_file)
    listed = "," in lines[0]                            # filename,label CSV (file names may have folders)
    walk = walk_module.SourceWalk(src)
    candidates, ignored = _scan(src, listed, walk)
    if listed:
        rows = list(csv.reader(lines))
        if [c.strip().lower() for c in rows[0][:2]] == ["filename", "label"]:
            rows = rows[1:]
        entries = []
        for number, row in enumerate(rows, 1):
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DataError("labels file %s row %d is %r; expected 'filename,label'" % (labels_file, number, row))
            path = os.path.join(src, row[0].strip())
            if not os.path.isfile(path):
                raise DataError("labels file %s lists %s, which is not in %s; fix the file name or remove the row"
                                % (labels_file, row[0].strip(), src))
            entries.append(Entry(path, row[1].strip()))
        in_file = set(os.path.normpath(e.path) for e in entries)
        ignored = [i for i in ignored if os.path.normpath(i.path) not in in_file]
        ignored += [Ignored(p, "not listed in the labels file %s" % labels_file, 1) for p in candidates
                    if os.path.normpath(p) not in in_file]
        return Listing(entries, ignored, sorted(set(e.synset for e in entries)), walk.links)
    if len(candidates) != len(lines):
        raise DataError("labels file %s has %d lines but %s holds %d images; it needs exactly one class per "
                        "image, in sorted file-name order (or use filename,label CSV lines)"
                        % (labels_file, len(lines), src, len(candidates)))
    entries = [Entry(path, synset) for path, synset in zip(candidates, lines)]
    return Listing(entries, ignored, sorted(set(lines)), walk.links)


def list_images(src, split, labels_file=None):
    """The Listing of SRC (see the module doc)."""
    src = paths.require_dir(src, "source folder", "; pass the image folder, e.g. ~/imagenet/train with one "
                                                  "sub-folder per class", error=DataError)
    if labels_file:
        listing = list_flat_with_labels(src, labels_file)
    else:
        listing = list_class_folders(src)
        if not listing.classes:
            flat, _ = _scan(src, recursive=False)
            if flat:
                raise DataError("%s holds %d images but no class sub-folders; use SRC/<class>/<image>, or for a "
                                "flat folder pass --labels_file (one class per line in sorted file-name order, "
                                "or filename,label CSV)" % (src, len(flat)))
    if not listing.entries:
        raise DataError("no images found in %s%s; expected SRC/<class>/<image> for --split %s" % (
            src, " (%d files ignored: %s)" % (len(listing.ignored), ", ".join(
                "%s: %s" % (i.path, i.reason) for i in listing.ignored[:5])) if listing.ignored else "", split))
    return listing


def read_synset_names(path):
    """{synset: human-readable name} from 'n01440764<TAB>tench, Tinca tinca' lines (ImageNet's
    imagenet_metadata.txt); a space also separates."""
    names = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    parts = line.split("\t", 1) if "\t" in line else line.split(None, 1)
                    names[parts[0]] = parts[1].strip() if len(parts) > 1 else parts[0]
    except OSError as err:
        raise DataError("cannot read synset names file %s: %s; pass --synset_names with "
                        "'synset<TAB>name' lines" % (path, err.strerror))
    return names


def assign_labels(out, synsets):
    """{class name: id 1..N}: from OUT/labels.txt when an earlier build wrote it, else sorted names."""
    existing = tfrecord.read_labels_file(out)
    if existing:
        ids = {name: key for key, name in existing.items()}
        missing = sorted(set(synsets) - set(ids))
        if missing:
            raise DataError("classes %s are not in %s, written by an earlier build (%d classes); build every "
                            "split of one dataset with the same classes, or use a new OUT directory"
                            % (", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
                               os.path.join(out, tfrecord.LABELS_FILENAME), len(ids)))
        return ids
    return {name: index + 1 for index, name in enumerate(sorted(set(synsets)))}


def plan_shards(entries, num_shards, seed):
    """Entries shuffled with `seed` and cut into `num_shards` contiguous near-equal lists."""
    entries = list(entries)
    random.Random(seed).shuffle(entries)
    n = len(entries)
    return [entries[i * n // num_shards:(i + 1) * n // num_shards] for i in range(num_shards)]


# ---------------------------------------------------------------------------------------------- images

class ImageChecker(object):
    """Decodes every image with TensorFlow; re-encodes what is not an RGB JPEG."""

    def __init__(self, threads=None, max_pixels=images.DEFAULT_MAX_IMAGE_PIXELS):
        import tensorflow as tf
        self.max_pixels = max_pixels
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._data = tf.compat.v1.placeholder(tf.string, [])
            is_jpeg = tf.image.is_jpeg(self._data)
            components = tf.cond(is_jpeg, lambda: tf.image.extract_jpeg_shape(self._data)[2],
                                 lambda: tf.constant(0, tf.int32))
            decoded = tf.io.decode_image(self._data, channels=3, expand_animations=False)
            self._check = [is_jpeg, components, tf.shape(decoded)]
            self._encode = tf.image.encode_jpeg(decoded, format="rgb", quality=JPEG_QUALITY)
        config = tf.compat.v1.ConfigProto(device_count={"GPU": 0})
        if threads:
            config.intra_op_parallelism_threads = threads
            config.inter_op_parallelism_threads = threads
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        self._errors = tf.errors.OpError

    @staticmethod
    def _kind(data, is_jpeg, components):
        if is_jpeg:
            return {1: "grayscale", 3: None, 4: "cmyk"}.get(int(components), "jpeg-%d-channels" % components)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return "png"
        if data[:4] == b"GIF8":
            return "gif"
        if data[:2] == b"BM":
            return "bmp"
        return "other"

    def check(self, data):
        """-> (rgb jpeg bytes, height, width, re-encoding kind or None, ICC profile converted to sRGB or None);
        raises ValueError when the image is not read (undecodable, above the pixel limit, ...).

        The image is the one a viewer shows (`images.prepare`: EXIF orientation applied, colours converted to
        sRGB, TIFF and WebP decoded by Pillow); anything but an upright sRGB RGB JPEG is re-encoded."""
        if not data:
            raise ValueError("empty file")
        prepared = images.prepare(data, self.max_pixels)
        done = None
        if prepared.data is not data:             # Pillow decoded it: say why
            done = ("exif-orientation-%d" % prepared.orientation if prepared.orientation != 1 else
                    "colour-profile" if prepared.profile else prepared.format.lower())
        data = prepared.data
        try:
            with native_stderr.filtered():   # libjpeg's own lines: a skipped image is named with the reason
                is_jpeg, components, shape = self._session.run(self._check, {self._data: data})
                kind = done or self._kind(data, is_jpeg, components)
                if kind is not None:
                    data = self._session.run(self._encode, {self._data: data})
        except self._errors as err:
            from registry import tf_compat
            raise ValueError(tf_compat.op_error_line(err))
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError("image has no pixels (%dx%d)" % (shape[1], shape[0]))
        return data, int(shape[0]), int(shape[1]), kind, prepared.profile

    def close(self):
        self._session.close()


# ---------------------------------------------------------------------------------------------- writing

def _state_dir(out, split):
    return os.path.join(out, ".build-%s" % split)


def _stats_path(out, split, index):
    return os.path.join(_state_dir(out, split), "%05d.json" % index)


def _write_json(path, obj):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _advice(out, split):
    """What to do when OUT is full or not writable: the complete shards stay, a rerun resumes."""
    return ("Free space on that disk, or build into an OUT directory on a larger disk; then rerun the same command: "
            "the complete %s shards in %s are kept and the build resumes." % (split, out))


def _shard_bytes(entries):
    """About the bytes a shard of `entries` takes: their files' sizes (a JPEG is stored as it is; a re-encoded
    image is a JPEG of quality JPEG_QUALITY, seldom larger than its source) and 1 KB of features each."""
    total = 0
    for entry in entries:
        try:
            total += os.path.getsize(entry.path) + 1024
        except OSError:
            pass
    return total


def write_shard(checker, out, split, index, num_shards, entries, labels, texts, report):
    """Writes one complete shard (temp name, then atomic rename); returns its stats dict. Raises a StorageError
    (naming OUT and the space needed) when OUT has no room for it, before writing or when a write fails; the
    temporary file is removed whenever the shard is not complete (an error, a signal)."""
    import tensorflow as tf
    name = tfrecord.shard_name(split, index, num_shards)
    needed = _shard_bytes(entries)
    storage.check_space(out, needed, "%s shard %s" % (split, name), advice=_advice(out, split))
    tmp = os.path.join(out, ".%s.tmp-%d" % (name, os.getpid()))
    try:
        stats = _write_records(checker, tmp, index, entries, labels, texts, report)
        _write_json(_stats_path(out, split, index), stats)
        os.replace(tmp, os.path.join(out, name))
    except BaseException as err:
        storage.remove(tmp)
        number = storage.error_number(err) if isinstance(err, (OSError, tf.errors.OpError)) else None
        if number is None:
            raise
        raise storage.storage_error(number, out, "%s shard %s" % (split, name), needed, advice=_advice(out, split))
    return stats


def _write_records(checker, tmp, index, entries, labels, texts, report):
    """Writes the records of `entries` to the file `tmp`; returns the shard's stats dict."""
    import tensorflow as tf
    stats = {"shard": index, "written": 0, "skipped": [], "converted": {}, "classes": {}, "colour_converted": {},
             "digests": []}
    pending = 0
    last = time.time()
    with tf.io.TFRecordWriter(tmp) as writer:
        for entry in entries:
            try:
                with open(entry.path, "rb") as f:
                    data = f.read()
                encoded, height, width, kind, profile = checker.check(data)
            except (OSError, ValueError) as err:
                stats["skipped"].append([entry.path, str(err)])
            else:
                if kind:
                    stats["converted"][kind] = stats["converted"].get(kind, 0) + 1
                if profile:
                    stats["colour_converted"][profile] = stats["colour_converted"].get(profile, 0) + 1
                example = tfrecord.make_example(
                    encoded, labels[entry.synset], height, width,
                    filename=walk_module.printable(os.path.basename(entry.path)),
                    synset=entry.synset, text=texts.get(entry.synset, entry.synset))
                writer.write(example.SerializeToString(deterministic=True))
                stats["digests"].append([images.digest(encoded), entry.synset, entry.path])
                stats["written"] += 1
                stats["classes"][entry.synset] = stats["classes"].get(entry.synset, 0) + 1
            pending += 1
            if time.time() - last > 0.5:
                report(("progress", pending))
                pending, last = 0, time.time()
        writer.flush()
    report(("progress", pending))
    return stats


def _worker(jobs, out, split, num_shards, labels, texts, threads, report, max_pixels):
    checker = ImageChecker(threads, max_pixels)
    try:
        for index, entries in jobs:
            stats = write_shard(checker, out, split, index, num_shards, entries, labels, texts, report)
            report(("shard", index, stats))
    finally:
        checker.close()


class _Orphaned(BaseException):
    """The builder process that started this worker is gone."""


def _worker_process(jobs, out, split, num_shards, labels, texts, queue, max_pixels, parent):
    """A worker of a parallel build: converts its shards, reporting to `queue`; stops (its partial shard removed)
    as soon as its parent `parent` (a pid) is gone, whatever ended it (even SIGKILL)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from registry import tf_import
    tf_import.import_tensorflow()   # a spawned process: without TF 2.21's start-up notes

    def report(message):
        if os.getppid() != parent:
            raise _Orphaned()
        queue.put(message)

    try:
        entries = [(index, [Entry(*e) for e in shard]) for index, shard in jobs]
        _worker(entries, out, split, num_shards, labels, texts, 1, report, max_pixels)
        queue.put(("done",))
    except _Orphaned:
        queue.cancel_join_thread()
        os._exit(1)
    except ZooError as err:                                    # a full disk: the parent prints the message
        queue.put(("failed", err))
    except BaseException:
        queue.put(("error", traceback.format_exc()))


class Progress(object):
    """One line: images done / total, images/sec, ETA, shards."""

    def __init__(self, split, total_images, total_shards, stream=None, interval=None):
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if interval is not None else (0.5 if self.tty else 10.0)
        self.split, self.total, self.total_shards = split, total_images, total_shards
        self.done = self.shards = 0
        self.start = self.last = time.time()

    def update(self, images=0, shards=0, force=False):
        self.done += images
        self.shards += shards
        now = time.time()
        if force or now - self.last >= self.interval:
            self.last = now
            self.show(final=force)

    def show(self, final=False):
        elapsed = max(time.time() - self.start, 1e-6)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left == left else "--:--:--"
        line = "%s: %d/%d images (%.1f%%)  %.1f images/sec  ETA %s  shards %d/%d" % (
            self.split, self.done, self.total, 100.0 * self.done / max(self.total, 1), rate, eta,
            self.shards, self.total_shards)
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _manifest(src, split, num_shards, seed, plan, labels, max_pixels):
    digest = hashlib.sha1()
    for shard in plan:
        for entry in shard:
            digest.update(os.fsencode("%s\t%s\n" % (os.path.relpath(entry.path, src), entry.synset)))
        digest.update(b"|")
    return {"src": os.path.abspath(src), "split": split, "num_shards": num_shards, "seed": seed,
            "num_images": sum(len(s) for s in plan), "labels": labels, "files_digest": digest.hexdigest(),
            "max_pixels": max_pixels}


def _manifest_changes(previous, manifest):
    """'; it was made from 20 images, this source has 23 now' and the like: what differs from the earlier build."""
    if not previous:
        return "; no record of how it was made"
    changes = []
    if previous.get("num_images") != manifest["num_images"]:
        changes.append("it was made from %s images, the source has %d now" % (previous.get("num_images"),
                                                                              manifest["num_images"]))
    elif previous.get("files_digest") != manifest["files_digest"]:
        changes.append("the source's files or classes changed since")
    changes += ["%s %r then, %r now" % (key, previous.get(key), manifest[key])
                for key in ("src", "num_shards", "seed", "max_pixels") if previous.get(key) != manifest[key]]
    if previous.get("labels") != manifest["labels"] and not changes:
        changes.append("the class ids changed")
    return "; " + ", ".join(changes) if changes else ""


def _check_previous(out, split, num_shards, manifest):
    """Indices of complete shards from an earlier identical build; DataError if OUT holds another build."""
    import glob
    existing = sorted(glob.glob(os.path.join(out, tfrecord.split_pattern(split))))
    expected = {os.path.join(out, tfrecord.shard_name(split, i, num_shards)): i for i in range(num_shards)}
    foreign = [p for p in existing if p not in expected]
    manifest_path = os.path.join(_state_dir(out, split), "manifest.json")
    previous = None
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            previous = json.load(f)
    if foreign or (existing and previous != manifest):
        raise DataError("%s already holds %s shards from a different build (%s%s); delete them (and %s) or "
                        "choose another OUT directory" % (
                            out, split, os.path.basename((foreign or existing)[0]),
                            _manifest_changes(previous, manifest), _state_dir(out, split)))
    return sorted(i for p, i in expected.items() if p in existing and os.path.isfile(_stats_path(out, split, i)))


def report_path(out, split):
    return os.path.join(out, "%s-build-report.txt" % split)


def images_written(out, split):
    """The number of images a finished `build` wrote for `split` into `out` (its report), or None."""
    try:
        with open(report_path(out, split)) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "images written":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def build(src, out, split, num_shards=None, labels_file=None, synset_names=None, workers=1, seed=0,
          stream=None, max_pixels=images.DEFAULT_MAX_IMAGE_PIXELS):
    """Converts the image folder SRC into TF-slim TFRecords OUT/<split>-NNNNN-of-MMMMM.

    Returns a BuildResult; writes OUT/labels.txt and OUT/<split>-build-report.txt; prints progress
    and a summary to `stream` (stdout). Images of more than `max_pixels` pixels (width x height) are
    skipped unread and named with their size.
    """
    stream = stream or sys.stdout
    src, out = paths.expand(src), paths.expand(out)
    if split not in tfrecord.SPLITS:
        raise DataError("unknown split %r; use --split train or --split validation" % split)
    listing = list_images(src, split, labels_file)
    entries = listing.entries
    texts = read_synset_names(synset_names) if synset_names else {}
    requested = DEFAULT_SHARDS[split] if num_shards is None else num_shards
    if requested < 1:
        raise DataError("--shards must be >= 1, got %d" % requested)
    num_shards = min(requested, len(entries))
    if num_shards < requested:
        stream.write("%s: %d images, so %d shards instead of %d\n" % (split, len(entries), num_shards, requested))
    if workers < 1:
        raise DataError("--workers must be >= 1, got %d" % workers)
    try:
        max_pixels = images.check_max_pixels(max_pixels)
    except ValueError as err:
        raise DataError(str(err))

    paths.make_dir(out, "the output directory", DataError)
    labels = assign_labels(out, listing.classes)
    plan = plan_shards(entries, num_shards, seed)
    manifest = _manifest(src, split, num_shards, seed, plan, labels, max_pixels)
    done = _check_previous(out, split, num_shards, manifest)
    os.makedirs(_state_dir(out, split), exist_ok=True)
    _write_json(os.path.join(_state_dir(out, split), "manifest.json"), manifest)
    if not tfrecord.read_labels_file(out):
        tfrecord.write_labels_file(out, {v: k for k, v in labels.items()})
    _remove_partial_shards(out, split)                         # leftovers of a killed run

    todo = [(i, plan[i]) for i in range(num_shards) if i not in set(done)]
    total = sum(len(s) for _, s in todo)
    if done:
        stream.write("%s: %d of %d shards already complete (earlier run), converting the other %d\n"
                     % (split, len(done), num_shards, len(todo)))
    progress = Progress(split, total, len(todo), stream)
    workers = max(1, min(workers, len(todo)))
    if todo:
        _convert(todo, out, split, num_shards, labels, texts, workers, progress, max_pixels)
        progress.update(force=True)

    return _finish(out, split, num_shards, labels, len(done), listing, stream)


def _convert(todo, out, split, num_shards, labels, texts, workers, progress, max_pixels):
    """Writes the shards `todo` [(index, entries)], in this process or `workers` processes. SIGINT and SIGTERM stop
    it (and the workers) with an Interrupted that says how to resume; a partial shard is removed."""
    from registry.engine import interrupts

    def report(msg):
        if msg[0] == "progress":
            progress.update(images=msg[1])
        elif msg[0] == "shard":
            progress.update(shards=1)

    try:
        with interrupts.StopRequests():
            if workers == 1:
                _worker(todo, out, split, num_shards, labels, texts, None, report, max_pixels)
            else:
                _run_processes(todo, out, split, num_shards, labels, texts, workers, progress, max_pixels)
    except (interrupts.Interrupted, KeyboardInterrupt) as err:
        import signal
        signum = getattr(err, "signum", signal.SIGINT)
        complete = sum(os.path.isfile(os.path.join(out, tfrecord.shard_name(split, i, num_shards)))
                       for i in range(num_shards))
        raise interrupts.Interrupted(signum, "stopped by %s with %d of %d %s shards complete in %s; rerun the same "
                                             "command to resume" % (interrupts.signal_name(signum), complete,
                                                                    num_shards, split, out))


def _run_processes(todo, out, split, num_shards, labels, texts, workers, progress, max_pixels):
    """Converts `todo` in `workers` spawned processes. They stop with this one: when it stops (an error, a signal
    raised here as an exception) it ends them and removes their partial shards; when it is killed outright they
    notice it at their next report (within a second) and stop by themselves."""
    import queue as queue_module
    ctx = multiprocessing.get_context("spawn")                 # TensorFlow is not fork-safe
    results = ctx.Queue()
    procs = []
    running = workers
    try:
        for w in range(workers):
            jobs = [(index, [tuple(e) for e in shard]) for index, shard in todo[w::workers]]
            p = ctx.Process(target=_worker_process, args=(jobs, out, split, num_shards, labels, texts, results,
                                                          max_pixels, os.getpid()), daemon=True)
            p.start()
            procs.append(p)
        while running:
            try:
                msg = results.get(timeout=1.0)
            except queue_module.Empty:
                if not any(p.is_alive() for p in procs):
                    raise DataError("a builder worker died without finishing (out of memory?); re-run the "
                                    "same command to resume from the complete shards")
                progress.update()
                continue
            if msg[0] == "progress":
                progress.update(images=msg[1])
            elif msg[0] == "shard":
                progress.update(shards=1)
            elif msg[0] == "done":
                running -= 1
            elif msg[0] == "failed":
                raise msg[1]
            elif msg[0] == "error":
                raise RuntimeError("builder worker failed:\n%s" % msg[1])
    finally:
        for p in procs:
            if p.is_alive() and running:
                p.terminate()
        for p in procs:
            p.join(10)
            if p.is_alive():                                   # stuck in native code: SIGTERM did not end it
                p.kill()
                p.join(10)
        if running:
            _remove_partial_shards(out, split)


def _remove_partial_shards(out, split):
    """Removes the temporary files of `split`'s shards in OUT (of a stopped or killed build)."""
    for name in os.listdir(out):
        if name.startswith(".%s-" % split) and ".tmp-" in name:
            storage.remove(os.path.join(out, name))


def _by_extension(counted):
    """'.jpg 2, .txt 1, in folders 3' of (path, number of files) pairs; a folder's files count under 'in folders'."""
    counts = collections.Counter()
    for path, files in counted:
        counts["in folders" if path.endswith(os.sep) else images.extension(path)] += files
    return ", ".join("%s %d" % kv for kv in sorted(counts.items()) if kv[1])


def _profiles_text(counts):
    """' (Adobe RGB (1998) 2, Display P3 1)' of {profile: count}, or ''."""
    return " (%s)" % ", ".join("%s %d" % kv for kv in sorted(counts.items())) if counts else ""


def duplicate_groups(digests):
    """[[(class, name), ...]] of (digest, class, name) triples: the groups of identical images (one digest) that
    carry two or more classes, each sorted, the groups in order of their first member."""
    by_digest = collections.defaultdict(list)
    for digest, synset, name in digests:
        by_digest[digest].append((synset, name))
    return sorted(sorted(group) for group in by_digest.values() if len(set(c for c, _ in group)) > 1)


def _duplicates_text(group):
    """'class a: path, class b: path' of a duplicate group."""
    return ", ".join("class %s: %s" % (synset, walk_module.printable(name)) for synset, name in group)


def _finish(out, split, num_shards, labels, reused, listing, stream):
    written, skipped, converted, per_class = 0, [], collections.Counter(), collections.Counter()
    colour, digests = collections.Counter(), []
    for index in range(num_shards):
        with open(_stats_path(out, split, index)) as f:
            stats = json.load(f)
        written += stats["written"]
        skipped.extend(tuple(s) for s in stats["skipped"])
        converted.update(stats["converted"])
        colour.update(stats.get("colour_converted", {}))
        per_class.update(stats.get("classes", {}))
        digests.extend(stats.get("digests", []))
    skipped = sorted((walk_module.printable(path), reason) for path, reason in skipped)
    ignored = sorted(listing.ignored)
    ignored_files = sum(i.files for i in ignored)
    links = sorted(listing.links)
    duplicates = duplicate_groups(digests)
    empty = sorted((name for name in listing.classes if not per_class[name]), key=labels.get)
    report_file = report_path(out, split)
    lines = ["split: %s" % split, "shards: %d" % num_shards,
             "files under the source: %d = %d written + %d skipped + %d ignored"
             % (written + len(skipped) + ignored_files, written, len(skipped), ignored_files),
             "images written: %d" % written,
             "classes: %d (ids 1..%d in %s)" % (len(labels), len(labels), tfrecord.LABELS_FILENAME),
             "classes with no image written (they keep their ids): %s" % (
                 ", ".join("%s (id %d)" % (name, labels[name]) for name in empty) or "none"),
             "re-encoded as RGB JPEG: %s" % (", ".join("%s %d" % kv for kv in sorted(converted.items())) or "none"),
             "colour profiles converted to sRGB: %d%s" % (sum(colour.values()), _profiles_text(colour)),
             "skipped (undecodable, or above the pixel limit): %d" % len(skipped)]
    lines += ["  %s: %s" % s for s in skipped]
    lines += ["ignored (not images, or outside the layout): %d files" % ignored_files]
    lines += ["  %s: %s" % (walk_module.printable(i.path), i.reason) for i in ignored]
    lines += ["links under the source: %d (%d not followed)" % (len(links), sum(not k.followed for k in links))]
    lines += ["  %s -> %s: %s" % (walk_module.printable(k.path), walk_module.printable(k.target), k.reason)
              for k in links]
    lines += ["identical images under different classes (a note: the same bytes carry two labels): %d"
              % len(duplicates)]
    lines += ["  " + _duplicates_text(group) for group in duplicates]
    with open(report_file + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(report_file + ".tmp", report_file)
    stream.write("%s: wrote %d images in %d shards to %s; re-encoded %d%s; colour profiles converted to sRGB %d%s; "
                 "skipped %d not read%s; ignored %d files%s%s\n" % (
                     split, written, num_shards, out, sum(converted.values()),
                     " (%s)" % ", ".join("%s %d" % kv for kv in sorted(converted.items())) if converted else "",
                     sum(colour.values()), _profiles_text(colour),
                     len(skipped), " (%s)" % _by_extension((p, 1) for p, _ in skipped) if skipped else "",
                     ignored_files, " (%s)" % _by_extension((i.path, i.files) for i in ignored) if ignored_files
                     else "", "; report %s" % report_file))
    for path, reason in skipped[:20]:
        stream.write("  skipped %s: %s\n" % (path, reason))
    if len(skipped) > 20:
        stream.write("  ... %d more in %s\n" % (len(skipped) - 20, report_file))
    for link in links[:20]:
        stream.write("note: link %s -> %s: %s\n" % (walk_module.printable(link.path),
                                                    walk_module.printable(link.target), link.reason))
    if len(links) > 20:
        stream.write("  ... %d more links in %s\n" % (len(links) - 20, report_file))
    if duplicates:
        stream.write("note: %d image(s) have identical bytes under different classes (each is written as it is, "
                     "with its folder's class; remove the wrong copies if that is not meant):\n" % len(duplicates))
        for group in duplicates[:20]:
            stream.write("  %s\n" % _duplicates_text(group))
        if len(duplicates) > 20:
            stream.write("  ... %d more in %s\n" % (len(duplicates) - 20, report_file))
    for name in empty:
        stream.write("warning: class %s has no image in this %s build; it keeps id %d (ids follow the sorted class "
                     "folder names, so that every split agrees): the model gets a class that %s. Remove the folder "
                     "before building if %s is not a class.\n" % (
                         name, split, labels[name], "it never trains on" if split == "train" else
                         "this split never evaluates", name))
    stream.flush()
    return BuildResult(out, split, num_shards, written, skipped, dict(converted), labels, report_file, reused,
                       [(walk_module.printable(i.path), i.reason) for i in ignored], empty, dict(colour),
                       [(walk_module.printable(k.path), k.reason) for k in links],
                       [[(c, walk_module.printable(n)) for c, n in group] for group in duplicates])
