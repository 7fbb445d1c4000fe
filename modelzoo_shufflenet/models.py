"""The objects published in the `modelzoo.models` entry-point group, one per variant.

Importing this module is cheap (no TensorFlow): `zoo-run list` loads it to show names,
descriptions and level statuses; TensorFlow is imported when a graph is built.
"""
import copy
import os

from registry.data.demo import DEMO_HPARAMS
from registry.spec import parse_level_file

_HERE = os.path.dirname(os.path.abspath(__file__))
PAPER = "Zhang et al., ShuffleNet: An Extremely Efficient CNN for Mobile Devices, CVPR 2018 (arXiv:1707.01083)"
REFERENCE = "https://github.com/megvii-model/ShuffleNet-Series (ShuffleNetV1, PyTorch)"

# The seed's single-card recipe (Ascend ModelZoo ShuffleNetV1-1.0x-group3 for TensorFlow).
_DEFAULT_HPARAMS = {
    # optimisation
    "batch_size": 32,                 # per device
    "learning_rate": 0.01,            # at base_batch_size; scaled linearly with the global batch
    "base_batch_size": 32,
    "lr_schedule": "cosine",          # cosine | linear | constant
    "warmup_epochs": 0.0,
    "epochs": 150.0,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "weight_decay_on_bn": False,      # decay conv/FC weights only
    "label_smoothing": 0.1,
    # data
    "num_classes": 1000,
    "image_size": 224,
    "num_train_images": 1281167,
    "num_eval_images": 50000,
    "label_offset": 1,                # TF-slim ImageNet labels are 1..1000, 0 is background
    "crop_area_min": 0.08,            # Inception-style distorted crop
    "random_flip": True,
    "color_jitter": 0.0,              # torchvision ColorJitter strength for brightness, contrast, saturation; 0: off
    "train_dct_method": "INTEGER_FAST",  # JPEG DCT of training crops; eval always decodes as Pillow (ACCURATE)
    "eval_resize": "square",          # square: resize to 256x256 (the seed); aspect: short side 256
    "eval_crop_fraction": 0.875,      # 224 / 256
    "input_channel_order": "rgb",     # rgb | bgr (the official Megvii weights were trained on BGR)
    "input_normalization": "imagenet",  # imagenet: (x / 255 - mean) / std | none: pixels 0..255 as they are
    "shuffle_buffer": 10000,
    "data_threads": 0,                # parallel image preprocessing calls: 0 one per usable core, -1 AUTOTUNE
    "seed": -1,                       # -1: unseeded
    # checkpoints and evaluation
    "eval_every_epochs": 5.0,
    "save_checkpoints_steps": 5000,
    "keep_checkpoint_max": 5,
    "bn_recalibration_epochs": 0.0,   # > 0: a final BN pass at lr 0 after the schedule (registry.engine.recalibration)
    # network implementation
    "grouped_conv_impl": "auto",      # auto | split | block_diagonal | native
    "channel_shuffle_impl": "auto",   # auto (reshape) | reshape | slices
}

MEGVII_ITERATIONS = 300000   # train.py --total-iters
MEGVII_STEPS_PER_EPOCH = 1281167 // 1024   # our epoch at global batch 1024: 1251 steps
MEGVII_BN_ITERATIONS = 1280000 // 1024     # train.py's BN pass: int(1280000 / batch_size) = 1250 iterations

