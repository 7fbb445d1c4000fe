"""One writer, many readers of a model dir (issues 27 and 24): the training lock and its take-over, readers beside a
live training whose retention deletes checkpoints, retention lowered on resume, a checkpoint cut short."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from image_helpers import digit_six, jpeg
from modelzoo_shufflenet import models
from registry import hparams as hp
from registry.data.demo import demo_data_path
from registry.engine import checkpoints, model_dir_lock, runner
from registry.engine.model_dir_lock import ModelDirInUseError, ModelDirLock

MODEL = models.SHUFFLENETV1_G3
DEMO = demo_data_path()


def demo_hparams(**overrides):
    return hp.resolve(MODEL, preset="demo", set_args=["%s=%s" % kv for kv in dict(image_size=64, **overrides).items()])


def _quiet(*args, **kwargs):
    pass


def _steps(model_dir):
    return [checkpoints.checkpoint_step(p) for p in checkpoints.complete_checkpoints(str(model_dir))]


# --- the lock -------------------------------------------------------------------------------------------------

def _write_lock(model_dir, **owner):
    record = dict({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                   "started_utc": "2026-12-07 10:00:00 UTC", "command": "zoo-run train x", "token": "t"}, **owner)
    os.makedirs(str(model_dir), exist_ok=True)
    with open(os.path.join(str(model_dir), model_dir_lock.LOCK_FILE), "w") as f:
        json.dump(record, f)


def test_the_lock_refuses_a_live_owner_and_takes_over_a_stale_one(tmp_path, monkeypatch):
    model_dir = str(tmp_path / "run")
    path = os.path.join(model_dir, "train.lock")
    notes = []
    with ModelDirLock(model_dir, "zoo-run train first", notes.append):
        with open(path) as f:
            owner = json.load(f)
        assert (owner["host"], owner["pid"], owner["command"]) == (socket.gethostname(), os.getpid(),
                                                                    "zoo-run train first")
        with pytest.raises(ModelDirInUseError, match=r"the model dir %s is in use by another training run \(host %s, "
                           r"pid %d, since %s, command: zoo-run train first\)\. .*remove %s" % (
                               re.escape(model_dir), re.escape(owner["host"]), os.getpid(),
                               re.escape(owner["started_utc"]), re.escape(path))):
            ModelDirLock(model_dir, "zoo-run train second", notes.append).acquire()
        with pytest.raises(ModelDirInUseError, match="in use by another training run"):
            model_dir_lock.check_free(model_dir)   # the launcher's check
    assert not os.path.exists(model_dir) and notes == []   # released; the dir it made for its lock is removed

    # the owner's pid is gone on this host (a SIGKILLed run): taken over at once, with a note
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write_lock(model_dir, pid=gone.pid, command="zoo-run train killed")
    with ModelDirLock(model_dir, "zoo-run train resumed", notes.append):
        assert "process %d no longer runs on this host" % gone.pid in notes[-1]
        assert "took over the lock %s" % path in notes[-1] and "zoo-run train killed" in notes[-1]

    # another host's lock: refused while its heartbeat is fresh, taken over once it is older than the bound
    monkeypatch.setenv(model_dir_lock.STALE_VARIABLE, "1.5")
    _write_lock(model_dir, host="other-host.example", pid=1)
    with pytest.raises(ModelDirInUseError, match="host other-host.example, pid 1"):
        ModelDirLock(model_dir, "zoo-run train here", notes.append).acquire()
    time.sleep(2.0)
    with ModelDirLock(model_dir, "zoo-run train here", notes.append):
        assert re.search(r"its host other-host.example has not refreshed it for \d+ s \(more than "
                         r"ZOO_RUN_LOCK_STALE_SECONDS=1.5\)", notes[-1]), notes[-1]
        # the owner's heartbeat refreshes the file's time (every bound / 4 here): it never looks stale
        os.utime(path, (time.time() - 100, time.time() - 100))
        time.sleep(1.0)
        assert time.time() - os.stat(path).st_mtime < 1.0
    monkeypatch.setenv(model_dir_lock.STALE_VARIABLE, "soon")
    with pytest.raises(Exception, match="ZOO_RUN_LOCK_STALE_SECONDS must be a number of seconds > 0, got 'soon'"):
        ModelDirLock(model_dir).acquire()


# --- a live training beside a second one and its readers ------------------------------------------------------

def _run(command, timeout=600):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=timeout)


def test_a_live_training_refuses_a_second_and_its_readers_never_lose_their_checkpoint(tmp_path, zoo_run):
    """A training with a checkpoint every 2 steps keeping 1: a second training into its dir is refused naming it;
    eval and predict beside it read a checkpoint that retention deletes under them; SIGKILLed, it resumes at once."""
    model_dir = str(tmp_path / "run")
    command = [zoo_run, "train", "shufflenetv1_g3", "--model_dir", model_dir, "--skip_eval", "--set", "image_size=64",
               "save_checkpoints_steps=2", "keep_checkpoint_max=1", "epochs=100"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and max(_steps(model_dir) or [0]) < 4:
            time.sleep(0.2)
        assert first.poll() is None and max(_steps(model_dir) or [0]) >= 4, "the first training did not start"

        second = _run(command + ["--max_steps", "3"], timeout=300)
        assert second.returncode == 2, second.stdout
        assert re.search(r"zoo-run train: error: the model dir %s is in use by another training run \(host %s, "
                         r"pid %d, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, command: zoo-run train shufflenetv1_g3 "
                         % (re.escape(model_dir), re.escape(socket.gethostname()), first.pid), second.stdout), \
            second.stdout
        assert "Traceback" not in second.stdout and "Resuming" not in second.stdout

        evaluated = _run([zoo_run, "eval", "shufflenetv1_g3", "--model_dir", model_dir, "--set", "image_size=64"])
        assert evaluated.returncode == 0, evaluated.stdout
        step = int(re.search(r"Evaluating %s/model.ckpt-(\d+) \(step (\d+)\)" % re.escape(model_dir),
                             evaluated.stdout).group(1))
        with open(os.path.join(model_dir, "eval_results.json")) as f:
            record = json.load(f)
        assert record["global_step"] == step >= 4 and record["checkpoint"] == "%s/model.ckpt-%d" % (model_dir, step)
        assert record["num_images"] == 360
        image = str(tmp_path / "six.jpg")
        with open(image, "wb") as f:
            f.write(jpeg(digit_six()))
        predicted = _run([zoo_run, "predict", "shufflenetv1_g3", "--model_dir", model_dir, "--json", image])
        assert predicted.returncode == 0, predicted.stdout
        assert re.search(r'"checkpoint": "%s/model.ckpt-\d+"' % re.escape(model_dir), predicted.stdout)
        assert first.poll() is None and max(_steps(model_dir)) > step   # retention went on deleting meanwhile
    finally:
        first.kill()   # SIGKILL: its lock stays behind
        out = first.communicate()[0]
    assert first.returncode == -signal.SIGKILL, out
    assert os.path.exists(os.path.join(model_dir, "train.lock"))
    last = max(_steps(model_dir))
    resumed = _run(command + ["--max_steps", str(last + 1)])
    assert resumed.returncode == 0, resumed.stdout
    assert "note: took over the lock %s/train.lock of a training run that is gone (host %s, pid %d" % (
        model_dir, socket.gethostname(), first.pid) in resumed.stdout
    assert "Resuming from %s/model.ckpt-%d: step %d" % (model_dir, last, last) in resumed.stdout
    assert not os.path.exists(os.path.join(model_dir, "train.lock"))   # released at exit


# --- retention and damaged checkpoints -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def six_steps(tmp_path_factory):
    """6 steps, a checkpoint every 2 keeping 3: model.ckpt-2, -4 and -6."""
    model_dir = str(tmp_path_factory.mktemp("six") / "run")
    runner.train(MODEL, demo_hparams(save_checkpoints_steps=2, keep_checkpoint_max=3), DEMO, model_dir, max_steps=6,
                 skip_eval=True, log=_quiet)
    assert _steps(model_dir) == [2, 4, 6]
    return model_dir


def test_retention_lowered_on_resume_applies_to_the_checkpoints_of_earlier_runs(six_steps, tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(six_steps, model_dir)
    notes = []
    runner.train(MODEL, demo_hparams(save_checkpoints_steps=2, keep_checkpoint_max=2), DEMO, model_dir, max_steps=10,
                 skip_eval=True, log=notes.append)
    assert "note: keep_checkpoint_max is 2: removed 1 older checkpoint of earlier runs (model.ckpt-2), kept " \
           "model.ckpt-4, model.ckpt-6" in notes
    assert _steps(model_dir) == [8, 10]
    state = tf.compat.v1.train.get_checkpoint_state(model_dir)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["model.ckpt-8", "model.ckpt-10"]


def test_a_checkpoint_cut_short_is_named_and_skipped_in_eval_and_resume(six_steps, tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(six_steps, model_dir)
    data = checkpoints.files_of(os.path.join(model_dir, "model.ckpt-6"))[-1]
    assert ".data-00000-of-00001" in data
    size = os.path.getsize(data)
    with open(data, "r+b") as f:   # an interrupted copy
        f.truncate(size // 2)
    notes = []
    record = runner.evaluate(MODEL, demo_hparams(), DEMO, model_dir, log=notes.append)
    assert record["global_step"] == 4 and record["checkpoint"] == os.path.join(model_dir, "model.ckpt-4")
    assert re.search(r"note: checkpoint %s is incomplete or damaged: .*\(model.ckpt-6.data-00000-of-00001 %d bytes, "
                     r"model.ckpt-6.index \d+ bytes\); skipped for the newest intact one"
                     % (re.escape(os.path.join(model_dir, "model.ckpt-6")), size // 2), "\n".join(notes)), notes
    assert "Evaluating %s/model.ckpt-4 (step 4)" % model_dir in notes

    notes = []
    runner.train(MODEL, demo_hparams(save_checkpoints_steps=2, keep_checkpoint_max=3), DEMO, model_dir, max_steps=5,
                 skip_eval=True, log=notes.append)
    text = "\n".join(notes)
    assert re.search(r"note: checkpoint %s is incomplete or damaged: .*model.ckpt-6.data-00000-of-00001 %d bytes.*"
                     r"It is skipped \(its files renamed .*model.ckpt-6.data-00000-of-00001.incomplete.*\); using "
                     r"model.ckpt-4, the newest intact checkpoint"
                     % (re.escape(os.path.join(model_dir, "model.ckpt-6")), size // 2), text), text
    assert "Resuming from %s/model.ckpt-4: step 4" % model_dir in text
    assert _steps(model_dir) == [2, 4, 5]
    assert tf.compat.v1.train.latest_checkpoint(model_dir).endswith("model.ckpt-5")


# --- a model dir per host -------------------------------------------------------------------------------------

def _two_workers(zoo_run, dirs, *extra):
    """Both workers of a TF_CONFIG run on 127.0.0.1, each with its own model dir: ([exit codes], [outputs], s)."""
    from registry.engine import environment, launcher
    peers = ["127.0.0.1:%d" % port for port in launcher.free_ports(2)]
    started = time.time()
    processes = [subprocess.Popen(
        [zoo_run, "train", "shufflenetv1_g3", "--device", "cpu", "--model_dir", str(dirs[i]), "--skip_eval",
         "--startup_timeout", "240", "--set", "image_size=64", "save_checkpoints_steps=1"] + list(extra),
        env=dict(os.environ, TF_CONFIG=environment.make_tf_config(peers, i)), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True) for i in (0, 1)]
    try:
        outs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in processes], outs, time.time() - started


def test_workers_with_a_model_dir_each_resume_their_own_copies_or_are_told_the_steps_differ(tmp_path, zoo_run):
    dirs = [tmp_path / "host0" / "run", tmp_path / "host1" / "run"]
    codes, outs, _ = _two_workers(zoo_run, dirs, "--max_steps", "2")
    assert codes == [0, 0], outs
    assert ("note: this worker's model dir %s is not the chief's (worker 0: host %s, %s): without shared storage it "
            "keeps its own copy of the checkpoints in %s/workers/worker-1-checkpoints and resumes from it"
            % (dirs[1], socket.gethostname(), dirs[0], dirs[1])) in outs[1]
    assert "not the chief's" not in outs[0]

    codes, outs, _ = _two_workers(zoo_run, dirs, "--max_steps", "3")   # each resumes step 2 from its own copy
    assert codes == [0, 0], outs
    assert "Resuming from %s/model.ckpt-2: step 2" % dirs[0] in outs[0]
    assert "worker 1 of 2 (not chief): steps 2 -> 3" in outs[1]
    fingerprints = [json.loads((dirs[i] / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]
    assert [f["global_step"] for f in fingerprints] == [3, 3]
    assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"]

    shutil.rmtree(str(dirs[1]))   # one host's copy lost: the steps differ, every worker is told at once
    codes, outs, seconds = _two_workers(zoo_run, dirs, "--max_steps", "4")
    assert codes == [2, 2] and seconds < 120, outs
    for out in outs:
        assert ("zoo-run train: error: the workers would resume from different steps: worker 0 at step 3 (host %s, "
                "from %s); worker 1 at step 0 (host %s, from %s). Every worker must restore the same checkpoint"
                % (socket.gethostname(), dirs[0], socket.gethostname(), dirs[1])) in out, out
        assert "Traceback" not in out
