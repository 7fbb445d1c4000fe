"""Ascend NPU training in sess.run mode (Huawei's npu_bridge, the CANN adapter of TensorFlow 1.15): the session
config, the optimizer wrappers and the session hooks, wired as Ascend documents them for sessions without
NPUEstimator.

- Session config: the custom graph optimizer `NpuOptimizer` runs the graph on the card (`use_off_line`), with
  `precision_mode`, `iterations_per_loop`, `enable_data_pre_proc` (the input pipeline runs on the device side),
  `hcom_parallel` (all-reduce overlapped with the backward pass) and the dump / profiling options in its
  parameter map; Grappler's remapping and memory optimisation are off, as npu_bridge requires.
- Loop sinking: `util.IterationPerLoop().create_iteration_per_loop_var(train_op)` before the session exists,
  `load_iteration_per_loop_var(session, N)` after (`set_iteration_per_loop` would add variables to the
  monitored session's finalised graph); each sess.run then runs N steps on the card.
- Optimizer: `NPUDistributedOptimizer` (HCCL all-reduce, averaged over RANK_SIZE) when RANK_SIZE > 1, inside
  `NPULossScaleOptimizer` with an `ExponentialUpdateLossScaleManager` (dynamic loss scaling) in the precision
  modes that compute in float16.
- Broadcast: rank 0's initial values of every global variable (batch-norm moving statistics included, which
  npu_bridge's own NPUBroadcastGlobalVariablesHook leaves out) reach the other ranks once the session exists.

npu_bridge is imported only here and only when the device is npu (it exists only on Ascend hosts).
"""
import tensorflow as tf

tf1 = tf.compat.v1

PRECISION_MODES = ("allow_mix_precision", "allow_fp32_to_fp16", "force_fp16", "must_keep_origin_dtype",
                   "force_fp32")
DEFAULT_PRECISION = "allow_mix_precision"   # the ModelZoo scripts' default
# Modes in which some computation runs in float16, so gradients need loss scaling.
LOSS_SCALED_MODES = ("allow_mix_precision", "allow_fp32_to_fp16", "force_fp16")
LOSS_SCALE = dict(init_loss_scale=2 ** 32, incr_every_n_steps=1000, decr_every_n_nan_or_inf=2, decr_ratio=0.5)


def optimizer_options(settings, model_dir):
    """{name: value} of the NpuOptimizer parameter map for `settings` (a devices.DeviceSettings); dumps go to
    `settings.dump_path`, or to `model_dir` for --over_dump without a path."""
    options = {"use_off_line": True, "precision_mode": settings.precision_mode,
               "iterations_per_loop": settings.iterations_per_loop, "enable_data_pre_proc": True,
               "hcom_parallel": True}
    if settings.over_dump:
        options.update(enable_dump_debug=True, dump_path=settings.dump_path or model_dir, dump_debug_mode="all")
    elif settings.dump_path:
        options.update(enable_dump=True, dump_path=settings.dump_path, dump_step="0|5|10", dump_mode="all")
    if settings.profiling_path:
        options.update(profiling_mode=True, profiling_options='{"output":"%s","training_trace":"on","task_trace":"on"}'
                       % settings.profiling_path)
    return options


def session_config(settings, model_dir, config=None):
    """A tf.compat.v1.ConfigProto (a copy of `config` when given) that runs the graph on the card."""
    from tensorflow.core.protobuf.rewriter_config_pb2 import RewriterConfig
    result = tf1.ConfigProto()
    if config is not None:
        result.CopyFrom(config)
    custom = result.graph_options.rewrite_options.custom_optimizers.add()
    custom.name = "NpuOptimizer"
    for name, value in optimizer_options(settings, model_dir).items():
        if isinstance(value, bool):
            custom.parameter_map[name].b = value
        elif isinstance(value, int):
            custom.parameter_map[name].i = value
        else:
            custom.parameter_map[name].s = tf.compat.as_bytes(value)
    result.graph_options.rewrite_options.remapping = RewriterConfig.OFF
    result.graph_options.rewrite_options.memory_optimization = RewriterConfig.OFF
    return result


def eval_session_config(settings, model_dir):
    """The session config of an evaluation on `settings` (a devices.DeviceSettings or None): on the NPU the card's,
    one step per sess.run (evaluation sinks no loop); elsewhere None (TensorFlow's defaults)."""
    if settings is None or settings.device != "npu":
        return None
    return session_config(settings._replace(iterations_per_loop=1), model_dir)


def wrap_optimizer(settings, optimizer):
    """(optimizer, loss scale tensor or None): all-reduce across cards, dynamic loss scaling in float16 modes."""
    if settings.rank_size > 1:
        from npu_bridge.estimator.npu.npu_optimizer import NPUDistributedOptimizer
        optimizer = NPUDistributedOptimizer(optimizer)
    if settings.precision_mode not in LOSS_SCALED_MODES:
        return optimizer, None
    from npu_bridge.estimator.npu.npu_loss_scale_manager import ExponentialUpdateLossScaleManager
    from npu_bridge.estimator.npu.npu_loss_scale_optimizer import NPULossScaleOptimizer
    manager = ExponentialUpdateLossScaleManager(**LOSS_SCALE)
    optimizer = NPULossScaleOptimizer(optimizer, manager, is_distributed=settings.rank_size > 1)
    return optimizer, manager.get_loss_scale()


class _LoopSinkingHook(tf1.train.SessionRunHook):
    def __init__(self, iteration, iterations_per_loop):
        self._iteration, self._iterations = iteration, iterations_per_loop

    def after_create_session(self, session, coord):
        self._iteration.load_iteration_per_loop_var(session, self._iterations)


class _BroadcastHook(tf1.train.SessionRunHook):
    """Sets every global variable to rank 0's value once the session exists (after a restore or initialisation)."""

    def begin(self):
        from npu_bridge.hccl import hccl_ops
        variables = tf1.global_variables()
        values = hccl_ops.broadcast(tensor=[v.read_value() for v in variables], root_rank=0)
        self._assign = tf.group(*[tf1.assign(v, value) for v, value in zip(variables, values)])

    def after_create_session(self, session, coord):
        session.run(self._assign)


def training(settings, train_op):
    """(the train op to run, [session hooks]) for the card: loop sinking of `iterations_per_loop` steps per
    sess.run, and the broadcast of rank 0's variables when RANK_SIZE > 1. Call before the session exists."""
    hooks = []
    if settings.iterations_per_loop > 1:
        from npu_bridge.estimator.npu import util
        iteration = util.IterationPerLoop()
        train_op = iteration.create_iteration_per_loop_var(train_op)
        hooks.append(_LoopSinkingHook(iteration, settings.iterations_per_loop))
    if settings.rank_size > 1:
        hooks.append(_BroadcastHook())
    return train_op, hooks
