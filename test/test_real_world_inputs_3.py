"""Issue 19: real-world inputs, round 3. Each test is one kind of failure, rebuilt from inputs made here and run
where the product meets it (predict, data build, data check, export's serving, hparams). Item 5 (exports that
cross the lanes) is test_lanes_exports.py, with one single-lane test here.

Pillow's own decompression-bomb limit (89 M pixels warns, 179 M raises) is lowered in items 1 and 3 so that small
photos stand for 108 MP and 196 MP ones: the code path is the one a real 200 MP phone photo takes, without
allocating 600 MB in a test."""
import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageCms

from colour_helpers import adobe_rgb_icc, adobe_to_srgb
from deploy_helpers import TINY, TINY_NAME, ZIP_FILE, tiny_model, use_tiny_model
from deploy_helpers import zoo_run as run_cli
from modelzoo_shufflenet import models
from registry import cli, hparams as hp
from registry.data import builder, tfrecord, transforms
from registry.deploy import export as export_mod, predict
from registry.deploy.import_weights import import_weights, write_checkpoint
from registry.engine import results
from registry.errors import ZooError
from image_helpers import decoded, digit_six, jpeg, oriented, write_records

tf1 = tf.compat.v1
TEST_DIR = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)


def _bomb_png(width, height):
    """A real PNG (1-bit grayscale, all black) of width x height: ~50 KB for 20000x20000, 1.2 GB once decoded as RGB."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _adobe_rgb_photo():
    """(JPEG bytes of a 64x48 photo of 16x16 colour patches stored in Adobe RGB (1998) with its ICC profile, the
    pixels it stores)."""
    rng = np.random.RandomState(19)
    base = rng.randint(40, 216, (3, 4, 3)).astype(np.uint8)
    stored = np.asarray(Image.fromarray(base).resize((64, 48), Image.NEAREST))
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", quality=100, subsampling=0, icc_profile=adobe_rgb_icc())
    data = buffer.getvalue()
    return data, decoded(data)           # what the file holds, as TensorFlow decodes it (no colour management)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A model dir of the tiny reference weights (import-weights: eval_resize=aspect, BGR 0..255), no training."""
    model_dir = tmp_path_factory.mktemp("round3") / "imported"
    model = tiny_model()
    import_weights(model, ZIP_FILE, str(model_dir), dict(model.default_hparams(), image_size=TINY["image_size"]),
                   log=lambda *a: None)
    return model_dir


def _predict(model_dir, paths, **kwargs):
    params = json.load(open(str(model_dir / "hparams.json")))
    found, _, _ = predict.predict(tiny_model(), params, str(model_dir), [str(p) for p in paths], top_k=10, **kwargs)
    return found, [np.array([p["probability"] for p in sorted(r["predictions"], key=lambda p: p["class"])])
                   for r in found]


# ------------------------------------------------------------------ 1. EXIF orientation of photos above Pillow's limit

