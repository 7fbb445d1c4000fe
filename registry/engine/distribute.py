"""Data parallel training: MirroredStrategy over one host's devices (`--replicas N`),
MultiWorkerMirroredStrategy over processes/hosts from TF_CONFIG, both in graph mode (v1 strategies).

Each worker is one process running the training loop (registry.engine.trainer) inside TensorFlow's
distribute coordinator in independent-worker mode (the same coordinator tf.estimator used: it starts
the worker's gRPC server and gives the monitored session its target and collective settings);
gradients are all-reduced (collective ring) every step, so every worker holds the same weights. Worker 0
is the chief: it writes the checkpoints, the train log and the evaluations; the others save the same
steps into a scratch dir (saving may run collectives). The model dir must be one directory every worker
reads (shared storage), as resuming restores its checkpoint on every worker. TF_CONFIG (JSON) names the
cluster and this process:

    {"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}

Two failure modes TF 1.15 itself turns into hangs or aborts are checked here instead: this task's
port already in use (checked before the gRPC server starts) and a peer that never comes up (a
watchdog probes the peers if the first step has not run within `startup_timeout` seconds, names
the ones that do not answer, and ends the process).
"""
import hashlib
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

from registry import tf_compat
from registry.engine import devices
from registry.errors import ZooError

tf1 = tf.compat.v1

DEFAULT_STARTUP_TIMEOUT = 300.0


def _split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def check_own_port(cluster):
    """Fails fast if this task's port is taken (TF would abort with 'Could not start gRPC server')."""
    host, port = _split(cluster.workers[cluster.index])
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("" if host not in ("127.0.0.1", "localhost") else host, port))
    except OSError as err:
        raise ZooError("worker %d cannot listen on %s (%s): the port is in use. Stop what holds it, or pick other "
                       "ports in TF_CONFIG (zoo-run train --workers N picks free ones)"
                       % (cluster.index, cluster.workers[cluster.index], err.strerror))
    finally:
        probe.close()


class StartupWatchdog(object):
    """Ends this worker with a clear message if training has not started within `timeout` seconds.

    TF 1.15's collective ops wait forever for a peer that never starts, and TF 2.15 waits inside C++
    holding the GIL, so the watchdog is a small process of its own (`registry.engine.watchdog`) that
    names the peers that do not answer and terminates this one; `cancel()` (after the first step) ends it.
    """

    def __init__(self, cluster, timeout):
        self._command = [sys.executable, "-m", "registry.engine.watchdog", str(os.getpid()), str(timeout),
                         str(cluster.index)] + list(cluster.workers)
        self._process = None

    def start(self):
        self._process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self

    def cancel(self):
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


class FirstStepHook(tf1.train.SessionRunHook):
    """Calls `callback` once, after the first training step (here: cancels the start-up watchdog)."""

    def __init__(self, callback):
        self._callback = callback

    def after_run(self, run_context, run_values):
        if self._callback:
            self._callback()
            self._callback = None


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
        with open(self._path, "w") as f:
            json.dump({"global_step": int(step), "weights_sha256": digest.hexdigest(),
                       "num_variables": len(values)}, f)


def scratch_dir(model_dir, index):
    """Where worker `index` (not the chief) writes its own checkpoints."""
    return os.path.join(model_dir, "workers", "worker-%d-checkpoints" % index)


def run_worker(cluster, model_dir, startup_timeout, train):
    """Runs `train(strategy, session_config, hooks=...)` as worker `cluster.index` of a MultiWorkerMirroredStrategy
    over TF_CONFIG's workers (ring all-reduce; works on CPU), inside the distribute coordinator; returns its result.

    Fails fast when this worker's port is taken; a start-up watchdog ends the process, naming the peers that do
    not answer, when the first step has not run within `startup_timeout` seconds (started before the strategy:
    TF 2.x's coordination service already waits for every peer there)."""
    from tensorflow.python.distribute import distribute_coordinator
    check_own_port(cluster)
    watchdog = StartupWatchdog(cluster, startup_timeout).start()
    hooks = [FirstStepHook(watchdog.cancel), WeightsFingerprintHook(model_dir, cluster.index)]
    try:
        strategy = tf_compat.multi_worker_strategy()
        return distribute_coordinator.run_distribute_coordinator(
            lambda configured: train(configured, None, hooks=hooks), strategy,
            mode=distribute_coordinator.CoordinatorMode.INDEPENDENT_WORKER,
            cluster_spec={"worker": list(cluster.workers)}, task_type="worker", task_id=cluster.index)
    finally:
        watchdog.cancel()


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
    tf1.summary.FileWriterCache.clear()  # flush and close the event files first
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
