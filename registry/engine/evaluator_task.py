"""The evaluator task of a Kubeflow TFJob (TF_CONFIG task type 'evaluator', as TF Model Garden has it): a process
outside the training cluster (it joins no collective) that evaluates each checkpoint the chief writes into the
shared model dir, as it appears, and ends once the training's last checkpoint is evaluated.

- Retention (`keep_checkpoint_max`) never takes a checkpoint from it: a thread takes a snapshot of each new
  checkpoint (hard links of its files, a copy where links cannot be made) into `<model_dir>/evaluator/checkpoints`
  as soon as the model dir's checkpoint state lists it, and the evaluation reads the snapshot, removed afterwards.
  A checkpoint that retention removed before its snapshot could be taken (written and deleted within a poll) is
  named in a note, never skipped silently.
- Records: `<model_dir>/evaluator/` holds its eval_results.json and eval_history.jsonl, and its TensorBoard scalars
  (`<model_dir>/evaluator/eval`), beside the training workers' own evaluations, if any (`--skip_eval` leaves the
  evaluating to this task).
- The end: the checkpoint at the schedule's last step (min of the schedule's steps for the training workers'
  global batch and `--max_steps`, as the workers compute it) is evaluated. A restarted evaluator skips the steps its
  history already holds. No new checkpoint within `timeout` seconds ends it with an error.
"""
import errno
import glob
import os
import shutil
import threading
import time

import tensorflow as tf

from registry.engine import devices, evaluation, recalibration, results, segments
from registry.engine.checkpoints import checkpoint_step
from registry.errors import ZooError

tf1 = tf.compat.v1

RECORDS_DIR = "evaluator"
POLL_SECONDS = 0.25


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise
        shutil.copy2(source, target)   # another file system, or links not allowed


class Snapshots(object):
    """Watches `model_dir` in a thread and keeps a snapshot of each checkpoint it lists (newer than `after` and not
    in `done`) in `directory`. `take()` -> the snapshots not yet taken, [(step, snapshot prefix, original prefix)]
    by step; `lost` lists the checkpoints removed before their snapshot."""

    def __init__(self, model_dir, directory, after=-1, done=()):
        self._model_dir, self._directory = model_dir, directory
        self._seen = set(done)
        self._after = after
        self._ready, self.lost, self.error = [], [], None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="checkpoint-snapshots")
        self._thread.daemon = True

    def start(self):
        os.makedirs(self._directory, exist_ok=True)
        self._thread.start()
        return self

    def _listed(self):
        state = tf1.train.get_checkpoint_state(self._model_dir)
        return list(state.all_model_checkpoint_paths) if state else []

    def _snapshot(self, prefix):
        target = os.path.join(self._directory, os.path.basename(prefix))
        made = []
        try:
            files = glob.glob(prefix + ".*")
            if not any(name.endswith(".index") for name in files):
                raise OSError(errno.ENOENT, "no index file", prefix)
            for name in sorted(files, key=lambda n: n.endswith(".index")):   # the index last
                made.append(os.path.join(self._directory, os.path.basename(name)))
                _link_or_copy(name, made[-1])
            return target
        except OSError as err:
            for name in made:
                _remove(name)
            if err.errno == errno.ENOENT:
                return None
            raise

    def _watch(self):
        try:
            while not self._stop.is_set():
                for prefix in self._listed():
                    step = checkpoint_step(prefix)
                    if step in self._seen or step <= self._after:
                        continue
                    self._seen.add(step)
                    snapshot = self._snapshot(prefix)
                    with self._lock:
                        (self._ready if snapshot else self.lost).append((step, snapshot, prefix))
                self._stop.wait(POLL_SECONDS)
        except Exception as err:   # reported by take()
            self.error = err

    def take(self):
        if self.error is not None:
            raise self.error
        with self._lock:
            ready, self._ready = sorted(self._ready), []
        return ready

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _last_step(model_dir, hparams, replicas, step, max_steps, settings):
    """The step of the training's last checkpoint: the schedule's end (or `max_steps`), and after the schedule's end
    the BN recalibration pass's, which continues the global step (registry.engine.recalibration)."""
    plan = segments.resume(model_dir, hparams, replicas, step, lambda *a: None)[0]
    last = devices.align_steps(settings, min(plan.total_steps, max_steps or plan.total_steps))
    epochs = hparams.get("bn_recalibration_epochs", 0)
    if epochs > 0 and last == plan.total_steps:
        last += recalibration.steps_for(hparams, epochs)
    return last


def run(model, hparams, data_path, model_dir, task, settings, max_steps=None, timeout=6 * 3600.0, log=print):
    """Evaluates each checkpoint of `model_dir` as it appears until the one at the training's last step; returns
    the last eval record. `task`: the cluster.EvaluatorTask (its workers set the global batch). Raises ZooError when
    no new checkpoint appears within `timeout` seconds."""
    from registry.engine import runner
    replicas = len(task.workers) * settings.rank_size
    records_dir = os.path.join(model_dir, RECORDS_DIR)
    os.makedirs(records_dir, exist_ok=True)
    history = results.read_jsonl(records_dir, results.EVAL_HISTORY)
    done = {int(r["global_step"]) for r in history}
    log("Evaluator of %d training workers: evaluates each checkpoint of %s as it appears (records in %s)%s"
        % (len(task.workers), model_dir, records_dir, "; already evaluated: steps %s" % sorted(done) if done else ""))
    snapshots = Snapshots(model_dir, os.path.join(records_dir, "checkpoints"), done=done).start()
    evaluator, record, reported_lost = None, None, 0
    waited_since = time.time()
    try:
        while True:
            for step, snapshot, original in snapshots.take():
                if evaluator is None:
                    with runner.data_errors(data_path, "validation", hparams):
                        evaluator = evaluation.Evaluator(model, hparams, data_path)
                try:
                    record = runner.evaluate(model, hparams, data_path, model_dir, checkpoint=snapshot,
                                             evaluator=evaluator, log=log, replicas=replicas, records_dir=records_dir,
                                             recorded_checkpoint=original)
                finally:
                    for name in glob.glob(snapshot + ".*"):
                        _remove(name)
                waited_since = time.time()
                last = _last_step(model_dir, hparams, replicas, step, max_steps, settings)
                if step >= last:
                    log("Evaluator done: the training's last checkpoint (step %d) is evaluated" % step)
                    return record
            for step, _, original in snapshots.lost[reported_lost:]:
                log("note: checkpoint %s (step %d) was removed by retention before the evaluator could keep it; "
                    "raise keep_checkpoint_max (--set keep_checkpoint_max=N) to evaluate every checkpoint"
                    % (original, step))
            reported_lost = len(snapshots.lost)
            if time.time() - waited_since > timeout:
                raise ZooError("evaluator: no new checkpoint in %s for %.0f s (last evaluated: %s). Is the training "
                               "running? Raise --evaluator_timeout if its checkpoints are further apart"
                               % (model_dir, timeout, "step %d" % record["global_step"] if record else "none"))
            time.sleep(POLL_SECONDS)
    finally:
        snapshots.close()
        if evaluator is not None:
            evaluator.close()
