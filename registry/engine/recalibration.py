"""BN recalibration: a pass over the training data at learning rate 0 that makes each batch-norm moving statistic the
plain average of the pass's batch statistics.

Megvii's ShuffleNet train.py ends with it: after its 300,000 iterations, one more epoch (1,280,000 / batch
iterations) with each BN layer's PyTorch momentum set to 1 / iteration; its published checkpoints are that
pass's result. Here the pass runs the network's training graph forward only (the weights do not move: learning
rate 0 is no update at all) with `registry.nn.recalibrating`, which gives every `registry.nn.batch_norm` the
weight 1 / iteration. Networks whose batch norm is built otherwise are refused with a clear error.

The pass continues the global step: from `start_step` (the checkpoint it starts from) to start_step + steps, with
checkpoints on the way (`save_checkpoints_steps`) and at the end; the iteration is global step - start_step + 1,
so a stopped pass resumes where its last checkpoint left it. `bn_recalibration.json` in the model dir records the
pass: {"start_step", "steps", "epochs", "before": eval record or None, "after": eval record or None,
"done": bool}. One device, the per-device `batch_size` (its batch statistics are those of one device's batch, as
in a data-parallel PyTorch run without synchronised BN).
"""
import time

import tensorflow as tf

from registry import nn, spec
from registry.engine import checkpoints, graph, progress, results, trainer
from registry.errors import ZooError

tf1 = tf.compat.v1

RECORD = "bn_recalibration.json"
REPORT_SECS = 10.0


def steps_for(hparams, epochs):
    """Batches of `batch_size` images in `epochs` epochs of `num_train_images` (at least 1)."""
    per_epoch = max(1, int(hparams["num_train_images"]) // int(hparams["batch_size"]))
    return max(1, int(round(float(epochs) * per_epoch)))


def read_record(model_dir):
    """The model dir's recorded pass (see the module docstring), or None."""
    return results.read_json_or_none(model_dir, RECORD, print)


def write_record(model_dir, record):
    results.write_json(model_dir, RECORD, record)


class _Report(tf1.train.SessionRunHook):
    """A line every REPORT_SECS seconds: iteration / steps and images per second."""

    def __init__(self, step, start_step, steps, batch, log):
        self._step, self._start, self._steps, self._batch, self._log = step, start_step, steps, batch, log

    def after_create_session(self, session, coord):
        self._time, self._at = time.time(), int(session.run(self._step))

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self._step)

    def after_run(self, run_context, run_values):
        step, now = int(run_values.results) + 1, time.time()
        if now - self._time >= REPORT_SECS or step == self._start + self._steps:
            rate = (step - self._at) * self._batch / max(now - self._time, 1e-9)
            self._log("BN recalibration: iteration %d/%d (%.0f img/s)" % (step - self._start, self._steps, rate))
            self._time, self._at = now, step


def _carry_over(checkpoint):
    """Variables of `checkpoint` that the forward graph does not make (the optimiser's slots, a loss scale) as
    untrainable copies, so that the pass's checkpoints hold them unchanged and training can resume from them."""
    if not checkpoint:
        return
    made = {v.op.name for v in tf1.global_variables()}
    reader = tf.train.load_checkpoint(checkpoint)
    dtypes = reader.get_variable_to_dtype_map()
    for name, shape in sorted(reader.get_variable_to_shape_map().items()):
        if name not in made:   # the pass builds its graph at the root variable scope
            tf1.get_variable(name, shape, dtypes[name], tf1.initializers.zeros(), trainable=False)