@pytest.mark.parametrize("pillow_limit", [1000, 2000])   # 3,072 pixels: above 2x (Pillow raises), above 1x (warns)
def test_1_a_photo_above_pillows_bomb_limit_is_read_upright_without_a_raw_warning(tiny_dir, tmp_path, monkeypatch,
                                                                                   pillow_limit):
    upright = digit_six()                                    # 64x48
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    folder = tmp_path / "src" / "six"
    folder.mkdir(parents=True)
    (folder / "six.jpg").write_bytes(jpeg(upright, quality=100))
    (folder / "six_6.jpg").write_bytes(oriented(upright, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)     # a raw warning fails the test
        data, kind = predict.read_image(str(folder / "six_6.jpg"))
        found, probabilities = _predict(tiny_dir, [folder / "six.jpg", folder / "six_6.jpg"])
        result = builder.build(str(tmp_path / "src"), str(tmp_path / "out"), "train", num_shards=1,
                               stream=io.StringIO())
    assert kind == "JPEG, EXIF orientation 6 applied" == found[1]["format"]
    assert np.abs(decoded(data) - np.asarray(upright, np.float32)).mean() < 2.0
    assert np.abs(probabilities[1] - probabilities[0]).max() < 0.01
    assert result.written == 2 and result.converted == {"exif-orientation-6": 1}
    assert Image.MAX_IMAGE_PIXELS == pillow_limit             # Pillow's own setting is left as the user set it


def test_1_a_photo_above_the_users_limit_is_refused_with_its_size(tiny_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "six_6.jpg").write_bytes(oriented(digit_six(), 6))
    use_tiny_model(monkeypatch)
    assert run_cli("predict", TINY_NAME, "--model_dir", tiny_dir, tmp_path / "six_6.jpg",
                   "--max_image_pixels", "3000") == 2
    assert ("six_6.jpg: 48x64 = 3,072 pixels, above the limit of 3,000 (a decompression bomb, or a genuine image "
            "that large: then raise the limit with --max_image_pixels 3072)") in capsys.readouterr().err


# ------------------------------------------------------------------ 2. memory on extreme shapes

def test_2_the_eval_crop_reads_only_what_it_keeps_and_equals_resize_then_crop():
    rng = np.random.RandomState(2)
    with tf.Graph().as_default(), tf1.Session() as sess:
        image = tf1.placeholder(tf.uint8, [None, None, 3])
        reference = transforms.central_crop(transforms.resize_short_side(image, 36), 32, 32)
        fused = transforms.resize_short_side_and_central_crop(image, 36, 32, 32)
        square = transforms.central_crop_of_resize(image, 36, 36, 32, 32)
        square_reference = transforms.central_crop(transforms.resize(image, 36, 36), 32, 32)
        for shape in ((48, 64), (64, 48), (1, 400), (400, 1), (7, 9), (36, 36), (35, 1000)):
            pixels = rng.randint(0, 256, shape + (3,)).astype(np.uint8)
            got, want, got_square, want_square = sess.run([fused, reference, square, square_reference], {image: pixels})
            assert got.shape == (32, 32, 3) and np.array_equal(got, want), shape      # bit-identical
            assert np.array_equal(got_square, want_square), shape


@pytest.fixture(scope="module")
def g3_aspect_dir(tmp_path_factory):
    """A shufflenetv1_g3 model dir with fresh weights and the transform import-weights records (aspect, 224,
    0.875), made without training; and two images: a 500x375 photo and a 1x4000 strip."""
    root = tmp_path_factory.mktemp("extreme")
    model = models.SHUFFLENETV1_G3
    params = dict(model.default_hparams(), eval_resize="aspect", image_size=224, eval_crop_fraction=0.875)
    write_checkpoint(model, {}, params, str(root / "model"))
    results.write_hparams(str(root / "model"), params)
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 256, (375, 500, 3)).astype(np.uint8)).save(str(root / "photo.jpg"), quality=90)
    Image.fromarray(rng.randint(0, 256, (1, 4000, 3)).astype(np.uint8)).save(str(root / "strip.png"))
    return root


def _peak_rss_mb(*argv):
    """Peak resident memory (MB) of a command, measured by a fresh Python whose only child it is."""
    probe = ("import resource, subprocess, sys; out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, "
             "stderr=subprocess.STDOUT); sys.stdout.write(out.stdout.decode()[-2000:] + '\\nEXIT %d PEAK %d' % "
             "(out.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))")
    out = subprocess.run([sys.executable, "-c", probe] + [str(a) for a in argv], stdout=subprocess.PIPE,
                         universal_newlines=True, timeout=600)
    tail = out.stdout.rsplit("EXIT ", 1)[1].split()
    assert tail[0] == "0", out.stdout
    return int(tail[2]) / 1024.0


def test_2_predict_on_a_1x4000_strip_needs_the_memory_of_a_photo(g3_aspect_dir):
    zoo_run = os.path.join(BIN, "zoo-run")
    command = [zoo_run, "predict", "shufflenetv1_g3", "--model_dir", g3_aspect_dir / "model"]
    photo = _peak_rss_mb(*(command + [g3_aspect_dir / "photo.jpg"]))
    strip = _peak_rss_mb(*(command + [g3_aspect_dir / "strip.png"]))
    print("peak RSS: 500x375 photo %.0f MB, 1x4000 strip %.0f MB" % (photo, strip))
    assert strip < 1.25 * photo                      # was 3.3-3.7 GB: a 256 x 1,024,000 float image


