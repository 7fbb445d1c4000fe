"""npu_bridge.estimator.npu.util's loop-sinking API. On the card, each sess.run of the returned op runs
`iterations_per_loop` steps; here (CPU kernels) it runs one, and the calls are recorded."""
import tensorflow as tf

from npu_bridge.estimator.npu import record

tf1 = tf.compat.v1


class IterationPerLoop(object):
    def create_iteration_per_loop_var(self, train_op):
        if not isinstance(train_op, tf.Operation):
            raise ValueError("train_op must be an Operation, got %r" % (train_op,))
        with tf1.variable_scope("npu_runconfig", reuse=tf1.AUTO_REUSE):
            self._iterations = tf1.get_variable("iterations_per_loop", [], tf.int64, tf1.initializers.zeros(),
                                                trainable=False, collections=[tf1.GraphKeys.LOCAL_VARIABLES])
        record("create_iteration_per_loop_var", train_op=train_op.type)
        return tf.group(train_op, name="IterationOp")

    def load_iteration_per_loop_var(self, sess, iterations_per_loop=1):
        self._iterations.load(iterations_per_loop - 1, session=sess)
        record("load_iteration_per_loop_var", iterations_per_loop=iterations_per_loop,
               loaded=int(sess.run(self._iterations)))
