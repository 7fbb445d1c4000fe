"""A checkpoint held readable for a reader (eval, predict, export) of a model dir that a training run may be writing.

A training run's checkpoint retention (keep_checkpoint_max) deletes its oldest checkpoint at each save, so the one
a reader chose can vanish between its choice and its restore ("The passed save_path is not a valid checkpoint").
`Pinned` hard-links the chosen checkpoint's files into a temporary directory (a copy where links are not possible):
a deleted name no longer matters to the reader, which restores from its own names. When the files are gone before
they are linked, the newest checkpoint is chosen again. A checkpoint that does not read back whole (a data shard
cut short by an interrupted copy: checkpoints.damage) is named and skipped for the newest intact one.
"""
import errno
import os
import shutil
import sys
import tempfile

from registry.engine import checkpoints
from registry.engine.checkpoints import checkpoint_step
from registry.errors import ZooError

ATTEMPTS = 20   # choices of the newest checkpoint in a row that retention may delete under the reader


def _stderr(message):
    print(message, file=sys.stderr)


def _link_or_copy(path, directory):
    target = os.path.join(directory, os.path.basename(path))
    try:
        os.link(path, target)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise
        with open(path, "rb") as source, open(target, "wb") as out:   # open first: a deletion after it is harmless
            shutil.copyfileobj(source, out)
    return target


class Pinned(object):
    """The checkpoint `source` names (a model dir: its newest intact checkpoint; else a prefix or one of its files),
    held readable until `close()`. `path`: the prefix to restore from; `original`: the checkpoint's own prefix;
    `step`: its global step. Notes (a checkpoint deleted or skipped) and the line naming what is read go to `log`
    (default: stderr), and with `what` (e.g. "Evaluating") a line naming the checkpoint and its step. Raises a
    ZooError when there is no checkpoint, or when a checkpoint given by name is damaged.
    """

    def __init__(self, source, log=_stderr, what=None):
        self._directory = tempfile.mkdtemp(prefix="zoo-checkpoint-")
        try:
            if os.path.isdir(source):
                self.original = self._newest_intact(source, log)
            else:
                self.original = self._given(source)
        except BaseException:
            self.close()
            raise
        self.path = os.path.join(self._directory, os.path.basename(self.original))
        self.step = checkpoint_step(self.original)
        if what:
            log("%s %s (step %d)" % (what, self.original, self.step))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pin(self, prefix):
        """Links `prefix`'s files here; False when they vanished first (retention)."""
        for name in os.listdir(self._directory):
            os.remove(os.path.join(self._directory, name))
        files = checkpoints.files_of(prefix)
        if not checkpoints.is_complete(prefix):
            return False
        try:
            for path in files:
                _link_or_copy(path, self._directory)
        except FileNotFoundError:
            return False
        return True

    def _given(self, source):
        from registry.engine.warm_start import resolve_checkpoint
        prefix = resolve_checkpoint(source)
        if not self._pin(prefix):
            raise ZooError("checkpoint %s was deleted while it was being read (retention of a training run?): pass "
                           "a newer one, or the model dir to read its newest checkpoint" % prefix)
        what = checkpoints.damage(os.path.join(self._directory, os.path.basename(prefix)))
        if what:
            raise ZooError("checkpoint %s is incomplete or damaged: %s. Copy it again, or pass another checkpoint "
                           "(or the model dir: its newest intact one is used)" % (prefix, what))
        return prefix

    def _newest_intact(self, directory, log):
        damaged, vanished = set(), 0
        for _ in range(ATTEMPTS):
            newest = checkpoints.latest(directory, repair=False)
            found = [p for p in checkpoints.complete_checkpoints(directory) if p not in damaged]
            if newest and newest not in damaged and newest not in found:
                found.append(newest)
            found.sort(key=checkpoint_step)
            if not found:
                break
            prefix = found[-1]
            if not self._pin(prefix):
                vanished += 1
                continue   # deleted by a training run's retention: the newest again
            what = checkpoints.damage(os.path.join(self._directory, os.path.basename(prefix)))
            if what is None:
                if vanished:
                    log("note: %d checkpoint%s chosen in %s %s deleted by a training run's retention before it "
                        "could be read; read the newest one instead" % (vanished, "s" if vanished > 1 else "",
                                                                        directory, "were" if vanished > 1 else "was"))
                return prefix
            damaged.add(prefix)
            log("note: checkpoint %s is incomplete or damaged: %s; skipped for the newest intact one" % (prefix, what))
        if damaged or vanished:
            raise ZooError("no intact checkpoint could be read in %s (%s)" % (
                directory, "damaged: %s" % ", ".join(sorted(os.path.basename(p) for p in damaged)) if damaged
                else "each one chosen was deleted first, %d times" % vanished))
        raise ZooError("no checkpoint in %s (expected model.ckpt-* files): train first, or pass --checkpoint"
                       % directory)

    def close(self):
        """Removes the temporary links (the checkpoint's own files are untouched)."""
        shutil.rmtree(self._directory, ignore_errors=True)