# ------------------------------------------------------------------ 3. decompression bombs

@pytest.fixture(scope="module")
def bomb():
    return _bomb_png(20000, 20000)


BOMB_TEXT = ("20000x20000 = 400,000,000 pixels, above the limit of 250,000,000 (a decompression bomb, or a genuine "
             "image that large: then raise the limit with --max_image_pixels 400000000)")


def test_3_predict_refuses_a_bomb_naming_the_file_and_its_pixels(tiny_dir, tmp_path, bomb, monkeypatch, capsys):
    path = tmp_path / "tiny.png"
    path.write_bytes(bomb)
    assert len(bomb) < 100000
    with pytest.raises(ZooError) as err:
        predict.read_image(str(path))
    assert str(err.value) == "%s: %s" % (path, BOMB_TEXT)
    use_tiny_model(monkeypatch)
    assert run_cli("predict", TINY_NAME, "--model_dir", tiny_dir, path) == 2
    assert BOMB_TEXT in capsys.readouterr().err


def test_3_data_build_skips_a_bomb_and_names_it_in_the_report(tmp_path, bomb):
    src = tmp_path / "src" / "cat"
    src.mkdir(parents=True)
    (src / "bomb.png").write_bytes(bomb)
    (src / "photo.jpg").write_bytes(jpeg(digit_six()))
    stream = io.StringIO()
    result = builder.build(str(tmp_path / "src"), str(tmp_path / "out"), "train", num_shards=1, stream=stream)
    assert result.written == 1 and result.skipped == [(str(src / "bomb.png"), BOMB_TEXT)]
    report = open(result.report_path).read()
    assert "skipped (undecodable, or above the pixel limit): 1\n  %s: %s" % (src / "bomb.png", BOMB_TEXT) in report
    assert "skipped 1 not read (.png 1)" in stream.getvalue()
    # the limit is the user's: --max_image_pixels below the photo's 3,072 pixels skips it too
    assert cli.main(["data", "build", str(tmp_path / "src"), str(tmp_path / "out2"), "--split", "train",
                     "--workers", "1", "--max_image_pixels", "3000"]) == 1
    report = open(builder.report_path(str(tmp_path / "out2"), "train")).read()
    assert "%s: 64x48 = 3,072 pixels, above the limit of 3,000" % (src / "photo.jpg") in report


def test_3_data_check_names_a_bomb_record_without_decoding_it(tmp_path, bomb, capsys):
    write_records(tmp_path / "validation-00000-of-00001", [(jpeg(digit_six()), 1, "six.jpg"),
                                                            (bomb, 1, "bomb.png")])
    assert cli.main(["data", "check", str(tmp_path), "--split", "validation", "--workers", "1"]) == 1
    printed = capsys.readouterr().out
    assert ("record 1 of %s (image/filename bomb.png): the image is %s; the input pipeline would decode it whole"
            % (tmp_path / "validation-00000-of-00001", BOMB_TEXT)) in printed


