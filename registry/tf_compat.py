"""The one place that knows which TensorFlow this process runs on, and every difference that matters.

Two lanes, one code base (see setup.py):
- `tf1`: Python 3.7 + tensorflow==1.15.0, the design card's pinned stack and the only lane with
  Ascend's `npu_bridge` (the CANN adapter is built for TF 1.15).
- `tf2`: Python 3.10-3.13 + tensorflow 2.21. `tf.estimator` is gone (since 2.16) and `tf.compat.v1.layers` raise
  under Keras 3, so the engine on both lanes is `tf.compat.v1` graphs in a monitored session with hooks, and
  plugins build layers from `registry.nn`. Its x86 CPU kernels can be oneDNN's (AVX2/AVX-512), which run grouped
  convolutions natively; its CUDA 12.5 build runs on current NVIDIA GPUs, which TF 1.15's CUDA 10.0 build does not.

Whether TensorFlow 2.x runs its oneDNN CPU kernels is decided before it is imported (`registry.onednn`, called by
zoo-run); `cpu_kernels()` here reports what is in force.

Code elsewhere uses names that exist in both (`tf.compat.v1.*`, `tf.math.divide_no_nan`,
`tf.compat.v1.nn.in_top_k`, ...) and asks this module, never `tf.__version__`, for anything that differs.
What one lane writes for the other to read (exported graphs) is registry/deploy/graph_compat.py's concern.
"""
import os
import re
import warnings

import tensorflow as tf

from registry import onednn

VERSION = tuple(int(part) for part in tf.__version__.split(".")[:2])
LANE = "tf1" if VERSION[0] == 1 else "tf2"

LANES = {
    "tf1": "Python 3.7 + tensorflow==1.15.0 (make STACK=tf1; the Ascend NPU lane)",
    "tf2": "Python 3.10-3.13 + tensorflow==2.21.0 (make STACK=tf2; current CPUs and CUDA 12 GPUs)",
}


def quiet():
    """Hides TensorFlow's Python-side INFO/WARNING log and the lane's known harmless warnings; returns `tf`."""
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
    # TF 2.x, on reading the options of a tf.data dataset in graph mode (tf.distribute's input iterators do):
    # the legacy behaviour, which the v1 graph relies on.
    warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options across serialization")
    return tf


def describe():
    """One line for logs and reports, e.g. 'tf2 (TensorFlow 2.21.0, oneDNN CPU kernels on: TF_ENABLE_ONEDNN_OPTS=1
    set by zoo-run)'."""
    return "%s (TensorFlow %s, %s)" % (LANE, tf.__version__, cpu_kernels()["description"])


def cpu_kernels():
    """The CPU kernels in force: {"onednn": bool, "TF_ENABLE_ONEDNN_OPTS": its value or None, "set_by": "zoo-run",
    "environment" or None, "description": one line saying which and why (with the fix when they are off)}."""
    enabled, value, origin = onednn_enabled(), os.environ.get(onednn.VARIABLE) or None, onednn.origin()
    if LANE == "tf1":
        description = "oneDNN CPU kernels (intel-tensorflow)" if enabled else "no oneDNN CPU kernels (stock build)"
        if value:
            description += "; %s=%s is not read by TensorFlow 1.15" % (onednn.VARIABLE, value)
    elif enabled:
        description = "oneDNN CPU kernels on%s" % (
            ": %s=%s set by %s" % (onednn.VARIABLE, value, _setter(origin)) if value else " (TensorFlow's default)")
    elif value and value != "0":
        description = "oneDNN CPU kernels off: this TensorFlow build or CPU has none (%s=%s set by %s)" % (
            onednn.VARIABLE, value, _setter(origin))
    elif value:
        description = ("oneDNN CPU kernels off: %s=%s set by the environment (unset it and zoo-run turns them on; %s)"
                       % (onednn.VARIABLE, value, onednn.WHY))
    else:
        description = "oneDNN CPU kernels off (TensorFlow's default here; set %s=1 for them: %s)" % (
            onednn.VARIABLE, onednn.WHY)
    return {"onednn": enabled, onednn.VARIABLE: value, "set_by": origin, "description": description}


def _setter(origin):
    return "zoo-run" if origin == "zoo-run" else "the environment"


def onednn_enabled():
    """Whether the CPU kernels in force are oneDNN's (MKL-DNN): intel-tensorflow 1.15, or TF 2.x on x86 as
    TF_ENABLE_ONEDNN_OPTS left them at import (see `registry.onednn`); TF reads the state, this does not guess it.
    oneDNN kernels run a grouped convolution and its float32 gradient on the CPU; stock 1.15.0's run neither, and
    TF 2.21's Eigen kernels run the forward pass only (measured: "Gradients for grouped convolutions are not
    supported on CPU")."""
    try:
        if LANE == "tf1":
            from tensorflow.python import pywrap_tensorflow as port
        else:
            from tensorflow.python.util import _pywrap_util_port as port
    except ImportError:
        return False
    return bool(getattr(port, "IsMklEnabled", lambda: False)())


