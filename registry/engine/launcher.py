"""`zoo-run train NAME --workers N`: N local worker processes on 127.0.0.1, one TF_CONFIG each.

The launcher picks N free ports, starts the same `zoo-run train` command N times with its own
TF_CONFIG (worker i of N), shows the chief's output (worker 0) and keeps every other worker's in
`<model_dir>/workers/worker-<i>.log`. If a worker fails, the others are stopped and the failure
is reported with the end of that worker's log; nothing is left running.

Ctrl-C reaches every worker from the terminal (one process group), and a SIGTERM to the launcher is passed on
to them: each stops at a checkpoint (registry.engine.interrupts), the launcher waits for them (at most
STOP_SECONDS, then ends them) and exits with the signal's status. The workers' messages name the launcher's
command line (RESUME_COMMAND_VARIABLE) as the one that resumes the run.
"""
import os
import signal
import socket
import subprocess
import sys
import time

from registry.engine.environment import make_tf_config
from registry.errors import ZooError

POLL_SECONDS = 0.5
STOP_SECONDS = 300.0   # how long stopped workers may take to write their checkpoints
RESUME_COMMAND_VARIABLE = "ZOO_RUN_RESUME_COMMAND"


def free_ports(count, host="127.0.0.1"):
    """`count` distinct ports the OS reports free (held open together so that they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def strip_workers_flag(argv):
    """The command line without `--workers N` / `--workers=N`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def _tail(path, lines=25):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_after_signal(processes, signum):
    """After a stop signal: the workers' time to checkpoint, then whatever still runs is ended."""
    deadline = time.time() + STOP_SECONDS
    while time.time() < deadline and any(p.poll() is None for p in processes):
        time.sleep(POLL_SECONDS)
    return 128 + signum


def launch_local(count, argv, model_dir, log=print, resume_command=None):
    """Runs `zoo-run <argv>` as `count` workers; returns 0 when all succeed (128 + the signal's number when a
    SIGINT or SIGTERM stopped them), raises ZooError otherwise."""
    workers = ["127.0.0.1:%d" % port for port in free_ports(count)]
    log_dir = os.path.join(model_dir, "workers")
    os.makedirs(log_dir, exist_ok=True)
    command = [sys.executable, "-m", "registry.cli"] + strip_workers_flag(argv)
    log("Launching %d workers on %s (logs of workers 1..%d in %s)" % (count, ", ".join(workers), count - 1, log_dir))
    processes, logs, received = [], [], []

    def on_signal(signum, frame):
        if signum == signal.SIGTERM:   # a terminal's SIGINT reaches the workers itself; a SIGTERM is passed on
            for p in processes:
                if p.poll() is None:
                    p.send_signal(signum)
        received.append(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(count):
            env = dict(os.environ, TF_CONFIG=make_tf_config(workers, index))
            if resume_command:
                env[RESUME_COMMAND_VARIABLE] = resume_command
            if index == 0:
                logs.append(None)
                processes.append(subprocess.Popen(command, env=env))
            else:
                logs.append(os.path.join(log_dir, "worker-%d.log" % index))
                with open(logs[-1], "w") as out:
                    processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
        while True:
            if received:
                return _wait_after_signal(processes, received[0])
            codes = [p.poll() for p in processes]
            failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                index = failed[0]
                detail = "" if logs[index] is None else "\n--- end of %s ---\n%s" % (logs[index], _tail(logs[index]))
                raise ZooError("worker %d of %d exited with code %d; the other workers were stopped.%s"
                               % (index, count, codes[index], detail))
            if all(code == 0 for code in codes):
                return 0
            time.sleep(POLL_SECONDS)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
