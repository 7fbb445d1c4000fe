"""The multi-worker watchdog of one worker, run as its own small process (no TensorFlow).

    python -m registry.engine.watchdog CONFIG_JSON      (started by registry.engine.distribute.PeerWatchdog)

Graph-mode collectives never notice a dead peer: a worker whose peer died waits in the next all-reduce forever,
and while a worker waits TensorFlow can block its main thread inside C++ without releasing the GIL (TF 2.x does,
when the MultiWorkerMirroredStrategy is built), so no Python thread of that process could report. This process
watches from outside:

- start-up: unless the worker says "started" (its first step ran) within the start-up timeout, it names the peers
  that do not accept a connection and ends the worker;
- liveness: every PROBE_SECONDS it connects to each peer's port (the gRPC server every worker keeps open for as
  long as it runs). A peer that answered once and then refuses or times out for LOST_SECONDS is lost (one that
  refused stays lost if a restarted process answers on its port meanwhile, see Watch): the
  watchdog says which, where the run's last checkpoint is and the command that resumes it, and ends the worker;
- the worker writes "stopping" when it has no collective left to run (its last step ran, or it was asked to
  stop), and closes the pipe by exiting: either ends the watchdog.

Ending the worker is SIGKILL: it is blocked in a collective, where neither a signal handler nor a checkpoint save
could run (and a save after the peer's last checkpoint would be of weights the peer never got). Nothing is lost:
the rerun resumes from the last checkpoint, which the chief wrote before the peer died. The worker's shell sees
status 137 (-9).

CONFIG_JSON: {"pid", "index", "workers", "startup_timeout", "model_dir", "resume_command"}.
"""
import json
import os
import re
import select
import signal
import socket
import sys
import time

POLL_SECONDS = 0.5
PROBE_SECONDS = 1.0
LOST_SECONDS = 5.0   # a lost peer stops its survivors within about this + a probe
CONNECT_TIMEOUT = 2.0


def _connect(address, timeout=CONNECT_TIMEOUT):
    """'open' when a TCP connection to host:port succeeds, 'refused' when nothing listens there (the host answered
    with a reset), 'silent' otherwise (a timeout, an unreachable host)."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "silent"
    return "open"


def _reachable(address, timeout=CONNECT_TIMEOUT):
    return _connect(address, timeout) == "open"


def unreachable_peers(workers, index, timeout=CONNECT_TIMEOUT):
    """The peers ('worker i (host:port)') among `workers` other than `index` that refuse a TCP connection."""
    return ["worker %d (%s)" % (i, address) for i, address in enumerate(workers)
            if i != index and not _reachable(address, timeout)]


def last_checkpoint(model_dir):
    """The model dir's latest checkpoint as its state file names it (read without TensorFlow), or None."""
    try:
        with open(os.path.join(model_dir, "checkpoint")) as f:
            match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', f.read(), re.M)
    except OSError:
        return None
    if not match:
        return None
    path = match.group(1)
    return path if os.path.isabs(path) else os.path.join(model_dir, path)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


class Watch(object):
    """The watchdog's state: which peers answered, since when the others are silent. A peer whose port refused a
    connection after it had answered has lost its process (a running worker's gRPC server listens until the
    process ends): it stays lost even when its port answers again within LOST_SECONDS, as it does when its host's
    agent (--max_restarts) or a scheduler restarts it at once: the new process is not in this job's collectives
    (it waits in the start-up rendezvous) and this worker would wait for the old one forever."""

    def __init__(self, config, now):
        self.config = config
        self.deadline = now + config["startup_timeout"]
        self.started = False
        self.seen = set()
        self.silent_since = {}
        self.refused = set()
        self.next_probe = now

    def probe(self, now):
        """Probes the peers if due; returns the lost ones' names."""
        if now < self.next_probe:
            return []
        self.next_probe = now + PROBE_SECONDS
        workers, index = self.config["workers"], self.config["index"]
        for i, address in enumerate(workers):
            if i == index:
                continue
            answer = _connect(address)
            if answer == "open" and i not in self.refused:
                self.seen.add(i)
                self.silent_since.pop(i, None)
            elif i in self.seen:
                self.silent_since.setdefault(i, now)
                if answer == "refused":
                    self.refused.add(i)
        return ["worker %d (%s)" % (i, workers[i]) for i, since in sorted(self.silent_since.items())
                if now - since >= LOST_SECONDS]


def _lost_message(config, lost):
    checkpoint = last_checkpoint(config["model_dir"])
    return ("error: worker %d: lost %s: it stopped answering for %.0f s (its process ended or its host is "
            "unreachable), and the collectives of this worker would wait for it forever, so this worker stops too. "
            "The run's last checkpoint is %s. To resume from it, start every worker again: %s\n"
            % (config["index"], " and ".join(lost), LOST_SECONDS,
               checkpoint or "none yet (the rerun starts at step 0)", config["resume_command"]))


def _startup_message(config):
    missing = unreachable_peers(config["workers"], config["index"])
    detail = ("no answer from %s" % ", ".join(missing)) if missing else \
        "every peer's port answers, but the collective start-up did not complete (a peer with another " \
        "TF_CONFIG, or one that crashed?)"
    return ("error: worker %d: training did not start within %.0f s: %s. Start every worker listed in "
            "TF_CONFIG's cluster (same cluster, each its own index), or raise --startup_timeout.\n"
            % (config["index"], config["startup_timeout"], detail))


def watch(config, commands):
    """Runs until the worker stops or exits (0), or ends it with a message (1). `commands`: the file descriptor of
    the worker's lines ("started", "stopping"); its end means the worker exited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's Ctrl-C is for the worker, which stops itself
    pid = config["pid"]
    state = Watch(config, time.time())
    while True:
        if select.select([commands], [], [], POLL_SECONDS)[0]:
            data = os.read(commands, 4096)
            if not data or b"stopping" in data:
                return 0
            if b"started" in data:
                state.started = True
        if os.getppid() != pid:   # the worker has exited
            return 0
        now = time.time()
        lost = state.probe(now)
        if lost:
            message = _lost_message(config, lost)
        elif not state.started and now >= state.deadline:
            message = _startup_message(config)
        else:
            continue
        sys.stderr.write(message)
        sys.stderr.flush()
        _kill(pid)
        return 1


def main(argv):
    return watch(json.loads(argv[0]), sys.stdin.fileno())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
