import tensorflow as tf

from npu_bridge.estimator.npu import record


class NPUEstimator(tf.estimator.Estimator):
    def __init__(self, model_fn=None, model_dir=None, config=None, params=None, job_start_file="",
                 warm_start_from=None):
        record("NPUEstimator", config=type(config).__name__)
        super(NPUEstimator, self).__init__(model_fn=model_fn, model_dir=model_dir, config=config, params=params,
                                           warm_start_from=warm_start_from)
