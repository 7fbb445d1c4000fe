"""Issue 12: situations from public bug reports of people who train and deploy image classifiers, each
rebuilt as a small input made here. Each test is one case of a kind: no silent wrong result, every input
file accounted for, errors that name the record (numbered as in the issue)."""
import argparse
import collections
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deploy_helpers import TINY, TINY_NAME, ZIP_FILE, torch_save, use_tiny_model
from image_helpers import decoded as _decoded, digit_six as _digit_six, jpeg as _jpeg, oriented as _oriented
from image_helpers import write_records as _write_records
from deploy_helpers import zoo_run as run_cli
from modelzoo_shufflenet import models, preprocessing
from registry import cli, hparams as hp
from registry.data import builder, demo, pipeline, tfrecord
from registry.deploy import predict, torch_checkpoint as tc
from registry.deploy.import_weights import import_weights
from registry.engine import devices, environment, results, runner
from registry.errors import DataError, ZooError

tf1 = tf.compat.v1
TEST_DIR = os.path.dirname(os.path.abspath(__file__))
def _photo(seed, size=(40, 32)):
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3)).astype(np.uint8))


def _flowers(root):
    """Records as TF-slim's download_and_convert_flowers.py names them, 0-based labels, labels.txt '0:daisy'."""
    root.mkdir()
    for split, shards in (("train", 2), ("validation", 1)):
        for shard in range(shards):
            _write_records(root / ("flowers_%s_%05d-of-%05d.tfrecord" % (split, shard, shards)),
                           [(_jpeg(_photo(100 * shard + i)), i % 3, "%s_%d_%d.jpg" % (split, shard, i))
                            for i in range(6)])
    (root / "labels.txt").write_text("0:daisy\n1:rose\n2:tulip\n")
    return root


def _run(*argv, env=None, cwd=None):
    return subprocess.run([str(a) for a in argv], env=dict(os.environ, **(env or {})), cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


# Cases 2, 4, 10 and 11 share one model dir, made without training: the tiny reference weights with a global
# step of 660 "trained at batch 64", whose train log records step 660 as epoch 30.
LEFTOVER_ENV = {"RANK_SIZE": "2", "RANK_ID": "1", "ASCEND_DEVICE_ID": "5", "TF_ENABLE_AUTO_MIXED_PRECISION": "1"}


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_world")
    model_dir = root / "run"
    model = models.ShuffleNetV1Model(TINY["groups"], "1.0x", channels=tuple(TINY["channels"]))
    import_weights(model, ZIP_FILE, str(model_dir), dict(model.default_hparams(), image_size=TINY["image_size"]),
                   log=lambda *a: None)
    params = json.load(open(str(model_dir / "hparams.json")))
    with tf.Graph().as_default():
        size = TINY["image_size"]
        model.build_model(tf1.placeholder(tf.float32, [1, size, size, 3]), False, params)
        step = tf1.train.get_or_create_global_step()
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            saver.restore(sess, str(model_dir / "model.ckpt-0"))
            sess.run(step.assign(660))
            saver.save(sess, str(model_dir / "model.ckpt"), global_step=660, write_meta_graph=False)
    # "trained" on 1408 images at batch 64: 22 steps an epoch, step 660 is epoch 30
    results.write_hparams(str(model_dir), dict(params, batch_size=64, num_train_images=1408))
    for step in (22, 660):
        results.append_jsonl(str(model_dir), "train_log.jsonl", {"step": step, "epoch": step / 22.0, "loss": 1.0,
                                                                 "time": 1.0})
    return model_dir, _flowers(root / "flowers")


# ------------------------------------------------------------------ 1. EXIF orientation

def test_1_predict_reads_every_exif_orientation_as_a_viewer_shows_it(recorded_run, tmp_path):
    upright = _digit_six()
    reference = np.asarray(upright, np.float32)
    files = {0: tmp_path / "six.jpg"}
    files[0].write_bytes(_jpeg(upright, quality=100))
    for orientation in range(1, 9):
        files[orientation] = tmp_path / ("six_orientation_%d.jpg" % orientation)
        files[orientation].write_bytes(_oriented(upright, orientation))
        data, kind = predict.read_image(str(files[orientation]))
        pixels = _decoded(data)
        assert pixels.shape == reference.shape, orientation          # 5..8 swap width and height
        assert np.abs(pixels - reference).mean() < 2.0, orientation  # the upright digit, not a turned one
        assert kind == "JPEG" + (", EXIF orientation %d applied" % orientation if orientation > 1 else "")

    # end to end: predict gives every oriented file the upright file's probabilities
    model_dir = recorded_run[0]
    model = models.ShuffleNetV1Model(TINY["groups"], "1.0x", channels=tuple(TINY["channels"]))
    results_, _, _ = predict.predict(model, json.load(open(str(model_dir / "hparams.json"))), str(model_dir),
                                     [str(files[o]) for o in range(9)], top_k=10)
    probabilities = [np.array([p["probability"] for p in sorted(r["predictions"], key=lambda p: p["class"])])
                     for r in results_]
    for orientation in range(1, 9):
        assert np.abs(probabilities[orientation] - probabilities[0]).max() < 0.01, orientation


def test_1_data_build_stores_oriented_photos_upright(tmp_path):
    upright = _digit_six()                           # 64x48
    for orientation in range(1, 9):
        folder = tmp_path / "src" / "photos"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ("o%d.jpg" % orientation)).write_bytes(_oriented(upright, orientation))
    result = builder.build(str(tmp_path / "src"), str(tmp_path / "out"), "train", num_shards=1,
                           stream=io.StringIO())
    assert result.written == 8 and not result.skipped
    assert result.converted == {"exif-orientation-%d" % o: 1 for o in range(2, 9)}
    reference = np.asarray(upright, np.float32)
    for raw in tf1.io.tf_record_iterator(tfrecord.list_split_files(str(tmp_path / "out"), "train")[0]):
        feature = tf.train.Example.FromString(raw).features.feature
        pixels = _decoded(feature["image/encoded"].bytes_list.value[0])
        assert (feature["image/height"].int64_list.value[0], feature["image/width"].int64_list.value[0]) == (48, 64)
        assert np.abs(pixels - reference).mean() < 3.0, feature["image/filename"].bytes_list.value[0]


