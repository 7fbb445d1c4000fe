"""Where training runs: the one place that picks CPU, GPU or Ascend NPU and checks the device settings.

`npu_bridge` (Huawei's CANN TensorFlow adapter) is an optional import; what the NPU needs in the session
(config, optimizer wrappers, loop sinking, broadcast) lives in `registry.engine.npu`.

Off the NPU the same `--precision_mode` names pick TF's own mixed precision:
- must_keep_origin_dtype / force_fp32 (the default): float32;
- allow_mix_precision on a GPU: TF's automatic mixed-precision graph rewrite (float16) plus dynamic loss
  scaling (`enable_mixed_precision_graph_rewrite`);
- allow_mix_precision on a CPU: where the CPU has bfloat16 hardware (`registry.cpu_features`, the one place that
  decides; `ZOO_RUN_CPU_BF16=1|0` forces either branch) and the lane has bfloat16 CPU kernels (tf2),
  "mixed_bfloat16": the plugin's dense and grouped 1x1 convolutions compute in bfloat16 (`registry.nn.convolve`:
  operands cast at use, results cast back), everything else (depthwise convolutions, batch norm, activations,
  classifier, loss, master weights) in float32, no loss scaling (bfloat16 has float32's exponent range); elsewhere
  float32, and the run says so (`training_precision`). Chosen by measurement, not probed at run time, by the
  CPU's features and the image size (below BF16_MIN_IMAGE_SIZE float32: the casts and per-group splits cost more
  than bfloat16 saves on small activations; `for_images`):

  | CPU (lane tf2, TF 2.21, oneDNN)          | float32 | mixed_bfloat16 | bfloat16 (all ops)  | allow_mix_precision |
  |------------------------------------------|---------|----------------|---------------------|---------------------|
  | AMD EPYC Zen 4, AVX512_BF16 (2 cores)    | 1.00    | 1.14-1.23x     | 0.70-0.80x          | mixed_bfloat16      |
  | the same, smaller images (BF16_SMALL_IMAGES) | 1.00 | 0.84-1.02x (< 160) | 0.52x at 32   | float32             |
  | Intel Xeon with AMX-BF16 (2 cores)       | 1.00    | not measured   | 0.59x (TF's rewrite) | mixed_bfloat16 (*) |
  | AVX2-only (e.g. AMD EPYC before Zen 4)   | 1.00    | emulated: slower | emulated: slower  | float32             |

  (*) unmeasured in this form: AMX adds bfloat16 matrix units to AVX512_BF16, which the convolutions use.
  (g3 1.0x, batch 32 at 224, the training graph of `zoo-run train` on synthetic images; each form in its own
  session of one process, steps alternating over 6-30 rounds, median of the paired step-time ratios (mixed_bfloat16
  in three runs: 1.23x over 12 rounds, 1.14x over 16, 1.16x over 30 with every pair faster, 1.01-1.34x); the
  machine was shared and loaded, so as ratios. The op profile of the all-bfloat16 step against float32 (trace of 3 steps,
  summed op time per step; float32 793 ms, bfloat16 953 ms): the convolutions gained (forward 86 -> 71 ms, filter
  gradient 199 -> 155, input gradient 151 -> 128, though the grouped ones ran block-diagonal: 3x the
  multiply-adds) but oneDNN's bfloat16 batch norm ran 2-2.5x float32's time (gradient 83 -> 207 ms, forward
  94 -> 151) and the bfloat16 depthwise gradients 2.5-5x (input 19 -> 99, filter 15 -> 29). Hence bfloat16 for
  the convolutions only, grouped ones split (block-diagonal in bfloat16: 1.00x float32; split 1.15-1.17x; a native
  bfloat16 forward with a split gradient 1.11x); the casts around them cost ~9% of the op time.)
- force_bf16 (ours; CPU only, lane tf2): the whole network in bfloat16 from float32 master weights, batch norm
  statistics and loss, on any CPU, for users who want it (slower than float32 on the CPUs measured, above; TF
  emulates bfloat16 on a CPU without bfloat16 hardware). TF's oneDNN bf16 auto-mixed-precision rewrite is not used:
  it made this graph slower (0.59x training on a Xeon with AMX);
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
# force_bf16 is ours (off the NPU only); the others are Ascend's names, which the NPU takes.
PRECISION_MODES = npu.PRECISION_MODES + ("force_bf16",)
# Off the NPU: TF's DynamicLossScale (halves on every overflow, doubles after `increment_period` good steps).
TF_LOSS_SCALE = dict(initial_loss_scale=2 ** 15, increment_period=2000, multiplier=2.0)
FLOAT32_MODES = ("must_keep_origin_dtype", "force_fp32")
OFF_NPU_MODES = FLOAT32_MODES + ("allow_mix_precision", "force_fp16", "force_bf16")

# allow_mix_precision on a CPU with bfloat16 hardware: mixed_bfloat16 from this image size up (pixels a side), float32
# below: g3 batch 32 on the Zen 4 of the table above, mixed_bfloat16 against float32, 24-40 alternating rounds.
BF16_MIN_IMAGE_SIZE = 160
BF16_SMALL_IMAGES = "0.84x at 32 (batch 64), 0.97x at 96, 1.02x at 128, 1.13x at 160 and 192 on a Zen 4"

DeviceSettings = collections.namedtuple(
    "DeviceSettings", "device precision_mode iterations_per_loop rank_size rank_id dump_path over_dump "
                      "profiling_path launch precision")
# launch: the environment.Launch the settings were made with; precision: the Precision that trains (resolve)
DeviceSettings.__new__.__defaults__ = (None, None)
Precision = collections.namedtuple("Precision", "name dtype note convolution_dtype")
Precision.__new__.__defaults__ = (None,)
Precision.__doc__ = """name: what the network computes in, for the lane line, run_summary.json and perf JSON
('float32', 'mixed_bfloat16', 'bfloat16', 'float16', 'mixed_float16', or on the NPU 'npu:<precision mode>');
dtype: the tf dtype graph.logits builds in; note: a sentence saying why (None when plain float32 was asked for);
convolution_dtype: the dtype the plugin's convolutions compute in when it is not `dtype` (registry.nn.convolve),
else None."""


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
    launch = environment.read(device, command, environ, port)
    mode = precision_mode or (npu.DEFAULT_PRECISION if device == "npu" else None)
    return DeviceSettings(device, mode, iterations_per_loop, launch.rank_size, launch.rank_id, dump_path, over_dump,
                          profiling_path, launch, training_precision(device, mode, environ))


def training_precision(device, precision_mode, environ=None, image_size=None):
    """The Precision a training step runs in for `device` and `precision_mode` (see the module doc and its table).
    On a CPU, allow_mix_precision asks `registry.cpu_features.bf16` (its ZOO_RUN_CPU_BF16 override included), the
    lane and `image_size` (pixels a side; None: not known yet, decided by the CPU alone; below
    BF16_MIN_IMAGE_SIZE float32); force_bf16 asks only the lane (ZooError naming lane tf2 on tf1)."""
    if device == "npu":
        if precision_mode == "force_bf16":
            raise ZooError("--precision_mode force_bf16 is a CPU setting; the Ascend NPU takes %s"
                           % ", ".join(npu.PRECISION_MODES))
        return Precision("npu:%s" % precision_mode, tf.float32, None)
    if precision_mode == "force_fp16":
        return Precision("float16", tf.float16, "force_fp16: float16 compute, float32 master weights, dynamic loss "
                                                "scaling")
    if precision_mode == "force_bf16":
        if not tf_compat.bf16_cpu_training():
            raise ZooError("--precision_mode force_bf16 needs lane tf2: %s" % tf_compat.bf16_lane_note())
        from registry import cpu_features
        has, reason = _cpu_bf16(cpu_features, environ)
        return Precision("bfloat16", tf.bfloat16, "force_bf16: the whole network in bfloat16 from float32 master "
                                                  "weights, batch norm and loss (%s; %s)" % (
                                                      reason, "0.70-0.80x float32's speed on a Zen 4" if has else
                                                      "TensorFlow emulates bfloat16 without that hardware: slower"))
    if precision_mode != "allow_mix_precision":
        return Precision("float32", tf.float32, None)
    if device == "gpu":
        return Precision("mixed_float16", tf.float32, "allow_mix_precision on a GPU: TensorFlow's float16 graph "
                                                      "rewrite with dynamic loss scaling")
    from registry import cpu_features
    has, reason = _cpu_bf16(cpu_features, environ)
    if not has:
        return Precision("float32", tf.float32, "allow_mix_precision trains in float32 here: %s, and bfloat16 "
                                                "without them is slower, never faster" % reason)
    if not tf_compat.bf16_cpu_training():
        return Precision("float32", tf.float32, "allow_mix_precision trains in float32 here: %s, but %s"
                         % (reason, tf_compat.bf16_lane_note()))
    if image_size is not None and image_size < BF16_MIN_IMAGE_SIZE:
        return Precision("float32", tf.float32, "allow_mix_precision trains in float32 here: %s, but at image_size "
                                                "%d bfloat16 convolutions were measured no faster than float32 "
                                                "(%s; they win from %d)" % (reason, image_size, BF16_SMALL_IMAGES,
                                                                            BF16_MIN_IMAGE_SIZE))
    return Precision("mixed_bfloat16", tf.float32, "allow_mix_precision on this CPU: convolutions in bfloat16, "
                                                   "depthwise convolutions, batch norm and the rest in float32, "
                                                   "float32 master weights (%s)" % reason, tf.bfloat16)


def for_images(settings, image_size):
    """`settings` with the Precision for training on `image_size` images (`training_precision`; it can only move
    allow_mix_precision on a CPU from mixed_bfloat16 to float32). The run's entry points call it once the hparams
    are known, before the lane line is written and the graph built."""
    if settings.device != "cpu" or settings.precision_mode != "allow_mix_precision":
        return settings
    return settings._replace(precision=training_precision(settings.device, settings.precision_mode,
                                                          image_size=image_size))


def _cpu_bf16(cpu_features, environ):
    try:
        return cpu_features.bf16(environ)
    except ValueError as err:
        raise ZooError(str(err))


def compute_dtype(settings):
    """The dtype the network computes in: float16 for force_fp16 and bfloat16 for force_bf16 off the NPU, else
    float32 (allow_mix_precision on a CPU keeps float32 outside the convolutions: `convolution_dtype`; the NPU
    casts itself)."""
    return tf.float32 if settings is None else precision(settings).dtype


def convolution_dtype(settings):
    """The dtype the plugin's convolutions compute in when it differs from `compute_dtype` (bfloat16 for
    allow_mix_precision on a CPU with bfloat16 hardware, lane tf2), else None."""
    return None if settings is None else precision(settings).convolution_dtype


def precision(settings):
    """The Precision `settings` train in: the one `resolve` (or `for_images`) made, else `training_precision`'s."""
    return settings.precision or training_precision(settings.device, settings.precision_mode)


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
    if settings.precision_mode == "force_bf16" or (settings.precision_mode == "allow_mix_precision"
                                                   and settings.device == "cpu"):
        return optimizer, None   # bfloat16 or float32 (training_precision): neither needs loss scaling
    scale = tf.compat.v1.train.experimental.DynamicLossScale(**TF_LOSS_SCALE)
    if settings.precision_mode == "allow_mix_precision":
        optimizer = tf.compat.v1.train.experimental.enable_mixed_precision_graph_rewrite(optimizer, scale)
    else:
        optimizer = tf.compat.v1.train.experimental.MixedPrecisionLossScaleOptimizer(optimizer, scale)
    return optimizer, scale()
