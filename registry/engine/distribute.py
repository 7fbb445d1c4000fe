"""Data parallel training: MirroredStrategy over one host's devices (`--replicas N`),
MultiWorkerMirroredStrategy over processes/hosts from TF_CONFIG, both in graph mode (v1 strategies).

Each worker is one process running the training loop (registry.engine.trainer) inside TensorFlow's
distribute coordinator in independent-worker mode (the same coordinator tf.estimator used: it starts
the worker's gRPC server and gives the monitored session its target and collective settings);
gradients are all-reduced (collective ring) every step, so every worker holds the same weights. Worker 0
is the chief: it writes the checkpoints, the train log and the evaluations; the others save the same
steps into a scratch dir (saving may run collectives). Every worker restores the same step on resume: from the
model dir on shared storage, or from its own scratch copy with a model dir per host (registry.engine.rendezvous).
TF_CONFIG (JSON) names the cluster and this process:

    {"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}

or a Kubeflow TFJob's chief/worker layout, or Slurm's srun variables (registry.engine.cluster makes each one list
of workers, the chief first).

Failures that TensorFlow itself turns into hangs, aborts or vague errors are checked here instead: this task's
port already in use (checked before the gRPC server starts; when what holds it is another worker's gRPC server,
the error names the TF_CONFIG index given twice), a peer that never comes up and a peer that dies during the
run (graph-mode collectives wait for it forever). The last two are watched by a small process of its own
(registry.engine.watchdog), which names the peer, the last checkpoint and the command that resumes the run, and
ends the worker: no survivor keeps running.
"""
import hashlib
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

from registry import tf_compat
from registry.engine import devices, rendezvous, results
from registry.engine.cluster import make_tf_config
from registry.errors import ZooError

tf1 = tf.compat.v1

DEFAULT_STARTUP_TIMEOUT = 300.0