# ------------------------------------------------------------------ 2. environment variables

def test_2_leftover_variables_are_shown_and_ignored_with_a_note_off_the_npu():
    launch = environment.read("cpu", "train", LEFTOVER_ENV)
    assert (launch.rank_size, launch.rank_id, launch.cluster, launch.applied) == (1, 0, None, {})
    assert launch.ignored == LEFTOVER_ENV
    assert launch.notes[0] == ("environment: RANK_SIZE=2, RANK_ID=1 ignored: the Ascend launcher's data-parallel "
                               "settings apply with --device npu only; this cpu run uses all the data as one worker")
    assert "environment: ASCEND_DEVICE_ID=5 ignored" in launch.notes[1]
    assert "environment: TF_ENABLE_AUTO_MIXED_PRECISION=1 ignored" in launch.notes[2]
    # the device settings ask the same place; the runner's data sharding asks the settings
    settings = devices.resolve("cpu", environ=LEFTOVER_ENV)
    assert (settings.rank_size, settings.rank_id, settings.launch) == (1, 0, launch)
    launch = environment.read("npu", "train", dict(LEFTOVER_ENV, RANK_TABLE_FILE="/etc/hccl.json"))
    assert (launch.rank_size, launch.rank_id) == (2, 1) and "rank 1 of 2" in launch.notes[0]
    assert launch.applied["ASCEND_DEVICE_ID"] == "5" and launch.ignored == {"TF_ENABLE_AUTO_MIXED_PRECISION": "1"}
    with pytest.raises(ZooError, match="RANK_SIZE=2 needs RANK_TABLE_FILE"):
        environment.read("npu", "train", LEFTOVER_ENV)
    config = environment.make_tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1)
    assert environment.read("cpu", "train", {"TF_CONFIG": config}).cluster == environment.Cluster(
        ["127.0.0.1:1", "127.0.0.1:2"], 1)
    assert environment.read("cpu", "eval", {"TF_CONFIG": config}).notes == [
        "environment: TF_CONFIG ignored: `zoo-run eval` runs in this process only"]
    with pytest.raises(ZooError, match="TF_CONFIG multi-worker runs are for CPU/GPU"):
        environment.read("npu", "train", {"TF_CONFIG": config})


