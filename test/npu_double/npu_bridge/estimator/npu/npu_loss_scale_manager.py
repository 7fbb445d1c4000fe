from tensorflow.contrib.mixed_precision import ExponentialUpdateLossScaleManager as _Exponential
from tensorflow.contrib.mixed_precision import FixedLossScaleManager as _Fixed

from npu_bridge.estimator.npu import record


class ExponentialUpdateLossScaleManager(_Exponential):
    def __init__(self, init_loss_scale, incr_every_n_steps, decr_every_n_nan_or_inf=2, incr_ratio=2,
                 decr_ratio=0.8):
        record("ExponentialUpdateLossScaleManager", init_loss_scale=init_loss_scale,
               incr_every_n_steps=incr_every_n_steps, decr_every_n_nan_or_inf=decr_every_n_nan_or_inf,
               incr_ratio=incr_ratio, decr_ratio=decr_ratio)
        super(ExponentialUpdateLossScaleManager, self).__init__(
            init_loss_scale, incr_every_n_steps, decr_every_n_nan_or_inf, incr_ratio, decr_ratio)


class FixedLossScaleManager(_Fixed):
    def __init__(self, loss_scale, enable_overflow_check=True):
        record("FixedLossScaleManager", loss_scale=loss_scale)
        super(FixedLossScaleManager, self).__init__(loss_scale)
