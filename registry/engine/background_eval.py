"""Periodic evaluation beside multi-worker training.

TF 1.15 trains a MultiWorkerMirroredStrategy Estimator only inside `train_and_evaluate`, which
cannot stop at an eval boundary for an in-process evaluation the way the single-process loop
does. So the chief evaluates from a background thread instead: for each eval target step, the
first retained checkpoint at or after it, while the workers keep training.
"""
import threading

import tensorflow as tf

tf1 = tf.compat.v1


def checkpoint_step(checkpoint):
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def retained_checkpoints(model_dir):
    """[(step, checkpoint prefix)] the model dir's `checkpoint` file lists, oldest first."""
    state = tf1.train.get_checkpoint_state(model_dir)
    paths = list(state.all_model_checkpoint_paths) if state else []
    return sorted((checkpoint_step(p), p) for p in paths)


class BackgroundEvaluator(threading.Thread):
    """Calls `evaluate(checkpoint)` once per target in `targets` (steps), on the first retained
    checkpoint at or after it; a checkpoint past several targets settles them all.

    `finish()` (after training) lets it evaluate what the final checkpoints make due, then returns
    the records, or raises the error an evaluation raised.
    """

    def __init__(self, model_dir, targets, evaluate, poll_seconds=2.0):
        super(BackgroundEvaluator, self).__init__(name="background-eval", daemon=True)
        self._model_dir, self._evaluate, self._poll = model_dir, evaluate, poll_seconds
        self._pending = sorted(targets)
        self._training_done = threading.Event()
        self.records, self.error = [], None

    def _next_due(self):
        for step, path in retained_checkpoints(self._model_dir):
            if step >= self._pending[0]:
                self._pending = [t for t in self._pending if t > step]
                return path
        return None

    def run(self):
        try:
            while self._pending:
                due = self._next_due()
                if due:
                    self.records.append(self._evaluate(due))
                elif self._training_done.is_set():
                    return
                else:
                    self._training_done.wait(self._poll)
        except Exception as err:  # handed to the main thread by finish()
            self.error = err

    def finish(self):
        self._training_done.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.records
