"""Multi-worker data parallel training (MultiWorkerMirroredStrategy) on 127.0.0.1, and its failure modes."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import tensorflow as tf

from checkpoint_helpers import assert_backbone_warm_started

from registry.engine import environment, launcher
from registry.errors import ZooError


def _train(zoo_run, model_dir, *extra, **env):
    command = [zoo_run, "train", "shufflenetv1_g3", "--device", "cpu", "--model_dir", str(model_dir)] + list(extra)
    start = time.time()
    out = subprocess.run(command, env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=900)
    return out, time.time() - start


def test_tf_config_parsing():
    assert environment.cluster_from_env({}) is None
    one = environment.make_tf_config(["127.0.0.1:1"], 0)
    assert environment.cluster_from_env({"TF_CONFIG": one}) is None  # a single worker trains locally
    two = environment.make_tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1)
    assert environment.cluster_from_env({"TF_CONFIG": two}) == environment.Cluster(["127.0.0.1:1", "127.0.0.1:2"], 1)
    with pytest.raises(ZooError, match="TF_CONFIG is not valid"):
        environment.cluster_from_env({"TF_CONFIG": "{not json"})
    with pytest.raises(ZooError, match="outside the 2 workers"):
        environment.cluster_from_env({"TF_CONFIG": environment.make_tf_config(["a:1", "b:2"], 2)})
    with pytest.raises(ZooError, match="parameter servers .'ps'.: this runner trains with all-reduce"):
        environment.cluster_from_env({"TF_CONFIG": json.dumps(
            {"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker", "index": 0}})})
    assert launcher.strip_workers_flag(["train", "x", "--workers", "2", "--max_steps=3", "--workers=4",
                                        "--max_restarts", "1", "--max_restarts=2"]) == ["train", "x", "--max_steps=3"]
    ports = launcher.free_ports(3)
    assert len(set(ports)) == 3


def test_a_peer_whose_port_refused_stays_lost_when_a_restarted_process_answers_on_it():
    """The watchdog's liveness rule on a real port: a peer that answered, then refused (its process ended), is lost
    LOST_SECONDS later even though a new process listens on its port again by then (a host agent or a scheduler
    restarted it: the old collectives would wait forever); a peer that only times out is forgiven when it answers."""
    from registry.engine import watchdog

    def listen(port=0):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(4)
        return s

    server = listen()
    port = server.getsockname()[1]
    watch = watchdog.Watch({"workers": ["127.0.0.1:1", "127.0.0.1:%d" % port], "index": 0, "startup_timeout": 60},
                           now=0.0)
    assert watch.probe(0.0) == [] and watch.seen == {1}
    server.close()
    assert watch.probe(1.0) == [] and watch.refused == {1}
    server = listen(port)   # the restarted process listens on the same port
    try:
        assert watch.probe(2.0) == []
        assert watch.probe(1.0 + watchdog.LOST_SECONDS) == ["worker 1 (127.0.0.1:%d)" % port]
    finally:
        server.close()
    quiet = watchdog.Watch({"workers": ["127.0.0.1:1", "127.0.0.1:%d" % port], "index": 0, "startup_timeout": 60},
                           now=0.0)
    quiet.seen.add(1)
    quiet.silent_since[1] = 0.0   # silent (a timeout), not refused: an answer clears it
    server = listen(port)
    try:
        assert quiet.probe(0.0) == [] and quiet.silent_since == {}
    finally:
        server.close()


def test_two_local_workers_train_in_sync_and_the_chief_evaluates(tmp_path, zoo_run):
    model_dir = tmp_path / "mw"
    # global batch 128 over 1,437 demo images: 11 steps an epoch, so 0.3 epochs is an eval every 3 steps
    out, _ = _train(zoo_run, model_dir, "--workers", "2", "--max_steps", "6", "--eval_every_epochs", "0.3",
                    "--set", "save_checkpoints_steps=5")
    assert out.returncode == 0, out.stdout + "\n".join(
        open(str(p)).read() for p in (model_dir / "workers").glob("*.log"))
    fingerprints = [json.loads((model_dir / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]
    assert [f["global_step"] for f in fingerprints] == [6, 6]
    assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"]  # all-reduced every step
    assert fingerprints[0]["num_variables"] > 100
    assert tf.compat.v1.train.latest_checkpoint(str(model_dir)).endswith("-6")
    summary = json.loads((model_dir / "run_summary.json").read_text())
    assert (summary["workers"], summary["replicas"], summary["batch_size"], summary["global_batch"]) == (2, 2, 64, 128)
    assert summary["final_step"] == 6
    record = json.loads((model_dir / "eval_results.json").read_text())
    assert record["num_images"] == 360 and record["global_step"] == 6
    # evaluated every 3 steps while training (the chief checkpoints at least that often)
    history = [json.loads(line) for line in (model_dir / "eval_history.jsonl").read_text().splitlines()]
    assert [(r["global_step"], r["num_images"]) for r in history] == [(3, 360), (6, 360)]
    assert summary["eval_top1"] == record["top1"]
    worker_log = (model_dir / "workers" / "worker-1.log").read_text()
    assert "worker 1 of 2 (not chief)" in worker_log and "worker 1 done" in worker_log
    assert "Traceback" not in worker_log and "Traceback" not in out.stdout


def test_workers_warm_start_from_another_run(tmp_path, zoo_run):
    source, target = tmp_path / "source", tmp_path / "finetune"
    out, _ = _train(zoo_run, source, "--max_steps", "1", "--skip_eval")
    assert out.returncode == 0, out.stdout
    # learning rate 1e-30 (the smallest a run takes is > 0): too small to change any float32 weight, so after one
    # step every loaded weight still equals the source's (batch-norm statistics move)
    out, _ = _train(zoo_run, target, "--workers", "2", "--warm_start_from", str(source), "--max_steps", "1",
                    "--skip_eval", "--set", "learning_rate=1e-30", "--set", "warmup_epochs=0", "--set", "num_classes=12")
    assert out.returncode == 0, out.stdout
    assert "skipped shufflenet_v1/classifier/kernel: shape [960, 10] in checkpoint, [960, 12] in model" in out.stdout
    fingerprints = [json.loads((target / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]
    assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"]
    assert_backbone_warm_started(source, target)
    # rerun: the chief holds the model dir's lock; its worker, writing into the same dir, is not refused; it resumes
    out, _ = _train(zoo_run, target, "--workers", "2", "--max_steps", "2", "--skip_eval", "--set",
                    "learning_rate=1e-30", "--set", "warmup_epochs=0", "--set", "num_classes=12")
    assert out.returncode == 0, out.stdout
    assert "Resuming from %s/model.ckpt-1: step 1" % target in out.stdout
    assert not (target / "train.lock").exists()


def test_port_in_use_is_a_clear_error(tmp_path, zoo_run):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        taken = holder.getsockname()[1]
        config = environment.make_tf_config(["127.0.0.1:%d" % taken, "127.0.0.1:%d" % launcher.free_ports(1)[0]], 0)
        out, _ = _train(zoo_run, tmp_path / "busy", "--max_steps", "1", TF_CONFIG=config)
    finally:
        holder.close()
    assert out.returncode == 2
    assert "worker 0 cannot listen on 127.0.0.1:%d" % taken in out.stdout and "the port is in use" in out.stdout


def test_missing_peer_stops_within_the_startup_timeout(tmp_path, zoo_run):
    peers = ["127.0.0.1:%d" % port for port in launcher.free_ports(2)]
    out, seconds = _train(zoo_run, tmp_path / "alone", "--max_steps", "2", "--startup_timeout", "20",
                          TF_CONFIG=environment.make_tf_config(peers, 0))
    # the chief waits for its workers' start-up report before TensorFlow starts (registry.engine.rendezvous)
    assert out.returncode == 2, out.stdout
    assert "training did not start within 20 s: no answer from worker 1 (%s)" % peers[1] in out.stdout
    assert seconds < 150


def test_mirrored_replicas_on_one_host_scale_the_global_batch(tmp_path, zoo_run):
    model_dir = tmp_path / "mirrored"
    out, _ = _train(zoo_run, model_dir, "--replicas", "2", "--max_steps", "4", "--skip_eval", "--set", "batch_size=16")
    assert out.returncode == 0, out.stdout
    assert "global batch 32" in out.stdout
    summary = json.loads((model_dir / "run_summary.json").read_text())
    assert (summary["replicas"], summary["batch_size"], summary["global_batch"], summary["final_step"]) == \
        (2, 16, 32, 4)
    assert tf.compat.v1.train.latest_checkpoint(str(model_dir)).endswith("-4")
    # `zoo-run eval` of the run counts epochs in its global batch: 4 steps of 32 over 1,437 images (44 steps)
    out = subprocess.run([zoo_run, "eval", "shufflenetv1_g3", "--model_dir", str(model_dir)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    record = json.loads((model_dir / "eval_results.json").read_text())
    assert (record["global_step"], record["epoch"], record["num_images"]) == (4, round(4 / 44.0, 4), 360)


def test_two_processes_with_the_same_index_are_told_so(tmp_path, zoo_run):
    """The second process given TF_CONFIG index 0 finds worker 0's port held by the first one's gRPC server: the
    error names the index given twice, not just a port in use."""
    peers = ["127.0.0.1:%d" % port for port in launcher.free_ports(2)]
    config = environment.make_tf_config(peers, 0)
    command = [zoo_run, "train", "shufflenetv1_g3", "--device", "cpu", "--max_steps", "1", "--startup_timeout", "120"]
    first = subprocess.Popen(command + ["--model_dir", str(tmp_path / "first")], env=dict(os.environ, TF_CONFIG=config),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None:   # until its gRPC server listens
            try:
                socket.create_connection(("127.0.0.1", int(peers[0].rsplit(":", 1)[1])), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        assert first.poll() is None, first.communicate()[0]
        out, _ = _train(zoo_run, tmp_path / "second", "--max_steps", "1", TF_CONFIG=config)
    finally:
        first.kill()
        first.wait()
    assert out.returncode == 2, out.stdout
    assert ("worker 0 cannot listen on %s: a gRPC server already does, most likely another worker started with the "
            "same TF_CONFIG index 0. Each worker of the cluster needs its own index (0..1" % peers[0]) in out.stdout
    assert "Traceback" not in out.stdout


def _checkpoint_step(model_dir):
    latest = tf.compat.v1.train.latest_checkpoint(str(model_dir)) if os.path.isdir(str(model_dir)) else None
    return int(latest.rsplit("-", 1)[1]) if latest else -1


def _launched_workers(launcher_pid):
    """{TF_CONFIG index: pid} of the worker processes the launcher `launcher_pid` started."""
    workers = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/environ" % pid, "rb") as f:
                config = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item).get(b"TF_CONFIG")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher_pid and config:
            workers[json.loads(config.decode())["task"]["index"]] = int(pid)
    return workers


def _launch_and_hit(command, model_dir, after_step, target, signum):
    """Starts the launcher `command`; once the model dir has a checkpoint past `after_step`, sends `signum` to
    `target` ("launcher" or a worker's index). Returns (exit status, output, seconds from the signal to the
    launcher's exit)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                               start_new_session=True)
    try:
        deadline = time.time() + 900
        while _checkpoint_step(model_dir) <= after_step:
            assert process.poll() is None and time.time() < deadline, \
                "no checkpoint past step %d within 900 s: %s" % (after_step, process.communicate()[0])
            time.sleep(0.2)
        pid = process.pid if target == "launcher" else _launched_workers(process.pid)[target]
        sent = time.time()
        os.kill(pid, signum)
        out = process.communicate(timeout=900)[0]   # a restart starts every worker again
        return process.returncode, out, time.time() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)   # the launcher's session: its workers and their watchdogs
            process.wait()


