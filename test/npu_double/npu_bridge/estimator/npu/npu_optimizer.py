import tensorflow as tf

from npu_bridge.estimator.npu import record


class NPUDistributedOptimizer(tf.compat.v1.train.Optimizer):
    """One process here: gradients pass through unchanged (the real one all-reduces them over HCCL)."""

    def __init__(self, optimizer, name=None):
        record("NPUDistributedOptimizer", optimizer=type(optimizer).__name__)
        super(NPUDistributedOptimizer, self).__init__(use_locking=False, name=name or "NPUDistributedOptimizer")
        self._optimizer = optimizer

    def compute_gradients(self, *args, **kwargs):
        return self._optimizer.compute_gradients(*args, **kwargs)

    def apply_gradients(self, *args, **kwargs):
        return self._optimizer.apply_gradients(*args, **kwargs)

    def get_slot(self, *args, **kwargs):
        return self._optimizer.get_slot(*args, **kwargs)

    def get_slot_names(self, *args, **kwargs):
        return self._optimizer.get_slot_names(*args, **kwargs)

    def variables(self):
        return self._optimizer.variables()
