"""The multi-worker start-up watchdog, run as its own small process (no TensorFlow).

    python -m registry.engine.watchdog PID TIMEOUT INDEX WORKER [WORKER ...]

While a worker waits for its peers, TensorFlow can block its main thread inside C++ without releasing
the GIL (TF 2.15 does, in `Context.ensure_initialized` when the MultiWorkerMirroredStrategy is built),
so no Python thread of that process could ever report. This process sleeps TIMEOUT seconds; unless
the worker ends it first (training started) or has exited, it names the peers that do not accept a
connection, then terminates the worker (SIGTERM, then SIGKILL after 5 s).
"""
import os
import signal
import socket
import sys
import time

POLL_SECONDS = 0.5


def unreachable_peers(workers, index, timeout=2.0):
    """The peers ('worker i (host:port)') among `workers` other than `index` that refuse a TCP connection."""
    missing = []
    for i, address in enumerate(workers):
        if i == index:
            continue
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except OSError:
            missing.append("worker %d (%s)" % (i, address))
    return missing


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def main(argv):
    pid, timeout, index, workers = int(argv[0]), float(argv[1]), int(argv[2]), argv[3:]
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(POLL_SECONDS)
        if os.getppid() != pid:   # the worker has exited
            return 0
    missing = unreachable_peers(workers, index)
    detail = ("no answer from %s" % ", ".join(missing)) if missing else \
        "every peer's port answers, but the collective start-up did not complete (a peer with another " \
        "TF_CONFIG, or one that crashed?)"
    sys.stderr.write("error: worker %d: training did not start within %.0f s: %s. Start every worker listed in "
                     "TF_CONFIG's cluster (same cluster, each its own index), or raise --startup_timeout.\n"
                     % (index, timeout, detail))
    sys.stderr.flush()
    os.kill(pid, signal.SIGTERM)
    for _ in range(10):
        time.sleep(POLL_SECONDS)
        if not _alive(pid):
            return 0
    os.kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
