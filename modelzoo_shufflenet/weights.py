"""The official ShuffleNetV1 weights (Megvii ShuffleNet-Series, PyTorch) -> this network's TF variables.

The reference's state_dict (`nn.DataParallel`'s `module.` prefix already removed) maps one to one:

    first_conv.0.weight                 [C, 3, 3, 3]      -> first_conv/kernel            [3, 3, 3, C]
    first_conv.1.{weight,bias,running_mean,running_var}  -> first_bn/{gamma,beta,moving_mean,moving_variance}
    features.N.branch_main_1.0.weight   [mid, in/g, 1, 1] -> stageS/unitU/pw_conv/kernel  [1, 1, in/g, mid]
    features.N.branch_main_1.1.*                          -> stageS/unitU/pw_bn/*
    features.N.branch_main_1.3.weight   [mid, 1, 3, 3]    -> stageS/unitU/dw_conv/depthwise_kernel [3, 3, mid, 1]
    features.N.branch_main_1.4.*                          -> stageS/unitU/dw_bn/*
    features.N.branch_main_2.0.weight   [out, mid/g, 1, 1] -> stageS/unitU/pwl_conv/kernel [1, 1, mid/g, out]
    features.N.branch_main_2.1.*                          -> stageS/unitU/pwl_bn/*
    classifier.0.weight                 [classes, C]      -> classifier/kernel            [C, classes]

(all TF names under `shufflenet_v1/`; N counts the units 0..15 over stages 2, 3, 4 of 4, 8, 4 units).
PyTorch's grouped kernel [out, in/g, kh, kw] is this network's [kh, kw, in/g, out] transposed: group
k owns output channels k*out/g.. in both. `*.num_batches_tracked` (a training counter) is not needed.

The reference's input convention is recorded with the weights (`REFERENCE_INPUT_HPARAMS`): BGR
pixels in 0..255 without mean/std, evaluated after an aspect-preserving resize of the short side to
256 and a centre crop of 224.
"""
import collections

import numpy as np

from registry.errors import ZooError

STAGE_REPEATS = (4, 8, 4)  # as network.STAGE_REPEATS (not imported: that module imports TensorFlow)
SCOPE = "shufflenet_v1"

# What the official checkpoints expect of their input (Megvii's train.py: OpencvResize(256),
# CenterCrop(224), ToBGRTensor()).
REFERENCE_INPUT_HPARAMS = {
    "input_channel_order": "bgr",
    "input_normalization": "none",
    "eval_resize": "aspect",
    "eval_crop_fraction": 0.875,
}

_BN_SUFFIXES = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                ("running_var", "moving_variance"))
IGNORED_SUFFIXES = (".num_batches_tracked",)

# how a reference tensor becomes the TF variable
_TRANSFORMS = {
    "conv": lambda a: np.transpose(a, (2, 3, 1, 0)),       # OIHW -> HWIO
    "depthwise": lambda a: np.transpose(a, (2, 3, 0, 1)),  # [C, 1, kh, kw] -> [kh, kw, C, 1]
    "linear": lambda a: np.transpose(a),                   # [classes, in] -> [in, classes]
    "vector": lambda a: a,
}

Entry = collections.namedtuple("Entry", "torch_name tf_name torch_shape kind")


class WeightsMismatchError(ZooError):
    """The checkpoint does not fit the network (another variant, another file)."""


