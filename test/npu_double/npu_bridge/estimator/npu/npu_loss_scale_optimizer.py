from tensorflow.contrib.mixed_precision import LossScaleOptimizer

from npu_bridge.estimator.npu import record


class NPULossScaleOptimizer(LossScaleOptimizer):
    """TF's own dynamic loss scaling: overflowing steps are skipped and the scale updated."""

    def __init__(self, opt, loss_scale_manager, is_distributed=False):
        record("NPULossScaleOptimizer", optimizer=type(opt).__name__, manager=type(loss_scale_manager).__name__,
               is_distributed=is_distributed)
        super(NPULossScaleOptimizer, self).__init__(opt, loss_scale_manager)
