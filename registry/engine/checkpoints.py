"""Checkpoints of a training run: when they are written, how the latest is found, and what is told after each.

A checkpoint is complete once its index and every data shard are in place (a sharded save writes them under a
temporary name and renames them); the `checkpoint` state file is written after that. `latest` trusts the state
file when it names a complete checkpoint; when the file is missing, empty, cut off or names files that are gone
(a process or machine that died at the wrong instant, files removed by hand), it finds the newest complete
checkpoint on disk and rewrites the state file, with a note, rather than start again from step 0 as TensorFlow's
own `latest_checkpoint` then silently does.
"""
import glob
import os
import re

import tensorflow as tf

from registry.engine import storage

tf1 = tf.compat.v1

CHECKPOINT_NAME = "model.ckpt"   # model.ckpt-<global step>.{index,data-*,meta}, as Estimator named them
STATE_FILE = "checkpoint"
_INDEX = re.compile(r"^%s-(\d+)\.index$" % re.escape(CHECKPOINT_NAME))


def checkpoint_step(checkpoint):
    """The global step of a checkpoint prefix such as 'dir/model.ckpt-1200' (0 for None)."""
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def make_saver(keep_checkpoint_max):
    """The Saver of training runs: sharded, paths relative to the model dir (it can be moved), keeping the newest
    `keep_checkpoint_max` checkpoints (Estimator's settings, so that model dirs of either engine read the same)."""
    return tf1.train.Saver(sharded=True, max_to_keep=keep_checkpoint_max, keep_checkpoint_every_n_hours=10000,
                           save_relative_paths=True)


def files_of(prefix):
    """The files of the checkpoint `prefix`: its index and data shards."""
    return glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*-of-*")


def is_complete(prefix):
    """Whether the checkpoint `prefix` has its index and all of its data shards."""
    if not os.path.exists(prefix + ".index"):
        return False
    shards = glob.glob(glob.escape(prefix) + ".data-*-of-*")
    if not shards:
        return False
    return len(shards) == int(shards[0].rsplit("-of-", 1)[1])


def complete_checkpoints(directory):
    """The prefixes of the complete checkpoints in `directory`, oldest step first."""
    found = []
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        match = _INDEX.match(name)
        prefix = os.path.join(directory, name[:-len(".index")])
        if match and is_complete(prefix):
            found.append((int(match.group(1)), prefix))
    return [prefix for _, prefix in sorted(found)]


def _read_state(directory):
    """(latest prefix or None, problem or None) from the state file, as TensorFlow reads it."""
    if not os.path.exists(os.path.join(directory, STATE_FILE)):
        return None, None
    try:
        state = tf1.train.get_checkpoint_state(directory)
    except (ValueError, tf.errors.OpError) as err:   # an empty file: "Invalid checkpoint state"
        return None, "cannot be read (%s)" % str(err).split("\n")[0]
    if state is None:   # TensorFlow logs a parse error and ignores the file
        return None, "cannot be parsed"
    path = state.model_checkpoint_path
    if not is_complete(path):
        return None, "names %s, whose files are missing or incomplete" % os.path.basename(path)
    return path, None


