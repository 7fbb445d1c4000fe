"""Multi-host data parallel training as hosts really are: two network namespaces joined by a veth pair, one
worker in each, TF_CONFIG naming their own addresses (MultiWorkerMirroredStrategy, ring all-reduce over the
link), the model dir on storage both read. Scenarios per lane: a worker that dies; with --max_restarts, a host
whose processes are killed and started again, which its peer's agent waits for (then a SIGTERM to one host's
process, which stops both at one checkpoint); and the cluster schedulers' layouts (Slurm's srun variables; a Kubeflow
TFJob's chief, worker and evaluator), which train in sync with evaluation on every worker, all in one pair of
hosts."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import tensorflow as tf

import netns
from registry.engine import environment

pytestmark = pytest.mark.skipif(not netns.available()[0], reason=netns.available()[1])
PORT = 23456   # the same port on each host, as a cluster spec usually has it


def _processes_naming(text):
    """The pids of processes whose command line contains `text` (what a test run may have left running)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def _start(hosts, workers, zoo_run, model_dir, outputs, tag, extra=(), indices=None, started=None):
    """Starts worker i of `workers` on hosts[i] for each i of `indices` (default: all), output in
    `<tag>-worker-<i>.out`. Each in a session of its own (a process group: the host's agent, whose child dies
    with it, which os.killpg ends as a node loss does). Appends them to the list `started` when given."""
    processes = [] if started is None else started
    for index in range(len(hosts)) if indices is None else indices:
        with open(str(outputs / ("%s-worker-%d.out" % (tag, index))), "w") as out:
            processes.append(hosts[index].popen(
                [zoo_run, "train", "shufflenetv1_g3", "--device", "cpu", "--model_dir", str(model_dir),
                 "--max_steps", "28", "--skip_eval", "--set", "save_checkpoints_steps=4", "--startup_timeout", "600"]
                + list(extra), env=dict(os.environ, TF_CONFIG=environment.make_tf_config(workers, index)),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    return processes[-(len(hosts) if indices is None else len(indices)):]


def _end_sessions(processes):
    """SIGKILLs the process group of each of `processes` still running (a failed test leaves nothing behind)."""
    for p in processes:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()


def _kill_after_checkpoint(processes, victim, model_dir, step, signum=signal.SIGKILL, group=False, settle=1.0):
    """Sends `signum` to worker `victim` (`group`: to its process group) `settle` seconds after the model dir has a
    checkpoint at `step` or later; returns the time it was sent."""
    deadline = time.time() + 600
    while time.time() < deadline:
        latest = tf.compat.v1.train.latest_checkpoint(str(model_dir))
        if latest and int(latest.rsplit("-", 1)[1]) >= step:
            break
        assert all(p.poll() is None for p in processes), "a worker ended before checkpoint %d" % step
        time.sleep(0.5)
    else:
        raise AssertionError("no checkpoint %d within 600 s" % step)
    time.sleep(settle)   # mid-step, past the checkpoint
    if group:
        os.killpg(processes[victim].pid, signum)
    else:
        processes[victim].send_signal(signum)
    return time.time()


def _wait_all(processes, timeout):
    try:
        return [p.wait(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()


def _stopped_by_sigterm_together(tmp_path, tags, model_dir, codes, seconds):
    """Both hosts' processes stopped after one common step on the SIGTERM sent to the chief: status 143 each, one
    resume line each (the chief's names the checkpoint it wrote) in `<tags[i]>-worker-<i>.out`. Returns that
    checkpoint."""
    outputs = [(tmp_path / ("%s-worker-%d.out" % (tags[i], i))).read_text() for i in (0, 1)]
    text = "\n".join(outputs)
    assert codes == [143, 143] and seconds < 30, (codes, seconds, text)
    steps = []
    for index, out in enumerate(outputs):
        lines = [line for line in out.splitlines() if line.startswith("zoo-run train: stopped by SIGTERM")]
        assert len(lines) == 1, text
        match = re.match(r"zoo-run train: stopped by SIGTERM%s at step (\d+)/330 \(epoch [\d.]+\); (?:wrote checkpoint|"
                         r"the run's last checkpoint is) (\S+)\. Resume with: zoo-run train shufflenetv1_g3 .*\(each "
                         r"worker with its TF_CONFIG\)$" % ("" if index == 0 else " to another process of the job"),
                         lines[0])
        assert match, (lines[0], text)
        steps.append(int(match.group(1)))
        assert match.group(2) == os.path.join(str(model_dir), "model.ckpt-%d" % steps[0]), text
    assert steps[0] == steps[1], text
    assert tf.compat.v1.train.latest_checkpoint(str(model_dir)) == os.path.join(str(model_dir),
                                                                                "model.ckpt-%d" % steps[0])
    fingerprints = [json.loads((model_dir / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]
    assert [f["global_step"] for f in fingerprints] == steps
    assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"], text
    return os.path.join(str(model_dir), "model.ckpt-%d" % steps[0])


def _ends(pid, timeout):
    """Whether process `pid` has ended (gone, or a zombie not yet reaped) within `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except OSError:
            return True
        time.sleep(0.2)
    return False


def _wait_for_text(path, text, processes, timeout):
    """Waits until the file `path` contains `text` (every process of `processes` still running); returns its text."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = path.read_text()
        if text in out:
            return out
        assert all(p.poll() is None for p in processes), out
        time.sleep(0.5)
    raise AssertionError("no %r within %.0f s in %s:\n%s" % (text, timeout, path, path.read_text()))


def test_a_killed_worker_stops_its_peer_with_a_message_and_the_rerun_resumes(tmp_path, zoo_run):
    """1. Worker 1 is SIGKILLed mid-run: the chief stops within a bound, naming the lost peer, the last checkpoint
    and the command to resume, and nothing keeps running.
    2. The rerun resumes from that checkpoint with --max_restarts 1 on both hosts (each host's process is an agent
    running the training as its child). The chief's host is killed mid-run (its process group: agent and child, as
    at a node loss): the survivor's watchdog names the lost peer and its agent restarts the survivor's training,
    which waits for the chief; the test starts the chief's command again at once (as a scheduler would) and both
    resume from the last checkpoint. A SIGTERM to the chief's agent (as a scheduler preempts a host) is passed on
    and stops both hosts after one common step with a checkpoint (143 each).
    3. The next rerun finishes with equal weights at the final step."""
    model_dir = tmp_path / "killed"
    with netns.two_hosts("kil") as hosts:
        started = []
        try:
            workers = ["%s:%d" % (host.address, PORT) for host in hosts]
            resumed_from = []
            processes = _start(hosts, workers, zoo_run, model_dir, tmp_path, "first", started=started)
            # at once past each checkpoint (settle=0): on a quiet machine a step takes 0.2 s, 28 steps leave little room
            killed_at = _kill_after_checkpoint(processes, 1, model_dir, 4, settle=0.0)
            codes = _wait_all([processes[0]], 120)
            stopped_after = time.time() - killed_at
            _wait_all(processes, 10)
            out = (tmp_path / "first-worker-0.out").read_text()
            assert codes == [-signal.SIGKILL] and stopped_after < 60, (stopped_after, out)
            assert "error: worker 0: lost worker 1 (%s)" % workers[1] in out, out
            message = out[out.index("error: worker"):]
            assert "start every worker again: zoo-run train shufflenetv1_g3 --device cpu --model_dir %s" % model_dir \
                in message and "(each worker with its TF_CONFIG)" in message
            last = re.search(r"last checkpoint is (\S+)\. ", message).group(1)
            assert last == tf.compat.v1.train.latest_checkpoint(str(model_dir)) and int(last.rsplit("-", 1)[1]) >= 4
            resumed_from.append(last)
            time.sleep(1.0)
            assert _processes_naming(str(model_dir)) == []   # nothing keeps running: no worker, no watchdog

            restarts = ["--max_restarts", "1"]
            processes = _start(hosts, workers, zoo_run, model_dir, tmp_path, "second", restarts, started=started)
            chief_out, survivor_out = (tmp_path / ("second-worker-%d.out" % i) for i in (0, 1))
            chief_child = int(_wait_for_text(chief_out, "runs as process", processes, 120)
                              .split("runs as process ")[1].split(",")[0])
            killed_at = _kill_after_checkpoint(processes, 0, model_dir, int(resumed_from[0].rsplit("-", 1)[1]) + 1,
                                               group=True, settle=0.0)   # past a checkpoint this run wrote
            last = tf.compat.v1.train.latest_checkpoint(str(model_dir))
            assert _wait_all([processes[0]], 10) == [-signal.SIGKILL]
            assert _ends(chief_child, 10)   # the chief's training died with its agent
            # started again at once, as a fast scheduler does: its rendezvous answers on the chief's port before the
            # survivor's watchdog has given up on the killed chief, which must still count as lost
            again = _start(hosts, workers, zoo_run, model_dir, tmp_path, "second-again", restarts, indices=[0],
                           started=started)[0]
            processes = [again, processes[1]]
            out = _wait_for_text(survivor_out, "Restarting this host's worker", processes, 90)
            restarted_after = time.time() - killed_at
            lost = out.index("error: worker 1: lost worker 0 (%s)" % workers[0])
            assert re.search(r"zoo-run train: this host's worker process exited with code -9 \(SIGKILL\)\n"
                             r"Restarting this host's worker from the last checkpoint, %s: it waits up to 600 s "
                             r".*\(restart 1 of 1\)" % re.escape(last), out[lost:]), out
            resumed_from.append(last)
            signalled_at = _kill_after_checkpoint(processes, 0, model_dir, int(last.rsplit("-", 1)[1]) + 1,
                                                  signal.SIGTERM, settle=0.0)
            codes = _wait_all(processes, 120)
            resumed_from.append(_stopped_by_sigterm_together(tmp_path, ("second-again", "second"), model_dir, codes,
                                                             time.time() - signalled_at))
            assert int(resumed_from[-1].rsplit("-", 1)[1]) < 28, resumed_from
            time.sleep(1.0)
            assert _processes_naming(str(model_dir)) == []
            processes = _start(hosts, workers, zoo_run, model_dir, tmp_path, "fourth", started=started)
            codes = _wait_all(processes, 600)
        finally:
            _end_sessions(started)

    outputs = ["%s-worker-%d.out" % (tag, i) for tag in ("first", "second", "fourth") for i in (0, 1)]
    text = "\n".join("--- %s\n%s" % (name, (tmp_path / name).read_text()) for name in outputs + [
        "second-again-worker-0.out"])
    assert codes == [0, 0], text
    later = [(tmp_path / ("%s-worker-0.out" % tag)).read_text() for tag in ("second", "second-again", "fourth")]
    assert all("Resuming from %s:" % checkpoint in out for checkpoint, out in zip(resumed_from, later)), text
    fingerprints = [json.loads((model_dir / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]
    assert [f["global_step"] for f in fingerprints] == [28, 28]
    assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"], text
    assert json.loads((model_dir / "run_summary.json").read_text())["final_step"] == 28
    print("restart timings: the survivor's agent restarted %.1f s after the chief's host was killed" % restarted_after)


SLURM_NODES = ("node006", "node011")   # the names Slurm would give the two hosts: SLURM_*_NODELIST node[006,011]
SLURM_JOB = 4242


def _uneven_demo_data(directory):
    """The bundled demo data with 359 validation images (the first 359 records): two workers get 180 and 179."""
    from registry.data.demo import demo_data_path
    shutil.copytree(demo_data_path(), str(directory))
    validation = str(directory / "validation-00000-of-00001")
    records = list(tf.compat.v1.io.tf_record_iterator(validation))[:359]
    with tf.io.TFRecordWriter(validation) as writer:
        for record in records:
            writer.write(record)
    return directory


def _slurm_variables(index):
    """What srun sets in task `index` of `srun --ntasks-per-node=1` in a two-node allocation."""
    nodes = "node[006,011]"
    return {"SLURM_JOB_ID": str(SLURM_JOB), "SLURM_JOBID": str(SLURM_JOB), "SLURM_STEP_ID": "0", "SLURM_STEPID": "0",
            "SLURM_PROCID": str(index), "SLURM_NODEID": str(index), "SLURM_LOCALID": "0", "SLURM_NTASKS": "2",
            "SLURM_NPROCS": "2", "SLURM_NNODES": "2", "SLURM_JOB_NUM_NODES": "2", "SLURM_STEP_NUM_NODES": "2",
            "SLURM_STEP_NUM_TASKS": "2", "SLURM_JOB_NODELIST": nodes, "SLURM_NODELIST": nodes,
            "SLURM_STEP_NODELIST": nodes, "SLURM_TASKS_PER_NODE": "1(x2)", "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
            "SLURMD_NODENAME": SLURM_NODES[index]}


def _run_all(started, outputs, timeout=900):
    """Waits for every (name, process) of `started`; returns ({name: code}, the outputs' text)."""
    deadline = time.time() + timeout
    codes = {}
    try:
        for name, process in started:
            codes[name] = process.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        for _, process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    return codes, "\n".join("--- %s\n%s" % (path.name, path.read_text()) for path in outputs)


def _history(directory):
    return {r["global_step"]: r for r in map(json.loads, (directory / "eval_history.jsonl").read_text().splitlines())}


def test_clusters_slurm_and_a_tfjob_with_an_evaluator_and_evaluation_on_every_worker(tmp_path, zoo_run):
    """One pair of hosts named node006 and node011 (hosts files), data whose 359 eval images split 180/179:
    1. Slurm: `srun zoo-run train` as two tasks with srun's variables (no TF_CONFIG) trains to the end with equal
       weights on both nodes; the final evaluation runs on both workers (all-reduced).
    2. A Kubeflow TFJob layout: chief (node006) + worker (node011) train and evaluate on both workers, an evaluator
       task beside them evaluates every checkpoint (kept from retention: keep_checkpoint_max=1) and ends at the last
       one. Its one-process records equal the workers' all-reduced ones: the same top-1/top-5 counts and loss."""
    data = _uneven_demo_data(tmp_path / "data")
    common = ["train", "shufflenetv1_g3", "--device", "cpu", "--preset", "demo", "--data_path", str(data),
              "--startup_timeout", "900"]
    with netns.two_hosts("clu", host_names=SLURM_NODES) as hosts:
        slurm_dir = tmp_path / "slurm"
        started, outputs = [], []
        for index, host in enumerate(hosts):
            outputs.append(tmp_path / ("slurm-task-%d.out" % index))
            with open(str(outputs[-1]), "w") as out:
                env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
                env.update(_slurm_variables(index))
                started.append((index, host.popen([zoo_run] + common + [
                    "--model_dir", str(slurm_dir), "--max_steps", "4", "--eval_every_epochs", "0"],
                    env=env, stdout=out, stderr=subprocess.STDOUT)))
        codes, text = _run_all(started, outputs)
        assert codes == {0: 0, 1: 0}, text
        port = 20000 + (10 * SLURM_JOB) % 10000
        assert "Slurm job %d step 0: task 1 of 2 (multi-worker training over node006:%d, node011:%d)" % (
            SLURM_JOB, port, port) in text, text
        fingerprints = [json.loads((slurm_dir / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]
        assert [f["global_step"] for f in fingerprints] == [4, 4]
        assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"], text
        assert _history(slurm_dir)[4]["num_images"] == 359

        tfjob_dir = tmp_path / "tfjob"
        cluster = {"chief": ["node006:2222"], "worker": ["node011:2222"]}   # as TFJob writes it: no evaluator
        tasks = [("chief", hosts[0]), ("worker", hosts[1]), ("evaluator", hosts[0])]
        started, outputs = [], []
        for kind, host in tasks:
            outputs.append(tmp_path / ("tfjob-%s.out" % kind))
            with open(str(outputs[-1]), "w") as out:
                # 11 steps an epoch at global batch 128: the workers evaluate at steps 2, 4 and 6
                env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": kind, "index": 0}}))
                started.append((kind, host.popen([zoo_run] + common + [
                    "--model_dir", str(tfjob_dir), "--max_steps", "6", "--eval_every_epochs", "0.2",
                    "--set", "save_checkpoints_steps=2", "keep_checkpoint_max=1", "--evaluator_timeout", "600"],
                    env=env, stdout=out, stderr=subprocess.STDOUT)))
        codes, text = _run_all(started, outputs)
    assert codes == {"chief": 0, "worker": 0, "evaluator": 0}, text
    assert "worker 0 of 2 (chief)" in text and "worker 1 of 2 (not chief)" in text, text
    fingerprints = [json.loads((tfjob_dir / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]
    assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"], text
    assert "Evaluator done: the training's last checkpoint (step 6) is evaluated" in text, text
    workers, evaluator = _history(tfjob_dir), _history(tfjob_dir / "evaluator")
    assert sorted(workers) == [2, 4, 6] and sorted(evaluator) == [0, 2, 4, 6], text   # none lost to retention
    assert not list((tfjob_dir / "evaluator" / "checkpoints").iterdir())   # its snapshots are removed
    for step in (2, 4, 6):
        shared, alone = workers[step], evaluator[step]
        assert shared["num_images"] == alone["num_images"] == 359
        for key in ("top1", "top5"):   # counts: exactly equal
            assert round(shared[key] * 359) == round(alone[key] * 359), (step, key, shared, alone)
        assert shared["loss"] == pytest.approx(alone["loss"], rel=1e-5), (step, shared, alone)
        assert alone["checkpoint"] == str(tfjob_dir / ("model.ckpt-%d" % step))
    assert (tfjob_dir / "evaluator" / "eval").is_dir()   # its TensorBoard scalars
