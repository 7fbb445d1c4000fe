"""The workers of a TF_CONFIG run agree on where they resume before TensorFlow starts (no TensorFlow here).

Every worker restores its own copy of the run's checkpoint: the chief from the model dir; a worker that is not the
chief from the model dir when it is shared storage, else from its own copy (`<model_dir>/workers/worker-<i>-
checkpoints`, the same steps, the same weights). Workers that would restore different steps never get through
TensorFlow's start-up (the restoring chief skips the initial broadcast the others wait for) and would wait out the
start-up timeout. So before TensorFlow starts, the chief listens on its own TF_CONFIG port (its gRPC server is not
running yet), every other worker connects to it and sends one JSON line (index, host, model dir, resume step, the
directory it resumes from), and the chief answers each with the whole table once every worker has reported:

- every step equal: the run starts; a worker whose model dir is not the chief's (no shared storage, detected by a
  nonce the chief writes into `<model_dir>/workers/chief.json`) is named in a note, with where it resumes from;
- steps that differ: every worker stops at once with one error naming each worker's step, host and directory.

A worker that finds a running gRPC server on the chief's port (a job already training) is told it cannot join it.
Waits are bounded by the start-up timeout, and the error names the workers that did not report.
"""
import json
import os
import socket
import time
import uuid

from registry.errors import ZooError

MAGIC = "zoo-run-rendezvous 1"
RETRY_SECONDS = 0.5
CHIEF_FILE = "chief.json"


class ResumeMismatchError(ZooError):
    """The workers of one run would resume from different steps."""


def _split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _send(connection, record):
    connection.sendall((json.dumps(record) + "\n").encode())


def _read_line(connection, deadline):
    data = b""
    while not data.endswith(b"\n"):
        connection.settimeout(max(0.1, deadline - time.time()))
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def is_listening(host, port, timeout=2.0):
    """Whether a chief's rendezvous answers on host:port (it answers a probe line with its magic)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            _send(connection, {"magic": MAGIC, "probe": True})
            return _read_line(connection, time.time() + timeout).startswith(b'{"magic": "%s"' % MAGIC.encode())
    except OSError:
        return False


def describe(info):
    return "worker %d at step %d (host %s, from %s)" % (info["index"], info["step"], info["host"], info["source"])


def _mismatch(infos):
    table = "; ".join(describe(infos[i]) for i in sorted(infos))
    return ("the workers would resume from different steps: %s. Every worker must restore the same checkpoint: with "
            "a model dir per host (no shared storage), each worker resumes from its own copy, so keep every host's "
            "model dir of this run (or give every worker the same shared --model_dir). To start again instead, give "
            "every worker a new --model_dir" % table)


def _chief(cluster, info, deadline, model_dir):
    host, port = _split(cluster.workers[0])
    nonce = uuid.uuid4().hex
    try:   # what a worker sharing this model dir reads back (a dir that cannot be written fails later, named)
        os.makedirs(os.path.join(model_dir, "workers"), exist_ok=True)
        with open(os.path.join(model_dir, "workers", CHIEF_FILE), "w") as f:
            json.dump({"nonce": nonce, "host": info["host"], "model_dir": info["model_dir"]}, f)
    except OSError:
        pass
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    infos, waiting = {0: info}, {}
    try:
        server.bind(("" if host not in ("127.0.0.1", "localhost") else host, port))
        server.listen(16)
        while len(infos) < len(cluster.workers):
            server.settimeout(max(0.1, deadline - time.time()))
            try:
                connection, _ = server.accept()
            except socket.timeout:
                missing = ["worker %d (%s)" % (i, a) for i, a in enumerate(cluster.workers) if i not in infos]
                raise ZooError("training did not start within %.0f s: no answer from %s (the chief waits for every "
                               "worker before TensorFlow starts). Start every worker listed in TF_CONFIG's cluster "
                               "(same cluster, each its own index), or raise --startup_timeout"
                               % (deadline - info["started"], ", ".join(missing)))
            try:
                record = json.loads(_read_line(connection, time.time() + 10).decode() or "null")
            except (OSError, ValueError):
                connection.close()
                continue
            if not isinstance(record, dict) or record.get("magic") != MAGIC:
                connection.close()
                continue
            if record.get("probe"):
                _send(connection, {"magic": MAGIC, "index": 0})
                connection.close()
                continue
            index = record.get("index")
            if index in waiting:   # a worker that reconnected: its earlier connection is stale
                waiting.pop(index).close()
            infos[index], waiting[index] = record, connection
        steps = set(i["step"] for i in infos.values())
        verdict = {"magic": MAGIC, "workers": [infos[i] for i in sorted(infos)], "nonce": nonce,
                   "error": _mismatch(infos) if len(steps) > 1 else None}
        for connection in waiting.values():
            try:
                _send(connection, verdict)
                _read_line(connection, time.time() + 10)   # the worker closes first (no TIME_WAIT on this port)
            except OSError:
                pass
        return verdict
    finally:
        for connection in waiting.values():
            connection.close()
        server.close()


def _worker(cluster, info, deadline):
    host, port = _split(cluster.workers[0])
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as connection:
                _send(connection, info)
                reply = _read_line(connection, deadline)
                try:
                    verdict = json.loads(reply.decode())
                except ValueError:
                    verdict = None
                if not isinstance(verdict, dict) or verdict.get("magic") != MAGIC:
                    if reply:
                        raise ZooError("worker 0 (%s) is already running a training job (its TensorFlow server "
                                       "answers): a worker cannot join a job that has started. Stop every worker and "
                                       "start them all again" % cluster.workers[0])
                    raise OSError("no answer")
                return verdict
        except (OSError, socket.timeout):
            if time.time() >= deadline:
                raise ZooError("training did not start within %.0f s: no start-up answer from worker 0 (%s), the "
                               "chief. Start every worker listed in TF_CONFIG's cluster (same cluster, each its own "
                               "index), or raise --startup_timeout" % (deadline - info["started"], cluster.workers[0]))
            time.sleep(RETRY_SECONDS)


def agree(cluster, model_dir, step, source, timeout, log=print):
    """Checks, before TensorFlow starts, that every worker of `cluster` resumes from the same step; this worker's
    `step` comes from the directory `source`. Returns the verdict ({"workers": [info...], ...}). Raises
    ResumeMismatchError naming every worker's step, host and directory when they differ, and a ZooError naming
    the workers that did not report within `timeout` seconds. Notes a worker whose model dir is not the chief's."""
    started = time.time()
    info = {"magic": MAGIC, "index": cluster.index, "host": socket.gethostname(), "step": int(step),
            "model_dir": os.path.abspath(model_dir), "source": os.path.abspath(source), "started": started}
    if cluster.index == 0:
        verdict = _chief(cluster, info, started + timeout, model_dir)
    else:
        verdict = _worker(cluster, info, started + timeout)
    if verdict["error"]:
        raise ResumeMismatchError(verdict["error"])
    if cluster.index:
        try:
            with open(os.path.join(model_dir, "workers", CHIEF_FILE)) as f:
                shared = json.load(f).get("nonce") == verdict["nonce"]
        except (OSError, ValueError):
            shared = False
        if not shared:
            log("note: this worker's model dir %s is not the chief's (worker 0: host %s, %s): without shared storage "
                "it keeps its own copy of the checkpoints in %s and resumes from it; keep this dir to resume the run"
                % (info["model_dir"], verdict["workers"][0]["host"], verdict["workers"][0]["model_dir"],
                   os.path.join(info["model_dir"], "workers", "worker-%d-checkpoints" % cluster.index)))
    return verdict