def write_state(directory, prefixes):
    """Writes the state file naming `prefixes` (oldest first; the last is the latest), relative to `directory`,
    atomically."""
    names = [os.path.basename(p) for p in prefixes]
    text = 'model_checkpoint_path: "%s"\n' % names[-1] + "".join('all_model_checkpoint_paths: "%s"\n' % n
                                                                   for n in names)
    path = os.path.join(directory, STATE_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def damage(prefix):
    """None when every tensor of the checkpoint `prefix` reads back whole; else what is wrong: its files with their
    sizes and TensorFlow's one-line reason (a data shard cut short by an interrupted copy reads as "Read less bytes
    than requested"). Reads the whole checkpoint once (about the model's size, with its optimizer slots)."""
    try:
        reader = tf1.train.NewCheckpointReader(prefix)
        for name in sorted(reader.get_variable_to_shape_map()):
            reader.get_tensor(name)
    except Exception as err:   # TF raises OpErrors, IndexError ("Read less bytes than requested"), ValueError...
        reason = [line for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
        files = ", ".join("%s %d bytes" % (os.path.basename(f), os.path.getsize(f)) for f in sorted(files_of(prefix))
                          if os.path.exists(f))
        return "%s (%s)" % (reason[0][:200], files or "no files")
    return None


def _set_aside(prefix):
    """Renames the files of a damaged checkpoint to *.incomplete, so that nothing takes it for a checkpoint again;
    returns their new names."""
    moved = []
    for path in files_of(prefix) + glob.glob(glob.escape(prefix) + ".meta"):
        try:
            os.replace(path, path + ".incomplete")
            moved.append(os.path.basename(path) + ".incomplete")
        except OSError:
            pass
    return moved


def latest(directory, log=None, repair=True, verify=False):
    """The newest checkpoint prefix of `directory`, or None. A state file that cannot be used is rebuilt from the
    complete checkpoints on disk (when `repair`; the chief repairs, the other workers only read), with a note
    through `log`.

    `verify`: the checkpoint returned also reads back whole (`damage`, e.g. a data shard cut short by an interrupted
    copy); a damaged one is named in a note and skipped for the newest intact one (when `repair`, its files are
    renamed *.incomplete and the state file names the intact one)."""
    path, problem = _read_state(directory)
    if path and not verify:
        return path
    found = complete_checkpoints(directory)
    if path and path not in found:
        found.append(path)   # named by the state file: relative paths, another spelling of the directory
    if path:
        found = [p for p in found if checkpoint_step(p) <= checkpoint_step(path) and p != path] + [path]
    skipped = False
    while verify and found:
        what = damage(found[-1])
        if what is None:
            break
        bad, skipped = found.pop(), True
        moved = _set_aside(bad) if repair else []
        if log:
            log("note: checkpoint %s is incomplete or damaged: %s. It is skipped%s; %s"
                % (bad, what, " (its files renamed %s)" % ", ".join(moved) if moved else "",
                   "using %s, the newest intact checkpoint" % os.path.basename(found[-1]) if found
                   else "no intact checkpoint is left, so training starts at step 0"))
        problem = problem or "names %s, which is incomplete or damaged" % os.path.basename(bad)
    if not found:
        if problem and log and not skipped:
            log("note: %s %s, and %s has no complete checkpoint: training starts at step 0"
                % (os.path.join(directory, STATE_FILE), problem, directory))
        if skipped and repair and os.path.exists(os.path.join(directory, STATE_FILE)):
            os.remove(os.path.join(directory, STATE_FILE))
        return None
    if found[-1] == path and not problem:
        return path
    if repair:
        write_state(directory, found)
        if log and not skipped:
            log("note: %s %s; rebuilt it from the checkpoints on disk (latest %s)"
                % (os.path.join(directory, STATE_FILE), problem or "was missing", os.path.basename(found[-1])))
    return found[-1]


def apply_retention(directory, keep, log=None):
    """Removes the oldest complete checkpoints of `directory` beyond the newest `keep` (keep_checkpoint_max; 0 or
    None keeps all), with a note: a run resumed with a lower keep_checkpoint_max applies it to the checkpoints of
    earlier runs too (the Saver only counts its own). Returns the prefixes removed."""
    found = complete_checkpoints(directory)
    if not keep or len(found) <= keep:
        return []
    removed, kept = found[:-keep], found[-keep:]
    write_state(directory, kept)   # first: the state file never names a checkpoint that is gone
    for prefix in removed:
        for path in files_of(prefix) + glob.glob(glob.escape(prefix) + ".meta"):
            storage.remove(path)
    if log:
        log("note: keep_checkpoint_max is %d: removed %d older checkpoint%s of earlier runs (%s), kept %s"
            % (keep, len(removed), "s" if len(removed) > 1 else "", ", ".join(os.path.basename(p) for p in removed),
               ", ".join(os.path.basename(p) for p in kept)))
    return removed


def _variable_bytes():
    """Bytes of the default graph's global variables: about the size of one checkpoint of it."""
    total = 0
    for variable in tf1.global_variables():
        count = variable.shape.num_elements() if variable.shape.is_fully_defined() else 0
        total += count * variable.dtype.base_dtype.size
    return total


class CheckpointHook(tf1.train.SessionRunHook):
    """Writes a checkpoint into `directory` when the session starts from no checkpoint (see `save_at_start`), every
    `every_steps` steps, at each step of `at_steps` (e.g. the evaluation steps) and at the end.

    After a save at a step of `at_steps`, calls `after_save(step, checkpoint prefix, session)` (e.g. an evaluation):
    synchronously, before the next step, so checkpoint retention (`keep_checkpoint_max`) can never delete a
    checkpoint while it is evaluated. Steps are read from the session after each run, so a run that advances several
    steps (NPU loop sinking) still triggers every due save once. Under a multi-worker strategy every worker must
    save at the same steps (saving may run collectives); the workers that are not the chief save into a scratch
    directory.

    Before each save the disk must have room for one more checkpoint (the size of the last one, or of the graph's
    variables); a save that fails on a full or read-only disk has its partial files removed. Both end the run with a
    storage.StorageError naming the directory and the space needed; the previous checkpoint stays the latest.
    All workers are told whether to save at the start (`save_at_start`: the run restored no checkpoint), as each
    decided before any peer could write one.
    """

    def __init__(self, directory, saver, every_steps, at_steps=(), after_save=None, save_at_start=True):
        self._directory = directory
        self._save_at_start = save_at_start
        self._saver = saver
        self._every = max(1, int(every_steps))
        self._at_steps = sorted(set(at_steps))
        self._after_save = after_save

    def begin(self):
        self._global_step = tf1.train.get_global_step()
        self._prefix = "%s/%s" % (self._directory.rstrip("/"), CHECKPOINT_NAME)
        self._size = _variable_bytes()

    def after_create_session(self, session, coord):
        tf1.gfile.MakeDirs(self._directory)
        step = int(session.run(self._global_step))
        self._last_path = latest(self._directory, repair=False)
        # retention counts the checkpoints already on disk, not only this Saver's (apply_retention)
        self._saver.recover_last_checkpoints(complete_checkpoints(self._directory))
        self._last_saved = None if self._save_at_start else step
        self._next_every = (step // self._every + 1) * self._every
        self._at_steps = [s for s in self._at_steps if s > step]
        if self._save_at_start:
            self._save(session, step)

    def after_run(self, run_context, run_values):
        step = int(run_context.session.run(self._global_step))
        due_at = [s for s in self._at_steps if s <= step]
        if step >= self._next_every or due_at:
            self._save(run_context.session, step)
            self._next_every = (step // self._every + 1) * self._every
            self._at_steps = [s for s in self._at_steps if s > step]
            if due_at and self._after_save:
                self._after_save(step, self._last_path, run_context.session)

    def end(self, session):
        step = int(session.run(self._global_step))
        if step != self._last_saved:
            self._save(session, step)

    def last_checkpoint(self):
        """The prefix of the last checkpoint written or found (None before the session)."""
        return getattr(self, "_last_path", None)

    def _save(self, session, step):
        what = "checkpoint %s-%d" % (CHECKPOINT_NAME, step)
        storage.check_space(self._directory, self._size, what, self._last_path)
        try:
            path = self._saver.save(session, self._prefix, global_step=step, write_meta_graph=False)
        except Exception as err:
            number = storage.error_number(err)
            if number is None:
                raise
            for partial in files_of("%s-%d" % (self._prefix, step)) + storage.temporary_files(self._directory):
                storage.remove(partial)
            raise storage.storage_error(number, self._directory, what, self._size + storage.MARGIN_BYTES,
                                        self._last_path)
        self._last_path, self._last_saved = path, step
        self._size = sum(os.path.getsize(f) for f in files_of(path)) or self._size   # the next one: as big
