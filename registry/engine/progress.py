"""Training progress: a readable line every few seconds, a JSON record per report, TensorBoard scalars."""
import bisect
import sys
import time

import tensorflow as tf

from registry.engine import events, results

tf1 = tf.compat.v1


def format_duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return "%dh%02dm" % (hours, minutes)
    return "%dm%02ds" % (minutes, seconds) if minutes else "%ds" % seconds


class ProgressHook(tf1.train.SessionRunHook):
    """Reports step/total, epoch, loss, lr, images/sec and ETA every `every_secs` seconds, and at each step of
    `report_steps` (the evaluation steps: each evaluation record then carries the training speed up to it).

    Each report is also appended to `<model_dir>/train_log.jsonl`, the runner's structured
    record of training (read by the ModelZoo scripts and tests, never parsed from log text).
    TensorBoard (registry.engine.events): loss, learning_rate, top1 (and loss_scale) at the first step, every
    `summary_steps` steps and the last; images_per_sec at each report.
    """

    def __init__(self, plan, tensors, model_dir=None, every_secs=10.0, stream=None, summary_steps=100,
                 report_steps=(), last_step=None):
        """`tensors`: {name: scalar tensor} with step (the global step before the train op updates it), loss, lr,
        train_accuracy and optionally loss_scale (graph.TrainStep.reported). `model_dir`: where the train log and the
        TensorBoard events go (None: print only, as on the workers that are not the chief)."""
        self._plan = plan
        self._tensors = tensors
        self._model_dir = model_dir
        self._every_secs = every_secs
        self._stream = stream or sys.stdout
        self._summary_steps = max(1, int(summary_steps))
        self._report_steps = sorted(set(report_steps))
        self._last_step_of_run = last_step or plan.total_steps   # where this run stops (--max_steps), for the ETA

    def begin(self):
        self._writer = events.writer(self._model_dir) if self._model_dir else None
        self._summarized = None

    def after_create_session(self, session, coord):
        self._last_time = None  # the first step includes graph warm-up: measure from its end
        self._latest = None

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self._tensors)

    def after_run(self, run_context, run_values):
        values = run_values.results
        step = int(values["step"]) + 1
        now = time.time()
        self._latest = (values, step, now)
        if self._writer and (self._summarized is None or step % self._summary_steps == 0):
            self._summarize(values, step)
        if self._last_time is None:
            self._last_time, self._last_step = now, step
            self._report(values, step, None)
        elif now - self._last_time >= self._every_secs or self._report_step_reached(step):
            self._report_since_last(values, step, now)

    def end(self, session):
        """Reports the steps since the last report, so every train call ends with its figures."""
        if self._latest and self._latest[1] > self._last_step:
            self._report_since_last(*self._latest)
        if self._writer and self._latest and self._latest[1] != self._summarized:
            self._summarize(*self._latest[:2])

    def _report_step_reached(self, step):
        """True when a step of `report_steps` lies in (last reported step, step]: a loop of several steps per run
        (NPU iterations_per_loop) may pass over it."""
        i = bisect.bisect_right(self._report_steps, self._last_step)
        return i < len(self._report_steps) and self._report_steps[i] <= step

    def _summarize(self, values, step):
        scalars = {"loss": values["loss"], "learning_rate": values["lr"], "top1": values["train_accuracy"]}
        if "loss_scale" in values:
            scalars["loss_scale"] = values["loss_scale"]
        self._writer.scalars(step, scalars)
        self._summarized = step

    def _report_since_last(self, values, step, now):
        steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        self._report(values, step, steps_per_sec)

    def _report(self, values, step, steps_per_sec):
        plan = self._plan
        record = {"step": step, "epoch": round(plan.epoch(step), 4), "loss": float(values["loss"]),
                  "lr": float(values["lr"]), "train_accuracy": float(values["train_accuracy"]),
                  "time": time.time()}
        line = "step %d/%d%s  epoch %.2f/%.4g  loss %.4f  lr %.5g" % (
            step, self._last_step_of_run,
            " (of %d)" % plan.total_steps if self._last_step_of_run < plan.total_steps else "",
            plan.epoch(step), plan.epoch(plan.total_steps), record["loss"], record["lr"])
        if "loss_scale" in values:  # float16 training: the dynamic loss scale shows overflows (halvings)
            record["loss_scale"] = float(values["loss_scale"])
            line += "  loss scale %g" % record["loss_scale"]
        if steps_per_sec:
            record["images_per_sec"] = steps_per_sec * plan.global_batch
            eta = max(0, self._last_step_of_run - step) / steps_per_sec
            line += "  %.1f img/s  ETA %s" % (record["images_per_sec"], format_duration(eta))
            if self._writer:
                self._writer.scalars(step, {"images_per_sec": record["images_per_sec"]})
        print(line, file=self._stream)
        self._stream.flush()
        if self._model_dir:
            results.append_jsonl(self._model_dir, results.TRAIN_LOG, record)

