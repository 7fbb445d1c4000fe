"""Where training runs: the one place that picks CPU, GPU or Ascend NPU and checks the device settings.

`npu_bridge` (Huawei's CANN TensorFlow adapter) is an optional import; what the NPU needs in the session
(config, optimizer wrappers, loop sinking, broadcast) lives in `registry.engine.npu`.

Off the NPU the same `--precision_mode` names pick TF's own mixed precision:
- must_keep_origin_dtype / force_fp32 (the default): float32;
- allow_mix_precision on a GPU: TF's automatic mixed-precision graph rewrite (float16) plus dynamic loss
  scaling (`enable_mixed_precision_graph_rewrite`);
- allow_mix_precision on a CPU: bfloat16 compute from float32 master weights, batch norm statistics and loss
  (no loss scaling: bfloat16 has float32's exponent range) where the CPU has bfloat16 hardware
  (`registry.cpu_features`, the one place that decides; `ZOO_RUN_CPU_BF16=1|0` forces either branch) and the lane
  has bfloat16 CPU kernels (tf2); elsewhere float32, and the run says so (`training_precision`). TF's oneDNN bf16
  auto-mixed-precision rewrite is not used: it made this graph slower (0.59x training on a Xeon with AMX);
- force_fp16: explicit float16 compute on any device: the network runs in float16 from
  float32 master weights (cast at use), with dynamic loss scaling; a step whose gradients
  overflow is skipped (no variable or global step update) and the scale is halved.
"""
import collections

import tensorflow as tf

from registry import tf_compat
from registry.engine import environment, npu
from registry.errors import ZooError

DEVICES = ("auto", "cpu", "gpu", "npu")
PRECISION_MODES = npu.PRECISION_MODES
# Off the NPU: TF's DynamicLossScale (halves on every overflow, doubles after `increment_period` good steps).
TF_LOSS_SCALE = dict(initial_loss_scale=2 ** 15, increment_period=2000, multiplier=2.0)
FLOAT32_MODES = ("must_keep_origin_dtype", "force_fp32")
OFF_NPU_MODES = FLOAT32_MODES + ("allow_mix_precision", "force_fp16")

DeviceSettings = collections.namedtuple(
    "DeviceSettings", "device precision_mode iterations_per_loop rank_size rank_id dump_path over_dump "
                      "profiling_path launch precision")
# launch: the environment.Launch the settings were made with; precision: the Precision that trains (resolve)
DeviceSettings.__new__.__defaults__ = (None, None)
Precision = collections.namedtuple("Precision", "name dtype note")
Precision.__doc__ = """name: what the network computes in, for the lane line, run_summary.json and perf JSON
('float32', 'bfloat16', 'float16', 'mixed_float16', or on the NPU 'npu:<precision mode>'); dtype: the tf dtype
graph.logits builds in; note: a sentence saying why (None when plain float32 was asked for)."""


def npu_available():
    """Whether Ascend's npu_bridge imports (never on lane tf2: it is the TF 1.15 adapter)."""
    if not tf_compat.npu_supported():
        return False
    try:
        import npu_bridge  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_count():
    """GPUs TensorFlow sees in this process."""
    return tf_compat.gpu_count()


def gpu_available():
    return gpu_count() > 0


def resolve(device="auto", precision_mode=None, iterations_per_loop=1, dump_path=None, over_dump=False,
            profiling_path=None, environ=None, command="train", port=None):
    """Checked settings for `device`; 'auto' is npu when npu_bridge imports, else gpu if TF sees one, else cpu.
    The NPU ranks and the cluster come from the launch environment (`environment.read`, for `command`; `port`: the
    Slurm workers' port instead of the one derived from the job), kept as `launch`."""
    if device not in DEVICES:
        raise ZooError("--device must be one of %s, got %r" % (", ".join(DEVICES), device))
    if device == "auto":
        device = "npu" if npu_available() else "gpu" if gpu_available() else "cpu"
    elif device == "gpu" and not gpu_available():
        raise ZooError("--device gpu: TensorFlow sees no GPU here (%s); use --device cpu, or auto to pick what "
                       "is there" % tf_compat.cuda_requirement())
    elif device == "npu" and not tf_compat.npu_supported():
        raise ZooError(tf_compat.npu_lane_error())
    elif device == "npu" and not npu_available():
        raise ZooError("--device npu needs Huawei's npu_bridge (the CANN TensorFlow adapter), which does not "
                       "import here. Install the CANN toolkit and its TF adapter on an Ascend host and source its "
                       "set_env.sh, or use --device cpu|gpu.")
    if precision_mode is not None and precision_mode not in PRECISION_MODES:
        raise ZooError("--precision_mode must be one of %s, got %r" % (", ".join(PRECISION_MODES), precision_mode))
    if device != "npu":
        if precision_mode not in (None,) + OFF_NPU_MODES:
            raise ZooError("--precision_mode %s is an Ascend NPU setting; on %s use one of %s"
                           % (precision_mode, device, ", ".join(OFF_NPU_MODES)))
        if iterations_per_loop != 1 or over_dump or dump_path or profiling_path:
            raise ZooError("iterations_per_loop, dump and profiling are Ascend NPU settings (device is %s)" % device)
    if iterations_per_loop < 1:
        raise ZooError("iterations_per_loop must be >= 1, got %d" % iterations_per_loop)
