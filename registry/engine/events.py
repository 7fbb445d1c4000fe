"""TensorBoard event files of a run: scalars under plain tags, and no graph.

Training writes into the model dir: loss, learning_rate, top1 (of the training batch), images_per_sec (and
loss_scale in loss-scaled modes); evaluations write into `<model_dir>/eval`: top1, top5, loss, images_per_sec.
Values are written from Python with exactly these tags (a `tf.summary` op is named after its op, and becomes
`learning_rate_1` beside the schedule's `learning_rate` tensor). The graph is not written: it is several megabytes
and a monitored session writes it again at every start; `zoo-run export` gives the graph.
"""
import os

import tensorflow as tf

tf1 = tf.compat.v1

EVAL_DIR = "eval"
_OPEN = {}


class EventWriter(object):
    """Appends scalars to one events file in `directory` (created when missing)."""

    def __init__(self, directory):
        with tf.Graph().as_default():   # TF 2.x: the v1 FileWriter exists only outside eager execution
            self._writer = tf1.summary.FileWriter(directory)

    def scalars(self, step, values):
        """Writes {tag: number} at global step `step` and flushes, so that a killed run keeps what it wrote."""
        self._writer.add_summary(tf1.Summary(value=[tf1.Summary.Value(tag=tag, simple_value=float(value))
                                                    for tag, value in sorted(values.items())]), int(step))
        self._writer.flush()

    def close(self):
        self._writer.close()


def writer(directory):
    """This process's EventWriter of `directory` (one events file per directory and process)."""
    key = os.path.abspath(directory)
    if key not in _OPEN:
        _OPEN[key] = EventWriter(directory)
    return _OPEN[key]


def close_all():
    """Flushes and closes every EventWriter of this process."""
    while _OPEN:
        _OPEN.popitem()[1].close()
