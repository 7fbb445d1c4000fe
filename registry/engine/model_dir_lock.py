"""One training writer per model dir: the lock file `<model_dir>/train.lock`.

A training run's chief takes the lock before it touches the model dir and removes it when it ends; a second
`zoo-run train` into the same dir is refused at once, naming the owner. The file is created with
O_CREAT | O_EXCL (atomic on local disks and on NFS v3+, where `flock` may be a no-op or local to one client) and
holds JSON: host, pid, start time (Unix seconds and UTC text), command and a random token. Its owner refreshes the
file's modification time every HEARTBEAT_SECONDS from a daemon thread (the heartbeat).

A lock left by a run that did not end cleanly (SIGKILL, a crash, a lost machine) is stale, and the next run takes
it over with a note:
- on the same host: its pid no longer runs (or runs a process started after the lock was taken: the pid was reused);
- from another host: its heartbeat is older than the stale bound: STALE_SECONDS, or the environment variable
  ZOO_RUN_LOCK_STALE_SECONDS.
A take-over renames the stale file to a name of its own (atomic: of two runs taking over together one wins), checks
that what it renamed is the stale lock it judged, and then creates its own with O_EXCL as above.

Readers (eval, predict, export) never take the lock.
"""
import errno
import json
import os
import socket
import sys
import threading
import time
import uuid

from registry.errors import ZooError

LOCK_FILE = "train.lock"
STALE_SECONDS = 120.0          # a lock of another host whose heartbeat is older than this is stale
HEARTBEAT_SECONDS = 20.0       # the owner's refresh interval (at most a quarter of the stale bound)
STALE_VARIABLE = "ZOO_RUN_LOCK_STALE_SECONDS"
_WRITING_SECONDS = 5.0         # an empty or cut-off lock file younger than this is still being written


class ModelDirInUseError(ZooError):
    """Another live training run holds the model dir's lock."""


def stale_seconds():
    """The stale bound in seconds: ZOO_RUN_LOCK_STALE_SECONDS if set (a positive number), else STALE_SECONDS."""
    value = os.environ.get(STALE_VARIABLE)
    if not value:
        return STALE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not seconds > 0:
        raise ZooError("%s must be a number of seconds > 0, got %r" % (STALE_VARIABLE, value))
    return seconds


def lock_path(model_dir):
    return os.path.join(model_dir, LOCK_FILE)