def _split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _speaks_http2(host, port, timeout=2.0):
    """Whether the server on host:port answers an HTTP/2 connection preface with a SETTINGS frame, as a gRPC
    server (a TensorFlow worker's) does."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            header = connection.recv(9)
    except OSError:
        return False
    return len(header) >= 4 and header[3:4] == b"\x04"


def check_own_port(cluster):
    """Fails fast if this task's port is taken (TF would abort with 'Could not start gRPC server'). When a gRPC
    server holds it, it is almost always a worker started with the same TF_CONFIG index: the error says so."""
    host, port = _split(cluster.workers[cluster.index])
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("" if host not in ("127.0.0.1", "localhost") else host, port))
    except OSError as err:
        local = "127.0.0.1" if host in ("", "0.0.0.0") else host
        if _speaks_http2(local, port) or rendezvous.is_listening(local, port):   # a gRPC server, or a chief's start
            raise ZooError(
                "worker %d cannot listen on %s: a gRPC server already does, most likely another worker started "
                "with the same TF_CONFIG index %d. Each worker of the cluster needs its own index (0..%d, task "
                "\"index\" in TF_CONFIG): give this process the index of a worker that is not running, or stop "
                "the other one" % (cluster.index, cluster.workers[cluster.index], cluster.index,
                                   len(cluster.workers) - 1))
        raise ZooError("worker %d cannot listen on %s (%s): the port is in use. Stop what holds it, or pick other "
                       "ports in TF_CONFIG (zoo-run train --workers N picks free ones)"
                       % (cluster.index, cluster.workers[cluster.index], err.strerror))
    finally:
        probe.close()


class PeerWatchdog(object):
    """The worker's watchdog process (registry.engine.watchdog): ends this worker with a clear message if
    training has not started within `timeout` seconds, or when a peer dies during the run.

    TF 1.15's collective ops wait forever for a peer that never starts or has died, and TF 2.x waits inside C++
    holding the GIL, so the watchdog is a process of its own; this object tells it, through its stdin, when the
    first step has run (`started`) and when no collective is left (`stopping`), and ends it (`close`).
    """

    def __init__(self, cluster, timeout, model_dir, resume_command):
        config = {"pid": os.getpid(), "index": cluster.index, "workers": list(cluster.workers),
                  "startup_timeout": timeout, "model_dir": os.path.abspath(model_dir),
                  "resume_command": resume_command}
        self._command = [sys.executable, "-m", "registry.engine.watchdog", json.dumps(config)]
        self._process = None

    def start(self):
        self._process = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        return self

    def _tell(self, word):
        if self._process is not None and self._process.poll() is None:
            try:
                self._process.stdin.write(word.encode() + b"\n")
                self._process.stdin.flush()
            except OSError:
                pass

    def started(self):
        self._tell("started")

    def stopping(self):
        self._tell("stopping")

    def close(self):
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            try:   # a message still buffered for a watchdog that has exited cannot be delivered, nor is it needed
                self._process.stdin.close()
            except OSError:
                pass


class WatchdogHook(tf1.train.SessionRunHook):
    """Tells the watchdog after the first step that training started, and once the session is asked to stop
    (its last step ran, or a signal asked it to stop) that no collective is left to wait for, so that peers which
    finish first are not taken for lost. Place it after the hooks that ask the session to stop and after the
    checkpoint hook, whose evaluation on every worker all-reduces its sums (a collective)."""

    def __init__(self, watchdog):
        self._watchdog = watchdog
        self._started = False

    def after_run(self, run_context, run_values):
        if not self._started:
            self._watchdog.started()
            self._started = True
        if run_context.stop_requested:
            self._watchdog.stopping()

    def end(self, session):
        self._watchdog.stopping()


class WeightsFingerprintHook(tf1.train.SessionRunHook):
    """At the end of training, writes this worker's global step and a SHA-256 of its trainable weights to
    `<model_dir>/workers/worker-<index>.json`: equal digests show the workers stayed in sync."""

    def __init__(self, model_dir, index):
        self._path = os.path.join(model_dir, "workers", "worker-%d.json" % index)

    def begin(self):
        self._variables = sorted(tf1.trainable_variables(), key=lambda v: v.op.name)
        self._step = tf1.train.get_global_step()

    def end(self, session):
        values, step = session.run([self._variables, self._step])
        digest = hashlib.sha256()
        for value in values:
            digest.update(value.tobytes())
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        results.write_json(os.path.dirname(self._path), os.path.basename(self._path), {
            "global_step": int(step), "weights_sha256": digest.hexdigest(), "num_variables": len(values)})


def scratch_dir(model_dir, index):
    """Where worker `index` (not the chief) writes its own checkpoints."""
    return os.path.join(model_dir, "workers", "worker-%d-checkpoints" % index)


def run_worker(cluster, model_dir, startup_timeout, train, resume_command="the same command on every worker"):
    """Runs `train(strategy, session_config, hooks=...)` as worker `cluster.index` of a MultiWorkerMirroredStrategy
    over TF_CONFIG's workers (ring all-reduce; works on CPU), inside the distribute coordinator; returns its result.

    Fails fast when this worker's port is taken. The watchdog (PeerWatchdog, started before the strategy: TF 2.x's
    coordination service already waits for every peer there) ends the process, naming the peers that do not
    answer, when the first step has not run within `startup_timeout` seconds, and naming the lost peer, the last
    checkpoint and `resume_command` when a peer dies during the run. `train` gets `hooks`, which must run last
    (after the checkpoint hook), and `collectives_done`, to call once this worker has no collective left to run
    (e.g. when it trains nothing, before the chief's own evaluation)."""
    from tensorflow.python.distribute import distribute_coordinator
    check_own_port(cluster)
    watchdog = PeerWatchdog(cluster, startup_timeout, model_dir, resume_command).start()
    hooks = [WatchdogHook(watchdog), WeightsFingerprintHook(model_dir, cluster.index)]
    try:
        # The strategy reads TF_CONFIG itself (TF 2.x): give it the training workers only, whatever the cluster's
        # source (a TFJob's chief/evaluator layout, Slurm's variables) - registry.engine.cluster made them one list.
        os.environ["TF_CONFIG"] = make_tf_config(cluster.workers, cluster.index)
        strategy = tf_compat.multi_worker_strategy()
        return distribute_coordinator.run_distribute_coordinator(
            lambda configured: train(configured, None, hooks=hooks, collectives_done=watchdog.stopping), strategy,
            mode=distribute_coordinator.CoordinatorMode.INDEPENDENT_WORKER,
            cluster_spec={"worker": list(cluster.workers)}, task_type="worker", task_id=cluster.index)
    finally:
        watchdog.close()


def mirrored_strategy(device, replicas):
    """(MirroredStrategy over `replicas` local devices, session config). On cpu the replicas are virtual
    CPU devices sharing the cores: the same synchronous algorithm, for parity checks, not for speed."""
    if device == "gpu":
        available = devices.gpu_count()
        if replicas > available:
            raise ZooError("--replicas %d needs %d GPUs; TensorFlow sees %d" % (replicas, replicas, available))
        return tf_compat.mirrored_strategy(["/gpu:%d" % i for i in range(replicas)]), None
    if device != "cpu":
        raise ZooError("--replicas is for cpu/gpu; on Ascend use RANK_SIZE/RANK_TABLE_FILE")
    config = tf1.ConfigProto(device_count={"CPU": replicas})
    return tf_compat.mirrored_strategy(["/cpu:%d" % i for i in range(replicas)]), config


def exit_worker(code):
    """Ends a finished worker process now: TF 1.15's gRPC server object otherwise raises from its
    __del__ during interpreter shutdown (a harmless but alarming traceback)."""
    from registry.engine import events
    events.close_all()  # flush and close the event files first
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def replicas_with_workers_message(replicas, workers):
    """The refusal of `--replicas` with several workers (`--workers` or a TF_CONFIG cluster): each worker of a
    MultiWorkerMirroredStrategy run trains one replica, and nesting replicas inside workers is not supported."""
    return ("--replicas %d with %d workers is not supported: each worker trains one replica (the global batch is "
            "batch_size x workers). For %d replicas in all, run --workers %d, or --replicas %d in one process"
            % (replicas, workers, replicas * workers, replicas * workers, replicas * workers))
