"""The bundled demo data: scikit-learn's handwritten digits as TF-slim TFRecords (no download).

1,797 real 8x8 scans (10 classes) upscaled to 32x32 RGB JPEG; a stratified held-out split:
1,437 train / 360 validation; labels 1..10 (digit d -> d + 1), read with label_offset=1.
Regenerate with scripts/make_demo_data.py (needs scikit-learn at dev time only).
"""
import os

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")

# The data facts of a `demo` preset: overrides of the conventional data hparams, which every plugin
# reading TF-slim records through `registry.data.classification` has. A plugin's own transform
# settings go in its preset beside them; what suits these images: a mild random crop (a digit must
# stay recognisable), no horizontal flip (a mirrored digit is another glyph or none), no centre crop
# at eval (the digits fill the frame), and an image size near the stored 32x32.
DEMO_HPARAMS = {
    "num_classes": 10,
    "image_size": 32,            # the stored size
    "num_train_images": 1437,
    "num_eval_images": 360,
    "label_offset": 1,
    "shuffle_buffer": 1437,      # the whole training set
}


def demo_data_path():
    """The directory holding the demo TFRecords (train-*-of-*, validation-*-of-*, labels.txt)."""
    return DEMO_DIR
