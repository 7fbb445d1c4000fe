"""The dataset builder (image folder -> TF-slim TFRecords) and the bundled demo data."""
import collections
import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from registry import cli  # noqa: E402
from registry.data import builder, demo, tfrecord  # noqa: E402
from registry.errors import DataError  # noqa: E402

CLASSES = ("circle", "square", "triangle")
# (file name, size (w, h), how it is stored): RGB JPEG, PNG, grayscale JPEG, CMYK JPEG, RGBA PNG
VARIANTS = [("a.jpg", (48, 40), "rgb"), ("b.JPEG", (40, 56), "rgb"), ("c.png", (52, 44), "png"),
            ("d.jpg", (36, 36), "gray"), ("e.jpeg", (60, 40), "cmyk"), ("f.png", (44, 48), "rgba")]


def draw(shape, size, seed):
    rng = np.random.RandomState(seed)
    background = tuple(int(v) for v in rng.randint(0, 120, 3))
    colour = tuple(int(v) for v in rng.randint(130, 256, 3))
    image = Image.new("RGB", size, background)
    d = ImageDraw.Draw(image)
    w, h = size
    box = [w * 0.2, h * 0.2, w * 0.8, h * 0.8]
    if shape == "circle":
        d.ellipse(box, fill=colour)
    elif shape == "square":
        d.rectangle(box, fill=colour)
    else:
        d.polygon([(w * 0.5, h * 0.15), (w * 0.85, h * 0.85), (w * 0.15, h * 0.85)], fill=colour)
    return image


def save(image, path, kind):
    if kind == "rgb":
        image.save(path, "JPEG", quality=95)
    elif kind == "gray":
        image.convert("L").save(path, "JPEG", quality=95)
    elif kind == "cmyk":
        image.convert("CMYK").save(path, "JPEG", quality=95)
    elif kind == "rgba":
        image.convert("RGBA").save(path, "PNG")
    else:
        image.save(path, "PNG")


