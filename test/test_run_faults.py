"""Run-loop faults on one host (issue 18): evaluations beside checkpoint retention, Ctrl-C and SIGTERM, a full or
read-only disk, files cut off by a crash, another batch size on resume, TensorBoard's tags and size. The
multi-host faults (a dead peer) are in test_multihost.py, the duplicate TF_CONFIG index in test_distribute.py."""
import contextlib
import glob
import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
import tensorflow as tf

from modelzoo_shufflenet import models
from registry import hparams as hp
from registry.data.demo import demo_data_path
from registry.engine import checkpoints, results, runner, schedule, storage

tf1 = tf.compat.v1
MODEL = models.SHUFFLENETV1_G3
DEMO = demo_data_path()
FAST = {"image_size": 64}   # the demo digits at 64x64: the same network and checkpoint size, fast steps


def demo_hparams(**overrides):
    return hp.resolve(MODEL, preset="demo", set_args=["%s=%s" % kv for kv in dict(FAST, **overrides).items()])


def _quiet(*args, **kwargs):
    pass


def _leftovers(model_dir):
    """Temporary files of an incomplete write anywhere under the model dir."""
    return [p for p in glob.glob(os.path.join(str(model_dir), "**", "*"), recursive=True)
            if p.endswith(".tmp") or "_temp" in os.path.basename(p) or ".tmp" in os.path.basename(p)]


def _digest(prefix):
    digest = hashlib.sha256()
    for path in sorted(checkpoints.files_of(prefix)):
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


# --- evaluation beside retention; TensorBoard -------------------------------------------------------------------

@pytest.fixture(scope="module")
def frequent_run(tmp_path_factory):
    """8 steps, a checkpoint every step keeping only 1, an evaluation every 2 steps (22 steps an epoch)."""
    model_dir = str(tmp_path_factory.mktemp("frequent"))
    params = demo_hparams(save_checkpoints_steps=1, keep_checkpoint_max=1)
    record = runner.train(MODEL, params, DEMO, model_dir, eval_every_epochs=2 / 22.0, max_steps=8, log=_quiet)
    return model_dir, record


def test_every_evaluation_is_recorded_when_retention_keeps_one_checkpoint(frequent_run):
    model_dir, record = frequent_run
    history = results.read_eval_history(model_dir)
    assert [r["global_step"] for r in history] == [2, 4, 6, 8]
    assert all(r["num_images"] == 360 and r["checkpoint"].endswith("model.ckpt-%d" % r["global_step"])
               for r in history)
    assert record == history[-1] and record["global_step"] == 8
    assert [os.path.basename(p) for p in checkpoints.complete_checkpoints(model_dir)] == ["model.ckpt-8"]
    assert results.read_json(model_dir, results.RUN_SUMMARY)["eval_top1"] == record["top1"]


def _events(directory):
    """({tag: [steps]}, kinds of events other than scalars, total bytes) of the events files in `directory`."""
    tags, kinds, size = {}, set(), 0
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        size += os.path.getsize(path)
        for event in tf1.train.summary_iterator(path):
            kind = event.WhichOneof("what")
            if kind == "summary":
                for value in event.summary.value:
                    tags.setdefault(value.tag, []).append(event.step)
            elif kind != "file_version":
                kinds.add(kind)
    return tags, kinds, size


def test_tensorboard_has_plain_tags_and_small_events(frequent_run):
    model_dir, _ = frequent_run
    train, kinds, size = _events(model_dir)
    assert sorted(train) == ["images_per_sec", "learning_rate", "loss", "top1"]
    assert train["loss"] == train["learning_rate"] == train["top1"] == [1, 8]   # the first step and the last
    assert kinds == set() and size < 4096, (kinds, size)   # no graph, no meta graph: a few hundred bytes
    evaluated, kinds, size = _events(os.path.join(model_dir, "eval"))
    assert sorted(evaluated) == ["images_per_sec", "loss", "top1", "top5"]
    assert evaluated["top1"] == [2, 4, 6, 8] and kinds == set() and size < 4096
    assert not glob.glob(os.path.join(model_dir, "graph.pbtxt"))


# --- Ctrl-C and SIGTERM ----------------------------------------------------------------------------------------