_PRESETS = {
    # Megvii's ShuffleNetV1/train.py, line by line in docs/megvii_recipe.md: global batch 1024, lr 0.5 decayed
    # linearly per iteration to 0 over 300,000 iterations (300000 / 1251 epochs of 1251 steps), SGD momentum 0.9,
    # wd 4e-5 on conv/FC weights only, label smoothing 0.1, ColorJitter 0.4, BGR 0..255 without mean/std, eval
    # OpencvResize(256) + CenterCrop(224), Pillow's JPEG pixels, then its BN pass (1,250 iterations). As written it
    # is that recipe on one device; on N devices set batch_size=1024/N (the global batch is batch_size * N and the
    # peak lr scales).
    "megvii": {"batch_size": 1024, "base_batch_size": 1024, "learning_rate": 0.5, "lr_schedule": "linear",
               "warmup_epochs": 0.0, "epochs": MEGVII_ITERATIONS / float(MEGVII_STEPS_PER_EPOCH), "momentum": 0.9,
               "weight_decay": 4e-5, "weight_decay_on_bn": False, "label_smoothing": 0.1, "crop_area_min": 0.08,
               "random_flip": True, "color_jitter": 0.4, "input_channel_order": "bgr", "input_normalization": "none",
               "eval_resize": "aspect", "eval_crop_fraction": 0.875, "train_dct_method": "INTEGER_ACCURATE",
               "bn_recalibration_epochs": MEGVII_BN_ITERATIONS / float(MEGVII_STEPS_PER_EPOCH)},
    # The bundled digits (registry.data.demo): about 99% held-out top-1 in a few minutes on 2 CPU cores.
    # A peak lr above ~0.03 at batch 64 destabilises the reference init (first conv std 0.01 under BN).
    # Transforms: a mild crop, no flip, no centre crop at eval (the digits fill the frame).
    "demo": dict(DEMO_HPARAMS, batch_size=64, base_batch_size=64, learning_rate=0.02, lr_schedule="cosine",
                 warmup_epochs=1.0, epochs=30.0, weight_decay=5e-5, crop_area_min=0.8, random_flip=False,
                 eval_resize="square", eval_crop_fraction=1.0, eval_every_epochs=10.0,
                 save_checkpoints_steps=200, seed=0),
}

# name suffix -> (groups, width, params with 1000 classes, multiply-adds at 224 (both as measured by
# `zoo-run describe` and checked by the tests), Megvii's reference top-1/top-5 on ImageNet val)
_VARIANTS = {
    "G1": (1, "1.0x", 1530936, 143078976, None),
    "G2": (2, "1.0x", 1732848, 140836512, None),
    "G3": (3, "1.0x", 1864728, 137460672, (0.678, 0.877)),
    "G4": (4, "1.0x", 1967344, 134339776, None),
    "G8": (8, "1.0x", 2433768, 138365952, (0.680, 0.864)),
    "G3_0_5X": (3, "0.5x", 717324, 37589856, (0.573, 0.800)),
    "G3_1_5X": (3, "1.5x", 3441168, 292443552, (0.716, 0.902)),
    "G3_2_0X": (3, "2.0x", 5449776, 524045184, (0.741, 0.914)),
    "G8_0_5X": (8, "0.5x", 1010448, 40469760, (0.588, 0.810)),
    "G8_1_5X": (8, "1.5x", 4268952, 290188800, (0.710, 0.896)),
    "G8_2_0X": (8, "2.0x", 6521232, 521942016, (0.729, 0.908)),
}


def read_level():
    with open(os.path.join(_HERE, "modelzoo_level.txt")) as f:
        return parse_level_file(f.read())