def make_folder(root, classes=CLASSES, corrupt=True):
    """root/<class>/<image>: every variant per class, a corrupt .jpg and a non-image file."""
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(root, name))
        for v, (filename, size, kind) in enumerate(VARIANTS):
            save(draw(name, size, 10 * c + v), os.path.join(root, name, "%s_%s" % (name, filename)), kind)
    if corrupt:
        with open(os.path.join(root, classes[0], "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        with open(os.path.join(root, classes[1], "notes.txt"), "w") as f:
            f.write("not an image")
    return root


def read_records(paths):
    out = []
    for path in paths:
        for raw in tf.compat.v1.io.tf_record_iterator(path):
            ex = tf.train.Example.FromString(raw).features.feature
            out.append({k: (v.bytes_list.value or v.int64_list.value or v.float_list.value) for k, v in ex.items()})
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("builder")
    src = make_folder(str(root / "src"))
    names = root / "names.txt"
    names.write_text("circle\tround thing\nsquare\tfour equal sides\ntriangle\tthree sides\n")
    out = str(root / "out")
    stream = io.StringIO()
    result = builder.build(src, out, "train", num_shards=3, synset_names=str(names), workers=1, seed=7,
                           stream=stream)
    return result, src, out, stream.getvalue()


def test_counts_labels_conversions_and_report(built):
    result, src, out, printed = built
    assert result.written == len(CLASSES) * len(VARIANTS) == 18
    assert result.num_shards == 3
    assert sorted(n for n in os.listdir(out) if not n.startswith(".")) == ["labels.txt", "train-00000-of-00003", "train-00001-of-00003",
                                       "train-00002-of-00003", "train-build-report.txt"]
    assert result.labels == {"circle": 1, "square": 2, "triangle": 3}
    with open(os.path.join(out, "labels.txt")) as f:
        assert f.read() == "1:circle\n2:square\n3:triangle\n"
    assert result.converted == {"png": 6, "grayscale": 3, "cmyk": 3}
    broken = os.path.join(src, "circle", "broken.jpg")
    assert [p for p, _ in result.skipped] == [broken]
    with open(result.report_path) as f:
        report = f.read()
    assert "skipped (undecodable, or above the pixel limit): 1" in report and broken in report
    assert "skipped 1 not read" in printed and broken in printed
    assert "19/19 images" in printed and "images/sec" in printed and "ETA" in printed
    assert builder.images_written(out, "train") == 18 and builder.images_written(out, "validation") is None


def test_training_notes_a_num_train_images_that_differs_from_the_build(built):
    from registry.engine import runner
    _, _, out, _ = built
    notes = []
    runner.check_epoch_size({"num_train_images": 1281167}, out, notes.append)
    runner.check_epoch_size({"num_train_images": 18}, out, notes.append)
    assert len(notes) == 1 and "num_train_images is 1281167, but" in notes[0] \
        and "counts 18 training images" in notes[0] and "--set num_train_images=18" in notes[0]


def test_record_features(built):
    result, src, out, _ = built
    records = read_records(tfrecord.list_split_files(out, "train"))
    assert len(records) == 18
    texts = {1: b"round thing", 2: b"four equal sides", 3: b"three sides"}
    seen = set()
    for r in records:
        filename = r["image/filename"][0].decode()
        shape_name = filename.split("_")[0]
        label = r["image/class/label"][0]
        assert label == CLASSES.index(shape_name) + 1
        assert r["image/class/text"][0] == texts[label]
        assert r["image/class/synset"][0] == shape_name.encode()
        assert r["image/format"][0] == b"JPEG" and r["image/colorspace"][0] == b"RGB"
        assert r["image/channels"][0] == 3
        image = Image.open(io.BytesIO(r["image/encoded"][0]))
        assert image.format == "JPEG" and image.mode == "RGB"
        size = dict((f, s) for f, s, _ in VARIANTS)[filename.split("_", 1)[1]]
        assert image.size == size == (r["image/width"][0], r["image/height"][0])
        # the stored pixels are the drawn image (re-encoding kept the content)
        kind = dict((f, k) for f, _, k in VARIANTS)[filename.split("_", 1)[1]]
        original = np.asarray(draw(shape_name, size, 10 * CLASSES.index(shape_name)
                                   + [f for f, _, _ in VARIANTS].index(filename.split("_", 1)[1])), np.float32)
        if kind == "gray":
            original = np.repeat(np.asarray(Image.fromarray(original.astype(np.uint8)).convert("L"),
                                            np.float32)[..., None], 3, axis=2)
        assert np.abs(np.asarray(image, np.float32) - original).mean() < 6.0
        seen.add(filename)
    assert len(seen) == 18


def test_files_are_shuffled_across_shards(built):
    _, _, out, _ = built
    per_shard = [[r["image/class/label"][0] for r in read_records([p])] for p in tfrecord.list_split_files(out, "train")]
    assert sum(len(s) for s in per_shard) == 18 and all(5 <= len(s) <= 7 for s in per_shard)
    assert all(len(set(s)) > 1 for s in per_shard)          # classes are mixed in every shard


def test_resume_rebuilds_only_missing_shards(built, tmp_path):
    result, src, out, _ = built
    import shutil
    copy = str(tmp_path / "out")
    shutil.copytree(out, copy)
    files = tfrecord.list_split_files(copy, "train")
    original = open(files[1], "rb").read()
    os.remove(files[1])
    with open(os.path.join(copy, ".train-00001-of-00003.tmp-99999"), "wb") as f:
        f.write(b"half a shard from a killed run")
    names = os.path.join(os.path.dirname(src), "names.txt")
    again = builder.build(src, copy, "train", num_shards=3, synset_names=names, workers=1, seed=7,
                          stream=io.StringIO())
    assert again.shards_reused == 2 and again.written == 18 and len(again.skipped) == 1
    assert open(files[1], "rb").read() == original            # same seed: the same shard, byte for byte
    assert not [n for n in os.listdir(copy) if ".tmp-" in n]


def test_a_different_build_into_the_same_out_is_refused(built):
    _, src, out, _ = built
    with pytest.raises(DataError, match="different build"):
        builder.build(src, out, "train", num_shards=2, workers=1, stream=io.StringIO())


def test_validation_flat_folder_with_labels_file_and_csv(built, tmp_path):
    _, src, out, _ = built
    flat = tmp_path / "val"
    flat.mkdir()
    truth = {}
    for i, shape in enumerate(["triangle", "circle", "square", "circle", "triangle"]):
        name = "ILSVRC_val_%02d.JPEG" % (i + 1)
        save(draw(shape, (40, 40), 100 + i), str(flat / name), "rgb")
        truth[name] = shape
    lines = tmp_path / "synsets.txt"
    lines.write_text("".join(truth[n] + "\n" for n in sorted(truth)))
    val_out = tmp_path / "out"
    import shutil
    shutil.copytree(out, str(val_out))                      # labels.txt of the train build is reused
    result = builder.build(str(flat), str(val_out), "validation", labels_file=str(lines), workers=1,
                           stream=io.StringIO())
    assert result.num_shards == 5                           # default 128, at most one per image
    recs = read_records(tfrecord.list_split_files(str(val_out), "validation"))
    got = {r["image/filename"][0].decode(): r["image/class/label"][0] for r in recs}
    assert got == {n: CLASSES.index(s) + 1 for n, s in truth.items()}

    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("filename,label\n" + "".join("%s,%s\n" % (n, s) for n, s in sorted(truth.items())[:3]))
    result = builder.build(str(flat), str(tmp_path / "csv_out"), "validation", num_shards=1,
                           labels_file=str(csv_file), workers=1, stream=io.StringIO())
    recs = read_records(tfrecord.list_split_files(str(tmp_path / "csv_out"), "validation"))
    # its own labels.txt: sorted names of the classes it saw
    ids = {s: i + 1 for i, s in enumerate(sorted(set(s for _, s in sorted(truth.items())[:3])))}
    assert {r["image/filename"][0].decode(): r["image/class/label"][0] for r in recs} == \
        {n: ids[s] for n, s in sorted(truth.items())[:3]}


def test_clear_errors_for_bad_sources(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        builder.build(str(tmp_path / "missing"), str(tmp_path / "out"), "train", stream=io.StringIO())
    flat = tmp_path / "flat"
    flat.mkdir()
    save(draw("circle", (20, 20), 0), str(flat / "x.jpg"), "rgb")
    save(draw("circle", (20, 20), 1), str(flat / "y.jpg"), "rgb")
    with pytest.raises(DataError, match="no class sub-folders.*--labels_file"):
        builder.build(str(flat), str(tmp_path / "out"), "validation", stream=io.StringIO())
    one_line = tmp_path / "one.txt"
    one_line.write_text("circle\n")
    with pytest.raises(DataError, match="1 lines but .* holds 2 images"):
        builder.build(str(flat), str(tmp_path / "out"), "validation", labels_file=str(one_line),
                      stream=io.StringIO())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        builder.build(str(empty), str(tmp_path / "out"), "train", stream=io.StringIO())


def test_cli_build_with_two_worker_processes(tmp_path, capsys):
    src = make_folder(str(tmp_path / "src"), corrupt=True)
    out = str(tmp_path / "out")
    code = cli.main(["data", "build", src, out, "--split", "train", "--shards", "4", "--workers", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 18 images in 4 shards" in printed and "broken.jpg" in printed
    assert len(tfrecord.list_split_files(out, "train")) == 4
    assert tfrecord.count_records(tfrecord.list_split_files(out, "train")) == 18
    assert cli.main(["data", "build", str(tmp_path / "nope"), out, "--split", "train"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_data_files_and_counts():
    path = demo.demo_data_path()
    train = tfrecord.list_split_files(path, "train")
    validation = tfrecord.list_split_files(path, "validation")
    assert tfrecord.count_records(train) == demo.DEMO_HPARAMS["num_train_images"] == 1437
    assert tfrecord.count_records(validation) == demo.DEMO_HPARAMS["num_eval_images"] == 360
    assert tfrecord.read_labels_file(path) == {d + 1: str(d) for d in range(10)}
    size = sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path))
    assert size < 2.5e6
    counts = collections.Counter()
    for r in read_records(validation):
        counts[r["image/class/label"][0]] += 1
        assert (r["image/height"][0], r["image/width"][0]) == (32, 32)
    assert sorted(counts) == list(range(1, 11))
    assert all(30 <= n <= 40 for n in counts.values())       # stratified: ~36 per class
    assert demo.DEMO_HPARAMS["image_size"] % 32 == 0 and demo.DEMO_HPARAMS["num_classes"] == 10
