"""A model dir written by the tf.estimator engine (test/data/estimator_model_dir, made on lane tf1 before the
engine moved to graph-mode sessions) evaluates to the same top-1, resumes and warm-starts on this lane."""
import json
import os
import shutil

import tensorflow as tf

from checkpoint_helpers import assert_backbone_warm_started
from deploy_helpers import DATA, TINY_NAME, use_tiny_model, zoo_run

OLD_DIR = os.path.join(DATA, "estimator_model_dir")
SETTINGS = ["--set", "image_size=64", "batch_size=16", "seed=1", "save_checkpoints_steps=20", "learning_rate=0.2",
            "epochs=2", "eval_every_epochs=0"]


def _old_dir(tmp_path):
    model_dir = str(tmp_path / "estimator_run")
    shutil.copytree(OLD_DIR, model_dir)
    return model_dir


def _json(model_dir, name):
    with open(os.path.join(model_dir, name)) as f:
        return json.load(f)


def test_estimator_model_dir_evaluates_to_its_recorded_top1(tmp_path, monkeypatch):
    from modelzoo_shufflenet import preprocessing
    use_tiny_model(monkeypatch)
    # the recorded figures come from the eval input of that time, TensorFlow's fast-DCT JPEG decoder (eval now decodes
    # as Pillow does, docs/megvii_recipe.md): the engines are compared on the same pixels
    monkeypatch.setattr(preprocessing, "EVAL_DCT_METHOD", "INTEGER_FAST")
    model_dir = _old_dir(tmp_path)
    recorded = _json(model_dir, "eval_results.json")
    assert zoo_run("eval", TINY_NAME, "--model_dir", model_dir, "--device", "cpu") == 0
    now = _json(model_dir, "eval_results.json")
    assert (now["global_step"], now["num_images"]) == (recorded["global_step"], recorded["num_images"]) == (40, 360)
    for metric in ("top1", "top5"):   # the same images right (the old engine summed in float32)
        assert round(now[metric] * 360) == round(recorded[metric] * 360), metric
    assert abs(now["loss"] - recorded["loss"]) < 1e-4 * recorded["loss"]
    assert now["epoch"] == recorded["epoch"]   # from the old run's train log


def test_estimator_model_dir_resumes(tmp_path, monkeypatch, capsys):
    use_tiny_model(monkeypatch)
    model_dir = _old_dir(tmp_path)
    assert zoo_run("train", TINY_NAME, "--model_dir", model_dir, "--device", "cpu", "--max_steps", "44",
                   "--skip_eval", *SETTINGS) == 0
    assert "Resuming from %s: step 40 of 178 (epoch 0.45)" % os.path.join(model_dir, "model.ckpt-40") \
        in capsys.readouterr().out
    assert tf.compat.v1.train.latest_checkpoint(model_dir).endswith("model.ckpt-44")
    summary = _json(model_dir, "run_summary.json")
    assert (summary["start_step"], summary["final_step"]) == (40, 44)
    # the optimizer's slots came back too: the momentum of a weight is not its initial zero
    reader = tf.compat.v1.train.NewCheckpointReader(os.path.join(model_dir, "model.ckpt-44"))
    assert abs(reader.get_tensor("shufflenet_v1/classifier/kernel/Momentum")).max() > 0


def test_warm_start_from_an_estimator_model_dir(tmp_path, monkeypatch, capsys):
    use_tiny_model(monkeypatch)
    source, target = _old_dir(tmp_path), str(tmp_path / "finetune")
    assert zoo_run("train", TINY_NAME, "--model_dir", target, "--device", "cpu", "--max_steps", "1", "--skip_eval",
                   "--warm_start_from", source, *(SETTINGS + ["num_classes=12", "learning_rate=1e-30",
                                                               "warmup_epochs=0"])) == 0
    assert "skipped shufflenet_v1/classifier/kernel: shape [192, 10] in checkpoint, [192, 12] in model" \
        in capsys.readouterr().out
    assert_backbone_warm_started(source, target)