def op_def(name):
    """The OpDef this process's TensorFlow registers for op `name`, or None (1.15 lists its registry, 2.x looks
    one op up)."""
    from tensorflow.python.framework import op_def_registry
    if LANE == "tf1":
        return op_def_registry.get_registered_ops().get(name)
    return op_def_registry.get(name)


def gpu_count():
    """GPUs TensorFlow sees in this process (the one GPU probe of the project)."""
    return len(tf.config.experimental.list_physical_devices("GPU"))


def npu_supported():
    """Ascend's npu_bridge is the TF 1.15 adapter: the NPU path exists only on lane tf1."""
    return LANE == "tf1"


def npu_lane_error(what="--device npu"):
    """The message for an NPU request on a lane that cannot serve it."""
    return ("%s needs lane tf1: Ascend's npu_bridge (the CANN TensorFlow adapter) is built for TensorFlow 1.15, "
            "and this process runs TensorFlow %s (lane %s). Use %s." % (what, tf.__version__, LANE, LANES["tf1"]))


def bf16_cpu_training():
    """Whether this lane trains in bfloat16 on a CPU: TF 2.x has bfloat16 CPU kernels (convolutions, depthwise,
    fused batch norm with float32 statistics); TF 1.15's stock CPU build has none of these."""
    return LANE == "tf2"


def bf16_lane_note():
    return ("lane %s (TensorFlow %s) has no bfloat16 CPU training kernels; lane tf2 has them (%s)"
            % (LANE, tf.__version__, LANES["tf2"]))


def low_precision_inference_error(what):
    """The message for bf16/INT8 inference (OpenVINO + NNCF) asked on a lane that does not have it, or None on
    lane tf2. Lane tf1's pins (Python 3.7, openvino 2023.1) would need nncf 2.6, which the project does not pin."""
    if LANE == "tf2":
        return None
    return ("%s needs lane tf2: the project's bf16 and INT8 inference (OpenVINO 2026.4 with NNCF post-training "
            "quantization) is pinned for Python 3.10-3.13 only, and this process runs TensorFlow %s (lane %s). Use %s."
            % (what, tf.__version__, LANE, LANES["tf2"]))


def cuda_requirement():
    """What a GPU needs on this lane, for the --device gpu error."""
    if LANE == "tf1":
        return ("tensorflow==1.15.0 needs CUDA 10.0 and cuDNN 7.6, which do not support Ampere or newer GPUs; "
                "on a current GPU use lane tf2 (make STACK=tf2, pip install .[gpu])")
    return "lane tf2 needs the CUDA 12 build: pip install .[gpu] (tensorflow[and-cuda]==2.21.0) and an NVIDIA driver"


def op_error_line(err):
    """The line of a tf.errors.OpError's message (or of the message itself) that says what failed, e.g.
    'Invalid JPEG data or crop window', without graph internals ({{function_node ...}}, [[{{node ...}}]]) and
    without TF 2.x's wrapping: its 'Graph execution error:' heading and, for ops built in Python, the
    'Detected at node ... defined at' stack that ends with "Node: 'name'"."""
    text = str(getattr(err, "message", err))
    if text.startswith("Graph execution error:"):
        text = text[len("Graph execution error:"):]
        node = re.search(r"\nNode: '[^']*'\n", text)
        if node:
            text = text[node.end():]
    text = text.strip().split("\n")[0]
    text = re.sub(r"\{\{function_node [^}]*\}\}|\[\[\{\{node [^}]*\}\}[^\]]*\]\]|\[\[[^\]]*\]\]", "", text)
    return re.sub(r"\s+", " ", text).strip(" .")


def data_options(deterministic, max_intra_op_parallelism, private_threadpool_size=None):
    """tf.data.Options with the given ordering and threading (TF 2.x renamed `experimental_threading`
    to `threading`, and `experimental_deterministic` to `deterministic`)."""
    options = tf.data.Options()
    if LANE == "tf1":
        options.experimental_deterministic = deterministic
        threading = options.experimental_threading
    else:
        options.deterministic = deterministic
        threading = options.threading
    threading.max_intra_op_parallelism = max_intra_op_parallelism
    if private_threadpool_size:
        threading.private_threadpool_size = private_threadpool_size
    return options


def multi_worker_strategy():
    """MultiWorkerMirroredStrategy over TF_CONFIG's workers with ring all-reduce (works on CPU), in the
    graph-mode (v1) form the engine drives on both lanes."""
    if LANE == "tf1":
        return tf.distribute.experimental.MultiWorkerMirroredStrategy(
            tf.distribute.experimental.CollectiveCommunication.RING)
    return tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy(
        communication=tf.distribute.experimental.CollectiveCommunication.RING)


def mirrored_strategy(devices):
    """MirroredStrategy over `devices` (e.g. ['/cpu:0', '/cpu:1']), in its graph-mode (v1) form."""
    if LANE == "tf1":
        return tf.distribute.MirroredStrategy(devices)
    return tf.compat.v1.distribute.MirroredStrategy(devices)
