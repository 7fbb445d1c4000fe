"""Checkpoints cross the TensorFlow lanes: a model dir trained on one lane evaluates, resumes and warm-starts
on the other. Needs both lanes' venvs (.venv/tf1 and .venv/tf2, as `make install STACK=...` makes them);
each lane's suite runs both directions (CI: each direction once, test/cross_lane.py)."""
import json
import os
import subprocess

import pytest
import tensorflow as tf

from checkpoint_helpers import assert_backbone_warm_started
from cross_lane import OTHER_LANE, THIS_LANE, needs_other_lane, run_direction, venv_bin

OTHER_ZOO_RUN = venv_bin(OTHER_LANE, "zoo-run")
pytestmark = needs_other_lane


def _run(zoo_run, *args):
    out = subprocess.run([zoo_run] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=600)
    assert out.returncode == 0, "%s %s\n%s" % (zoo_run, " ".join(args), out.stdout)
    return out.stdout


def _eval(zoo_run, model_dir):
    _run(zoo_run, "eval", "shufflenetv1_g3", "--model_dir", str(model_dir), "--device", "cpu")
    with open(os.path.join(str(model_dir), "eval_results.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("direction", ["other-to-this", "this-to-other"])
def test_a_model_dir_evaluates_resumes_and_warm_starts_on_the_other_lane(tmp_path, zoo_run, direction):
    run_direction(OTHER_LANE if direction == "other-to-this" else THIS_LANE)
    trainer, follower = (OTHER_ZOO_RUN, zoo_run) if direction == "other-to-this" else (zoo_run, OTHER_ZOO_RUN)
    source = tmp_path / "source"
    train = ["train", "shufflenetv1_g3", "--device", "cpu", "--skip_eval", "--set", "save_checkpoints_steps=2"]
    _run(trainer, *(train + ["--model_dir", str(source), "--max_steps", "2"]))
    made_here = _eval(trainer, source)

    # evaluate: the same checkpoint gives the same metrics on the other lane's kernels
    crossed = _eval(follower, source)
    assert (crossed["global_step"], crossed["num_images"]) == (made_here["global_step"], 360) == (2, 360)
    assert abs(crossed["top1"] - made_here["top1"]) <= 1.0 / 360
    assert abs(crossed["loss"] - made_here["loss"]) < 1e-3

    # resume: the other lane continues the run from its checkpoint, optimizer slots included
    out = _run(follower, *(train + ["--model_dir", str(source), "--max_steps", "4"]))
    assert "Resuming from %s: step 2 of" % os.path.join(str(source), "model.ckpt-2") in out
    assert tf.compat.v1.train.latest_checkpoint(str(source)).endswith("model.ckpt-4")

    # warm start: every backbone weight loads on the other lane; the classifier of another size is skipped
    target = tmp_path / "finetune"
    out = _run(follower, *(train + ["--model_dir", str(target), "--max_steps", "1", "--warm_start_from", str(source),
                                    "--set", "num_classes=12", "--set", "learning_rate=1e-30",
                                    "--set", "warmup_epochs=0"]))
    assert "skipped shufflenet_v1/classifier/kernel: shape [960, 10] in checkpoint, [960, 12] in model" in out
    assert_backbone_warm_started(source, target)
