"""`zoo-run import-weights`: official-format PyTorch checkpoints read without torch, mapped exactly.

The files under test/data were written by scripts/make_reference_weights.py (PyTorch, dev time only):
a tiny-width ShuffleNetV1 g3 with the reference's module structure, saved as the official files are
(`{'state_dict': {'module.' + name: tensor}}`) in PyTorch's zip and legacy layouts, plus its
eval-mode logits on committed inputs.
"""
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from deploy_helpers import (FULL_SIZE_SHAPES, LEGACY_FILE, TINY, TINY_NAME, TOLERANCE, ZIP_FILE, engine_logits,
                            import_tiny, reference_inputs, reference_logits, tiny_model, use_tiny_model, zoo_run)
from modelzoo_shufflenet import models, weights
from registry.deploy import torch_checkpoint as tc
from registry import hparams as hp
from registry.engine import warm_start
from registry.errors import ZooError


def test_both_layouts_read_to_the_same_arrays():
    zipped, legacy = tc.load_state_dict(ZIP_FILE), tc.load_state_dict(LEGACY_FILE)
    assert zipfile.is_zipfile(ZIP_FILE) and not zipfile.is_zipfile(LEGACY_FILE)
    assert list(zipped) == list(legacy) and len(zipped) == TINY["num_tensors"]
    assert not any(k.startswith("module.") for k in zipped)  # DataParallel prefix removed
    for name in zipped:
        assert zipped[name].dtype == legacy[name].dtype and np.array_equal(zipped[name], legacy[name]), name
    assert zipped["first_conv.0.weight"].shape == (12, 3, 3, 3) and zipped["first_conv.0.weight"].dtype == np.float32
    assert zipped["first_conv.1.num_batches_tracked"].dtype == np.int64


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{'zip': model dir, 'legacy': model dir}: both files imported with `zoo-run import-weights`."""
    dirs = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_tiny_model(monkeypatch)
        for kind, source in (("zip", ZIP_FILE), ("legacy", LEGACY_FILE)):
            dirs[kind] = tmp_path_factory.mktemp("imported") / kind
            import_tiny(monkeypatch, dirs[kind], source)
    return dirs


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_imported_weights_give_the_reference_logits(kind, imported):
    model, model_dir = tiny_model(), imported[kind]
    params = json.load(open(str(model_dir / "hparams.json")))
    # the reference's input convention is recorded for eval/predict/export
    assert (params["input_channel_order"], params["input_normalization"]) == ("bgr", "none")
    assert (params["eval_resize"], params["eval_crop_fraction"]) == ("aspect", 0.875)
    assert params["num_classes"] == TINY["num_classes"]
    report = json.load(open(str(model_dir / "import_report.json")))
    assert report["format"] == kind
    assert report["tensors_in_file"] == TINY["num_tensors"]

    logits = engine_logits(model, params, model_dir, reference_inputs())
    diff = np.abs(logits - reference_logits()).max()
    print("max abs logit difference vs the PyTorch reference (%s): %.2e" % (report["format"], diff))
    assert diff <= TOLERANCE
    assert (logits.argmax(1) == reference_logits().argmax(1)).all()


def test_every_grouped_conv_implementation_reproduces_the_reference(imported):
    import tensorflow as tf
    tf1 = tf.compat.v1
    model = tiny_model()
    params = json.load(open(str(imported["zip"] / "hparams.json")))
    inputs = reference_inputs()
    for impl in ("split", "block_diagonal"):
        with tf.Graph().as_default():
            logits = model.build_model(tf.constant(inputs), False, dict(params, grouped_conv_impl=impl))
            with tf1.Session() as sess:
                tf1.train.Saver().restore(sess, str(imported["zip"] / "model.ckpt-0"))
                diff = np.abs(sess.run(logits) - reference_logits()).max()
        assert diff <= TOLERANCE, (impl, diff)


def test_full_size_g3_names_and_shapes_map_onto_the_network():
    """The real 1.0x g3 checkpoint's 295 names and shapes (from the PyTorch reference) fill every variable."""
    shapes = json.load(open(FULL_SIZE_SHAPES))
    state = {name: np.zeros(shape, np.int64 if name.endswith("num_batches_tracked") else np.float32)
             for name, shape in shapes.items()}
    model = models.SHUFFLENETV1_G3
    variables, overrides = model.convert_state_dict(state, model.default_hparams())
    assert overrides["num_classes"] == 1000
    built = warm_start.model_variable_shapes(model, model.default_hparams())
    assert {k: list(v.shape) for k, v in variables.items()} == built
    assert sum(v.size for k, v in variables.items() if "moving_" not in k) == 1864728  # the reference's count


def test_a_checkpoint_of_another_variant_is_refused_naming_the_first_mismatch():
    shapes = json.load(open(FULL_SIZE_SHAPES))
    state = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    with pytest.raises(weights.WeightsMismatchError) as err:
        models.SHUFFLENETV1_G8.convert_state_dict(state, models.SHUFFLENETV1_G8.default_hparams())
    message = str(err.value)
    assert "features.0.branch_main_1.0.weight has shape [60, 24, 1, 1]" in message
    assert "needs [96, 24, 1, 1]" in message
    assert "groups 3, channels 24/240/480/960, 1000 classes" in message


