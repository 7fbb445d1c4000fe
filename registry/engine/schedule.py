"""Learning-rate schedules as functions of the global step, so a resumed run continues the curve.

The schedule is laid out in epochs (warm-up epochs, then decay to `epochs`), and a step is placed on it by the
images it has seen. Within one global batch that is `step / steps_per_epoch`. A run resumed with another global
batch (another batch_size, number of replicas or workers) starts a new segment at the epoch its checkpoint
reached (`origin`, from registry.engine.segments): its steps are counted from there in its own steps per epoch,
so the warm-up is not restarted, the epoch keeps counting up and the run ends when `epochs` have been trained.
"""
import math

import tensorflow as tf

from registry.hparam_ranges import LR_SCHEDULES as SCHEDULES
from registry.hparams import HParamsError


class Plan(object):
    """Steps and learning rate of a run, derived from the hparams and the number of replicas."""

    def __init__(self, hparams, num_replicas=1, origin=None):
        """`origin`: (global step, epoch) where this run's segment starts when an earlier segment of the run had
        another global batch; None: the run has one global batch from step 0."""
        for key in ("batch_size", "base_batch_size", "num_train_images"):
            if key in hparams and hparams[key] < 1:
                raise HParamsError("%s must be >= 1, got %r" % (key, hparams[key]))
        if num_replicas < 1:
            raise HParamsError("the number of replicas must be >= 1, got %r" % num_replicas)
        self.num_replicas = num_replicas
        self.batch_size = hparams["batch_size"]  # per replica
        self.global_batch = self.batch_size * num_replicas
        self.steps_per_epoch = max(1, hparams["num_train_images"] // self.global_batch)
        self.total_steps = max(1, int(round(hparams["epochs"] * self.steps_per_epoch)))
        self.warmup_steps = int(round(hparams.get("warmup_epochs", 0.0) * self.steps_per_epoch))
        base_batch = hparams.get("base_batch_size", hparams["batch_size"])
        self.peak_lr = hparams["learning_rate"] * self.global_batch / float(base_batch)
        self.schedule = hparams.get("lr_schedule", "cosine")
        # global step - step of a run that had this global batch from the start (0 for a run of one segment)
        self.offset = 0.0
        if origin is not None:
            self.offset = origin[0] - origin[1] * self.steps_per_epoch
        self.total_steps = max(1, int(round(self.total_steps + self.offset)))
        if self.schedule not in SCHEDULES:
            raise HParamsError("lr_schedule must be one of %s, got %r" % (", ".join(SCHEDULES), self.schedule))

    def epoch(self, step):
        return (step - self.offset) / float(self.steps_per_epoch)

    def learning_rate(self, step):
        """The learning rate at `step`, in plain Python (for logs and tests)."""
        step -= self.offset
        total_steps = self.total_steps - self.offset
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / float(decay_steps))
        if self.schedule == "cosine":
            return 0.5 * self.peak_lr * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "linear":
            return self.peak_lr * (1.0 - progress)
        return self.peak_lr

    def learning_rate_tensor(self, global_step):
        """The same schedule as `learning_rate`, in the graph."""
        step = tf.cast(global_step, tf.float32)
        if self.offset:
            step -= self.offset
        decay_steps = float(max(1, self.total_steps - self.offset - self.warmup_steps))
        progress = tf.minimum(1.0, (step - self.warmup_steps) / decay_steps)
        if self.schedule == "cosine":
            decayed = 0.5 * self.peak_lr * (1.0 + tf.cos(math.pi * progress))
        elif self.schedule == "linear":
            decayed = self.peak_lr * (1.0 - progress)
        else:
            decayed = tf.constant(self.peak_lr, tf.float32)
        if self.warmup_steps:
            warm = self.peak_lr * (step + 1.0) / self.warmup_steps
            decayed = tf.where(step < self.warmup_steps, warm, decayed)
        return tf.identity(decayed, name="learning_rate")
