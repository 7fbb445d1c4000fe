"""The object published in the `modelzoo.models` entry-point group as `resnet50_v1_5`.

Importing this module is cheap (no TensorFlow): `zoo-run list` loads it to show the name,
description and level statuses; TensorFlow is imported when a graph is built.
"""
import os

from registry.data.demo import DEMO_HPARAMS
from registry.spec import parse_level_file

_HERE = os.path.dirname(os.path.abspath(__file__))

# The Ascend ModelZoo ResNet-50 for TensorFlow recipe (its res50_256bs configs): 256 images per
# device, Nesterov momentum 0.9, peak lr 0.1 per 256 images scaled linearly with the global batch
# (0.8 on 8 devices), linear warm-up then cosine decay, 90 epochs, weight decay 1e-4 on conv and
# FC weights only, label smoothing 0.1, Inception crop, and the last BN of each block started at 0.
_DEFAULT_HPARAMS = {
    # optimisation (engine keys)
    "batch_size": 256,                 # per device
    "learning_rate": 0.1,              # at base_batch_size; scaled linearly with the global batch
    "base_batch_size": 256,
    "lr_schedule": "cosine",
    "warmup_epochs": 5.0,
    "epochs": 90.0,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-4,
    "weight_decay_on_bn": False,       # no decay on batch-norm gamma/beta and the classifier bias
    "label_smoothing": 0.1,
    # data: TF-slim ImageNet records (registry.data.classification keys)
    "num_classes": 1000,
    "image_size": 224,
    "num_train_images": 1281167,
    "num_eval_images": 50000,
    "label_offset": 1,                 # TF-slim labels are 1..1000, 0 is background
    "shuffle_buffer": 10000,
    "data_threads": 0,                 # parallel preprocessing calls: 0 one per usable core, -1 AUTOTUNE
    "seed": -1,                        # -1: unseeded
    # this network's transforms (modelzoo_resnet.preprocessing)
    "crop_area_range": [0.08, 1.0],    # Inception-style distorted crop, fraction of the image area
    "random_flip": True,
    "eval_crop_fraction": 0.875,       # shorter side to 256, centre crop 224
    # checkpoints and evaluation
    "eval_every_epochs": 4.0,
    "save_checkpoints_steps": 5004,    # one epoch at batch 256
    "keep_checkpoint_max": 5,
    # network (modelzoo_resnet.network)
    "bn_momentum": 0.997,              # moving-average decay of the batch-norm statistics
    "zero_init_residual": True,        # the last BN gamma of each bottleneck starts at 0
}

_PRESETS = {
    # The bundled digits (registry.data.demo) at their stored 32x32: a mild crop, no flip, no centre
    # crop; a fast batch-norm average, since the whole run is a few hundred steps.
    "demo": dict(DEMO_HPARAMS, batch_size=32, base_batch_size=32, learning_rate=0.05, warmup_epochs=1.0,
                 epochs=5.0, weight_decay=5e-5, crop_area_range=[0.8, 1.0], random_flip=False,
                 eval_crop_fraction=1.0, eval_every_epochs=0.0, save_checkpoints_steps=1000,
                 keep_checkpoint_max=2, bn_momentum=0.9, seed=0),
}


def read_level():
    with open(os.path.join(_HERE, "modelzoo_level.txt")) as f:
        return parse_level_file(f.read())


class ResNet50V15(object):
    """ResNet-50 v1.5, implementing the `registry.spec` contract."""

    def __init__(self):
        self.level = read_level()
        self.presets = {name: dict(preset) for name, preset in _PRESETS.items()}
        self.metadata = {
            "description": "ResNet-50 v1.5, TF official models layout (ImageNet classifier)",
            "paper": "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (arXiv:1512.03385)",
            "reference_implementation": "TensorFlow official models, ResNet v1.5 (stride 2 on the 3x3 conv)",
            # both as measured by `zoo-run describe resnet50_v1_5` (1000 classes, 224x224) and checked by tests
            "params": 25557032,
            "macs": 4089184256,
            "reference_top1": 0.769,
            "reference_accuracy_source": "Ascend ModelZoo ResNet50 for TensorFlow README (90 epochs, ImageNet val)",
        }

    def default_hparams(self):
        return {key: list(value) if isinstance(value, list) else value for key, value in _DEFAULT_HPARAMS.items()}

    def hparam_ranges(self):
        """The valid values of this network's own hparams (the engine's keys have theirs in the registry)."""
        from registry.hparam_ranges import Range
        return {
            "crop_area_range": Range(0, 1, low_included=False, note="fractions of the image area, [low, high]"),
            "eval_crop_fraction": Range(0, 1, low_included=False, note="224 of 256 is 0.875"),
            "bn_momentum": Range(0, 1, high_included=False),
        }

    def build_model(self, images, is_training, hparams):
        from modelzoo_resnet.network import resnet50_v1_5
        return resnet50_v1_5(images, is_training, num_classes=int(hparams["num_classes"]),
                             bn_momentum=float(hparams["bn_momentum"]),
                             zero_init_residual=bool(hparams["zero_init_residual"]))

    def input_fn(self, mode, hparams, data_path, input_context=None):
        from modelzoo_resnet.preprocessing import input_fn
        return input_fn(mode, hparams, data_path, input_context)

    def preprocess_image(self, image_bytes, hparams):
        """One encoded image (JPEG, PNG, ...) -> the eval transform's float32 [S, S, 3] (predict, export)."""
        from modelzoo_resnet.preprocessing import eval_image
        return eval_image(image_bytes, hparams)

    def __repr__(self):
        return "ResNet50V15()"


RESNET50_V1_5 = ResNet50V15()