def run_pass(model, hparams, data_path, model_dir, start_step, steps, log=print, hooks=(), seed=None):
    """Runs (or resumes) the pass in the model dir: from its checkpoint at `start_step` (or a later one of the same
    pass) to a checkpoint at start_step + steps, whose moving statistics are the average of the `steps` batch
    statistics of the train split and whose other variables are the start checkpoint's. Returns that checkpoint's
    prefix. `hooks`: more SessionRunHooks (e.g. a stop on a signal). Raises ZooError when the network builds no
    `registry.nn.batch_norm` or builds moving-average updates outside it."""
    last_step = start_step + steps
    with tf.Graph().as_default():
        if seed is not None and seed >= 0:
            tf1.set_random_seed(seed)
        global_step = tf1.train.get_or_create_global_step()
        iterator = tf1.data.make_initializable_iterator(model.input_fn(spec.TRAIN, hparams, data_path))
        images, _ = iterator.get_next()
        step_before = global_step.read_value() + 0   # a copy, read before the increment below
        iteration = tf.cast(step_before - start_step + 1, tf.float32)
        with nn.recalibrating(iteration) as layers:
            graph.logits(model, images, True, hparams)
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        if not layers:
            raise ZooError("BN recalibration needs a network built with registry.nn.batch_norm; %r builds no "
                           "batch norm layer with it" % (model,))
        if len(updates) != 2 * len(layers):
            raise ZooError("BN recalibration: %r adds %d moving-average updates, but %d batch norm layers were built "
                           "with registry.nn.batch_norm (2 updates each); build every batch norm with it"
                           % (model, len(updates), len(layers)))
        with tf.control_dependencies(updates):
            op = tf1.assign_add(global_step, 1)
        _carry_over(checkpoints.latest(model_dir, repair=False))
        saver = checkpoints.make_saver(hparams.get("keep_checkpoint_max", 5))
        all_hooks = [trainer.StartHook([iterator.initializer]),
                     _Report(global_step, start_step, steps, int(hparams["batch_size"]), log),
                     tf1.train.StopAtStepHook(last_step=last_step)] + list(hooks) + [
            checkpoints.CheckpointHook(model_dir, saver, hparams.get("save_checkpoints_steps", 5000),
                                       save_at_start=False)]
        with tf1.train.MonitoredTrainingSession(
                checkpoint_dir=model_dir, scaffold=tf1.train.Scaffold(saver=saver), hooks=all_hooks,
                save_checkpoint_secs=None, save_checkpoint_steps=None, log_step_count_steps=None,
                save_summaries_steps=None, save_summaries_secs=None) as session:
            while not session.should_stop():
                session.run(op)
    return checkpoints.latest(model_dir, repair=False)


def recalibrate(model, hparams, data_path, model_dir, start_step, epochs, evaluate, before=None, log=print,
                hooks=(), seed=None):
    """The pass of `epochs` epochs from the checkpoint at `start_step`, with its record: `evaluate(checkpoint)` ->
    eval record (or None: no evaluation) of the start checkpoint (unless `before` is given) and of the result.
    Resumes a pass the model dir records as started at `start_step` and not done. Returns the record (see the
    module docstring); None when a hook stopped the pass before its end."""
    steps = steps_for(hparams, epochs)
    record = read_record(model_dir)
    if not (record and record.get("start_step") == start_step and record.get("steps") == steps):
        if before is None:
            start = [c for c in checkpoints.complete_checkpoints(model_dir)
                     if checkpoints.checkpoint_step(c) == start_step]
            before = evaluate(start[0]) if start else None
        record = {"start_step": start_step, "steps": steps, "epochs": float(epochs), "before": before,
                  "after": None, "done": False}
        write_record(model_dir, record)
        log("BN recalibration: %d iterations of %d images at learning rate 0 from step %d (each BN moving statistic "
            "becomes the average of the pass's batch statistics)" % (steps, int(hparams["batch_size"]), start_step))
    elif record.get("done"):
        return record
    else:
        log("BN recalibration: resuming the pass from step %d (%d iterations)" % (start_step, steps))
    started = time.time()
    checkpoint = run_pass(model, hparams, data_path, model_dir, start_step, steps, log, hooks, seed)
    if checkpoints.checkpoint_step(checkpoint) != start_step + steps:
        return None
    record.update(after=evaluate(checkpoint), done=True, checkpoint=checkpoint, seconds=time.time() - started)
    write_record(model_dir, record)
    log("BN recalibration done in %s: %s" % (progress.format_duration(record["seconds"]), describe(record)))
    return record


def describe(record):
    """'held-out top-1 0.9812 -> 0.9840, loss 0.0712 -> 0.0650' (or what the record has)."""
    before, after = record.get("before"), record.get("after")
    if not (before and after):
        return "checkpoint %s" % record.get("checkpoint")
    return "held-out top-1 %.4f -> %.4f, loss %.4f -> %.4f" % (before["top1"], after["top1"], before["loss"],
                                                              after["loss"])
