"""Evaluation of checkpoints over the whole eval split: top-1, top-5 and the mean loss of every image once."""
import time

import tensorflow as tf

from registry import spec
from registry.engine import graph

tf1 = tf.compat.v1


class Evaluator(object):
    """Builds the eval graph once, in a graph and session of its own (beside a training session or alone), and
    evaluates any checkpoint of the model with it: `evaluator(checkpoint)` -> {global_step, top1, top5, loss,
    num_images, seconds}; top1/top5 are fractions of the real (unpadded) images, loss their mean cross-entropy.

    Data errors surface as TensorFlow's op errors (callers map them, see runner.data_errors). `close()` frees it.
    """

    def __init__(self, model, hparams, data_path, session_config=None):
        self._graph = tf.Graph()
        with self._graph.as_default():
            dataset = model.input_fn(spec.EVAL, hparams, data_path)
            self._iterator = tf1.data.make_initializable_iterator(dataset)
            images, labels = self._iterator.get_next()
            self._sums = graph.eval_sums(model, hparams, images, labels)
            self._global_step = tf1.train.get_or_create_global_step()
            self._saver = tf1.train.Saver()
        self._graph.finalize()
        self._session = tf1.Session(graph=self._graph, config=session_config)

    def __call__(self, checkpoint):
        start = time.time()
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
        count = totals["num_images"]
        if not count:
            raise ValueError("the eval split of the data has no images")
        return {"global_step": int(self._session.run(self._global_step)), "top1": totals["top1"] / count,
                "top5": totals["top5"] / count, "loss": totals["loss"] / count, "num_images": int(round(count)),
                "seconds": time.time() - start}

    def close(self):
        self._session.close()

