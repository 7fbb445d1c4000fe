import tensorflow as tf

from npu_bridge.estimator.npu import record

_NPU_ONLY = ("iterations_per_loop", "precision_mode", "enable_data_pre_proc", "hcom_parallel", "dump_config",
             "profiling_config", "mix_compile_mode", "enable_reduce_precision", "variable_format_optimize")


class DumpConfig(object):
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        record("DumpConfig", **kwargs)


class ProfilingConfig(object):
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        record("ProfilingConfig", **kwargs)


class NPURunConfig(tf.estimator.RunConfig):
    def __init__(self, **kwargs):
        self.npu_kwargs = {k: kwargs.pop(k) for k in _NPU_ONLY if k in kwargs}
        record("NPURunConfig", **dict(kwargs, **self.npu_kwargs))
        super(NPURunConfig, self).__init__(**kwargs)
