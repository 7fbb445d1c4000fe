"""Ctrl-C (SIGINT) and a scheduler's SIGTERM during training: stop at the next step with a checkpoint, say where
in one line, and exit with the shell's status for the signal (130, 143), never with a traceback.

    with interrupts.StopRequests() as requests:      # installs the handlers, restores the previous ones after
        hooks = [requests.hook()]                     # in the session: a signal asks it to stop after this step
        ...                                           # train; then requests.signum says whether one came

Inside the training session the first signal only asks the session to stop: the step running finishes, the
checkpoint hook saves that step at the session's end (a usable checkpoint), and the runner raises Interrupted.
Outside it (building the graph, starting the session) and at a second signal, Interrupted is raised at once: no
step was trained since the last checkpoint, or the user asked twice.

A multi-worker job stops as one: every process must stop after the same step (a worker that stops alone leaves
its peers waiting in the next all-reduce). There `agreed_hook(strategy)` replaces `hook()`: each step all-reduces
a small flag with the signals this process has received, fed by the hook, and every process stops after the
first step whose sum is not zero, as if it had received that signal itself (SIGTERM wins over SIGINT). So a signal
to any one process (the launcher passes its own on) stops the whole job at one common step, within a step or
two, with no channel but the collective the job already runs. A first signal before the session is deferred to
the first step there: raising at once would leave the peers waiting for this process.

Where the run stopped is said as soon as the stop's checkpoint is written (`announce_hook`, placed after the
checkpoint hook), not after TensorFlow has closed the session: a multi-worker session's close waits on its peers and
took from 0.2 to 3 s on a quiet 2-core machine, far longer on a loaded one. A worker's close is also bounded
(`close_seconds`): past it the process ends with the signal's status, its checkpoint already on disk, so that a
scheduler's grace period (often 30 s) is not spent waiting on a peer.
"""
import signal
import threading

import tensorflow as tf

from registry.errors import ZooError

tf1 = tf.compat.v1

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum):
    return {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}.get(signum, "signal %d" % signum)


class Interrupted(ZooError):
    """Training stopped on a signal; `exit_status` is the shell's for it (128 + the signal's number). `described`:
    whether the message already says where the run stopped (the runner adds that to a bare one); `announced`:
    whether it was already printed (StopRequests.announce_hook)."""

    def __init__(self, signum, message=None, announced=False):
        super(Interrupted, self).__init__(message or "stopped by %s" % signal_name(signum))
        self.signum = signum
        self.described = message is not None
        self.announced = announced

    @property
    def exit_status(self):
        return 128 + self.signum


class StopRequests(object):
    """The signal handlers of one training run (a context manager; main thread only)."""

    def __init__(self):
        self.signum = None
        self.by_peer = False   # the signal came to another process of the job (agreed_hook)
        self._received = 0     # signals to this process
        self._in_session = False
        self._agreed = False
        self._previous = {}
        self.announced = None   # the stop's message, once printed by the announce hook
        self._close_deadline = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():   # only the main thread may set handlers
            return self
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._in_session = False
        self.session_closed()
        return False

    def session_closed(self):
        """Call once the training session is closed: ends the bound on its close (announce_hook)."""
        if self._close_deadline is not None:
            self._close_deadline.cancel()
            self._close_deadline = None

    def reinstall(self):
        """Sets this object's handlers again: TF 2.x's multi-worker runtime installs a SIGTERM handler of its own
        (its preemption notifier) when the strategy starts, which would swallow the signal."""
        if self._previous and threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        self._received += 1
        if (self._in_session or self._agreed) and self._received == 1:
            self.signum = self.signum or signum   # already set when a peer's signal stopped the job first
            return
        self.signum = self.signum or signum
        raise Interrupted(signum)

    def hook(self):
        """The session hook: from the session's start, a signal asks it to stop after the running step."""
        return _StopHook(self)

    def agreed_hook(self, strategy):
        """The hook of one process of a multi-worker job (`strategy`: its MultiWorkerMirroredStrategy): a signal to
        any process stops every process after the same step. From now on a first signal is deferred (see above)."""
        self._agreed = True
        return _AgreedStopHook(self, strategy)

    def announce_hook(self, describe, say, close_seconds=None, end_process=None):
        """The hook to place after the checkpoint hook: at the session's end after a signal, `say`s
        `describe(signum, by_peer)` (where the run stopped, how to resume) at once and keeps it in `announced`. With
        `close_seconds`, a session still closing that many seconds later calls `end_process(128 + signum)` (which
        must end the process) unless `session_closed()` came first."""
        return _AnnounceHook(self, describe, say, close_seconds, end_process)


class _StopHook(tf1.train.SessionRunHook):
    def __init__(self, requests):
        self._requests = requests

    def after_create_session(self, session, coord):
        self._requests._in_session = True

    def after_run(self, run_context, run_values):
        if self._requests.signum is not None:
            run_context.request_stop()

    def end(self, session):
        # the session's closing saves (a checkpoint): a second signal now stops without waiting for them
        self._requests._in_session = False


class _AgreedStopHook(_StopHook):
    """Feeds [SIGINT received, SIGTERM received] (float32, shape [2]) to each step, all-reduced (sum) over the job's
    replicas; after a step whose sum is not zero, asks the session to stop and records the signal in `requests`."""

    def __init__(self, requests, strategy):
        super(_AgreedStopHook, self).__init__(requests)
        self._strategy = strategy

    def begin(self):
        self._flags = tf1.placeholder_with_default(tf.zeros([2], tf.float32), [2], name="stop_request")

        def replica_sum():   # identity: a value on the replica's device (a placeholder has none)
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                  tf.identity(self._flags))

        with self._strategy.scope():
            total = self._strategy.extended.call_for_each_replica(replica_sum)
        self._total = self._strategy.experimental_local_results(total)[0]

    def after_create_session(self, session, coord):
        self._requests._in_session = True
        self._requests.reinstall()

    def before_run(self, run_context):
        signum = self._requests.signum
        flags = [float(signum == signal.SIGINT), float(signum == signal.SIGTERM)]
        return tf1.train.SessionRunArgs(self._total, feed_dict={self._flags: flags})

    def after_run(self, run_context, run_values):
        interrupted, terminated = run_values.results
        if interrupted or terminated:
            if self._requests.signum is None:   # a peer's signal: this process stops as if it had received it
                self._requests.signum = signal.SIGTERM if terminated else signal.SIGINT
                self._requests.by_peer = True
            run_context.request_stop()

    def end(self, session):
        # no step is left to carry a deferred signal to the peers: from now on a signal acts as in one process
        super(_AgreedStopHook, self).end(session)
        self._requests._agreed = False


class _AnnounceHook(tf1.train.SessionRunHook):
    def __init__(self, requests, describe, say, close_seconds, end_process):
        self._requests, self._describe, self._say = requests, describe, say
        self._close_seconds, self._end_process = close_seconds, end_process

    def end(self, session):
        requests = self._requests
        if requests.signum is None:
            return
        requests.announced = self._describe(requests.signum, requests.by_peer)
        self._say(requests.announced)
        if self._close_seconds:
            status = 128 + requests.signum

            def overdue():
                self._say("the session did not close within %g s of the stop's checkpoint: ending this process"
                          % self._close_seconds)
                self._end_process(status)

            requests._close_deadline = threading.Timer(self._close_seconds, overdue)
            requests._close_deadline.daemon = True
            requests._close_deadline.start()