def _stop_with(signum, command, model_dir, after_step):
    """Runs `command`, sends `signum` once the model dir has a checkpoint at `after_step` or later; returns the
    process's (exit status, output)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            latest = checkpoints.latest(model_dir, repair=False) if os.path.isdir(model_dir) else None
            if checkpoints.checkpoint_step(latest) >= after_step:
                break
            time.sleep(0.2)
        process.send_signal(signum)
        out = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out


@pytest.mark.parametrize("signum, status, name", [(signal.SIGINT, 130, "SIGINT (Ctrl-C)"),
                                                  (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_stops_at_a_checkpoint_with_one_line_and_its_status(tmp_path, zoo_run, signum, status, name):
    model_dir = str(tmp_path / "run")
    command = [zoo_run, "train", "shufflenetv1_g3", "--model_dir", model_dir, "--skip_eval", "--set", "epochs=3",
               "--set", "save_checkpoints_steps=4", "--set", "image_size=64"]
    code, out = _stop_with(signum, command, model_dir, 4)
    assert code == status, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    lines = [line for line in out.splitlines() if "stopped by" in line]
    assert len(lines) == 1, out
    match = re.match(r"zoo-run train: stopped by %s at step (\d+)/66 \(epoch ([\d.]+)\); wrote checkpoint (\S+)\. "
                     r"Resume with: (.+)$" % re.escape(name), lines[0])
    assert match, lines[0]
    step, checkpoint = int(match.group(1)), match.group(3)
    assert step >= 4 and float(match.group(2)) == round(step / 22.0, 2)
    assert checkpoint == os.path.join(model_dir, "model.ckpt-%d" % step) == tf1.train.latest_checkpoint(model_dir)
    assert tf1.train.load_checkpoint(checkpoint).get_tensor("global_step") == step   # usable: complete, restorable
    assert match.group(4) == " ".join(["zoo-run"] + command[1:])
    resumed = subprocess.run(command + ["--max_steps", str(step + 1)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    assert resumed.returncode == 0 and "Resuming from %s: step %d of 66" % (checkpoint, step) in resumed.stdout


# --- a full or read-only disk ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _mounted(*mount_arguments, target):
    if os.geteuid() != 0:
        pytest.skip("mounting a small or read-only file system needs root (as CI runs)")
    os.makedirs(target, exist_ok=True)
    done = subprocess.run(["mount"] + list(mount_arguments) + [target], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    if done.returncode != 0:
        pytest.skip("cannot mount here: %s" % done.stdout.strip())
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_read_only_model_dir_is_a_clear_error_and_its_checkpoint_stays(tmp_path):
    model_dir = str(tmp_path / "run")
    params = demo_hparams(save_checkpoints_steps=2)
    runner.train(MODEL, params, DEMO, model_dir, max_steps=2, skip_eval=True, log=_quiet)
    before = _digest(os.path.join(model_dir, "model.ckpt-2"))
    with _mounted("--bind", model_dir, target=model_dir):
        done = subprocess.run(["mount", "-o", "remount,bind,ro", model_dir], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        if done.returncode != 0:
            pytest.skip("cannot remount read-only here")
        with pytest.raises(storage.StorageError) as err:
            runner.train(MODEL, params, DEMO, model_dir, max_steps=4, skip_eval=True, log=_quiet)
    assert str(err.value).startswith("cannot write the run's records and checkpoints: %s is on a read-only file "
                                     "system. Remount it read-write, or train into another --model_dir" % model_dir)
    assert "The last checkpoint, %s/model.ckpt-2, is intact" % model_dir in str(err.value)
    assert _digest(os.path.join(model_dir, "model.ckpt-2")) == before
    assert tf1.train.latest_checkpoint(model_dir).endswith("model.ckpt-2") and _leftovers(model_dir) == []


@pytest.mark.parametrize("checked", [True, False], ids=["space checked first", "the save itself fails"])
def test_a_full_disk_is_a_clear_error_naming_the_space_needed(tmp_path, monkeypatch, checked):
    """A 12 MB file system holds the first checkpoint (step 0's, 7.1 MB), not a second: the run stops before writing it,
    or, without that check, when the save fails; either way the error names the directory and the space needed,
    no partial file stays, and the first checkpoint is the latest and intact."""
    if not checked:
        monkeypatch.setattr(storage, "check_space", lambda *args, **kwargs: None)
    with _mounted("-t", "tmpfs", "-o", "size=12m", "tmpfs", target=str(tmp_path / "small")) as small:
        model_dir = os.path.join(small, "run")
        with pytest.raises(storage.StorageError) as err:
            runner.train(MODEL, demo_hparams(save_checkpoints_steps=1), DEMO, model_dir, max_steps=3,
                         skip_eval=True, log=_quiet)
        message = str(err.value)
        match = re.match(r"no space left in %s for checkpoint model\.ckpt-1\. It needs about ([\d.]+) MB; ([\d.]+) MB "
                         r"are free\. Free space on that disk" % re.escape(model_dir), message)
        assert match, message
        assert 7.0 < float(match.group(1)) < 9.5 and float(match.group(2)) < 5.0
        assert "The last checkpoint, %s/model.ckpt-0, is intact; rerun the same command" % model_dir in message
        assert _leftovers(model_dir) == [] and not glob.glob(os.path.join(model_dir, "model.ckpt-1*"))
        latest = tf1.train.latest_checkpoint(model_dir)
        assert latest.endswith("model.ckpt-0") and tf1.train.load_checkpoint(latest).get_tensor("global_step") == 0


# --- a crash at any instant ------------------------------------------------------------------------------------

def _cut(path, keep):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:keep])


def test_files_a_crash_cut_off_are_repaired_rebuilt_or_named(tmp_path, capsys):
    model_dir = str(tmp_path / "run")
    params = demo_hparams(save_checkpoints_steps=2)
    runner.train(MODEL, params, DEMO, model_dir, eval_every_epochs=2 / 22.0, max_steps=4, log=_quiet)
    log_lines = len(results.read_train_log(model_dir))
    # What a process killed mid-write leaves (or a machine that lost power on a file system without ordered
    # writes): a record cut off mid-line, JSON files empty or cut short, a state file cut short, partial files.
    for name in (results.TRAIN_LOG, results.EVAL_HISTORY):
        with open(os.path.join(model_dir, name), "a") as f:
            f.write('{"step": 5, "epo')
    _cut(os.path.join(model_dir, "checkpoint"), 20)
    _cut(os.path.join(model_dir, results.HPARAMS_FILE), 0)
    for name in (results.EVAL_RESULTS, results.RUN_SUMMARY, "schedule.json"):
        _cut(os.path.join(model_dir, name), 30)
    os.makedirs(os.path.join(model_dir, "model.ckpt-5_temp_0a1b", "part-00000-of-00001.data-00000-of-00001"))
    for name in ("checkpoint.tmp4f2e", results.HPARAMS_FILE + ".tmp"):
        open(os.path.join(model_dir, name), "w").close()

    # Read back as they are: a clear error naming the file and how it is rebuilt, never a JSONDecodeError.
    with pytest.raises(results.UnreadableRecordError,
                       match=r"%s cannot be read \(invalid JSON: .*\): a process probably stopped while writing it\. "
                             r"Fix: rerun the `zoo-run train` command of this model dir" % re.escape(
                                 os.path.join(model_dir, results.RUN_SUMMARY))):
        results.read_json(model_dir, results.RUN_SUMMARY)
    assert [r["global_step"] for r in results.read_eval_history(model_dir)] == [2, 4]   # the cut line skipped

    # The next run repairs and rebuilds them, and resumes from the last checkpoint (TF alone would start at 0).
    capsys.readouterr()
    record = runner.train(MODEL, params, DEMO, model_dir, eval_every_epochs=2 / 22.0, max_steps=6)
    out = capsys.readouterr().out
    assert "note: %s cannot be parsed; rebuilt it from the checkpoints on disk (latest model.ckpt-4)" \
        % os.path.join(model_dir, "checkpoint") in out
    assert "Resuming from %s/model.ckpt-4: step 4 of 660 (epoch 0.18)" % model_dir in out
    assert "note: %s ended in an incomplete record (16 bytes; a run stopped while writing it): removed" \
        % os.path.join(model_dir, results.TRAIN_LOG) in out
    assert "removed the partial files a stopped run left in %s: checkpoint.tmp4f2e, hparams.json.tmp, " \
           "model.ckpt-5_temp_0a1b" % model_dir in out
    assert "note: %s cannot be read (empty file): a process probably stopped while writing it; it is rebuilt" \
        % os.path.join(model_dir, results.HPARAMS_FILE) in out
    assert record["global_step"] == 6 and _leftovers(model_dir) == []
    with open(os.path.join(model_dir, results.TRAIN_LOG)) as f:
        lines = f.read().splitlines()
    assert len(lines) > log_lines and all(json.loads(line)["step"] for line in lines)
    assert [r["global_step"] for r in results.read_eval_history(model_dir)] == [2, 4, 6]
    assert results.read_json(model_dir, results.HPARAMS_FILE) == params
    summary = results.read_json(model_dir, results.RUN_SUMMARY)
    assert (summary["start_step"], summary["final_step"]) == (4, 6)
    assert results.read_json(model_dir, results.EVAL_RESULTS)["global_step"] == 6
    assert results.read_json(model_dir, "schedule.json")["segments"][0]["steps_per_epoch"] == 22


# --- another batch size on resume ------------------------------------------------------------------------------

def test_resume_with_another_batch_size_continues_the_schedule_and_the_epochs(tmp_path, capsys):
    """One epoch at batch 64 (22 steps), then the rest of 2 epochs at batch 32 (44 steps of 32 images): no second
    warm-up, the epoch counts on from 1.00, and the run ends when 2 epochs of images are trained."""
    model_dir = str(tmp_path / "run")
    first = demo_hparams(epochs=2)
    runner.train(MODEL, first, DEMO, model_dir, max_steps=22, skip_eval=True, log=_quiet)
    before = results.read_train_log(model_dir)
    assert (before[-1]["step"], before[-1]["epoch"]) == (22, 1.0)
    assert before[-1]["lr"] == pytest.approx(0.02)   # the warm-up's end (1 epoch): the peak at batch 64

    capsys.readouterr()
    runner.train(MODEL, demo_hparams(epochs=2, batch_size=32), DEMO, model_dir, skip_eval=True)
    out = capsys.readouterr().out
    assert "the global batch changed (64 -> 32, 44 steps an epoch): the run continues at epoch 1.00" in out
    assert "Resuming from %s/model.ckpt-22: step 22 of 66 (epoch 1.00)" % model_dir in out
    after = results.read_train_log(model_dir)[len(before):]
    assert after[0]["step"] == 23 and after[0]["epoch"] == round(1 + 1 / 44.0, 4)
    # the cosine decay from its start, at the new global batch's peak (0.02 x 32 / 64), not a new warm-up
    assert after[0]["lr"] == pytest.approx(0.01, rel=1e-6)
    plan = schedule.Plan(demo_hparams(epochs=2, batch_size=32), origin=(22, 1.0))
    for record in after:
        assert record["lr"] == pytest.approx(plan.learning_rate(record["step"] - 1), rel=1e-4)
        assert record["epoch"] == round(1 + (record["step"] - 22) / 44.0, 4)
    assert (after[-1]["step"], after[-1]["epoch"]) == (66, 2.0)
    assert "Done: step 66/66 (epoch 2.00)" in out
    images = 22 * 64 + 44 * 32
    assert images == 2 * 22 * 64   # what was trained is the 2 epochs reported
    summary = results.read_json(model_dir, results.RUN_SUMMARY)
    assert (summary["start_epoch"], summary["final_epoch"], summary["global_batch"]) == (1.0, 2.0, 32)
    assert results.read_json(model_dir, "schedule.json")["segments"] == [
        {"step": 0, "epoch": 0.0, "global_batch": 64, "steps_per_epoch": 22},
        {"step": 22, "epoch": 1.0, "global_batch": 32, "steps_per_epoch": 44}]
    # an evaluation afterwards records the epoch the run reached
    assert runner.evaluate(MODEL, demo_hparams(epochs=2, batch_size=32), DEMO, model_dir, log=_quiet)["epoch"] == 2.0
