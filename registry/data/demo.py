"""The bundled demo data: scikit-learn's handwritten digits as TF-slim TFRecords (no download).

1,797 real 8x8 scans (10 classes) upscaled to 32x32 RGB JPEG; a stratified held-out split:
1,437 train / 360 validation; labels 1..10 (digit d -> d + 1), read with label_offset=1.
Regenerate with scripts/make_demo_data.py (needs scikit-learn at dev time only).
"""
import os

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")

# The data facts of a `demo` preset: overrides of a classifier's data hparams.
DEMO_HPARAMS = {
    "num_classes": 10,
    "image_size": 32,            # the stored size; a multiple of 32 (ShuffleNet's stride)
    "num_train_images": 1437,
    "num_eval_images": 360,
    "label_offset": 1,
    "crop_area_min": 0.5,        # mild: a digit must stay recognisable in its crop
    "random_flip": False,        # mirrored digits are other glyphs
    "eval_resize": "square",
    "eval_crop_fraction": 1.0,   # the digits fill the frame: no centre crop
    "shuffle_buffer": 1437,      # the whole training set
}


def demo_data_path():
    """The directory holding the demo TFRecords (train-*-of-*, validation-*-of-*, labels.txt)."""
    return DEMO_DIR