class ShuffleNetV1Model(object):
    """One ShuffleNetV1 variant, implementing the `registry.spec` contract."""

    # What the weights expect of their input; a warm start carries these over from its source.
    input_convention_hparams = ("input_channel_order", "input_normalization")

    def __init__(self, groups, width, params=None, macs=None, reference_accuracy=None, channels=None):
        self.groups = groups
        self.width = width
        self.channels = channels  # None: the reference's channel plan of (groups, width)
        self.level = read_level()
        self.presets = copy.deepcopy(_PRESETS)
        self.metadata = {
            "description": "ShuffleNetV1 %s, %d group%s (ImageNet classifier)"
                           % (width, groups, "" if groups == 1 else "s"),
            "paper": PAPER,
            "reference_implementation": REFERENCE,
            "params": params,
            "macs": macs,
        }
        if reference_accuracy:
            self.metadata["reference_top1"], self.metadata["reference_top5"] = reference_accuracy
            self.metadata["reference_accuracy_source"] = "Megvii ShuffleNet-Series README (ImageNet val, 224)"

    def default_hparams(self):
        return dict(_DEFAULT_HPARAMS)

    def hparam_ranges(self):
        """The valid values of this network's own hparams (the engine's keys have theirs in the registry)."""
        from modelzoo_shufflenet import grouped_conv, network, preprocessing
        from registry.hparam_ranges import OneOf, Range
        return {
            "crop_area_min": Range(0, 1, low_included=False, note="fraction of the image area; ImageNet uses 0.08"),
            "eval_crop_fraction": Range(0, 1, low_included=False, note="224 of 256 is 0.875"),
            "eval_resize": OneOf(preprocessing.EVAL_RESIZE_MODES),
            "input_channel_order": OneOf(preprocessing.CHANNEL_ORDERS),
            "input_normalization": OneOf(preprocessing.NORMALIZATIONS),
            "grouped_conv_impl": OneOf(("auto",) + grouped_conv.IMPLEMENTATIONS),
            "channel_shuffle_impl": OneOf(("auto",) + network.SHUFFLE_IMPLEMENTATIONS),
        }

    def build_model(self, images, is_training, hparams):
        from modelzoo_shufflenet.network import shufflenet_v1
        return shufflenet_v1(images, is_training, groups=self.groups, width=self.width,
                             num_classes=hparams["num_classes"], grouped_conv_impl=hparams["grouped_conv_impl"],
                             channels=self.channels, channel_shuffle_impl=hparams.get("channel_shuffle_impl", "auto"))

    def export_hparams(self, hparams, target):
        """The hparams of an exported inference graph; only "auto" choices are replaced.

        target "tensorflow" (SavedModel, frozen graph): grouped 1x1 convolutions as block-diagonal dense
        kernels, which run on any device (the native grouped op needs a GPU in TensorFlow).
        target "onnx": the native grouped op (a standard ONNX Conv with group=g); the channel shuffle stays the
        reshape-transpose-reshape, which the export writes in NCHW (registry.deploy.onnx_graph): one copy, and one
        ShuffleChannels in OpenVINO, where the slice-based form costs 3 slices and a concat.
        """
        hparams = dict(hparams)
        auto = {"tensorflow": {"grouped_conv_impl": "block_diagonal"},
                "onnx": {"grouped_conv_impl": "native"}}[target]
        for key, value in auto.items():
            if hparams.get(key, "auto") == "auto":
                hparams[key] = value
        return hparams

    def input_fn(self, mode, hparams, data_path, input_context=None):
        from modelzoo_shufflenet.preprocessing import input_fn
        return input_fn(mode, hparams, data_path, input_context)

    def preprocess_image(self, image_bytes, hparams):
        """One encoded image (JPEG, PNG, ...) -> the eval transform's float32 [S, S, 3] (predict, export)."""
        from modelzoo_shufflenet.preprocessing import eval_image
        return eval_image(image_bytes, hparams)

    def convert_state_dict(self, state_dict, hparams):
        """The official Megvii ShuffleNet-Series weights ({name: numpy array}, `module.` prefix removed)
        -> ({TF variable name: float32 array}, hparam overrides: num_classes and the reference's input
        convention). Raises a ZooError naming the first tensor that does not fit this variant."""
        from modelzoo_shufflenet import weights
        if self.channels is None:
            from modelzoo_shufflenet.network import architecture
            arch = architecture(self.groups, self.width)
            channels = (arch.first_channels,) + tuple(arch.stage_channels)
        else:
            channels = tuple(self.channels)
        variables, num_classes = weights.convert_state_dict(state_dict, self.groups, channels, repr(self))
        return variables, dict(weights.REFERENCE_INPUT_HPARAMS, num_classes=num_classes)

    def __repr__(self):
        channels = "" if self.channels is None else ", channels=%r" % (tuple(self.channels),)
        return "ShuffleNetV1Model(groups=%d, width=%r%s)" % (self.groups, self.width, channels)


for _suffix, (_groups, _width, _params, _macs, _accuracy) in _VARIANTS.items():
    globals()["SHUFFLENETV1_" + _suffix] = ShuffleNetV1Model(_groups, _width, _params, _macs, _accuracy)
