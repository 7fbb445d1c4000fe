"""Grouped 1x1 convolution, and the one place that decides how to compute it.

All implementations share one variable of shape [1, 1, in/groups, out] (TF's and PyTorch's grouped
layout), so a checkpoint loads whatever implementation computes it, on either TensorFlow lane:

- "split":          split the input into groups, one 1x1 conv each, concat.
- "block_diagonal": one dense 1x1 conv with a block-diagonal kernel (zeros off the diagonal);
                    Grappler folds the kernel and the following batch norm once in a frozen graph.
- "native":         tf.nn.conv2d with the grouped kernel. Runs on cuDNN (GPU) and on oneDNN CPU
                    kernels (TF 2.x on x86; float32 gradient only). Stock TF 1.15.0's CPU kernels reject
                    it at run time ("Generic conv implementation does not support grouped convolutions");
                    TF 2.21's Eigen kernels run a plain grouped Conv2D but neither its gradient nor the
                    Conv2D+BiasAdd+Relu that Grappler fuses in a frozen graph ("Fused conv implementation does
                    not support grouped convolutions for now").

`auto` picks, per lane, device, mode and the CPU kernels in force, the fastest measured (g3 1.0x, batch 32 at
224, 2 cores, images/sec; the tf1 rows on a 2-core AVX2 machine with `zoo-run perf --synthetic --set
grouped_conv_impl=...` in alternating rounds; the 2.15.1 row on a 2-core AVX-512 Xeon the same way; the 2.21.0
rows (issue 20) on a 2-core AMD EPYC Zen 4 (AVX-512, shared and loaded, so as ratios): the training graph of
`zoo-run train` (network, label-smoothed cross-entropy, weight decay, MomentumOptimizer, batch-norm updates) and
the frozen inference graph, each variant in its own session of one process, steps alternating A B A B over
14-40 rounds, the median of the paired step-time ratios; the bfloat16 row (issue 25, the same EPYC Zen 4, which
has AVX512_BF16) is the mixed_bfloat16 training graph, convolutions in bfloat16 and the rest float32, as ratios to
the float32 graph with native grouped convolutions, 8-10 rounds):

| lane / kernels                   | train                              | infer (frozen graph)                 |
|----------------------------------|------------------------------------|--------------------------------------|
| tf1, stock 1.15.0 (no oneDNN)    | split 12.4 > block_diag 10.9       | block_diagonal 55.6 > split 48.9     |
| tf1, intel-tensorflow 1.15.2     | block_diagonal 17.2 > split 14.8   | block_diagonal                       |
| tf2, 2.15.1 (oneDNN), float32    | native 47-50 > split 40-43 > block_diag 39-41 | native 311 (others not timed) |
| tf2, 2.21.0 (oneDNN), float32    | native 1.00 > split 0.88-0.93      | native 1.00 > split 0.64-0.71 > block_diagonal 0.57-0.64 |
| tf2, 2.21.0, oneDNN off          | split 1.00 > block_diag 0.85       | split 1.00 > block_diagonal 0.93-0.94 (native cannot run) |
| tf2, float16 (force_fp16)        | block_diagonal (no float16 grouped gradient on CPU) | block_diagonal        |
| tf2, 2.21.0 (oneDNN), bfloat16   | split 1.15-1.17 > native+split grad 1.11 > bd 1.00 | (evaluation: float32) |
| GPU (cuDNN), either lane         | native (not measured here: no GPU) | native                               |

On 2.21 with oneDNN, a native forward whose input gradient is a forward grouped conv with the per-group
transposed kernel (bit-identical, 16% faster for the six g3 1x1 shapes alone) trained at 0.93-1.00x the plain
native op in the whole graph, so TensorFlow's own gradient stays. What a training step's time is (TF 2.21,
oneDNN, op-by-op trace of 3 steps, share of the summed op time): convolution gradients 37% (filter 23%, input
14%; the grouped 1x1 filter gradients run at 2-3x their forward's time), batch norm 28% (forward 14%,
gradient 14%; memory-bound, and oneDNN's is ~1.6x slower per element at 24 and 60 channels than at 240),
forward convolutions 13%, depthwise convolutions and their gradients 5.5%, ReLU gradients 3%, the zero pads
and the slices of their and the concats' gradients 3.6%, the channel shuffles' transposes 2%, the rest (adds,
pools, classifier, optimizer) ~8%. network.py has what was measured of the pads and the shuffle.
"""
import tensorflow as tf

from registry import tf_compat
from registry.hparams import HParamsError

IMPLEMENTATIONS = ("split", "block_diagonal", "native")


