"""The training engine on the bundled real data: learning, resume after SIGKILL, warm start, records."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from modelzoo_shufflenet import models
from registry import hparams as hp
from registry.data.demo import demo_data_path
from registry.engine import results, runner, schedule
from registry.errors import ZooError

tf1 = tf.compat.v1
MODEL = models.SHUFFLENETV1_G3
DEMO = demo_data_path()
NUM_EVAL = 360  # the demo's held-out split: not a multiple of the batch


def demo_hparams(**overrides):
    return hp.resolve(MODEL, preset="demo", set_args=["%s=%s" % kv for kv in overrides.items()])


def _quiet(*args, **kwargs):
    pass


def test_demo_preset_learns_the_bundled_digits(tmp_path):
    """A shortened demo schedule (the full `make demo` reaches >= 97%, see README)."""
    params = demo_hparams(epochs=8, eval_every_epochs=4)
    record = runner.train(MODEL, params, DEMO, str(tmp_path), log=_quiet)
    plan = schedule.Plan(params)
    assert record["global_step"] == plan.total_steps == 8 * (1437 // 64)
    assert record["num_images"] == NUM_EVAL
    assert record["top1"] >= 0.85, record
    assert 0.0 <= record["top1"] <= record["top5"] <= 1.0

    latest = results.read_json(str(tmp_path), results.EVAL_RESULTS)
    assert {"top1", "top5", "loss", "num_images", "global_step"} <= set(latest)
    history = results.read_eval_history(str(tmp_path))
    assert [r["global_step"] for r in history] == [4 * 22, 8 * 22]
    assert history[-1] == latest
    assert all(r["num_images"] == NUM_EVAL and "train_images_per_sec" in r for r in history)
    assert results.read_json(str(tmp_path), results.HPARAMS_FILE) == params

    log = results.read_train_log(str(tmp_path))
    assert log[-1]["step"] == plan.total_steps
    for record in log:
        assert record["lr"] == pytest.approx(plan.learning_rate(record["step"] - 1), rel=1e-4)


def test_progress_reports_at_each_evaluation_step_whatever_the_clock(tmp_path):
    """Each evaluation record takes the training speed from the last report: a report is due at each eval step,
    also when training is faster than the report interval (CI saw none before the first evaluation)."""
    import io
    from registry.engine import progress
    stream = io.StringIO()
    hook = progress.ProgressHook(schedule.Plan(demo_hparams(epochs=2)), {}, model_dir=str(tmp_path),
                                 every_secs=1e9, stream=stream, report_steps=[5, 9, 12], last_step=16)
    hook.begin()
    hook.after_create_session(None, None)
    values = {"loss": 1.0, "lr": 0.1, "train_accuracy": 0.5}
    for step in list(range(0, 7)) + [10, 11, 15]:    # 7 -> 10: one run of several steps passes over step 9
        hook.after_run(None, tf1.train.SessionRunValues(dict(values, step=step), None, None))
    hook.end(None)
    log = results.read_train_log(str(tmp_path))
    assert [r["step"] for r in log] == [1, 5, 11, 12, 16]
    assert all(r["images_per_sec"] > 0 for r in log[1:]) and "images_per_sec" not in log[0]
    # a run that stops at --max_steps counts its steps, and its ETA, to that step; the schedule's length in brackets
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("step 1/16 (of 44)  epoch 0.05/2  ") and lines[-1].endswith("ETA 0s")


def test_eval_counts_every_image_once_and_ignores_padding(tmp_path):
    params = demo_hparams(epochs=0.1)
    runner.train(MODEL, params, DEMO, str(tmp_path), log=_quiet)
    records = [runner.evaluate(MODEL, dict(params, batch_size=batch_size), DEMO, str(tmp_path), log=_quiet)
               for batch_size in (64, 7, 360)]
    assert [r["num_images"] for r in records] == [NUM_EVAL] * 3
    # The same images whatever the batching: the padding entries change nothing.
    assert records[1]["top1"] == pytest.approx(records[0]["top1"]) == pytest.approx(records[2]["top1"])
    assert records[1]["loss"] == pytest.approx(records[0]["loss"], rel=1e-4)


def test_resume_after_sigkill_continues_step_and_learning_rate(tmp_path, zoo_run):
    model_dir = str(tmp_path / "run")
    command = [zoo_run, "train", "shufflenetv1_g3", "--model_dir", model_dir,
               "--set", "epochs=3", "--set", "save_checkpoints_steps=10", "--set", "eval_every_epochs=0"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        latest = tf1.train.latest_checkpoint(model_dir) if os.path.isdir(model_dir) else None
        if latest and runner.checkpoint_step(latest) >= 20:
            break
        time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    resume_step = runner.checkpoint_step(tf1.train.latest_checkpoint(model_dir))
    assert 20 <= resume_step < 66

    second = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert second.returncode == 0, second.stdout
    assert "Resuming from %s/model.ckpt-%d: step %d of 66" % (model_dir, resume_step, resume_step) in second.stdout
    assert "Done: step 66/66" in second.stdout

    progress = [line for line in second.stdout.splitlines() if line.startswith("step ")]
    assert progress[0].startswith("step %d/66 " % (resume_step + 1))  # the first step after the restart
    log = results.read_train_log(model_dir)
    assert log[0]["step"] == 1 and log[-1]["step"] == 66
    plan = schedule.Plan(results.read_json(model_dir, results.HPARAMS_FILE))
    for record in log:  # both runs follow one learning-rate curve
        assert record["lr"] == pytest.approx(plan.learning_rate(record["step"] - 1), rel=1e-4)


def _variables(model_dir):
    reader = tf1.train.load_checkpoint(model_dir)
    return {name: reader.get_tensor(name) for name, _ in tf1.train.list_variables(model_dir)}


def test_warm_start_into_other_classes_changes_only_the_classifier(tmp_path):
    source, target = str(tmp_path / "source"), str(tmp_path / "target")
    runner.train(MODEL, demo_hparams(epochs=0.1), DEMO, source, log=_quiet)
    # learning rate 1e-30 (a run's must be > 0), too small to change a float32 weight: whatever differs after one
    # step was not loaded from the source.
    params = demo_hparams(epochs=0.1, num_classes=12, learning_rate=1e-30, warmup_epochs=0.0)
    lines = []
    runner.train(MODEL, params, DEMO, target, warm_start_from=source, log=lines.append)
    text = "\n".join(lines)
    assert "skipping 1\n  skipped shufflenet_v1/classifier/kernel: shape [960, 10] in checkpoint, [960, 12] in model" \
        in text
    before, after = _variables(source), _variables(target)
    assert after["shufflenet_v1/classifier/kernel"].shape == (960, 12)
    trainable = [n for n in after if n.startswith("shufflenet_v1/") and "Momentum" not in n
                 and "moving_" not in n and "classifier" not in n]
    assert len(trainable) > 100
    for name in trainable:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    # A model dir with a checkpoint resumes, and says the warm start is ignored.
    lines = []
    runner.train(MODEL, params, DEMO, target, warm_start_from=source, log=lines.append)
    assert any("resume wins" in line for line in lines)
    # Resuming a model dir with another classifier size is a clear error naming the fix, not a TF traceback.
    with pytest.raises(ZooError, match=r"does not fit the model being trained \(shufflenet_v1/classifier/kernel: shape "
                                       r"\[960, 10\] in checkpoint, \[960, 12\] in model\).*new --model_dir, with "
                                       r"--warm_start_from"):
        runner.train(MODEL, demo_hparams(epochs=0.2, num_classes=12), DEMO, source, log=_quiet)
    # ... and so is evaluating it as another network (TF 2.15 would restore the wrong shape without a word).
    with pytest.raises(ZooError, match=r"does not fit the network being evaluated \(shufflenet_v1/classifier/kernel: "
                                       r"shape \[960, 10\] in checkpoint, \[960, 12\] in model\)"):
        runner.evaluate(MODEL, demo_hparams(num_classes=12), DEMO, source)


def test_seeded_segments_get_their_own_reproducible_streams():
    seeded = demo_hparams()
    assert seeded["seed"] == 0 and runner.stream_hparams(seeded, 0) is seeded
    seeds = [runner.stream_hparams(seeded, step)["seed"] for step in (0, 220, 440, 220)]
    assert len(set(seeds)) == 3 and seeds[1] == seeds[3] and all(0 <= s < 2 ** 31 for s in seeds)
    unseeded = dict(seeded, seed=-1)
    assert runner.stream_hparams(unseeded, 220) is unseeded


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    params = demo_hparams(epochs=1, learning_rate=1e30, warmup_epochs=0.0, save_checkpoints_steps=1)
    with pytest.raises(runner.TrainingDivergedError, match="the loss became NaN or Inf; the step was not applied"):
        runner.train(MODEL, params, DEMO, str(tmp_path), log=_quiet)
    for name, value in _variables(str(tmp_path)).items():
        assert np.all(np.isfinite(value)), name


def test_train_and_eval_commands_write_eval_results(tmp_path, zoo_run):
    model_dir = str(tmp_path)
    out = subprocess.run([zoo_run, "train", "shufflenetv1_g3", "--model_dir", model_dir, "--set", "epochs=0.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    assert "No --data_path: using the bundled demo data" in out.stdout
    assert os.path.exists(os.path.join(model_dir, "labels.txt"))  # the class names, for predict
    os.remove(os.path.join(model_dir, results.EVAL_RESULTS))
    out = subprocess.run([zoo_run, "eval", "shufflenetv1_g3", "--model_dir", model_dir],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    with open(os.path.join(model_dir, results.EVAL_RESULTS)) as f:
        record = json.load(f)
    assert record["num_images"] == NUM_EVAL and record["global_step"] == 4
    out = subprocess.run([zoo_run, "eval", "shufflenetv1_g3", "--model_dir", str(tmp_path / "nope")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 2 and "does not exist" in out.stdout


def test_label_outside_num_classes_is_a_data_error(tmp_path):
    from registry.errors import DataError
    with pytest.raises(DataError) as err:
        runner.train(MODEL, demo_hparams(epochs=0.5, num_classes=5), DEMO, str(tmp_path), log=_quiet)
    message = str(err.value)
    assert "Bad image/class/label:" in message and "is outside 1..5" in message and "Fix:" in message
    assert "[" not in message


@pytest.mark.parametrize("bad, message", [
    (["--set", "lr_schedule=cosin"], "lr_schedule must be one of cosine, linear, constant, got 'cosin'"),
    (["--set", "batch_size=0"], "batch_size must be >= 1, got 0"),
    (["--set", "grouped_conv_impl=fast"], "grouped_conv_impl must be one of auto, split, block_diagonal, native, got 'fast'"),
    (["--set", "image_size=100"], "multiple of 32, got 100x100; set image_size"),
])
def test_bad_hparam_values_are_clear_errors(tmp_path, capsys, bad, message):
    from registry import cli
    code = cli.main(["train", "shufflenetv1_g3", "--synthetic", "--max_steps", "1", "--model_dir", str(tmp_path)] + bad)
    assert code == 2
    assert message in capsys.readouterr().err


class _Linear(object):
    """The smallest network: one dense layer over the flattened pixels."""

    def build_model(self, images, is_training, hparams):
        flat = tf.reshape(images, [images.shape[0], -1])
        kernel = tf1.get_variable("kernel", [flat.shape.as_list()[1], hparams["num_classes"]], images.dtype)
        return tf.matmul(flat, kernel)


@pytest.mark.parametrize("nesterov", [False, True])
def test_nesterov_momentum_is_an_hparam(nesterov):
    from registry.engine.graph import train_step
    hparams = dict(batch_size=2, learning_rate=0.1, epochs=1.0, num_classes=3, image_size=4, num_train_images=2,
                   nesterov=nesterov)
    with tf.Graph().as_default() as graph:
        images, labels = tf.zeros([2, 4, 4, 3]), tf.constant([0, 2])
        tf1.train.get_or_create_global_step()
        train_step(_Linear(), hparams, schedule.Plan(hparams), None, images, labels)
        updates = [op for op in graph.get_operations() if op.type.endswith("ApplyMomentum")]
    assert updates and [op.get_attr("use_nesterov") for op in updates] == [nesterov] * len(updates)
