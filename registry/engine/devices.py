"""Where training runs: the one place that knows CPU, GPU and Ascend NPU (npu_bridge).

`npu_bridge` (Huawei's CANN TensorFlow adapter) is an optional import. On the NPU the Estimator
is `NPUEstimator` with an `NPURunConfig` (precision mode, iterations per loop, data
pre-processing on device, parallel gradient all-reduce, dump and profiling), the optimizer is
wrapped in `NPUDistributedOptimizer` when RANK_SIZE > 1 and, for the reduced-precision modes, in
`NPULossScaleOptimizer` with dynamic (exponential-update) loss scaling.
"""
import collections
import os

import tensorflow as tf

from registry.errors import ZooError

DEVICES = ("auto", "cpu", "gpu", "npu")
PRECISION_MODES = ("allow_mix_precision", "allow_fp32_to_fp16", "force_fp16", "must_keep_origin_dtype",
                   "force_fp32")
DEFAULT_NPU_PRECISION = "allow_mix_precision"
# Modes in which some computation runs in float16, so gradients need loss scaling.
LOSS_SCALED_MODES = ("allow_mix_precision", "allow_fp32_to_fp16", "force_fp16")
LOSS_SCALE = dict(init_loss_scale=2 ** 32, incr_every_n_steps=1000, decr_every_n_nan_or_inf=2, decr_ratio=0.5)

DeviceSettings = collections.namedtuple(
    "DeviceSettings", "device precision_mode iterations_per_loop rank_size rank_id dump_path over_dump "
                      "profiling_path")


def npu_available():
    try:
        import npu_bridge  # noqa: F401
    except ImportError:
        return False
    return True


def _gpu_available():
    return bool(tf.config.experimental.list_physical_devices("GPU"))


def resolve(device="auto", precision_mode=None, iterations_per_loop=1, dump_path=None, over_dump=False,
            profiling_path=None, environ=None):
    """Checked settings for `device`; 'auto' is npu when npu_bridge imports, else gpu if TF sees one, else cpu."""
    environ = os.environ if environ is None else environ
    if device not in DEVICES:
        raise ZooError("--device must be one of %s, got %r" % (", ".join(DEVICES), device))
    if device == "auto":
        device = "npu" if npu_available() else "gpu" if _gpu_available() else "cpu"
    elif device == "npu" and not npu_available():
        raise ZooError("--device npu needs Huawei's npu_bridge (the CANN TensorFlow adapter), which does not "
                       "import here. Install the CANN toolkit and its TF adapter on an Ascend host and source its "
                       "set_env.sh, or use --device cpu|gpu.")
    if precision_mode is not None and precision_mode not in PRECISION_MODES:
        raise ZooError("--precision_mode must be one of %s, got %r" % (", ".join(PRECISION_MODES), precision_mode))
    if device != "npu":
        if precision_mode not in (None, "must_keep_origin_dtype", "force_fp32"):
            raise ZooError("--precision_mode %s is an Ascend NPU setting; on %s training runs in float32"
                           % (precision_mode, device))
        if iterations_per_loop != 1 or over_dump or dump_path or profiling_path:
            raise ZooError("iterations_per_loop, dump and profiling are Ascend NPU settings (device is %s)" % device)
    if iterations_per_loop < 1:
        raise ZooError("iterations_per_loop must be >= 1, got %d" % iterations_per_loop)
    rank_size, rank_id = int(environ.get("RANK_SIZE", 1) or 1), int(environ.get("RANK_ID", 0) or 0)
    if device == "npu" and rank_size > 1 and not environ.get("RANK_TABLE_FILE"):
        raise ZooError("RANK_SIZE=%d needs RANK_TABLE_FILE (the HCCL rank table JSON of the cards)" % rank_size)
    return DeviceSettings(device, precision_mode or (DEFAULT_NPU_PRECISION if device == "npu" else None),
                          iterations_per_loop, rank_size if device == "npu" else 1, rank_id if device == "npu" else 0,
                          dump_path, over_dump, profiling_path)


def align_steps(settings, steps):
    """Rounds a step count up to a multiple of iterations_per_loop (the NPU runs whole loops)."""
    n = settings.iterations_per_loop
    return -(-steps // n) * n


def make_estimator(settings, model_fn, model_dir, seed, save_checkpoints_steps, keep_checkpoint_max):
    common = dict(model_dir=model_dir, tf_random_seed=seed, save_checkpoints_steps=save_checkpoints_steps,
                  keep_checkpoint_max=keep_checkpoint_max, save_summary_steps=100, log_step_count_steps=100)
    if settings.device != "npu":
        config = tf.estimator.RunConfig(save_checkpoints_secs=None, **common)
        return tf.estimator.Estimator(model_fn, config=config)
    from npu_bridge.estimator.npu.npu_config import DumpConfig, NPURunConfig, ProfilingConfig
    from npu_bridge.estimator.npu.npu_estimator import NPUEstimator
    dump_config = None
    if settings.over_dump:
        dump_config = DumpConfig(enable_dump_debug=True, dump_path=settings.dump_path or model_dir,
                                 dump_debug_mode="all")
    elif settings.dump_path:
        dump_config = DumpConfig(enable_dump=True, dump_path=settings.dump_path, dump_step="0|5|10",
                                 dump_mode="all")
    profiling_config = None
    if settings.profiling_path:
        profiling_config = ProfilingConfig(
            enable_profiling=True,
            profiling_options='{"output":"%s","training_trace":"on","task_trace":"on"}' % settings.profiling_path)
    config = NPURunConfig(iterations_per_loop=settings.iterations_per_loop, precision_mode=settings.precision_mode,
                          enable_data_pre_proc=True, hcom_parallel=True, dump_config=dump_config,
                          profiling_config=profiling_config, **common)
    return NPUEstimator(model_fn=model_fn, config=config)


def wrap_optimizer(settings, optimizer):
    """The optimizer the device needs: all-reduce across cards, dynamic loss scaling in float16 modes."""
    if settings is None or settings.device != "npu":
        return optimizer
    if settings.rank_size > 1:
        from npu_bridge.estimator.npu.npu_optimizer import NPUDistributedOptimizer
        optimizer = NPUDistributedOptimizer(optimizer)
    if settings.precision_mode in LOSS_SCALED_MODES:
        from npu_bridge.estimator.npu.npu_loss_scale_manager import ExponentialUpdateLossScaleManager
        from npu_bridge.estimator.npu.npu_loss_scale_optimizer import NPULossScaleOptimizer
        manager = ExponentialUpdateLossScaleManager(**LOSS_SCALE)
        optimizer = NPULossScaleOptimizer(optimizer, manager, is_distributed=settings.rank_size > 1)
    return optimizer
