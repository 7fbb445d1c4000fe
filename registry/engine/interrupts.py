"""Ctrl-C (SIGINT) and a scheduler's SIGTERM during training: stop at the next step with a checkpoint, say where
in one line, and exit with the shell's status for the signal (130, 143), never with a traceback.

    with interrupts.StopRequests() as requests:      # installs the handlers, restores the previous ones after
        hooks = [requests.hook()]                     # in the session: a signal asks it to stop after this step
        ...                                           # train; then requests.signum says whether one came

Inside the training session the first signal only asks the session to stop: the step running finishes, the
checkpoint hook saves that step at the session's end (a usable checkpoint), and the runner raises Interrupted.
Outside it (building the graph, starting the session) and at a second signal, Interrupted is raised at once: no
step was trained since the last checkpoint, or the user asked twice.
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
    whether the message already says where the run stopped (the runner adds that to a bare one)."""

    def __init__(self, signum, message=None):
        super(Interrupted, self).__init__(message or "stopped by %s" % signal_name(signum))
        self.signum = signum
        self.described = message is not None

    @property
    def exit_status(self):
        return 128 + self.signum


class StopRequests(object):
    """The signal handlers of one training run (a context manager; main thread only)."""

    def __init__(self):
        self.signum = None
        self._in_session = False
        self._previous = {}

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
        return False

    def _handle(self, signum, frame):
        if self._in_session and self.signum is None:
            self.signum = signum
            return
        self.signum = self.signum or signum
        raise Interrupted(signum)

    def hook(self):
        """The session hook: from the session's start, a signal asks it to stop after the running step."""
        return _StopHook(self)


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