def reference_layout(groups, channels, num_classes):
    """[Entry] of every reference tensor, in the reference's order, for a channel plan
    (first conv, stage 2, stage 3, stage 4)."""
    entries = []

    def batch_norm(torch_prefix, tf_prefix, width):
        for torch_suffix, tf_suffix in _BN_SUFFIXES:
            entries.append(Entry("%s.%s" % (torch_prefix, torch_suffix), "%s/%s" % (tf_prefix, tf_suffix),
                                 (width,), "vector"))

    first = channels[0]
    entries.append(Entry("first_conv.0.weight", SCOPE + "/first_conv/kernel", (first, 3, 3, 3), "conv"))
    batch_norm("first_conv.1", SCOPE + "/first_bn", first)
    in_channels, index = first, 0
    for stage, (repeats, out_channels) in enumerate(zip(STAGE_REPEATS, channels[1:])):
        for unit in range(repeats):
            stride = 2 if unit == 0 else 1
            first_groups = 1 if stage == 0 and unit == 0 else groups
            mid = out_channels // 4
            branch = out_channels - in_channels if stride == 2 else out_channels
            t = "features.%d." % index
            f = "%s/stage%d/unit%d/" % (SCOPE, stage + 2, unit + 1)
            entries.append(Entry(t + "branch_main_1.0.weight", f + "pw_conv/kernel",
                                 (mid, in_channels // first_groups, 1, 1), "conv"))
            batch_norm(t + "branch_main_1.1", f + "pw_bn", mid)
            entries.append(Entry(t + "branch_main_1.3.weight", f + "dw_conv/depthwise_kernel", (mid, 1, 3, 3),
                                 "depthwise"))
            batch_norm(t + "branch_main_1.4", f + "dw_bn", mid)
            entries.append(Entry(t + "branch_main_2.0.weight", f + "pwl_conv/kernel",
                                 (branch, mid // groups, 1, 1), "conv"))
            batch_norm(t + "branch_main_2.1", f + "pwl_bn", branch)
            in_channels, index = out_channels, index + 1
    entries.append(Entry("classifier.0.weight", SCOPE + "/classifier/kernel", (num_classes, in_channels), "linear"))
    return entries


def guess_variant(state_dict):
    """(groups, (first, stage 2, stage 3, stage 4) channels, classes) read off a reference state_dict, or None."""
    try:
        first = state_dict["first_conv.0.weight"].shape[0]
        stages, in_channels, index = [], first, 0
        for repeats in STAGE_REPEATS:
            branch = state_dict["features.%d.branch_main_2.0.weight" % index].shape[0]
            stages.append(branch + in_channels)
            in_channels, index = stages[-1], index + repeats
        group_in = state_dict["features.1.branch_main_1.0.weight"].shape[1]
        groups = stages[0] // group_in
        classes = state_dict["classifier.0.weight"].shape[0]
        return groups, tuple([first] + stages), classes
    except (KeyError, IndexError, AttributeError, ZeroDivisionError, ValueError, TypeError):
        return None


def variant_name(groups, channels):
    """The registered model name of a reference channel plan, or None (e.g. a custom plan)."""
    from modelzoo_shufflenet.network import _STAGE_CHANNELS  # deferred: that module imports TensorFlow
    for (g, width), plan in sorted(_STAGE_CHANNELS.items()):
        if g == groups and tuple(plan) == tuple(channels):
            return "shufflenetv1_g%d%s" % (g, "" if width == "1.0x" else "_" + width)
    return None


def _hint(state_dict):
    guess = guess_variant(state_dict)
    if not guess:
        return " Is it a ShuffleNetV1 checkpoint of Megvii's ShuffleNet-Series?"
    groups, channels, classes = guess
    name = variant_name(groups, channels)
    return " The checkpoint looks like ShuffleNetV1 with groups %d, channels %s, %d classes%s." % (
        groups, "/".join(str(c) for c in channels), classes,
        ": import it as %s" % name if name else "")


def convert_state_dict(state_dict, groups, channels, description):
    """({TF variable name: float32 array}, num_classes) from a reference state_dict.

    Every reference tensor of the variant must be present with its shape; anything else in the
    checkpoint (but `num_batches_tracked`) is an error. `description` names the model in messages.
    """
    classifier = state_dict.get("classifier.0.weight")
    if classifier is None or classifier.ndim != 2:
        raise WeightsMismatchError("the checkpoint has no classifier.0.weight [classes, features] tensor, "
                                   "which %s needs.%s" % (description, _hint(state_dict)))
    num_classes = int(classifier.shape[0])
    variables = collections.OrderedDict()
    for entry in reference_layout(groups, channels, num_classes):
        if entry.torch_name not in state_dict:
            raise WeightsMismatchError("tensor %s (for %s, shape %s) is missing from the checkpoint.%s"
                                       % (entry.torch_name, entry.tf_name, list(entry.torch_shape),
                                          _hint(state_dict)))
        value = state_dict[entry.torch_name]
        if tuple(value.shape) != entry.torch_shape:
            raise WeightsMismatchError(
                "tensor %s has shape %s in the checkpoint, but %s needs %s (for %s).%s"
                % (entry.torch_name, list(value.shape), description, list(entry.torch_shape), entry.tf_name,
                   _hint(state_dict)))
        if not np.issubdtype(value.dtype, np.floating):
            raise WeightsMismatchError("tensor %s is %s, expected floating point" % (entry.torch_name, value.dtype))
        variables[entry.tf_name] = np.ascontiguousarray(_TRANSFORMS[entry.kind](value), dtype=np.float32)
    expected = {entry.torch_name for entry in reference_layout(groups, channels, num_classes)}
    for name in state_dict:
        if name not in expected and not name.endswith(IGNORED_SUFFIXES):
            raise WeightsMismatchError("the checkpoint has tensor %s (shape %s), which %s does not have%s.%s"
                                       % (name, list(state_dict[name].shape), description,
                                          " (this network's classifier has no bias)"
                                          if name == "classifier.0.bias" else "", _hint(state_dict)))
    return variables, num_classes
