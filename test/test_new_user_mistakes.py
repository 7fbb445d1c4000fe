"""What a new user's trial of the product met (session 6): a finished run trained one step further on each rerun,
a failed start rewrote the model dir's records, predict and export took another network's checkpoint, 0 or a
negative number was read as "not given", and a file given where a directory is expected ended in a traceback."""
import hashlib
import os
import shutil

import pytest
from PIL import Image

from registry import cli
from registry.engine import results, runner
from registry.errors import ZooError
from test_engine import DEMO, MODEL, _quiet, demo_hparams

RECORDS = ("hparams.json", "schedule.json", "run_summary.json", "checkpoint", "eval_results.json")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(a model dir of the demo trained to its end, 2 steps; a JPEG)."""
    root = tmp_path_factory.mktemp("trained")
    runner.train(MODEL, demo_hparams(epochs=0.1), DEMO, str(root / "model"), log=_quiet)
    image = str(root / "red.jpg")
    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    return str(root / "model"), image


def _digests(model_dir):
    return {name: hashlib.sha256(open(os.path.join(model_dir, name), "rb").read()).hexdigest() for name in RECORDS}


def _checkpoints(model_dir):
    return sorted(f for f in os.listdir(model_dir) if f.endswith(".index"))


def test_a_finished_run_is_not_trained_further(trained, tmp_path):
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained[0], model_dir)
    before, files = _digests(model_dir), _checkpoints(model_dir)
    for max_steps, reason in ((None, "the end of the schedule"), (1, "--max_steps 1")):
        lines = []
        record = runner.train(MODEL, demo_hparams(epochs=0.1), DEMO, model_dir, max_steps=max_steps,
                              log=lines.append)
        assert "Nothing to train: the model dir is at step 2 and this run ends at step %d (%s)" \
            % (max_steps or 2, reason) in lines
        assert record["global_step"] == 2 and _checkpoints(model_dir) == files == ["model.ckpt-0.index",
                                                                                     "model.ckpt-2.index"]
        assert _digests(model_dir) == before   # run_summary.json keeps the figures of the run that trained
    assert results.read_json(model_dir, results.RUN_SUMMARY)["images_per_sec"] > 0


@pytest.mark.parametrize("change, message", [
    ({"num_classes": 3}, r"does not fit the model being trained"),
    ({"image_size": 50}, r"static input size that is a multiple of 32, got 50x50"),
])
def test_a_run_that_fails_to_start_leaves_the_model_dirs_records(trained, tmp_path, change, message):
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained[0], model_dir)
    before = _digests(model_dir)
    with pytest.raises(ZooError, match=message):
        runner.train(MODEL, demo_hparams(**change), DEMO, model_dir, log=_quiet)
    assert _digests(model_dir) == before


def _main(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def test_predict_and_export_refuse_another_networks_checkpoint(trained, tmp_path, capsys):
    model_dir, image = trained
    code, err = _main(capsys, "predict", "shufflenetv1_g1", "--model_dir", model_dir, image)
    assert code == 2 and "does not fit the network being used for prediction (shufflenet_v1/classifier/kernel: " \
        "shape [960, 10] in checkpoint, [576, 10] in model" in err
    code, err = _main(capsys, "export", "shufflenetv1_g4", "--model_dir", model_dir, "--output", str(tmp_path / "x"))
    assert code == 2 and "does not fit the network being exported" in err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "shufflenetv1_g3", "--max_steps", "0"], "--max_steps must be >= 1, got 0"),
    (["train", "shufflenetv1_g3", "--max_steps", "-5"], "--max_steps must be >= 1, got -5"),
    (["perf", "shufflenetv1_g3", "--steps", "0"], "--steps must be >= 1, got 0"),
    (["perf", "shufflenetv1_g3", "--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["predict", "shufflenetv1_g3", "--model_dir", ".", "--top_k", "0", "x.jpg"], "--top_k must be >= 1, got 0"),
])
def test_numbers_below_their_range_are_refused(capsys, tmp_path, argv, message):
    code, err = _main(capsys, *(argv + (["--model_dir", str(tmp_path / "m")] if argv[0] == "train" else [])))
    assert code == 2 and message in err and not (tmp_path / "m").exists()


def test_a_file_where_a_directory_is_expected_is_named(trained, tmp_path, capsys):
    model_dir, image = trained
    code, err = _main(capsys, "train", "shufflenetv1_g3", "--model_dir", image)
    assert code == 2 and "--model_dir %s: it is a file, not a directory" % image in err
    code, err = _main(capsys, "export", "shufflenetv1_g3", "--model_dir", model_dir, "--output", image + "/sub")
    assert code == 2 and "--output %s/sub: %s is a file, not a directory" % (image, image) in err
    source = tmp_path / "images" / "red"
    source.mkdir(parents=True)
    shutil.copy(image, str(source))
    code, err = _main(capsys, "data", "build", str(tmp_path / "images"), image, "--split", "train")
    assert code == 2 and "the output directory %s: it is a file, not a directory" % image in err
    code, err = _main(capsys, "data", "build", str(tmp_path / "images"), str(tmp_path / "out"), "--split", "train",
                      "--shards", "0")
    assert code == 2 and "--shards must be >= 1, got 0" in err
    code, err = _main(capsys, "train", "shufflenetv1_g3", "--model_dir", str(tmp_path / "w"), "--warm_start_from",
                      image)
    assert code == 2 and "%s is not a TensorFlow checkpoint" % image in err
    # a checkpoint's own file names the checkpoint
    from registry.engine.warm_start import resolve_checkpoint
    assert resolve_checkpoint(os.path.join(model_dir, "model.ckpt-2.index")) == os.path.join(model_dir, "model.ckpt-2")
    # the ModelZoo report creates its output dir, as the ModelZoo scripts' output/ folders are made
    report_dir = tmp_path / "new" / "output"
    code, _ = _main(capsys, "modelzoo-report", "shufflenetv1_g3", "--model_dir", model_dir, "--e2e_seconds", "9",
                    "--output_dir", str(report_dir))
    assert code == 0 and len(os.listdir(str(report_dir))) == 2


def test_data_check_passes_a_train_only_data_set_with_a_note(tmp_path, capsys):
    for name in ("train-00000-of-00002", "labels.txt"):
        shutil.copy(os.path.join(DEMO, name), str(tmp_path))
    assert cli.main(["data", "check", str(tmp_path), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "note: %s has no validation split (validation-*-of-*)" % tmp_path in out
    assert out.splitlines()[-1] == "%s: 0 problem(s)" % tmp_path
    assert cli.main(["data", "check", str(tmp_path), "--split", "validation", "--workers", "1"]) == 1  # asked for
    assert "no validation files matching validation-*-of-*" in capsys.readouterr().out


def test_another_networks_model_dir_is_named_as_such(trained, capsys):
    code, err = _main(capsys, "eval", "resnet50_v1_5", "--model_dir", trained[0])
    assert code == 2 and "the model dir's hparams.json has hparams this network does not have (" in err
    assert "it was written for another network" in err


def test_ctrl_c_outside_a_training_run_is_one_line(monkeypatch, capsys):
    """E.g. while TensorFlow is imported, in the first second of any command."""
    from registry import tf_import

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(tf_import, "import_tensorflow", interrupted)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err == "zoo-run: interrupted (Ctrl-C)\n"


def test_a_rebuild_from_a_changed_source_says_what_changed(trained, tmp_path, capsys):
    source, out = tmp_path / "images", str(tmp_path / "out")
    for name in ("a", "b"):
        (source / name).mkdir(parents=True)
        shutil.copy(trained[1], str(source / name / "x.jpg"))
    argv = ["data", "build", str(source), out, "--split", "train", "--shards", "1"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "ignored 0 files; report %s" % os.path.join(out, "train-build-report.txt") in printed  # always named
    shutil.copy(trained[1], str(source / "a" / "y.jpg"))
    code, err = _main(capsys, *argv)
    assert code == 2 and "already holds train shards from a different build (train-00000-of-00001; it was made " \
        "from 2 images, the source has 3 now)" in err


def test_a_corrupt_jpeg_is_named_once_without_libjpegs_own_lines(trained, tmp_path, capfd):
    data = open(trained[1], "rb").read()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(data[:len(data) // 2])
    assert cli.main(["predict", "shufflenetv1_g3", "--model_dir", trained[0], str(broken)]) == 2
    err = capfd.readouterr().err   # file descriptor 2: what libjpeg writes there too
    assert err.splitlines() == ["zoo-run predict: error: %s could not be decoded as an image: the image does not "
                                "decode (%s)" % (broken, err.split("decode (", 1)[1].rstrip(")\n"))]
