"""`zoo-run train NAME --workers N`: N local worker processes on 127.0.0.1, one TF_CONFIG each.

The launcher picks N free ports, starts the same `zoo-run train` command N times with its own
TF_CONFIG (worker i of N), shows the chief's output (worker 0) and keeps every other worker's in
`<model_dir>/workers/worker-<i>.log`. If a worker fails, the others are stopped and the failure
is reported with the end of that worker's log and the command that resumes the run; nothing is left running.
With `--max_restarts K` the launcher instead starts the whole job again from the last checkpoint (on new ports),
up to K times, and says so each time; a worker's clear error (exit status 2: bad input that would recur) is
not restarted.

Stops: the workers run in a process group of their own, so that each signal reaches each of them once: a SIGINT
(Ctrl-C) or SIGTERM to the launcher is passed on to every worker. A signal to any one process of the job, the
launcher's passed on or one sent to a worker directly, stops every worker after the same step with a checkpoint
(registry.engine.interrupts, agreed_hook); the launcher waits for them (at most STOP_SECONDS, then ends them),
prints the resume line and exits with the signal's status (130, 143). The workers' messages name the launcher's
command line (RESUME_COMMAND_VARIABLE) as the one that resumes the run. Should the launcher itself die, its
workers get a SIGTERM from the kernel (Linux: PR_SET_PDEATHSIG) and stop at a checkpoint.
"""
import os
import signal
import socket
import subprocess
import sys
import time

from registry.engine.environment import make_tf_config
from registry.engine.watchdog import last_checkpoint
from registry.errors import ZooError

POLL_SECONDS = 0.5
STOP_SECONDS = 300.0   # how long stopped workers may take to write their checkpoints
RESUME_COMMAND_VARIABLE = "ZOO_RUN_RESUME_COMMAND"
STOP_STATUSES = (128 + signal.SIGINT, 128 + signal.SIGTERM)   # a worker stopped by a signal, at a checkpoint
CLEAR_ERROR_STATUS = 2   # zoo-run's status for a clear error (bad input, a port in use): a restart would repeat it
PR_SET_PDEATHSIG = 1     # linux/prctl.h


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


def strip_workers_flag(argv, flags=("--workers", "--max_restarts")):
    """The command line without the launcher's own flags (`--workers N` / `--workers=N`, `--max_restarts K`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        elif not any(arg.startswith(flag + "=") for flag in flags):
            out.append(arg)
    return out


def _tail(path, lines=25):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _own_group_and_parent_death_signal():
    """In a worker before exec: a process group of its own (a terminal's Ctrl-C goes to the launcher only, which
    passes it on once) and, on Linux, a SIGTERM from the kernel when the launcher dies."""
    os.setpgid(0, 0)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _wait(processes, seconds):
    """Waits at most `seconds` for `processes` to end; SIGKILLs what still runs then."""
    deadline = time.time() + seconds
    while time.time() < deadline and any(p.poll() is None for p in processes):
        time.sleep(POLL_SECONDS)
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.wait()


def _stopped_line(signum, model_dir, resume_command):
    name = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}.get(signum, "signal %d" % signum)
    checkpoint = last_checkpoint(model_dir)
    return ("zoo-run train: the workers stopped on %s; the run's last checkpoint is %s. Resume with: %s"
            % (name, checkpoint or "none (the rerun starts at step 0)", resume_command))


class _Job(object):
    """One start of the job's `count` workers (new ports each time)."""

    def __init__(self, count, command, log_dir, resume_command, append):
        self.workers = ["127.0.0.1:%d" % port for port in free_ports(count)]
        self.processes, self.logs = [], []
        for index in range(count):
            env = dict(os.environ, TF_CONFIG=make_tf_config(self.workers, index))
            if resume_command:
                env[RESUME_COMMAND_VARIABLE] = resume_command
            if index == 0:
                self.logs.append(None)
                self.processes.append(subprocess.Popen(command, env=env, preexec_fn=_own_group_and_parent_death_signal))
            else:
                self.logs.append(os.path.join(log_dir, "worker-%d.log" % index))
                with open(self.logs[-1], "a" if append else "w") as out:
                    if append:
                        out.write("--- restarted with %s\n" % ", ".join(self.workers))
                    self.processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                           preexec_fn=_own_group_and_parent_death_signal))

    def signal(self, signum):
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signum)

    def failure(self, index, code):
        log = self.logs[index]
        detail = "" if log is None else "\n--- end of %s ---\n%s" % (log, _tail(log))
        return "worker %d of %d exited with code %d%s" % (index, len(self.processes), code, detail)


def launch_local(count, argv, model_dir, log=print, resume_command=None, max_restarts=0):
    """Runs `zoo-run <argv>` as `count` workers; returns 0 when all succeed, 128 + the signal's number when a SIGINT
    or SIGTERM (to the launcher or to any worker) stopped them, and raises ZooError when a worker failed and
    `max_restarts` restarts of the whole job from its last checkpoint were used up (or the failure was a clear
    error, status 2)."""
    log_dir = os.path.join(model_dir, "workers")
    os.makedirs(log_dir, exist_ok=True)
    command = [sys.executable, "-m", "registry.cli"] + strip_workers_flag(argv)
    resume = resume_command or "the same command"
    received, jobs = [], []

    def on_signal(signum, frame):   # each signal to the launcher reaches each worker once (a second one: at once)
        received.append(signum)
        if jobs:
            jobs[-1].signal(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        restarts = 0
        while True:
            jobs.append(_Job(count, command, log_dir, resume_command, append=restarts > 0))
            job = jobs[-1]
            log("Launching %d workers on %s (logs of workers 1..%d in %s)"
                % (count, ", ".join(job.workers), count - 1, log_dir))
            if received:   # a signal while the job was being started
                job.signal(received[0])
            while True:
                codes = [p.poll() for p in job.processes]
                stopped = [code for code in codes if code in STOP_STATUSES]
                if received or stopped:   # every worker stops after the same step: wait for them all
                    _wait(job.processes, STOP_SECONDS)
                    signum = received[0] if received else stopped[0] - 128
                    log(_stopped_line(signum, model_dir, resume))
                    return 128 + signum
                failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
                if failed:
                    break
                if all(code == 0 for code in codes):
                    return 0
                time.sleep(POLL_SECONDS)
            # a worker died: its peers wait in a collective (no save could run there), so they are ended now
            for p in job.processes:
                if p.poll() is None:
                    p.kill()
            _wait(job.processes, 20)
            message = job.failure(failed[0], codes[failed[0]])
            if received:   # asked to stop meanwhile: no restart
                log(_stopped_line(received[0], model_dir, resume))
                return 128 + received[0]
            if restarts >= max_restarts or codes[failed[0]] == CLEAR_ERROR_STATUS:
                raise ZooError("%s\nThe other workers were stopped%s. The run's last checkpoint is %s. Resume with: %s"
                               % (message, "" if not max_restarts else " (%d of %d restarts used)"
                                  % (restarts, max_restarts), last_checkpoint(model_dir) or "none", resume))
            restarts += 1
            log("zoo-run train: %s\nRestarting every worker from the last checkpoint, %s (restart %d of %d)"
                % (message, last_checkpoint(model_dir) or "none (step 0)", restarts, max_restarts))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for job in jobs:
            for p in job.processes:
                if p.poll() is None:
                    p.terminate()
            _wait(job.processes, 20)
