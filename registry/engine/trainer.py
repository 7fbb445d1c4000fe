"""The training loop: one graph, one monitored session, hooks.

    graph     the input pipeline, one `graph.train_step` per replica (a tf.distribute strategy's, or a plain
              graph's), the device's own wrapping (registry.engine.npu on the Ascend NPU)
    session   `MonitoredTrainingSession`: restores the model dir's latest checkpoint (resume) or initialises
              (warm start applied), and under a multi-worker strategy's worker context opens the worker's
              target with the strategy's session config
    hooks     progress and TensorBoard scalars (registry.engine.progress), stop at the last step, the caller's
              (stop on a signal, the multi-worker watchdog, NPU), then checkpoints and the evaluations after them
              (registry.engine.checkpoints), so that every stop request is known before a save and evaluation
    loop      `while not session.should_stop(): session.run(train_op)`

This is what tf.estimator did underneath, without it: the same model dir layout (model.ckpt-<step>, sharded,
relative paths, TensorBoard events), so model dirs of either engine resume into the other. Works on any
TensorFlow from 1.15 to 2.21.
"""
import collections
import contextlib

import tensorflow as tf
from tensorflow.python.training import training_util

from registry import spec
from registry.engine import checkpoints, graph, npu, progress

tf1 = tf.compat.v1

SUMMARY_STEPS = 100   # TensorBoard scalars every this many steps (registry.engine.progress writes them)

TrainGraph = collections.namedtuple("TrainGraph", "train_op reported initializers")
TrainGraph.__doc__ = """train_op: one step of every replica; reported: the first replica's graph.TrainStep.reported;
initializers: the input iterators' initializer ops, to run once the session exists."""
WorkerSum = collections.namedtuple("WorkerSum", "vector total")
WorkerSum.__doc__ = """vector: a float64 [n] placeholder, this worker's values; total: the sum over the workers."""


def sum_across_workers(strategy, size):
    """In the default graph, under a multi-worker `strategy`: a WorkerSum of float64 [size] vectors. Each worker
    feeds its vector to its first replica (the others add zeros), and the strategy all-reduces it (a collective,
    so every worker must run `total` the same number of times)."""
    vector = tf1.placeholder(tf.float64, [size], name="worker_values")
    local_replicas = len(strategy.extended.worker_devices)

    def replica_value():
        replica = tf1.distribute.get_replica_context().replica_id_in_sync_group
        first = tf.equal(tf.math.floormod(replica, local_replicas), 0)
        return tf1.where(first, vector, tf.zeros_like(vector))

    with strategy.scope():
        per_replica = strategy.extended.call_for_each_replica(replica_value)
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return WorkerSum(vector, total)


class StartHook(tf1.train.SessionRunHook):
    """Once the session exists (after restore or initialisation): runs `ops` (the input iterators' initializers),
    then calls `on_start()` when given."""

    def __init__(self, ops, on_start=None):
        self._ops = ops
        self._on_start = on_start

    def after_create_session(self, session, coord):
        session.run(self._ops)
        if self._on_start:
            self._on_start()


def _first_replica(value, strategy):
    return strategy.experimental_local_results(value)[0] if strategy else value


def build(model, hparams, data_path, plan, settings, strategy=None, warm_start=None, synthetic=False,
          input_context=None):
    """In the default graph: the global step, the input pipeline (this worker's shard when `input_context`, a
    tf.distribute.InputContext, is given) and the train step, on one device or on each replica of `strategy`.
    Synthetic data replaces the plugin's input_fn when asked. Returns a TrainGraph."""
    def input_fn(context=None):
        if synthetic:
            from registry.data.synthetic import synthetic_dataset
            return synthetic_dataset(spec.TRAIN, hparams)
        return model.input_fn(spec.TRAIN, hparams, data_path, context or input_context)

    def replica_step(images, labels):
        return graph.train_step(model, hparams, plan, settings, images, labels, warm_start)

    if strategy is None:
        iterator = tf1.data.make_initializable_iterator(input_fn())
        tf1.train.get_or_create_global_step()
        step = replica_step(*iterator.get_next())
        initializers = [iterator.initializer]
        train_op = step.train_op
    else:
        with strategy.scope():
            iterator = strategy.make_input_fn_iterator(input_fn)
            global_step = tf1.train.get_or_create_global_step()
            # The hooks' cached read of the step (SummarySaverHook, StopAtStepHook): without this one, made as
            # Estimator made it, it is `initialized_value() + 0`, which under a multi-worker strategy runs the
            # variable's initial value again, a broadcast from the chief that no peer answers: a hang.
            tf1.add_to_collection(training_util.GLOBAL_STEP_READ_KEY, strategy.extended.read_var(global_step))
            step = strategy.extended.call_for_each_replica(replica_step, args=iterator.get_next())
            initializers = iterator.initialize()
            train_op = strategy.group(step.train_op)
    reported = {name: _first_replica(value, strategy) for name, value in step.reported.items()}
    return TrainGraph(train_op, reported, initializers)


