"""Learning-rate schedules as functions of the global step, so a resumed run continues the curve."""
import math

import tensorflow as tf

from registry.hparam_ranges import LR_SCHEDULES as SCHEDULES
from registry.hparams import HParamsError


class Plan(object):
    """Steps and learning rate of a run, derived from the hparams and the number of replicas."""

    def __init__(self, hparams, num_replicas=1):
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
        if self.schedule not in SCHEDULES:
            raise HParamsError("lr_schedule must be one of %s, got %r" % (", ".join(SCHEDULES), self.schedule))

    def epoch(self, step):
        return step / float(self.steps_per_epoch)

    def learning_rate(self, step):
        """The learning rate at `step`, in plain Python (for logs and tests)."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / float(decay_steps))
        if self.schedule == "cosine":
            return 0.5 * self.peak_lr * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "linear":
            return self.peak_lr * (1.0 - progress)
        return self.peak_lr

    def learning_rate_tensor(self, global_step):
        """The same schedule as `learning_rate`, in the graph."""
        step = tf.cast(global_step, tf.float32)
        decay_steps = float(max(1, self.total_steps - self.warmup_steps))
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