def resolve_impl(impl, is_training, dtype=tf.float32):
    """Maps "auto" to the fastest implementation measured for this lane, device, mode and the CPU kernels really in
    force (`tf_compat.onednn_enabled()`, read from TensorFlow); any other value must be one of IMPLEMENTATIONS
    (HParamsError otherwise).

    oneDNN's grouped convolution gradient is float32 only: TF has no float16 or bfloat16 grouped-conv gradient on
    the CPU ("Gradients for grouped convolutions are not supported on CPU"), so float16 compute (force_fp16) off a
    GPU takes the split or block-diagonal form, and bfloat16 (allow_mix_precision's convolutions on a CPU with
    bfloat16 hardware, force_bf16) the split one (measured fastest, the table above). `dtype` is the dtype the
    convolutions compute in (registry.nn.convolution_dtype)."""
    if impl == "auto":
        if tf_compat.gpu_count():
            return "native"
        onednn = tf_compat.onednn_enabled()
        if tf_compat.LANE == "tf2" and onednn and tf.as_dtype(dtype) == tf.float32:
            return "native"
        if tf_compat.LANE == "tf2" and onednn and tf.as_dtype(dtype) == tf.bfloat16:
            return "split"
        if tf_compat.LANE == "tf2" and not onednn:
            return "split"
        return "split" if is_training and not onednn else "block_diagonal"
    if impl not in IMPLEMENTATIONS:
        raise HParamsError("grouped_conv_impl must be 'auto' or one of %s, got %r"
                           % (", ".join(IMPLEMENTATIONS), impl))
    return impl


def native_gradient_problem(dtype=tf.float32):
    """Why this process cannot compute the gradient of a native grouped convolution on its CPU, with the fix, or
    None when it can (a GPU, or TF 2.x's oneDNN kernels in float32). Measured: stock TF 1.15.0 and
    intel-tensorflow 1.15.2 reject even the forward pass; TF 2.21's Eigen kernels run a plain forward pass but no
    gradient; oneDNN's run the float32 gradient, not the float16 one.

    Inference graphs are not refused: the ONNX export builds them with native grouped convolutions on any lane
    (tf2onnx converts them; TensorFlow never runs them). A forced native inference graph run by TensorFlow on a
    CPU without oneDNN fails in TensorFlow's own words (see the module docstring)."""
    if tf_compat.gpu_count():
        return None
    alternatives = "or --set grouped_conv_impl=auto (or split, block_diagonal), which train anywhere"
    if tf_compat.LANE == "tf1":
        return ("TensorFlow 1.15 has no grouped convolution on the CPU. Train on a GPU, use lane tf2 (make STACK=tf2), "
                + alternatives)
    if not tf_compat.onednn_enabled():
        kernels = tf_compat.cpu_kernels()
        return ("TensorFlow's oneDNN CPU kernels are off in this process (TF_ENABLE_ONEDNN_OPTS=%s), and only they "
                "compute a grouped convolution's gradient on the CPU. Unset TF_ENABLE_ONEDNN_OPTS (zoo-run then sets "
                "it to 1) or set it to 1, %s" % (kernels["TF_ENABLE_ONEDNN_OPTS"] or "unset", alternatives))
    if tf.as_dtype(dtype) != tf.float32:
        return ("oneDNN's grouped convolution gradient is float32 only, and this graph computes in %s. Train in "
                "float32 (the default precision mode), %s" % (tf.as_dtype(dtype).name, alternatives))
    return None


def _refuse_gradient(problem):
    """A gradient function for tf.RegisterGradient that raises HParamsError(problem) when a gradient is built."""
    def gradient(op, grad):
        raise HParamsError("grouped_conv_impl=native cannot train here (the gradient of %s): %s" % (op.name, problem))
    return gradient


_REFUSALS = {}


def block_diagonal_kernel(kernel, groups):
    """[1, 1, in/g, out] grouped kernel -> [1, 1, in, out] dense kernel with zero off-diagonal blocks."""
    _, _, group_in, out_channels = kernel.shape.as_list()
    group_out = out_channels // groups
    blocks = []
    for g, block in enumerate(tf.split(kernel, groups, axis=3)):
        before, after = g * group_out, out_channels - (g + 1) * group_out
        blocks.append(tf.pad(block, [[0, 0], [0, 0], [0, 0], [before, after]]))
    return tf.concat(blocks, axis=2)


def conv1x1(x, kernel, groups, impl):
    """Grouped 1x1 convolution of NHWC `x` [N, H, W, in] with a [1, 1, in/groups, out] kernel -> [N, H, W, out],
    x's dtype.

    impl "native" builds TensorFlow's grouped Conv2D; where its gradient cannot run on this CPU (see
    `native_gradient_problem`) the op is built with a gradient that raises HParamsError naming the fix when a
    training step asks for it, so describing, exporting and inference still build."""
    if groups == 1:
        return tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "VALID")
    if impl == "native":
        problem = native_gradient_problem(x.dtype)
        if problem is None:
            return tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "VALID")
        name = _REFUSALS.get(problem)
        if name is None:
            name = _REFUSALS[problem] = "ZooRefusedGroupedConvGradient%d" % len(_REFUSALS)
            tf.RegisterGradient(name)(_refuse_gradient(problem))
        with tf.compat.v1.get_default_graph().gradient_override_map({"Conv2D": name}):
            return tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "VALID")
    if impl == "block_diagonal":
        return tf.nn.conv2d(x, block_diagonal_kernel(kernel, groups), [1, 1, 1, 1], "VALID")
    if impl == "split":
        inputs = tf.split(x, groups, axis=3)
        kernels = tf.split(kernel, groups, axis=3)
        return tf.concat([tf.nn.conv2d(i, k, [1, 1, 1, 1], "VALID") for i, k in zip(inputs, kernels)], axis=3)
    raise ValueError("unknown grouped conv implementation %r" % impl)
