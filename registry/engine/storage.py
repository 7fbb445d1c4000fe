"""The model dir's storage: is it writable, is there room for the next checkpoint, and clear errors when it is
not (a full disk, a read-only mount, no permission), without partial files left behind.

A full disk or a read-only model dir otherwise surfaces as an OSError or a TensorFlow op error deep in a save,
and leaves temporary files (`*.tmp`, TF's `model.ckpt-N_temp*` shard directories) beside the checkpoints.
Here each becomes a StorageError naming the directory, the space needed and free, and what to do; the
checkpoints already written stay as they are (TF updates the checkpoint state file only after a save is
complete, so a failed save never replaces the previous checkpoint).

No TensorFlow import: the peer watchdog process and the JSON records use it too.
"""
import errno
import glob
import os
import shutil

from registry.errors import ZooError

MARGIN_BYTES = 1 << 20   # beyond a checkpoint's own size: its index, the state file, the records and events

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS,)
_NO_PERMISSION = (errno.EACCES, errno.EPERM)
# TensorFlow's file system layer words the same OS errors in its op errors' messages.
_TF_WORDS = (("No space left on device", errno.ENOSPC), ("Disk quota exceeded", errno.EDQUOT),
             ("Read-only file system", errno.EROFS), ("Permission denied", errno.EACCES))


class StorageError(ZooError):
    """The model dir cannot take what the run writes: full, read-only or not writable."""


def format_bytes(count):
    """'7.1 MB' style sizes for messages."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return ("%d %s" % (count, unit)) if unit == "bytes" else ("%.1f %s" % (count, unit))
        count /= 1024.0


def free_bytes(directory):
    """Bytes this process may still write under `directory` (its nearest existing ancestor)."""
    while directory and not os.path.isdir(directory):
        directory = os.path.dirname(directory.rstrip("/")) or "."
    return shutil.disk_usage(directory or ".").free


def error_number(err):
    """The errno of an OSError, or of a TensorFlow op error whose message carries an OS error's words; None when
    `err` is not a storage failure."""
    if isinstance(err, OSError) and err.errno in _NO_SPACE + _READ_ONLY + _NO_PERMISSION:
        return err.errno
    text = str(getattr(err, "message", err))
    for words, number in _TF_WORDS:
        if words in text:
            return number
    return None


def storage_error(number, directory, what, needed=None, last_checkpoint=None, advice=None):
    """The StorageError for OS error `number` while writing `what` into `directory`. `advice`: what to do, in
    place of a training run's (free space or another --model_dir, then resume from the last checkpoint)."""
    if last_checkpoint:
        keep = "The last checkpoint, %s, is intact; rerun the same command to resume from it." % last_checkpoint
    else:
        keep = "Then rerun the same command."
    if number in _NO_SPACE:
        need = (" It needs about %s; %s are free." % (format_bytes(needed), format_bytes(free_bytes(directory)))
                if needed else " %s are free." % format_bytes(free_bytes(directory)))
        return StorageError("no space left in %s for %s.%s %s" % (directory, what, need, advice or (
            "Free space on that disk (or lower keep_checkpoint_max, or train into a --model_dir on a larger disk). "
            "%s" % keep)))
    if number in _READ_ONLY:
        return StorageError("cannot write %s: %s is on a read-only file system. %s" % (what, directory, advice or (
            "Remount it read-write, or train into another --model_dir (--warm_start_from %s starts from its "
            "weights). %s" % (directory, keep))))
    return StorageError("cannot write %s: no permission to write in %s. %s" % (what, directory, advice or (
        "Give this user write access to it, or train into another --model_dir. %s" % keep)))


def check_writable(directory, last_checkpoint=None):
    """Raises a StorageError when a file cannot be created in `directory` (read-only mount, no permission, a
    full disk). Permission bits do not stop root; a read-only mount does."""
    probe = os.path.join(directory, ".write-test-%d.tmp" % os.getpid())
    try:
        with open(probe, "w") as f:
            f.write("x")
    except OSError as err:
        number = error_number(err)
        if number is None:
            raise
        raise storage_error(number, directory, "the run's records and checkpoints", last_checkpoint=last_checkpoint)
    finally:
        remove(probe)


def check_space(directory, needed, what, last_checkpoint=None, advice=None):
    """Raises a StorageError before writing `what` when `directory`'s disk has less than `needed` bytes (plus a
    margin) free; `advice` as storage_error's."""
    if free_bytes(directory) < needed + MARGIN_BYTES:
        raise storage_error(errno.ENOSPC, directory, what, needed + MARGIN_BYTES, last_checkpoint, advice)


def remove(path):
    """Removes a file or directory tree if it exists (no error when it does not)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    except OSError:
        pass


def temporary_files(directory):
    """The partial files a write that did not complete leaves in `directory`: the records' `*.tmp`, the checkpoint
    state file's `checkpoint.tmp*` and TF's `*_temp*` shard directories and files of a sharded save."""
    patterns = ("*.tmp", ".*.tmp", "checkpoint.tmp*", "*.ckpt-*_temp*")
    return sorted({path for pattern in patterns for path in glob.glob(os.path.join(directory, pattern))})


def remove_temporary_files(directory):
    """Removes `temporary_files(directory)`; returns their names."""
    found = temporary_files(directory)
    for path in found:
        remove(path)
    return [os.path.basename(path) for path in found]
