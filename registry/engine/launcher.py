"""`zoo-run train NAME --workers N`: N local worker processes on 127.0.0.1, one TF_CONFIG each; and the host agent
of `zoo-run train NAME --max_restarts K` under TF_CONFIG or Slurm. One supervising loop (`supervise`) serves both.

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

Host agent (`run_host_agent`): with a multi-worker cluster in the environment (TF_CONFIG or Slurm) and
`--max_restarts K`, each host's `zoo-run train` runs the same command without the flag as its one child (the
environment as is, its output inherited) and passes SIGINT and SIGTERM on to it. A child that fails (any status but
0, 2 and 130/143; a survivor's child ended by its watchdog when a peer was lost shows -9) is started again from the
last checkpoint, up to K times, and the agent says so; the new child waits in the start-up rendezvous
(registry.engine.rendezvous, at most --startup_timeout) until every host's process has started again (a scheduler
restarts a lost host's process), and all resume from the same step. The child is SIGKILLed by the kernel when the
agent dies (a host without its agent has lost its process; a SIGTERM would stop the whole job instead).
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


def _own_group_and_parent_death_signal(death_signal=signal.SIGTERM):
    """A preexec function for a child: a process group of its own (a terminal's Ctrl-C goes to the launcher only,
    which passes it on once) and, on Linux, `death_signal` from the kernel when the launcher dies."""
    def preexec():
        os.setpgid(0, 0)
        try:
            import ctypes
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return preexec


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


def _ended(code):
    """'exited with code 1', 'exited with code -9 (SIGKILL)' (a Popen status: minus the signal that ended it)."""
    if code < 0:
        try:
            return "exited with code %d (%s)" % (code, signal.Signals(-code).name)
        except ValueError:
            pass
    return "exited with code %d" % code


class _LocalJob(object):
    """One start of the `--workers` launcher's `count` local workers, each with a generated TF_CONFIG (new ports
    each time); worker 0's output is shown, the others' go to `<log_dir>/worker-<i>.log`."""

    says_where_it_stopped = False   # the workers' resume lines name the launcher's command: the launcher says it

    def __init__(self, count, command, log_dir, resume_command, append):
        self.workers = ["127.0.0.1:%d" % port for port in free_ports(count)]
        self.processes, self.logs = [], []
        self.log_dir = log_dir
        for index in range(count):
            env = dict(os.environ, TF_CONFIG=make_tf_config(self.workers, index))
            if resume_command:
                env[RESUME_COMMAND_VARIABLE] = resume_command
            if index == 0:
                self.logs.append(None)
                self.processes.append(subprocess.Popen(command, env=env,
                                                       preexec_fn=_own_group_and_parent_death_signal()))
            else:
                self.logs.append(os.path.join(log_dir, "worker-%d.log" % index))
                with open(self.logs[-1], "a" if append else "w") as out:
                    if append:
                        out.write("--- restarted with %s\n" % ", ".join(self.workers))
                    self.processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                           preexec_fn=_own_group_and_parent_death_signal()))

    def started(self):
        count = len(self.processes)
        return "Launching %d workers on %s (logs of workers 1..%d in %s)" % (
            count, ", ".join(self.workers), count - 1, self.log_dir)

    def signal(self, signum):
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signum)

    def failure(self, index, code):
        log = self.logs[index]
        detail = "" if log is None else "\n--- end of %s ---\n%s" % (log, _tail(log))
        return "worker %d of %d %s%s" % (index, len(self.processes), _ended(code), detail)

    others_stopped = "The other workers were stopped"

    def restarting(self, checkpoint):
        return "Restarting every worker from the last checkpoint, %s" % checkpoint


class _HostChild(_LocalJob):
    """This host's one process of a TF_CONFIG or Slurm cluster, run as a child of the host agent (`zoo-run train
    ... --max_restarts K` with a cluster in the environment): the same command without --max_restarts, the
    environment as is (plus the agent's resume command), its output inherited. The child has a process group of its
    own (a signal to the agent's group reaches it once, passed on by the agent) and is SIGKILLed by the kernel when
    the agent dies: a host whose agent is gone has lost its process, as at a node loss, and a SIGTERM there would
    stop every host's process at a checkpoint instead of letting their agents restart them."""

    says_where_it_stopped = True   # the child prints its stop line with the agent's resume command

    def __init__(self, command, resume_command, max_restarts, startup_timeout):
        env = dict(os.environ)
        if resume_command:
            env[RESUME_COMMAND_VARIABLE] = resume_command
        self.logs = [None]
        self.max_restarts, self.startup_timeout = max_restarts, startup_timeout
        self.processes = [subprocess.Popen(command, env=env,
                                           preexec_fn=_own_group_and_parent_death_signal(signal.SIGKILL))]

    def started(self):
        return ("zoo-run train: this host's worker runs as process %d, restarted from the last checkpoint when it "
                "fails (up to %d times)" % (self.processes[0].pid, self.max_restarts))

    def failure(self, index, code):
        return "this host's worker process %s" % _ended(code)

    others_stopped = "It was not restarted"

    def restarting(self, checkpoint):
        return ("Restarting this host's worker from the last checkpoint, %s: it waits up to %.0f s "
                "(--startup_timeout) for every worker of the cluster to start again (a scheduler restarts a lost "
                "host's process), then all resume together" % (checkpoint, self.startup_timeout))


def launch_local(count, argv, model_dir, log=print, resume_command=None, max_restarts=0):
    """Runs `zoo-run <argv>` as `count` workers; returns 0 when all succeed, 128 + the signal's number when a SIGINT
    or SIGTERM (to the launcher or to any worker) stopped them, and raises ZooError when a worker failed and
    `max_restarts` restarts of the whole job from its last checkpoint were used up (or the failure was a clear
    error, status 2)."""
    log_dir = os.path.join(model_dir, "workers")
    os.makedirs(log_dir, exist_ok=True)
    command = [sys.executable, "-m", "registry.cli"] + strip_workers_flag(argv)
    return supervise(lambda restarts: _LocalJob(count, command, log_dir, resume_command, append=restarts > 0),
                     model_dir, log, resume_command, max_restarts)


def run_host_agent(argv, model_dir, startup_timeout, log=print, resume_command=None, max_restarts=0):
    """The host agent of a TF_CONFIG or Slurm cluster: runs `zoo-run <argv>` (without --max_restarts) as this host's
    one child process and, when it fails, starts it again from the last checkpoint, up to `max_restarts` times; the
    child waits in the start-up rendezvous (registry.engine.rendezvous, at most `startup_timeout` s) for every peer
    to come back. Returns and raises as launch_local; a SIGINT or SIGTERM to the agent is passed on to the child."""
    command = [sys.executable, "-m", "registry.cli"] + strip_workers_flag(argv)
    return supervise(lambda restarts: _HostChild(command, resume_command, max_restarts, startup_timeout),
                     model_dir, log, resume_command, max_restarts)


def supervise(start, model_dir, log, resume_command, max_restarts):
    """The one supervising loop of the `--workers` launcher and of the host agent. `start(restarts)` starts a job
    (_LocalJob, _HostChild): its processes, the signal handlers pass SIGINT and SIGTERM on to them; a process that
    stopped on a signal (130, 143) stops the job; one that failed ends the others and, unless it was a clear error
    (status 2) or `max_restarts` restarts are used up, the job starts again from the last checkpoint."""
    resume = resume_command or "the same command"
    received, jobs = [], []
    say = log

    def log(text):   # at once: the children write to the same output
        say(text)
        sys.stdout.flush()

    def on_signal(signum, frame):   # each signal to the launcher reaches each worker once (a second one: at once)
        received.append(signum)
        if jobs:
            jobs[-1].signal(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        restarts = 0
        while True:
            jobs.append(start(restarts))
            job = jobs[-1]
            log(job.started())
            if received:   # a signal while the job was being started
                job.signal(received[0])
            while True:
                codes = [p.poll() for p in job.processes]
                stopped = [code for code in codes if code in STOP_STATUSES]
                if received or stopped:   # every worker stops after the same step: wait for them all
                    _wait(job.processes, STOP_SECONDS)
                    signum = received[0] if received else stopped[0] - 128
                    if not job.says_where_it_stopped:
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
                raise ZooError("%s\n%s%s. The run's last checkpoint is %s. Resume with: %s"
                               % (message, job.others_stopped, "" if not max_restarts else " (%d of %d restarts used)"
                                  % (restarts, max_restarts), last_checkpoint(model_dir) or "none", resume))
            restarts += 1
            log("zoo-run train: %s\n%s (restart %d of %d)"
                % (message, job.restarting(last_checkpoint(model_dir) or "none (step 0)"), restarts, max_restarts))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for job in jobs:
            for p in job.processes:
                if p.poll() is None:
                    p.terminate()
            _wait(job.processes, 20)