def test_2_the_input_pipeline_reads_no_rank_variable(tmp_path, monkeypatch):
    for shard in range(2):
        _write_records(tmp_path / ("train-%05d-of-00002" % shard),
                       [(b"x", 1, "shard%d_%d" % (shard, i)) for i in range(3)])
    monkeypatch.setenv("RANK_SIZE", "2")
    monkeypatch.setenv("RANK_ID", "1")
    files = tfrecord.list_split_files(str(tmp_path), "train")

    def names(context):
        def preprocess(record, seed):
            parsed = tf.io.parse_single_example(record, tfrecord.feature_spec(with_bbox=False))
            return parsed["image/filename"], tf.constant(0)
        with tf.Graph().as_default():
            batch = tf1.data.make_one_shot_iterator(pipeline.build_dataset(
                files, True, preprocess, 1, shuffle_buffer=1, input_context=context)).get_next()
            with tf1.Session() as sess:
                return {sess.run(batch)[0][0].decode() for _ in range(24)}

    assert len(names(None)) == 6                                    # every file, whatever the shell holds
    assert names(tf.distribute.InputContext(2, 1, 2)) == {"shard1_%d" % i for i in range(3)}


# ------------------------------------------------------------------ 3. a name published by two distributions

@pytest.fixture
def second_distribution(tmp_path):
    """A distribution in a tmp dir publishing shufflenetv1_g3, which is really a g8; returns that dir."""
    dist = tmp_path / "zoo_clash-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-clash\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [modelzoo.models]
        shufflenetv1_g3 = modelzoo_shufflenet.models:SHUFFLENETV1_G8
        """))
    return tmp_path


def test_3_a_name_published_twice_is_listed_as_a_clash_and_every_lookup_refused(zoo_run, second_distribution,
                                                                                 monkeypatch, capsys):
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(second_distribution), os.environ.get("PYTHONPATH")]))}
    out = _run(zoo_run, "list", env=env)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("shufflenetv1_g3 "))
    assert "CLASH" in row and "zoo-clash 1.0" in row and "modelzoo-shufflenet 0.1.0" in row
    assert "shufflenetv1_g8 " in out.stdout and "1 name clash(es)" in out.stdout
    monkeypatch.syspath_prepend(str(second_distribution))        # the same, in this process
    tmp = second_distribution
    for command in (["describe"], ["train", "--synthetic"], ["eval", "--model_dir", tmp], ["perf", "--synthetic"],
                    ["predict", "--model_dir", tmp, "x.jpg"], ["export", "--model_dir", tmp, "--output", tmp / "e"],
                    ["import-weights", "--from", ZIP_FILE, "--model_dir", tmp / "i"]):
        assert cli.main([str(a) for a in [command[0], "shufflenetv1_g3"] + command[1:]]) == 2, command
        err = capsys.readouterr().err
        assert "published by 2 distributions" in err and "zoo-clash 1.0" in err \
            and "modelzoo-shufflenet 0.1.0" in err, command
    script = _run("bash", os.path.join(TEST_DIR, "train_performance_1p.sh"), "--data_path=%s" % demo.demo_data_path(),
                  env=dict(env, ZOO_RUN=zoo_run, MODELZOO_OUTPUT_ROOT=str(tmp / "out")))
    assert script.returncode == 2 and "zoo-clash 1.0" in script.stderr


# ------------------------------------------------------------------ 4. figures from what the run recorded

def test_4_eval_reports_the_epoch_the_training_recorded(recorded_run, monkeypatch, capsys):
    """Also 2 (variables left in the shell are shown and ignored), 10 (TF-slim flowers records: file names and
    0-based labels) and 11 (several pairs after one --set)."""
    model_dir, flowers = recorded_run
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    for name, value in dict(LEFTOVER_ENV, TF_CONFIG=json.dumps(cluster)).items():
        monkeypatch.setenv(name, value)
    use_tiny_model(monkeypatch)
    argv = ["eval", TINY_NAME, "--model_dir", str(model_dir), "--data_path", str(flowers), "--device", "cpu"]
    assert cli.main(argv + ["--set", "batch_size=4"]) == 2            # 0-based labels, label_offset 1: stopped
    assert "labels.txt numbers the classes 0..2, so the records' labels are 0-based: label_offset=0; this run " \
           "has label_offset=1. Pass --set label_offset=0" in capsys.readouterr().err
    assert cli.main(argv + ["--set", "batch_size=4", "label_offset=0"]) == 0
    printed = capsys.readouterr().out
    record = results.read_json(str(model_dir), results.EVAL_RESULTS)
    assert record["global_step"] == 660 and record["epoch"] == 30.0 and record["num_images"] == 6
    assert "eval  step 660 (epoch 30.00)" in printed
    for note in ("environment: RANK_SIZE=2, RANK_ID=1 ignored", "environment: ASCEND_DEVICE_ID=5 ignored",
                 "environment: TF_CONFIG ignored", "note: validation: 1 file(s) *_validation_*-of-*.tfrecord, "
                 "named as TF-slim's dataset converters name them; their labels are 0-based (label_offset=0)"):
        assert note in printed


# ------------------------------------------------------------------ 5. every file under SRC accounted for

@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    src = root / "src"
    folder = src / "cat"
    folder.mkdir(parents=True)
    for i in range(9):
        (folder / ("cat_%d.jpg" % i)).write_bytes(_jpeg(_photo(i)))
    (folder / "phone.jfif").write_bytes(_jpeg(_photo(20)))
    (folder / "old.jpe").write_bytes(_jpeg(_photo(21)))
    _photo(22).save(str(folder / "scan.tif"), "TIFF")
    _photo(23).save(str(folder / "web.webp"), "WEBP", lossless=True)
    # around them: what real folders also hold
    (folder / "iphone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "jpeg_without_extension").write_bytes(_jpeg(_photo(24)))
    (folder / "burst").mkdir()
    (folder / "burst" / "b1.jpg").write_bytes(_jpeg(_photo(25)))
    (src / ".ipynb_checkpoints").mkdir()
    (src / ".ipynb_checkpoints" / "x.jpg").write_bytes(_jpeg(_photo(26)))
    (src / "README.md").write_text("my dataset")
    (src / "dog").mkdir()
    (src / "dog" / "dog.png").write_bytes(b"")
    _photo(27).save(str(src / "dog" / "dog_ok.png"), "PNG")
    stream = io.StringIO()
    result = builder.build(str(src), str(root / "out"), "train", num_shards=2, stream=stream)
    return src, result, stream.getvalue()


def test_5_the_build_report_accounts_for_every_file(odd_folder):
    src, result, printed = odd_folder
    # the 13 files of the case are written: JPEGs by content (.jfif, .jpe), TIFF and WebP through Pillow
    written = {tf.train.Example.FromString(raw).features.feature["image/filename"].bytes_list.value[0].decode()
               for path in tfrecord.list_split_files(result.out, "train") for raw in tf1.io.tf_record_iterator(path)}
    assert {"phone.jfif", "old.jpe", "scan.tif", "web.webp", "jpeg_without_extension", "b1.jpg", "dog_ok.png"} \
        <= written and result.written == len(written) == 16
    assert result.converted == {"tiff": 1, "webp": 1, "png": 1}
    skipped = dict(result.skipped)
    assert sorted(os.path.basename(p) for p in skipped) == ["dog.png", "iphone.heic"]
    assert "HEIC image: neither TensorFlow nor Pillow decodes it" in skipped[str(src / "cat" / "iphone.heic")]
    ignored = {os.path.relpath(p, str(src)): reason for p, reason in result.ignored}
    assert ignored == {"README.md": "not in a class folder (the layout is SRC/<class>/<image>)",
                       ".ipynb_checkpoints": "hidden folder",
                       os.path.join("cat", ".DS_Store"): "hidden file",
                       os.path.join("cat", "notes.txt"): "not an image (neither its name nor its content is)"}
    with open(result.report_path) as f:
        report = f.read()
    assert "files under the source: 22 = 16 written + 2 skipped + 4 ignored" in report
    for path in list(skipped) + [p for p, _ in result.ignored]:
        assert path in report
    assert "skipped 2 not read (.heic 1, .png 1)" in printed
    assert "ignored 4 files ((none) 1, .md 1, .txt 1, in folders 1)" in printed


# ------------------------------------------------------------------ 6. empty class folders keep their ids

def test_6_an_empty_class_folder_keeps_its_id_and_is_named(tmp_path):
    train = tmp_path / "train"
    for name in ("ant", "bee", "cow"):
        (train / name).mkdir(parents=True)
    for i, name in enumerate(("ant", "cow")):
        (train / name / ("%s.jpg" % name)).write_bytes(_jpeg(_photo(i)))
    stream = io.StringIO()
    result = builder.build(str(train), str(tmp_path / "out"), "train", num_shards=1, stream=stream)
    assert result.labels == {"ant": 1, "bee": 2, "cow": 3} and result.empty_classes == ["bee"]
    assert "warning: class bee has no image in this train build; it keeps id 2" in stream.getvalue()
    assert "classes with no image written (they keep their ids): bee (id 2)" in open(result.report_path).read()
    labels = {tf.train.Example.FromString(raw).features.feature["image/filename"].bytes_list.value[0]:
              tf.train.Example.FromString(raw).features.feature["image/class/label"].int64_list.value[0]
              for raw in tf1.io.tf_record_iterator(tfrecord.list_split_files(str(tmp_path / "out"), "train")[0])}
    assert labels == {b"ant.jpg": 1, b"cow.jpg": 3}
    # the validation split, where bee has images, agrees
    val = tmp_path / "val"
    for i, name in enumerate(("ant", "bee", "cow")):
        (val / name).mkdir(parents=True)
        (val / name / ("%s.jpg" % name)).write_bytes(_jpeg(_photo(10 + i)))
    result = builder.build(str(val), str(tmp_path / "out"), "validation", num_shards=1, stream=io.StringIO())
    assert result.labels == {"ant": 1, "bee": 2, "cow": 3} and result.empty_classes == []


# ------------------------------------------------------------------ 7. data errors name the shard and the record

@pytest.fixture
def foreign_records(tmp_path):
    """TF-slim records written by another tool; one holds a truncated JPEG, one a label outside 3 classes."""
    good = [(_jpeg(_photo(i)), 1 + i % 3, "img_%d.jpg" % i) for i in range(5)]
    truncated = _jpeg(_photo(9))
    _write_records(tmp_path / "train-00000-of-00002", good[:3])
    _write_records(tmp_path / "train-00001-of-00002", good[3:] + [(truncated[:len(truncated) // 2], 2,
                                                                   "truncated.jpg")])
    _write_records(tmp_path / "validation-00000-of-00001", good[:2] + [(good[2][0], 7, "seven.jpg")])
    return tmp_path


def test_7_a_broken_record_is_named_by_shard_record_and_file(foreign_records):
    params = hp.resolve(models.SHUFFLENETV1_G3, set_args=["image_size=32", "batch_size=2", "num_classes=3"])
    with pytest.raises(DataError) as err:
        with runner.data_errors(str(foreign_records), "train", params):
            with tf.Graph().as_default():
                batch = tf1.data.make_one_shot_iterator(
                    preprocessing.input_fn("train", params, str(foreign_records))).get_next()
                with tf1.Session() as sess:
                    for _ in range(20):
                        sess.run(batch)
    message = str(err.value)
    # TF 1.15: "(Invalid JPEG data or crop window, ...)"; TF 2.15: "(jpeg::Uncompress failed. Invalid JPEG data ..."
    assert ("record 2 of %s (image/filename truncated.jpg): the image does not decode ("
            % (foreign_records / "train-00001-of-00002")) in message and "Invalid JPEG data" in message
    assert "function_node" not in message and "[[" not in message and "zoo-run data check" in message


def test_7_data_check_finds_every_bad_record_in_one_pass(foreign_records, capsys):
    assert cli.main(["data", "check", str(foreign_records), "--num_classes", "3", "--workers", "1"]) == 1
    printed = capsys.readouterr().out
    assert "record 2 of %s (image/filename truncated.jpg): the image does not decode" % (
        foreign_records / "train-00001-of-00002") in printed
    assert "record 2 of %s (image/filename seven.jpg): image/class/label 7 is outside 1..3" % (
        foreign_records / "validation-00000-of-00001") in printed
    assert "train: 2 files, 6 records, 1 problem(s)" in printed
    assert "labels: 1..7, 4 distinct; they imply label_offset=1, num_classes=7" in printed
    assert "2 problem(s)" in printed.splitlines()[-1]


# ------------------------------------------------------------------ 8. foreign checkpoints

def test_8_weights_are_found_where_common_tools_put_them(tmp_path):
    state = tc.load_state_dict(ZIP_FILE)
    optimizer = {"state": {0: {"momentum_buffer": np.zeros(3, np.float32)}},
                 "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]}
    layouts = {   # torchvision's reference train.py, PyTorch's checkpoint tutorial, timm, torch.compile + DDP
        "torchvision": {"model": state, "optimizer": optimizer, "lr_scheduler": {"last_epoch": 30}, "epoch": 30,
                        "args": argparse.Namespace(lr=0.5, model="shufflenet"),
                        "model_ema": dict([("n_averaged", np.array(30))] +
                                          [("module." + k, v) for k, v in state.items()])},
        "tutorial": {"epoch": 3, "model_state_dict": state, "optimizer_state_dict": optimizer, "loss": 0.4},
        "timm_ema": {"state_dict_ema": state, "epoch": 3, "arch": "shufflenet"},
        "compiled": {"state_dict": collections.OrderedDict(("module._orig_mod." + k, v) for k, v in state.items())},
    }
    for name, obj in layouts.items():
        found = tc.load_state_dict(str(torch_save(tmp_path / (name + ".pth"), obj)))
        assert list(found) == list(state), name
        assert all(np.array_equal(found[k], state[k]) and found[k].shape == state[k].shape for k in state), name
    assert tc.load_weights(str(tmp_path / "compiled.pth"))[1] == "entry 'state_dict'"
    ema, where = tc.load_weights(str(tmp_path / "torchvision.pth"), key="model_ema")
    assert list(ema) == list(state) and where == "entry 'model_ema'"


def test_8_import_weights_reads_a_torchvision_checkpoint_and_refusals_say_what_was_found(tmp_path, monkeypatch,
                                                                                         capsys):
    state = tc.load_state_dict(ZIP_FILE)
    source = torch_save(tmp_path / "checkpoint.pth", {"model": state, "epoch": 30, "args": argparse.Namespace(lr=1)})
    use_tiny_model(monkeypatch)
    assert run_cli("import-weights", TINY_NAME, "--from", source, "--model_dir", tmp_path / "m",
                   "--set", "image_size=%d" % TINY["image_size"]) == 0
    assert "Weights of %s: 295 tensors at entry 'model'" % source in capsys.readouterr().out

    # a pickled whole model stays refused, naming its class and how to re-save
    module = type(sys)("my_training_script")

    class Net(object):
        pass

    Net.__module__, Net.__qualname__ = "my_training_script", "Net"
    module.Net = Net
    net = Net()
    net.__dict__.update(_parameters=collections.OrderedDict(weight=np.ones((2, 2), np.float32)), training=True)
    whole = torch_save(tmp_path / "whole.pth", net, extra_modules=[module])
    with pytest.raises(tc.UnsafeCheckpointError) as err:
        tc.load_state_dict(str(whole))
    assert "references my_training_script.Net" in str(err.value)
    assert "It holds a pickled my_training_script.Net object" in str(err.value)
    assert "torch.save(model.state_dict(), %r)" % str(whole) in str(err.value)
    # a dict without weights: its keys and their kinds
    other = torch_save(tmp_path / "other.pth", {"epoch": 3, "weights": state})
    with pytest.raises(tc.CheckpointError) as err:
        tc.load_state_dict(str(other))
    assert "it holds a dict with keys epoch (int), weights (dict of 295 entries, 295 tensors)" in str(err.value)
    assert "torch.save(model.state_dict(), F), or name the entry holding them with --key" in str(err.value)


# ------------------------------------------------------------------ 9. paths the way users type them

def test_9_scripts_expand_a_leading_tilde(tmp_path):
    home = tmp_path / "home"
    (home / "demo-data").mkdir(parents=True)
    common = os.path.join(TEST_DIR, "modelzoo_common.sh")
    out = _run("bash", "-c", 'source "%s"; parse_args --data_path=~/demo-data; echo "$data_path"' % common,
               env={"HOME": str(home), "ZOO_RUN": "true"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(home / "demo-data")
    assert cli.build_parser().parse_args(["eval", "x", "--model_dir=~/runs/g3"]).model_dir == \
        os.path.expanduser("~/runs/g3")


def test_9_loss_file_and_the_8p_performance_script(tmp_path):
    from registry import modelzoo_report
    model_dir = str(tmp_path)
    for step, loss, time_ in ((10, 9.9, 1.0), (5, 3.5, 100.0), (10, 2.25, 101.0)):   # an earlier run, then this one
        results.append_jsonl(model_dir, "train_log.jsonl", {"step": step, "loss": loss, "time": time_})
    results.write_json(model_dir, results.RUN_SUMMARY, {
        "device": "cpu", "rank_size": 1, "replicas": 1, "batch_size": 16, "images_per_sec": 10.0,
        "step_time_ms": 1600.0, "final_loss": 2.25, "eval_top1": None, "started": 99.0})
    modelzoo_report.write("shufflenetv1_g3", model_dir, "perf", 5, model_dir)
    with open(os.path.join(model_dir, "train_shufflenetv1_g3_bs16_1p_perf_loss.txt")) as f:
        assert f.read() == "3.500000\n2.250000\n"
    script = os.path.join(TEST_DIR, "train_performance_8p.sh")
    out = _run("bash", script, "-h")
    assert out.returncode == 0 and "--data_path=DIR" in out.stdout
    out = _run("bash", script, "--data_path=%s" % tmp_path, env={"RANK_TABLE_FILE": ""})
    assert out.returncode == 1 and "RANK_TABLE_FILE" in out.stderr


# ------------------------------------------------------------------ 10. TF-slim's own file names

def test_10_records_named_by_tf_slim_converters_are_found_and_their_label_offset_told(tmp_path):
    data = _flowers(tmp_path / "flowers")
    assert [os.path.basename(f) for f in tfrecord.list_split_files(str(data), "train")] == [
        "flowers_train_00000-of-00002.tfrecord", "flowers_train_00001-of-00002.tfrecord"]
    assert tfrecord.find_split_files(str(data), "train")[1] == (
        "train: 2 file(s) *_train_*-of-*.tfrecord, named as TF-slim's dataset converters name them; "
        "their labels are 0-based (label_offset=0)")
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    for name in ("cifar10_train.tfrecord", "cifar10_test.tfrecord"):          # TF-slim's cifar10 / mnist names
        _write_records(cifar / name, [(b"x", 0, "a.png")])
    assert [os.path.basename(f) for f in tfrecord.list_split_files(str(cifar), "validation")] == \
        ["cifar10_test.tfrecord"]
    assert tfrecord.implied_label_offset(str(cifar))[0] == 0
    params = hp.resolve(models.SHUFFLENETV1_G3, set_args=["num_classes=3"])    # label_offset 1, the default
    with pytest.raises(DataError, match="Pass --set label_offset=0"):
        runner.check_data(params, str(data), print)
    runner.check_data(dict(params, label_offset=0), str(data), print)


# ------------------------------------------------------------------ 11. CLI habits

def test_11_several_pairs_after_one_set_flag():
    args = cli.build_parser().parse_args(["describe", "x", "--set", "a=1", "b=2", "--set", "c=3"])
    assert hp.parse_set_args(args.set) == {"a": "1", "b": "2", "c": "3"}
    assert hp.resolve(models.SHUFFLENETV1_G3, set_args=[["batch_size=2", "epochs=3"], ["batch_size=4"]])[
        "batch_size"] == 4
    with pytest.raises(hp.HParamsError, match="put other arguments .* before --set, or end the pairs with --"):
        hp.parse_set_args([["batch_size=2", "photo.jpg"]])


def test_11_a_directory_given_as_an_image_is_called_one(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    with pytest.raises(ZooError, match=r"image .*x.jpg is a directory, not a file"):
        predict.read_image(str(tmp_path / "x.jpg"))
    with pytest.raises(ZooError, match=r"image .*y.jpg does not exist"):
        predict.read_image(str(tmp_path / "y.jpg"))
    (tmp_path / "ckpt.pth").mkdir()
    with pytest.raises(ZooError, match="checkpoint file .*ckpt.pth is a directory"):
        tc.load_state_dict(str(tmp_path / "ckpt.pth"))
