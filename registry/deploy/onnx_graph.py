"""Rewrites of a converted ONNX graph that the runtimes do not all make themselves (onnx only; no runtime).

tf2onnx writes TensorFlow's explicit zero `tf.pad` ops as ONNX `Pad` nodes before VALID convolutions and
pools, and a channel permutation in NHWC (`tf.gather` on axis 3) between the two layout transposes it
puts around every NHWC op it cannot move them through. Measured on ShuffleNetV1 g3 (tf2onnx 1.17.0, opset
13): 7 `Pad`s and 32 `Transpose`s around its 16 channel shuffles; onnxruntime 1.19 folds none of the
`Pad`s (its Pad fusion needs a `pads` attribute on the consumer), 1.32 folds all but the max pool's,
and each `Transpose` is a copy of the feature map. onnxslim 0.1.98 folds the `Pad`s into `Conv` only
(4 stay) and keeps every `Transpose`, so these two rewrites are ours:

- `fold_pads`: a constant zero `Pad` of the spatial axes only is folded into the `pads` of the `Conv`,
  `AveragePool` (whose `count_include_pad` becomes 1: the padded zeros were counted before as well) or
  `MaxPool` that reads it, the max pool only where the padded tensor comes from a `Relu` (zeros then
  never win over a real value: every 3x3 window holds one) and each window holds a real element.
- `gather_through_transposes`: `Transpose(P) -> Gather(axis a, 1-D indices) -> Transpose(P^-1)` is
  `Gather(axis P[a])` on the first Transpose's input.

Both keep the graph's outputs bit-identical (they drop copies and zero padding, never reorder
arithmetic); `optimize` runs them and removes what no longer feeds an output.
"""
import collections

import numpy as np

POOLS = ("AveragePool", "MaxPool")


def _attribute(node, name, default=None):
    import onnx
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _set_attribute(node, name, value):
    import onnx
    for i, attribute in enumerate(node.attribute):
        if attribute.name == name:
            del node.attribute[i]
            break
    node.attribute.extend([onnx.helper.make_attribute(name, value)])


class _Graph(object):
    """The constants, producers and consumers of an onnx GraphProto's tensors."""

    def __init__(self, graph):
        from onnx import numpy_helper
        self.graph = graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and _attribute(node, "value") is not None:
                self.constants[node.output[0]] = numpy_helper.to_array(_attribute(node, "value"))
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers = collections.defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in graph.output}

    def only_consumers(self, tensor):
        """The nodes reading `tensor`, or [] when a graph output is it too."""
        return [] if tensor in self.outputs else self.consumers[tensor]


def _zero_spatial_pads(graph, pad):
    """[top, left, bottom, right] of a constant zero `Pad` of the last two axes of a 4-D tensor, else None."""
    if pad.op_type != "Pad" or (_attribute(pad, "mode", b"constant") or b"constant") != b"constant":
        return None
    if len(pad.input) < 2 or pad.input[1] not in graph.constants:   # opset < 11 keeps pads in an attribute
        return None
    if len(pad.input) > 2 and pad.input[2]:
        value = graph.constants.get(pad.input[2])
        if value is None or np.any(value != 0):
            return None
    pads = [int(p) for p in graph.constants[pad.input[1]].ravel()]
    if len(pads) != 8 or min(pads) < 0 or any(pads[i] for i in (0, 1, 4, 5)):
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def _foldable(graph, pad, consumer, added):
    """Whether `added` ([top, left, bottom, right]) can move from `pad` into `consumer`'s pads."""
    if consumer.op_type not in ("Conv",) + POOLS or consumer.input[0] != pad.output[0]:
        return False
    if (_attribute(consumer, "auto_pad", b"NOTSET") or b"NOTSET") != b"NOTSET":
        return False
    own = list(_attribute(consumer, "pads", [0, 0, 0, 0]))
    if len(own) != 4:
        return False
    if consumer.op_type == "AveragePool" and any(own) and not _attribute(consumer, "count_include_pad", 0):
        return False     # its own pads are not counted, the folded ones would be
    if consumer.op_type == "MaxPool":
        source = graph.producer.get(pad.input[0])
        kernel = list(_attribute(consumer, "kernel_shape", []))
        if source is None or source.op_type != "Relu" or len(kernel) != 2:
            return False
        if any(own[i] + added[i] > kernel[i % 2] - 1 for i in range(4)):
            return False   # a window of padding only: 0 after Pad, -inf in MaxPool's own padding
        if _attribute(consumer, "ceil_mode", 0) or len(consumer.output) > 1:
            return False
    return True


def fold_pads(model):
    """Folds each constant zero spatial `Pad` into the pads of the Conv/AveragePool/MaxPool nodes reading it
    (see the module docstring for when); returns how many `Pad`s were folded."""
    graph = _Graph(model.graph)
    folded = 0
    for pad in list(model.graph.node):
        added = _zero_spatial_pads(graph, pad)
        consumers = graph.only_consumers(pad.output[0]) if added else []
        if not consumers or not all(_foldable(graph, pad, c, added) for c in consumers):
            continue
        for consumer in consumers:
            own = list(_attribute(consumer, "pads", [0, 0, 0, 0]))
            _set_attribute(consumer, "pads", [own[i] + added[i] for i in range(4)])
            if consumer.op_type == "AveragePool":
                _set_attribute(consumer, "count_include_pad", 1)
            consumer.input[0] = pad.input[0]
        model.graph.node.remove(pad)
        folded += 1
    return folded