<<<<<<< HEAD
    launch = environment.read(device, command, environ, port)
    return DeviceSettings(device, precision_mode or (npu.DEFAULT_PRECISION if device == "npu" else None),
                          iterations_per_loop, launch.rank_size, launch.rank_id, dump_path, over_dump, profiling_path,
                          launch)
=======
    launch = environment.read(device, command, environ)
    mode = precision_mode or (npu.DEFAULT_PRECISION if device == "npu" else None)
    return DeviceSettings(device, mode, iterations_per_loop, launch.rank_size, launch.rank_id, dump_path, over_dump,
                          profiling_path, launch, training_precision(device, mode, environ))


def training_precision(device, precision_mode, environ=None):
    """The Precision a training step runs in for `device` and `precision_mode` (see the module doc). On a CPU,
    allow_mix_precision asks `registry.cpu_features.bf16` (its ZOO_RUN_CPU_BF16 override included) and the lane."""
    if device == "npu":
        return Precision("npu:%s" % precision_mode, tf.float32, None)
    if precision_mode == "force_fp16":
        return Precision("float16", tf.float16, "force_fp16: float16 compute, float32 master weights, dynamic loss "
                                                "scaling")
    if precision_mode != "allow_mix_precision":
        return Precision("float32", tf.float32, None)
    if device == "gpu":
        return Precision("mixed_float16", tf.float32, "allow_mix_precision on a GPU: TensorFlow's float16 graph "
                                                      "rewrite with dynamic loss scaling")
    from registry import cpu_features
    try:
        has, reason = cpu_features.bf16(environ)
    except ValueError as err:
        raise ZooError(str(err))
    if not has:
        return Precision("float32", tf.float32, "allow_mix_precision trains in float32 here: %s, and bfloat16 "
                                                "without them is slower, never faster" % reason)
    if not tf_compat.bf16_cpu_training():
        return Precision("float32", tf.float32, "allow_mix_precision trains in float32 here: %s, but %s"
                         % (reason, tf_compat.bf16_lane_note()))
    return Precision("bfloat16", tf.bfloat16, "allow_mix_precision on this CPU: bfloat16 compute from float32 master "
                                              "weights, batch norm and loss (%s)" % reason)
>>>>>>> i25-precision


def compute_dtype(settings):
    """The dtype the network computes in: float16 for force_fp16 off the NPU, bfloat16 for allow_mix_precision on
    a CPU with bfloat16 hardware (`training_precision`), else float32 (the NPU casts itself)."""
    if settings is None:
        return tf.float32
    precision = settings.precision or training_precision(settings.device, settings.precision_mode)
    return precision.dtype


def align_steps(settings, steps):
    """Rounds a step count up to a multiple of iterations_per_loop (the NPU runs whole loops)."""
    n = settings.iterations_per_loop
    return -(-steps // n) * n


def wrap_optimizer(settings, optimizer):
    """(optimizer, loss scale tensor or None): all-reduce across cards, dynamic loss scaling in float16 modes."""
    if settings is None:
        return optimizer, None
    if settings.device == "npu":
        return npu.wrap_optimizer(settings, optimizer)
    if settings.precision_mode in (None,) + FLOAT32_MODES:
        return optimizer, None
    if settings.precision_mode == "allow_mix_precision" and settings.device == "cpu":
        return optimizer, None   # bfloat16 or float32 (training_precision): neither needs loss scaling
    scale = tf.compat.v1.train.experimental.DynamicLossScale(**TF_LOSS_SCALE)
    if settings.precision_mode == "allow_mix_precision":
        optimizer = tf.compat.v1.train.experimental.enable_mixed_precision_graph_rewrite(optimizer, scale)
    else:
        optimizer = tf.compat.v1.train.experimental.MixedPrecisionLossScaleOptimizer(optimizer, scale)
    return optimizer, scale()
