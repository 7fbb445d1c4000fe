"""Checkpoints of a training run: when they are written, and what is told after each."""
import tensorflow as tf

tf1 = tf.compat.v1

CHECKPOINT_NAME = "model.ckpt"   # model.ckpt-<global step>.{index,data-*,meta}, as Estimator named them


def checkpoint_step(checkpoint):
    """The global step of a checkpoint prefix such as 'dir/model.ckpt-1200' (0 for None)."""
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def make_saver(keep_checkpoint_max):
    """The Saver of training runs: sharded, paths relative to the model dir (it can be moved), keeping the newest
    `keep_checkpoint_max` checkpoints (Estimator's settings, so that model dirs of either engine read the same)."""
    return tf1.train.Saver(sharded=True, max_to_keep=keep_checkpoint_max, keep_checkpoint_every_n_hours=10000,
                           save_relative_paths=True)


class CheckpointHook(tf1.train.SessionRunHook):
    """Writes a checkpoint into `directory` when the session starts from no checkpoint (see `save_at_start`), every
    `every_steps` steps, at each step of `at_steps` (e.g. the evaluation steps) and at the end.

    After a save at a step of `at_steps`, calls `after_save(step, checkpoint prefix)` (e.g. an evaluation).
    Steps are read from the session after each run, so a run that advances several steps (NPU loop sinking)
    still triggers every due save once. Under a multi-worker strategy every worker must save at the same steps
    (saving may run collectives); the workers that are not the chief save into a scratch directory, and all
    are told whether to save at the start (`save_at_start`: the run restored no checkpoint), as each decided
    before any peer could write one.
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

    def after_create_session(self, session, coord):
        tf1.gfile.MakeDirs(self._directory)
        step = int(session.run(self._global_step))
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
                self._after_save(step, self._last_path)

    def end(self, session):
        step = int(session.run(self._global_step))
        if step != self._last_saved:
            self._save(session, step)

    def _save(self, session, step):
        self._last_path = self._saver.save(session, self._prefix, global_step=step, write_meta_graph=False)
        self._last_saved = step