def _constant_list(graph, name):
    value = graph.constants.get(name)
    return None if value is None else [int(v) for v in value.ravel()]


def _single_next(graph, node, op_type, perm=None):
    """The one node reading `node`'s output when it is an `op_type` (with `perm`, for a Transpose), else None."""
    after = graph.only_consumers(node.output[0])
    if len(after) != 1 or after[0].op_type != op_type:
        return None
    if perm is not None and list(_attribute(after[0], "perm", [])) != perm:
        return None
    return after[0]


def channel_shuffles_in_nchw(model):
    """Rewrites each NHWC channel shuffle between layout transposes,

        Transpose(0,2,3,1) -> Reshape [n, H, W, a, b] -> Transpose(0,1,2,4,3) -> Reshape [n, H, W, a*b]
        -> Transpose(0,3,1,2),

    as the same permutation in NCHW: Reshape [n, a, b, H, W] -> Transpose(0,2,1,3,4) -> Reshape [n, a*b, H, W]
    (PyTorch's `channel_shuffle`, which OpenVINO runs as one ShuffleChannels); returns how many."""
    import onnx
    from onnx import numpy_helper
    graph = _Graph(model.graph)
    rewritten = 0
    for first in list(model.graph.node):
        if first.op_type != "Transpose" or list(_attribute(first, "perm", [])) != [0, 2, 3, 1]:
            continue
        split = _single_next(graph, first, "Reshape")
        swap = split and _single_next(graph, split, "Transpose", [0, 1, 2, 4, 3])
        merge = swap and _single_next(graph, swap, "Reshape")
        last = merge and _single_next(graph, merge, "Transpose", [0, 3, 1, 2])
        if last is None or last.output[0] in graph.outputs:
            continue
        split_shape, merge_shape = _constant_list(graph, split.input[1]), _constant_list(graph, merge.input[1])
        if not split_shape or not merge_shape or len(split_shape) != 5 or len(merge_shape) != 4:
            continue
        batch, height, width, a, b = split_shape
        if min(height, width, a, b) < 1 or merge_shape[1:] != [height, width, a * b]:
            continue
        prefix = "%s_nchw" % split.output[0].split(":")[0]
        model.graph.initializer.extend([
            numpy_helper.from_array(np.array([batch, a, b, height, width], np.int64), prefix + "_split_shape"),
            numpy_helper.from_array(np.array([batch, a * b, height, width], np.int64), prefix + "_merge_shape")])
        nodes = [onnx.helper.make_node("Reshape", [first.input[0], prefix + "_split_shape"], [prefix + "_split"],
                                       name=prefix + "_split"),
                 onnx.helper.make_node("Transpose", [prefix + "_split"], [prefix + "_swap"], name=prefix + "_swap",
                                       perm=[0, 2, 1, 3, 4]),
                 onnx.helper.make_node("Reshape", [prefix + "_swap", prefix + "_merge_shape"], [last.output[0]],
                                       name=prefix + "_merge")]
        position = list(model.graph.node).index(first)
        for node in (first, split, swap, merge, last):
            model.graph.node.remove(node)
        for offset, node in enumerate(nodes):
            model.graph.node.insert(position + offset, node)
        rewritten += 1
    return rewritten


def unshare_conv_constants(model):
    """Gives each Conv its own copy of a weight or bias initializer it shares with another node; returns how many
    copies were made. tf2onnx merges equal constants (e.g. the folded batch-norm biases of freshly initialised
    weights, all 1e-4), and OpenVINO 2026.4 then fuses neither the bias nor the ReLU or residual add into those
    convolutions (measured: 60 separate eltwise nodes, ~0.9x the speed of the unshared graph)."""
    inits = {t.name: t for t in model.graph.initializer}
    uses = collections.Counter(name for node in model.graph.node for name in node.input if name in inits)
    copies = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        for i, name in enumerate(node.input):
            if name in inits and uses[name] > 1:
                uses[name] -= 1
                copy = type(inits[name])()
                copy.CopyFrom(inits[name])
                copy.name = "%s_%s_%d" % (name, node.name or "conv", i)
                model.graph.initializer.append(copy)
                node.input[i] = copy.name
                copies += 1
    return copies


def remove_unused(model):
    """Drops nodes and initializers that no graph output depends on."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def optimize(model):
    """Runs the rewrites on an onnx ModelProto in place -> {rewrite: count}."""
    counts = collections.OrderedDict([("pads_folded", fold_pads(model)),
                                      ("channel_shuffles_in_nchw", channel_shuffles_in_nchw(model)),
                                      ("conv_constants_unshared", unshare_conv_constants(model))])
    remove_unused(model)
    return counts