def _fingerprints(model_dir):
    return [json.loads((model_dir / "workers" / ("worker-%d.json" % i)).read_text()) for i in (0, 1)]


def test_a_signal_to_any_process_stops_every_worker_at_one_step_and_max_restarts_survives_a_kill(tmp_path, zoo_run):
    """Through the --workers launcher: SIGTERM to worker 1, then SIGINT to the launcher, each stops both workers
    after the same step with a checkpoint, one resume line each and the signal's status; then, with --max_restarts
    1, worker 1 SIGKILLed mid-run is restarted with the chief from the last checkpoint and the run ends at its last
    step with equal weights. (A signal to the chief of a TF_CONFIG job: test_multihost.py.)"""
    model_dir = tmp_path / "stops"
    command = [zoo_run, "train", "shufflenetv1_g3", "--device", "cpu", "--model_dir", str(model_dir), "--workers",
               "2", "--max_steps", "16", "--skip_eval", "--set", "save_checkpoints_steps=2", "--set", "image_size=64",
               "--startup_timeout", "600"]
    resume = " ".join(["zoo-run"] + command[1:])
    stopped_at = 0   # a signal before a worker's handlers are set would end it: after the first checkpoint
    for target, signum, status, name in ((1, signal.SIGTERM, 143, "SIGTERM"),
                                         ("launcher", signal.SIGINT, 130, r"SIGINT \(Ctrl-C\)")):
        code, out, seconds = _launch_and_hit(command, model_dir, stopped_at, target, signum)
        worker_log = (model_dir / "workers" / "worker-1.log").read_text()
        text = out + "\n--- worker-1.log\n" + worker_log
        assert code == status and seconds < 30, (code, seconds, text)
        steps = []
        for index, output in enumerate((out, worker_log)):
            lines = [line for line in output.splitlines() if line.startswith("zoo-run train: stopped by")]
            assert len(lines) == 1, text
            by_peer = {"launcher": "(?: to another process of the job)?", index: ""}.get(target,
                                                                                         " to another process of the job")
            match = re.match(r"zoo-run train: stopped by %s%s at step (\d+)/330 \(epoch [\d.]+\); (wrote checkpoint|"
                             r"the run's last checkpoint is) (\S+)\. Resume with: (.+)$" % (name, by_peer), lines[0])
            assert match and match.group(4) == resume, (lines[0], text)
            steps.append(int(match.group(1)))
            assert match.group(3) == os.path.join(str(model_dir), "model.ckpt-%d" % steps[0]), text
        assert steps[0] == steps[1] == _checkpoint_step(model_dir) > stopped_at, text   # one common checkpoint
        assert [f["global_step"] for f in _fingerprints(model_dir)] == steps
        assert _fingerprints(model_dir)[0]["weights_sha256"] == _fingerprints(model_dir)[1]["weights_sha256"]
        assert ("zoo-run train: the workers stopped on %s; the run's last checkpoint is %s. Resume with: %s"
                % (name.replace("\\", ""), os.path.join(str(model_dir), "model.ckpt-%d" % steps[0]), resume)) in out
        assert "Traceback" not in text
        stopped_at = steps[0]
    code, out, _ = _launch_and_hit(command + ["--max_restarts", "1"], model_dir, stopped_at, 1, signal.SIGKILL)
    text = out + "\n--- worker-1.log\n" + (model_dir / "workers" / "worker-1.log").read_text()
    assert code == 0, text
    restarted = re.search(r"worker 1 of 2 exited with code -9.*\nRestarting every worker from the last checkpoint, "
                          r"(\S+) \(restart 1 of 1\)", out, re.S)
    assert restarted and out.count("Resuming from %s:" % restarted.group(1)) == 1, text
    fingerprints = _fingerprints(model_dir)
    assert [f["global_step"] for f in fingerprints] == [16, 16], text   # resumed, not trained past the last step
    assert fingerprints[0]["weights_sha256"] == fingerprints[1]["weights_sha256"], text
    assert _checkpoint_step(model_dir) == 16