@pytest.fixture(scope="module")
def tiny_export(tiny_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("round3_export") / "export"
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_tiny_model(monkeypatch)
        assert run_cli("export", TINY_NAME, "--model_dir", tiny_dir, "--output", output) == 0
    return output


def test_3_serving_default_refuses_a_bomb_from_its_header(tiny_export, bomb):
    info = json.load(open(str(tiny_export / export_mod.EXPORT_INFO)))
    assert info["saved_model"]["signatures"]["serving_default"]["max_image_pixels"] == 250000000
    with tf.Graph().as_default(), tf1.Session() as sess:
        meta = tf1.saved_model.loader.load(sess, ["serve"], str(tiny_export / export_mod.SAVED_MODEL_DIR))
        signature = meta.signature_def["serving_default"]
        feed, fetch = signature.inputs["image_bytes"].name, signature.outputs["probabilities"].name
        assert sess.run(fetch, {feed: [jpeg(digit_six())]}).shape == (1, 10)
        with pytest.raises(tf.errors.InvalidArgumentError) as err:
            sess.run(fetch, {feed: [bomb]})
    assert ("the image is 20000x20000 = 400000000 pixels, above the limit of 250000000 (set by zoo-run export "
            "--max_image_pixels)") in str(err.value)


# ------------------------------------------------------------------ 4. colour profiles

def test_4_predict_converts_an_adobe_rgb_photo_to_srgb_and_says_so(tiny_dir, tmp_path, monkeypatch, capsys):
    data, stored = _adobe_rgb_photo()
    truth = adobe_to_srgb(stored)              # what a colour-managed viewer shows
    assert np.abs(stored - truth).max() > 15   # the file's numbers read as sRGB are visibly other colours
    (tmp_path / "adobe.jpg").write_bytes(data)
    (tmp_path / "plain.jpg").write_bytes(jpeg(digit_six()))
    converted, kind = predict.read_image(str(tmp_path / "adobe.jpg"))
    assert kind == "JPEG, colour profile 'Adobe RGB (1998)' converted to sRGB"
    assert np.abs(decoded(converted) - truth).max() <= 3.0 and np.abs(decoded(converted) - truth).mean() < 1.0
    use_tiny_model(monkeypatch)
    argv = ["predict", TINY_NAME, "--model_dir", tiny_dir, tmp_path / "adobe.jpg", tmp_path / "plain.jpg"]
    assert run_cli(*argv) == 0
    printed = capsys.readouterr().out
    assert "adobe.jpg (JPEG, colour profile 'Adobe RGB (1998)' converted to sRGB)" in printed
    assert "plain.jpg (JPEG)\n" in printed and "colour profiles converted to sRGB: 1 of 2 image(s)" in printed
    assert run_cli(*(argv + ["--json"])) == 0
    assert json.loads(capsys.readouterr().out)["colour_profiles_converted"] == 1
    # a profile LittleCMS cannot read: refused, naming the file and the fix, not read with other colours
    buffer = io.BytesIO()
    digit_six().save(buffer, "JPEG", icc_profile=b"\0\0\0\x80not an ICC profile" + b"\0" * 112)
    (tmp_path / "broken.jpg").write_bytes(buffer.getvalue())
    with pytest.raises(ZooError, match=r"broken.jpg: its ICC colour profile cannot be used \(.*\); re-save the "
                                       r"image in sRGB or without the profile"):
        predict.read_image(str(tmp_path / "broken.jpg"))


def test_4_data_build_stores_srgb_and_counts_conversions_and_data_check_counts_profiles(tmp_path, capsys):
    data, stored = _adobe_rgb_photo()
    src = tmp_path / "src" / "photos"
    src.mkdir(parents=True)
    (src / "adobe.jpg").write_bytes(data)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    digit_six().save(buffer, "JPEG", icc_profile=srgb)                 # sRGB already: stored as it is
    (src / "srgb.jpg").write_bytes(buffer.getvalue())
    stream = io.StringIO()
    result = builder.build(str(tmp_path / "src"), str(tmp_path / "out"), "train", num_shards=1, stream=stream)
    assert result.written == 2 and result.colour_converted == {"Adobe RGB (1998)": 1}
    assert result.converted == {"colour-profile": 1}
    assert "colour profiles converted to sRGB: 1 (Adobe RGB (1998) 1)" in open(result.report_path).read()
    assert "colour profiles converted to sRGB 1 (Adobe RGB (1998) 1)" in stream.getvalue()
    records = {}
    for raw in tf1.io.tf_record_iterator(tfrecord.list_split_files(str(tmp_path / "out"), "train")[0]):
        feature = tf.train.Example.FromString(raw).features.feature
        records[feature["image/filename"].bytes_list.value[0]] = feature["image/encoded"].bytes_list.value[0]
    centres = (slice(8, None, 16), slice(8, None, 16))          # of the patches: JPEG's chroma subsampling aside
    assert np.abs(decoded(records[b"adobe.jpg"])[centres] - adobe_to_srgb(stored)[centres]).max() <= 3.0
    # a data set written by another tool keeps the profile: data check counts it
    (tmp_path / "foreign").mkdir()
    write_records(tmp_path / "foreign" / "train-00000-of-00001", [(data, 1, "adobe.jpg"),
                                                                  (buffer.getvalue(), 1, "srgb.jpg")])
    assert cli.main(["data", "check", str(tmp_path / "foreign"), "--split", "train", "--workers", "1"]) == 0
    assert ("1 image(s) carry a colour profile other than sRGB (Adobe RGB (1998) 1), which the pipeline ignores"
            in capsys.readouterr().out)


# ------------------------------------------------------------------ 5. exports name their readers (one lane)

def test_5_the_export_says_which_tensorflow_reads_it_and_prints_atc_only_where_it_applies(tiny_dir, tiny_export,
                                                                                          tmp_path, monkeypatch):
    from registry.deploy import graph_compat
    info = json.load(open(str(tiny_export / export_mod.EXPORT_INFO)))
    assert info["frozen_graph"]["readable_by"] == info["saved_model"]["readable_by"] == "TensorFlow 1.15 and later"
    graph_def = tf1.GraphDef()
    graph_def.ParseFromString((tiny_export / export_mod.FROZEN_GRAPH).read_bytes())
    saved = graph_compat.saved_model_graph_defs(str(tiny_export / export_mod.SAVED_MODEL_DIR))
    assert graph_compat.tf115_problems([graph_def] + saved) == []
    # a graph with an op TF 1.15 lacks (TF 2's DecodeImage) or an attr it lacks is named, and gets no atc line
    newer = tf1.GraphDef()
    newer.node.add(name="decode", op="DecodeImage")
    node = newer.node.add(name="bn", op="FusedBatchNormV3")
    node.attr["exponential_avg_factor"].f = 0.5
    readers = graph_compat.readers([newer], "2.21.0")
    assert not readers.tf115 and readers.problems == [
        "op DecodeImage (node decode)", "attr 'exponential_avg_factor' of op FusedBatchNormV3 (node bn)"]
    assert readers.text == ("TensorFlow 2.21 (the exporter's); not TensorFlow 1.15, which lacks op DecodeImage "
                            "(node decode) and 1 more")
    monkeypatch.setattr(graph_compat, "readers", lambda graphs, version: readers)
    lines = []
    export_mod.export(tiny_model(), json.load(open(str(tiny_dir / "hparams.json"))), str(tiny_dir),
                      str(tmp_path / "export"), log=lines.append)
    printed = "\n".join(lines)
    assert "atc --model" not in printed and "readable by TensorFlow 2.21 (the exporter's)" in printed
    assert "Ascend: no atc command for %s: ATC reads TensorFlow 1.15 graphs; export on lane tf1" % (
        tmp_path / "export" / "frozen_graph.pb") in printed
    assert json.load(open(str(tmp_path / "export" / export_mod.EXPORT_INFO)))["frozen_graph"]["atc_input_shape"] is None


# ------------------------------------------------------------------ 6. settings that cannot be right

@pytest.mark.parametrize("pair, message", [
    ("learning_rate=-0.02", "hparam learning_rate must be > 0, got -0.02 (from --set)"),
    ("epochs=0", "hparam epochs must be > 0, got 0.0 (from --set)"),
])
def test_6_train_refuses_an_out_of_range_setting_before_anything_runs(tmp_path, capsys, pair, message):
    model_dir = tmp_path / "run"
    assert cli.main(["train", "shufflenetv1_g3", "--synthetic", "--max_steps", "1", "--model_dir", str(model_dir),
                     "--set", pair]) == 2
    assert message in capsys.readouterr().err
    assert not model_dir.exists()


BAD_VALUES = {   # every key the engine reads, one value outside its range each, and the range the message gives
    "batch_size": (0, ">= 1"), "base_batch_size": (0, ">= 1"), "learning_rate": (0.0, "> 0"),
    "epochs": (-1.0, "> 0"), "warmup_epochs": (-1.0, ">= 0"), "momentum": (1.0, "in [0, 1)"),
    "weight_decay": (-1e-4, ">= 0"), "label_smoothing": (1.0, "in [0, 1)"),
    "lr_schedule": ("step", "one of cosine, linear, constant"), "eval_every_epochs": (-1.0, ">= 0"),
    "save_checkpoints_steps": (0, ">= 1"), "keep_checkpoint_max": (-1, ">= 0"), "seed": (-2, ">= -1"),
    "num_classes": (0, ">= 1"), "image_size": (0, ">= 1"), "num_train_images": (0, ">= 1"),
    "num_eval_images": (0, ">= 1"), "label_offset": (-1, ">= 0"), "shuffle_buffer": (-1, ">= 0"),
    "data_threads": (-2, ">= -1"), "color_jitter": (1.5, "in [0, 1]"), "bn_recalibration_epochs": (-1.0, ">= 0"),
    "train_dct_method": ("FAST", "one of INTEGER_FAST, INTEGER_ACCURATE"),
    # ShuffleNet's own keys (its hparam_ranges())
    "crop_area_min": (0.0, "in (0, 1]"), "eval_crop_fraction": (1.5, "in (0, 1]"),
    "eval_resize": ("crop", "one of square, aspect"), "input_channel_order": ("gbr", "one of rgb, bgr"),
    "grouped_conv_impl": ("fast", "one of auto, split, block_diagonal, native"),
}


def test_6_every_engine_key_has_a_range_named_in_its_refusal(tmp_path, capsys):
    model = models.SHUFFLENETV1_G3
    for key, (value, text) in BAD_VALUES.items():
        with pytest.raises(hp.HParamsError) as err:
            hp.resolve(model, set_args=["%s=%s" % (key, value)])
        assert str(err.value).startswith("hparam %s must be %s, got %r (from --set)" % (key, text, value)), key
    with pytest.raises(hp.HParamsError, match=r"learning_rate must be a finite number > 0, got inf"):
        hp.resolve(model, set_args=["learning_rate=inf"])
    with pytest.raises(hp.HParamsError) as err:                       # every problem at once, with its source
        hp.resolve(model, preset="demo", set_args=["momentum=1.5", "batch_size=0"])
    assert str(err.value).splitlines() == ["2 hparams are out of range:",
                                           "  batch_size must be >= 1, got 0 (from --set); images per device",
                                           "  momentum must be in [0, 1), got 1.5 (from --set)"]
    # a model dir's saved hparams are checked too, naming the file
    (tmp_path / "hparams.json").write_text(json.dumps(dict(model.default_hparams(), label_smoothing=-0.1)))
    assert cli.main(["predict", "shufflenetv1_g3", "--model_dir", str(tmp_path), "x.jpg"]) == 2
    assert "label_smoothing must be in [0, 1), got -0.1 (from the model dir's hparams.json)" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("learning_rate: 0.1\nepochs: 3\nlearning_rate: 0.01\n",
     "sets learning_rate twice (lines 1 and 3); YAML would keep the last silently: remove one"),
    ("seed: 010\n", "line 1: 010 has a leading zero, and YAML 1.1 reads it as the octal number 8; write 10"),
    ("epochs: 1:30\n", "line 1: 1:30 is not a plain decimal number, and YAML 1.1 reads it as 90 (base 60)"),
    ("batch_size: 0x20\n", "line 1: 0x20 is not a plain decimal number, and YAML 1.1 reads it as 32 (hexadecimal)"),
    ("# learning_rate: 0.1\n", "holds no settings (it is empty or all comments)"),
    ("learning_rate: -0.5\n", "hparam learning_rate must be > 0, got -0.5 (from %s)"),
])
def test_6_a_yaml_config_that_is_not_what_it_seems_is_refused(tmp_path, capsys, text, message):
    config = tmp_path / "recipe.yaml"
    config.write_text(text)
    assert cli.main(["train", "shufflenetv1_g3", "--synthetic", "--max_steps", "1", "--model_dir",
                     str(tmp_path / "run"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert (message % config if "%s" in message else message) in err and str(config) in err
    assert not (tmp_path / "run").exists()
    config.write_text("learning_rate: 1e-3\nepochs: 2.0\nseed: 0\nbatch_size: 1_024\n")     # plain decimals pass
    assert hp.resolve(models.SHUFFLENETV1_G3, config_file=str(config))["batch_size"] == 1024
