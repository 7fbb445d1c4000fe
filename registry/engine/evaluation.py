"""Evaluation of checkpoints over the whole eval split: top-1, top-5 and the mean loss of every image once.

On a multi-worker run every worker evaluates its share of the eval split (the input pipeline's per-worker shard:
each record once, in one of the shares, an uneven split included) and the sums are all-reduced, so the result is
the one a single process gets over the whole split: the same top-1 and top-5 counts, and the same loss up to the
order of the float additions."""
import time

import tensorflow as tf

from registry import spec
from registry.engine import graph

tf1 = tf.compat.v1

SUMS = ("top1", "top5", "loss", "num_images")   # the order of the all-reduced vector


def metrics(totals, global_step, seconds):
    """{global_step, top1, top5, loss, num_images, seconds} from the split's `totals` {top1, top5, loss,
    num_images} (sums over the real images); raises ValueError for an eval split without images."""
    count = totals["num_images"]
    if not count:
        raise ValueError("the eval split of the data has no images")
    return {"global_step": int(global_step), "top1": totals["top1"] / count, "top5": totals["top5"] / count,
            "loss": totals["loss"] / count, "num_images": int(round(count)), "seconds": seconds}


class Evaluator(object):
    """Builds the eval graph once, in a graph and session of its own (beside a training session or alone), and
    evaluates any checkpoint of the model with it: `evaluator(checkpoint)` -> {global_step, top1, top5, loss,
    num_images, seconds}; top1/top5 are fractions of the real (unpadded) images, loss their mean cross-entropy.
    With `input_context` (tf.distribute.InputContext) it reads that worker's share of the split only.

    Data errors surface as TensorFlow's op errors (callers map them, see runner.data_errors). `close()` frees it.
    """

    def __init__(self, model, hparams, data_path, session_config=None, input_context=None):
        self._graph = tf.Graph()
        with self._graph.as_default():
            dataset = model.input_fn(spec.EVAL, hparams, data_path, input_context)
            self._iterator = tf1.data.make_initializable_iterator(dataset)
            images, labels = self._iterator.get_next()
            self._sums = graph.eval_sums(model, hparams, images, labels)
            self._global_step = tf1.train.get_or_create_global_step()
            self._saver = tf1.train.Saver()
        self._graph.finalize()
        self._session = tf1.Session(graph=self._graph, config=session_config)

    def sums(self, checkpoint):
        """({top1, top5, loss, num_images} summed in float64 over this evaluator's images, the checkpoint's global
        step) of `checkpoint`."""
        with self._graph.as_default():   # TF 2.x: outside its graph, a Saver restores eagerly
            self._saver.restore(self._session, checkpoint)
        self._session.run(self._iterator.initializer)
        totals = dict.fromkeys(self._sums, 0.0)
        while True:
            try:
                sums = self._session.run(self._sums)
            except tf.errors.OutOfRangeError:
                break
            for key, value in sums.items():
                totals[key] += float(value)
        return totals, int(self._session.run(self._global_step))

    def __call__(self, checkpoint):
        start = time.time()
        totals, step = self.sums(checkpoint)
        return metrics(totals, step, time.time() - start)

    def close(self):
        self._session.close()


class SharedEvaluation(object):
    """One worker's part of a multi-worker evaluation, called like an Evaluator: `local` (an Evaluator over this
    worker's share) sums its images, `all_reduce(vector)` adds the workers' float64 [4] vectors (SUMS order), and
    every worker gets the whole split's metrics; `seconds` spans both, so it is the evaluation's wall time."""

    def __init__(self, local, all_reduce):
        self._local, self._all_reduce = local, all_reduce

    def __call__(self, checkpoint):
        start = time.time()
        totals, step = self._local.sums(checkpoint)
        reduced = self._all_reduce([totals[key] for key in SUMS])
        return metrics(dict(zip(SUMS, (float(v) for v in reduced))), step, time.time() - start)