def test_a_stopped_worker_says_where_at_its_checkpoint_and_its_session_close_is_bounded():
    """The stop line is said once the stop's checkpoint is written (the hook's end), before TensorFlow closes the
    session; a close still running `close_seconds` later ends the process with the signal's status, one that ends
    in time does not."""
    from registry.engine import interrupts
    for closes_in_time in (False, True):
        requests = interrupts.StopRequests()
        said, ended = [], []
        hook = requests.announce_hook(lambda signum, by_peer: "stopped by %d, by a peer: %s" % (signum, by_peer),
                                      said.append, close_seconds=0.3, end_process=ended.append)
        hook.end(None)
        assert said == [] and requests.announced is None   # no signal: nothing to say, no bound
        requests.signum, requests.by_peer = signal.SIGTERM, True
        hook.end(None)
        assert said == ["stopped by 15, by a peer: True"] and requests.announced == said[0]
        if closes_in_time:
            requests.session_closed()
        time.sleep(1.0)
        assert ended == ([] if closes_in_time else [143]), (said, ended)
        assert said[1:] == ([] if closes_in_time else
                            ["the session did not close within 0.3 s of the stop's checkpoint: ending this process"])
    with interrupts.StopRequests() as requests:   # leaving the run's handlers ends the bound too
        requests.signum = signal.SIGINT
        ended = []
        requests.announce_hook(lambda *_: "stopped", print, close_seconds=0.3, end_process=ended.append).end(None)
    time.sleep(1.0)
    assert ended == []