def _utc(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _read(path):
    """(owner dict or None, mtime or None); (None, None) when there is no file."""
    try:
        mtime = os.stat(path).st_mtime
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None, None
    try:
        owner = json.loads(text)
    except ValueError:
        owner = None
    return (owner if isinstance(owner, dict) else None), mtime


def _process_start_time(pid):
    """The Unix time pid `pid` started (Linux /proc), or None when unknown."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        return time.time() - uptime + int(fields[19]) / float(ticks)
    except (OSError, ValueError, IndexError):
        return None


def _pid_runs(pid, since):
    """Whether process `pid` of this host runs and is the one that took a lock at `since` (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass   # another user's process: it runs
    started = _process_start_time(pid)
    return started is None or since is None or started <= since + 5.0


def _stale_reason(owner, mtime, now, bound):
    """Why the lock of `owner` (last heartbeat at `mtime`) is stale, or None when its owner is alive."""
    age = now - mtime
    if owner is None:   # empty or cut off: a process that died while writing it, unless that is happening now
        return None if age < _WRITING_SECONDS else "the lock file is empty or cut off and %.0f s old" % age
    if owner.get("host") == socket.gethostname():
        pid = owner.get("pid")
        if isinstance(pid, int) and not _pid_runs(pid, owner.get("started")):
            return "its process %d no longer runs on this host" % pid
        return None
    if age > bound:
        return "its host %s has not refreshed it for %.0f s (more than %s=%g)" % (
            owner.get("host"), age, STALE_VARIABLE, bound)
    return None


def describe(owner):
    """'host H, pid P, since T, command C' of a lock's owner."""
    return "host %s, pid %s, since %s, command: %s" % (
        owner.get("host"), owner.get("pid"), owner.get("started_utc") or "?", owner.get("command") or "?")


class ModelDirLock(object):
    """The lock of one model dir, held by this process. `release()` (or the `with` block's end) removes it."""

    def __init__(self, model_dir, command=None, log=print):
        self.path = lock_path(model_dir)
        self._model_dir = model_dir
        self._command = command or " ".join(sys.argv)
        self._log = log
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = None
        self._created_dir = False
        self._held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self):
        """Takes the lock (taking over a stale one, with a note), or raises ModelDirInUseError naming the owner.
        A model dir that cannot be written is left to the run's own checks (storage): no lock is taken then."""
        if not os.path.isdir(self._model_dir):
            try:
                os.makedirs(self._model_dir)
                self._created_dir = True
            except OSError:
                return self   # the run's start names the problem (registry.engine.storage)
        bound = stale_seconds()
        for _ in range(20):   # each pass either takes the lock, refuses, or saw the file change under it
            try:
                self._create()
                break
            except FileExistsError:
                pass
            except OSError as err:
                if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
                    return self
                raise
            owner, mtime = _read(self.path)
            if mtime is None:
                continue   # its owner just released it
            reason = _stale_reason(owner, mtime, time.time(), bound)
            if reason is None:
                if owner is None:
                    time.sleep(0.5)   # being written now
                    continue
                raise ModelDirInUseError(
                    "the model dir %s is in use by another training run (%s). One run trains a model dir at a time. "
                    "Wait for that run to end or stop it (it resumes later from its last checkpoint), or train into "
                    "another --model_dir. If that run is gone and the lock stayed, it is taken over by itself "
                    "(at once on its own host, after %.0f s without a heartbeat from another host); to take it "
                    "sooner, remove %s" % (self._model_dir, describe(owner), bound, self.path))
            if self._take_over(owner):
                self._log("note: took over the lock %s of a training run that is gone (%s): %s"
                          % (self.path, describe(owner) if owner else "no owner recorded", reason))
        else:
            raise ModelDirInUseError("could not take the lock %s: it kept changing (other runs starting into %s at "
                                     "the same time?). Start one run per model dir" % (self.path, self._model_dir))
        self._thread = threading.Thread(target=self._heartbeat, name="model-dir-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _create(self):
        started = time.time()
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started": started, "started_utc": _utc(started),
                  "command": self._command, "token": self._token}
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._held = True

    def _take_over(self, stale):
        """Moves the stale lock aside; True if it was the one judged stale (else it is put back: someone else
        took over first)."""
        aside = "%s.stale-%s" % (self.path, self._token)
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        owner, _ = _read(aside)
        if owner == stale:
            os.remove(aside)
            return True
        try:   # a live lock taken in between: restore it, unless yet another run has created one since
            os.link(aside, self.path)
        except OSError:
            pass
        os.remove(aside)
        return False

    def owned(self):
        """Whether the lock file is still this process's (not taken over by another run)."""
        owner, _ = _read(self.path)
        return bool(owner) and owner.get("token") == self._token

    def _heartbeat(self):
        interval = min(HEARTBEAT_SECONDS, stale_seconds() / 4.0)
        while not self._stop.wait(interval):
            try:
                if self.owned():
                    os.utime(self.path)
            except OSError:
                pass   # a file system hiccup: the next beat tries again

    def release(self):
        """Stops the heartbeat and removes the lock file if it is still this process's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._held:
            self._held = False
            try:
                if self.owned():
                    os.remove(self.path)
            except OSError:
                pass
        if self._created_dir:   # a run that stopped before writing anything leaves no empty model dir behind
            try:
                os.rmdir(self._model_dir)
            except OSError:
                pass


def check_free(model_dir):
    """Raises ModelDirInUseError if a live training run holds `model_dir`'s lock (without taking it): the
    multi-worker launcher's check before it starts its workers."""
    owner, mtime = _read(lock_path(model_dir))
    if owner is not None and _stale_reason(owner, mtime, time.time(), stale_seconds()) is None:
        raise ModelDirInUseError(
            "the model dir %s is in use by another training run (%s). Wait for it to end or stop it, or train into "
            "another --model_dir; if that run is gone, remove %s" % (model_dir, describe(owner), lock_path(model_dir)))