def test_missing_and_unexpected_tensors_are_named():
    state = tc.load_state_dict(ZIP_FILE)
    model, params = tiny_model(), tiny_model().default_hparams()
    missing = dict(state)
    del missing["features.5.branch_main_1.4.running_var"]
    with pytest.raises(weights.WeightsMismatchError, match=r"features\.5\.branch_main_1\.4\.running_var .*missing"):
        model.convert_state_dict(missing, params)
    extra = dict(state, **{"classifier.0.bias": np.zeros(10, np.float32)})
    with pytest.raises(weights.WeightsMismatchError, match=r"classifier\.0\.bias .*no bias"):
        model.convert_state_dict(extra, params)


def test_files_that_are_not_checkpoints_are_refused_clearly(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(tc.CheckpointError, match="not a PyTorch checkpoint"):
        tc.load_state_dict(str(text))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(LEGACY_FILE, "rb").read()[:-1000])
    with pytest.raises(tc.CheckpointError, match="truncated"):
        tc.load_state_dict(str(truncated))
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(str(plain), "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(tc.CheckpointError, match="no single data.pkl"):
        tc.load_state_dict(str(plain))
    with pytest.raises(tc.CheckpointError, match="does not exist"):
        tc.load_state_dict(str(tmp_path / "absent.pth"))


class _RunsACommand(object):
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _malicious_pickle(marker):
    return pickle.dumps({"state_dict": {"module.x": _RunsACommand("touch %s" % marker)}}, protocol=2)


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(tc.LEGACY_MAGIC_NUMBER, protocol=2) + pickle.dumps(1001, protocol=2)
                       + pickle.dumps({"little_endian": True}, protocol=2) + _malicious_pickle(marker))
    zipped = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(str(zipped), "w") as archive:
        archive.writestr("evil/data.pkl", _malicious_pickle(marker))
    bare = tmp_path / "evil_bare.pkl"
    bare.write_bytes(_malicious_pickle(marker))
    for path in (legacy, zipped, bare):
        with pytest.raises(tc.UnsafeCheckpointError, match=r"references (posix|os)\.system"):
            tc.load_state_dict(str(path))
    assert not marker.exists()

    # the command line says so and fails, without a traceback
    use_tiny_model(monkeypatch)
    assert zoo_run("import-weights", TINY_NAME, "--from", legacy, "--model_dir", tmp_path / "m") == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "m").exists()


def test_a_warm_start_keeps_the_weights_input_convention_unless_overridden(imported, tmp_path, monkeypatch, capsys):
    model = tiny_model()
    for source in (imported["zip"], imported["zip"] / "model.ckpt-0"):   # a model dir or a prefix in it
        assert hp.warm_start_hparams(model, str(source)) == {"input_channel_order": "bgr",
                                                             "input_normalization": "none"}
    assert hp.warm_start_hparams(model, str(tmp_path)) == {}              # no hparams.json: nothing inherited

    use_tiny_model(monkeypatch)
    target = tmp_path / "finetune"
    assert zoo_run("train", TINY_NAME, "--warm_start_from", imported["zip"], "--model_dir", target, "--synthetic",
                   "--max_steps", "1", "--set", "image_size=%d" % TINY["image_size"], "--set", "num_classes=5",
                   "--set", "input_normalization=imagenet") == 0
    saved = json.load(open(str(target / "hparams.json")))
    assert (saved["input_channel_order"], saved["input_normalization"], saved["num_classes"]) == ("bgr", "imagenet", 5)
    assert ("input_channel_order=bgr, input_normalization=imagenet (overridden; the weights expect none)"
            in capsys.readouterr().out)


def test_other_globals_and_persistent_objects_are_refused():
    eval_pickle = b"\x80\x02cbuiltins\neval\nX\x06\x00\x00\x001 + 1\x85R."
    with pytest.raises(tc.UnsafeCheckpointError, match=r"builtins\.eval"):
        tc.RestrictedUnpickler(io.BytesIO(eval_pickle), "test").load()
    persistent = b"\x80\x02X\x06\x00\x00\x00moduleQ."  # BINPERSID of a non-storage id
    with pytest.raises(tc.UnsafeCheckpointError, match="persistent object"):
        tc.RestrictedUnpickler(io.BytesIO(persistent), "test", storage_factory=lambda args: None).load()


def test_an_imported_model_dir_warm_starts_another_classifier(imported):
    model = tiny_model()
    params = json.load(open(str(imported["zip"] / "hparams.json")))
    plan = warm_start.plan_warm_start(model, dict(params, num_classes=5), str(imported["zip"]))
    assert [name for name, _ in plan.skipped] == ["shufflenet_v1/classifier/kernel"]
    assert len(plan.assignment) == len(warm_start.model_variable_shapes(model, params)) - 1
    # importing twice into the same model dir is refused
    with pytest.raises(ZooError, match="already has a checkpoint"):
        from registry.deploy.import_weights import import_weights
        import_weights(model, ZIP_FILE, str(imported["zip"]), dict(params))