def _srun_variables(index, nodes="node[006,011-012]", tasks=3, **extra):
    env = {"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "3", "SLURM_PROCID": str(index), "SLURM_NODEID": str(index),
           "SLURM_NTASKS": str(tasks), "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_STEP_NODELIST": nodes,
           "SLURM_JOB_NODELIST": nodes, "SLURM_STEP_TASKS_PER_NODE": "1(x%d)" % tasks}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def test_slurm_and_kubeflow_layouts_make_the_cluster():
    from registry.engine import cluster
    port = 20000 + (10 * 77 + 3) % 10000
    made = environment.read("cpu", "train", _srun_variables(2))
    assert made.cluster == cluster.Cluster(["node006:%d" % port, "node011:%d" % port, "node012:%d" % port], 2)
    assert "Slurm job 77 step 3: task 2 of 3" in made.notes[0]
    assert cluster.from_slurm(_srun_variables(1), port=3000).workers[1] == "node011:3000"   # --port
    assert cluster.from_slurm(_srun_variables(0, "node1", 1)) is None   # one task trains alone
    assert cluster.from_slurm({"SLURM_JOB_ID": "5", "SLURM_NTASKS": "1"}) is None   # a batch script of one task
    with pytest.raises(ZooError, match=r"batch script of a Slurm job of 2 tasks, not a task started by srun"):
        cluster.from_slurm({"SLURM_JOB_ID": "5", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"})
    with pytest.raises(ZooError, match=r"SLURM_PROCID, SLURM_STEP_NODELIST or SLURM_JOB_NODELIST or SLURM_NODELIST "
                                       r"not set.*srun --ntasks-per-node=1 zoo-run train"):
        cluster.from_slurm(_srun_variables(0, SLURM_PROCID=None, SLURM_STEP_NODELIST=None, SLURM_JOB_NODELIST=None))
    with pytest.raises(ZooError, match="SLURM_JOB_ID .or give --port."):
        cluster.from_slurm(_srun_variables(0, SLURM_JOB_ID=None))
    with pytest.raises(ZooError, match=r"runs 4 tasks on 2 nodes .*one task per node"):
        cluster.from_slurm(_srun_variables(0, "node[1-2]", 4, SLURM_STEP_TASKS_PER_NODE="2(x2)"))
    with pytest.raises(ZooError, match="SLURM_STEP_NODELIST='node\\[1-' is not a hostlist"):
        cluster.from_slurm(_srun_variables(0, "node[1-"))
    assert environment.read("cpu", "eval", _srun_variables(0)).cluster is None   # eval runs alone, with a note
    tf_config = json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})
    assert "Slurm variables ignored: TF_CONFIG is set" in environment.read(
        "cpu", "train", dict(_srun_variables(0), TF_CONFIG=tf_config)).notes[-1]

    layout = {"chief": ["c:1"], "worker": ["w0:1", "w1:1"]}   # TFJob leaves the evaluator out of the cluster
    config = lambda kind, index=0: {"TF_CONFIG": json.dumps({"cluster": layout, "task": {"type": kind, "index": index}})}
    assert environment.cluster_from_env(config("chief")) == cluster.Cluster(["c:1", "w0:1", "w1:1"], 0)
    assert environment.cluster_from_env(config("worker", 1)) == cluster.Cluster(["c:1", "w0:1", "w1:1"], 2)
    evaluator = environment.read("cpu", "train", config("evaluator"))
    assert (evaluator.cluster, evaluator.evaluator) == (None, cluster.EvaluatorTask(["c:1", "w0:1", "w1:1"]))
    with_evaluator = json.dumps({"cluster": dict(layout, evaluator=["e:1"]), "task": {"type": "evaluator"}})
    assert cluster.from_tf_config(with_evaluator) == cluster.EvaluatorTask(["c:1", "w0:1", "w1:1"])
    with pytest.raises(ZooError, match="at most one chief task"):
        cluster.from_tf_config(json.dumps({"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief"}}))
    with pytest.raises(ZooError, match="task types chief/worker/evaluator; got 'master'"):
        cluster.from_tf_config(json.dumps({"cluster": {"master": ["a:1"]}, "task": {"type": "master"}}))