def train(model, hparams, data_path, model_dir, plan, settings, last_step, chief=True, strategy=None,
          warm_start=None, synthetic=False, input_context=None, eval_steps=(), after_eval_save=None,
          checkpoint_dir=None, hooks=(), session_config=None, seed=None, on_start=None, every_worker_evaluates=False,
          restore_dir=None, last_hooks=()):
    """Trains in the model dir until the global step reaches `last_step` (resuming its latest checkpoint).

    Checkpoints: every `save_checkpoints_steps` (keeping `keep_checkpoint_max`), at each of `eval_steps` (then
    `after_eval_save(step, checkpoint, all_reduce)` runs, e.g. an evaluation) and at the end, into `checkpoint_dir`
    (default the model dir; a worker that is not the chief writes its own copies elsewhere). `after_eval_save` runs
    on the chief only, or with `every_worker_evaluates` (a multi-worker `strategy`) on every worker, each with its
    own checkpoint and `all_reduce(values)`, the sum of a float64 vector over the workers; else all_reduce is None.
    The chief keeps the train log and TensorBoard events (scalars only: the session writes no summaries and no graph). `hooks` run after the
    engine's progress and stop-at-step hooks and before its checkpoint hook, `last_hooks` after it (a multi-worker
    run's watchdog: the checkpoint hook's evaluation may be a collective); `seed` >= 0 seeds the graph.
    `restore_dir`: where the checkpoint to resume is (default the model dir; a worker without shared storage
    resumes its own copy). `on_start()` is called once the session exists, before the first checkpoint is written
    (the runner writes the model dir's run records then).
    """
    restore_dir = restore_dir or model_dir
    resuming = checkpoints.latest(restore_dir, repair=False) is not None   # before any worker can write one
    with tf.Graph().as_default():
        if seed is not None and seed >= 0:
            tf1.set_random_seed(seed)
        built = build(model, hparams, data_path, plan, settings, strategy, warm_start, synthetic, input_context)
        after_save = None
        if after_eval_save and every_worker_evaluates:
            from registry.engine.evaluation import SUMS
            worker_sum = sum_across_workers(strategy, len(SUMS))

            def after_save(step, checkpoint, session):
                after_eval_save(step, checkpoint,
                                lambda values: session.run(worker_sum.total, {worker_sum.vector: values}))
        elif after_eval_save and chief:
            def after_save(step, checkpoint, session):
                after_eval_save(step, checkpoint, None)
        train_op, all_hooks = built.train_op, [StartHook(built.initializers, on_start)]
        if settings.device == "npu":
            train_op, npu_hooks = npu.training(settings, train_op)
            all_hooks += npu_hooks
            session_config = npu.session_config(settings, model_dir, session_config)
        with strategy.scope() if strategy else contextlib.nullcontext():
            saver = checkpoints.make_saver(hparams.get("keep_checkpoint_max", 5))
        every = hparams.get("save_checkpoints_steps", 5000)
        all_hooks += [
            progress.ProgressHook(plan, built.reported, model_dir=model_dir if chief else None,
                                  summary_steps=SUMMARY_STEPS, report_steps=eval_steps, last_step=last_step),
            tf1.train.StopAtStepHook(last_step=last_step),
        ] + list(hooks) + [
            checkpoints.CheckpointHook(checkpoint_dir or model_dir, saver, every, eval_steps, after_save,
                                       save_at_start=not resuming),
        ] + list(last_hooks)
        with tf1.train.MonitoredTrainingSession(
                checkpoint_dir=restore_dir, scaffold=tf1.train.Scaffold(saver=saver), hooks=all_hooks,
                save_checkpoint_secs=None, save_checkpoint_steps=None, log_step_count_steps=None,
                save_summaries_steps=None, save_summaries_secs=None, config=session_config) as session:
            while not session.should_stop():
                session.run(train_op)

