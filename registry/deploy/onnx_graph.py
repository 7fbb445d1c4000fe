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


def gather_through_transposes(model):
    """Rewrites `Transpose(P) -> Gather(a) -> Transpose(P^-1)` (1-D constant indices, nothing else reading the
    intermediate tensors) as one `Gather(axis P[a])`; returns how many were rewritten."""
    graph = _Graph(model.graph)
    rewritten = 0
    for gather in list(model.graph.node):
        if gather.op_type != "Gather":
            continue
        indices = graph.constants.get(gather.input[1])
        first = graph.producer.get(gather.input[0])
        after = graph.only_consumers(gather.output[0])
        if indices is None or indices.ndim != 1 or first is None or first.op_type != "Transpose" or len(after) != 1:
            continue
        second = after[0]
        perm = list(_attribute(first, "perm", []))
        if second.op_type != "Transpose" or not perm or len(graph.only_consumers(first.output[0])) != 1:
            continue
        inverse = [perm.index(i) for i in range(len(perm))]
        if list(_attribute(second, "perm", [])) != inverse or second.output[0] in graph.outputs:
            continue   # (a graph output keeps its name: the pair stays; not in this project's graphs)
        axis = _attribute(gather, "axis", 0) % len(perm)
        gather.input[0] = first.input[0]
        _set_attribute(gather, "axis", perm[axis])
        for node in graph.consumers[second.output[0]]:
            node.input[:] = [gather.output[0] if name == second.output[0] else name for name in node.input]
        model.graph.node.remove(first)
        model.graph.node.remove(second)
        rewritten += 1
    return rewritten


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
                                      ("gathers_without_transposes", gather_through_transposes(model))])
    remove_unused(model)
    return counts
