"""ShuffleNetV1's train and eval image transforms, and its `input_fn`, built from `registry.data`.

Train: Inception-style distorted crop (area crop_area_min..1, aspect 3/4..4/3) decoded with the
fused decode-and-crop op (JPEG DCT: the `train_dct_method` hparam), random horizontal flip, resize to
image_size, colour jitter of strength `color_jitter` (torchvision's ColorJitter; 0: off), ImageNet mean/std.
The flip is applied before the resize and the jitter, where Megvii flips after both: the three commute (a
mirrored bilinear resize is the resize of the mirror, and the jitter is per pixel with an image-wide mean).
Eval: JPEGs decoded as Pillow decodes them (accurate integer DCT), resize to image_size / eval_crop_fraction
(256 for 224) -- square (the seed) or aspect-preserving short side with Megvii's roundings (long side
int(256 / short * long + 0.5), crop offsets int(round((side - 224) / 2))) -- then the centred image_size crop,
same normalisation (the crop is computed from the source pixels it reads, so a 1x4000 strip does not become a
256 x 1,024,000 image first).
The input convention is set by hparams: `input_normalization` imagenet (mean/std, the default) or
none (pixels 0..255), `input_channel_order` rgb (default) or bgr -- the official Megvii weights'
convention is bgr / none.
"""
import tensorflow as tf

from registry.data import classification, transforms
from registry.errors import DataError

MEAN_RGB = (0.485, 0.456, 0.406)
STDDEV_RGB = (0.229, 0.224, 0.225)
EVAL_RESIZE_MODES = ("square", "aspect")
CHANNEL_ORDERS = ("rgb", "bgr")
NORMALIZATIONS = ("imagenet", "none")
EVAL_DCT_METHOD = "INTEGER_ACCURATE"   # Pillow's pixels, which the official weights were evaluated on


def to_network_input(image, hparams):
    """RGB float 0..255 -> the network's input convention (normalisation, then channel order)."""
    order = hparams.get("input_channel_order", "rgb")
    normalization = hparams.get("input_normalization", "imagenet")
    if order not in CHANNEL_ORDERS:
        raise DataError("input_channel_order is %r; use 'rgb' or 'bgr'" % (order,))
    if normalization not in NORMALIZATIONS:
        raise DataError("input_normalization is %r; use 'imagenet' (ImageNet mean/std) or 'none' (pixels 0..255)"
                        % (normalization,))
    if normalization == "imagenet":
        image = transforms.normalize(image, MEAN_RGB, STDDEV_RGB)
    else:
        image = tf.cast(image, tf.float32)
    if order == "bgr":
        image = tf.reverse(image, axis=[-1])
    return image


def train_image(image_buffer, hparams, bbox=None, seed=None):
    """Encoded image -> float32 [S, S, 3], normalised; `seed` None or a stateless int64 [2] seed."""
    size = int(hparams["image_size"])
    image = transforms.decode_and_random_crop(
        image_buffer, bbox, area_range=(float(hparams["crop_area_min"]), 1.0),
        seed=transforms.fold_seed(seed, 1), dct_method=hparams.get("train_dct_method", "INTEGER_FAST"))
    if hparams["random_flip"]:
        image = transforms.random_flip_left_right(image, seed=transforms.fold_seed(seed, 2))
    image = transforms.resize(image, size, size)
    image = transforms.color_jitter(image, float(hparams.get("color_jitter", 0.0)), seed=transforms.fold_seed(seed, 3))
    image = to_network_input(image, hparams)
    image.set_shape([size, size, 3])
    return image


def eval_image(image_buffer, hparams):
    """Encoded image -> float32 [S, S, 3]: resize to S / eval_crop_fraction, centre crop S, normalise."""
    size = int(hparams["image_size"])
    resize_to = transforms.eval_resize_size(size, float(hparams["eval_crop_fraction"]))
    mode = hparams["eval_resize"]
    if mode not in EVAL_RESIZE_MODES:
        raise DataError("eval_resize is %r; use 'square' (resize to %dx%d, the seed's) or 'aspect' "
                        "(shorter side to %d)" % (mode, resize_to, resize_to, resize_to))
    image = transforms.decode_image(image_buffer, dct_method=EVAL_DCT_METHOD)
    # the centre crop of the resized image, computed from the pixels it reads: memory stays bounded for any shape
    if mode == "square":
        image = transforms.central_crop_of_resize(image, resize_to, resize_to, size, size)
    else:
        image = transforms.resize_short_side_and_central_crop(image, resize_to, size, size, convention="megvii")
    image = to_network_input(image, hparams)
    image.set_shape([size, size, 3])
    return image


def _check_hparams(hparams):
    if not 0.0 < float(hparams["crop_area_min"]) <= 1.0:
        raise DataError("crop_area_min must be in (0, 1], got %r; ImageNet uses 0.08" % hparams["crop_area_min"])
    if int(hparams["image_size"]) < 1:
        raise DataError("image_size must be >= 1, got %r" % hparams["image_size"])


def input_fn(mode, hparams, data_path, input_context=None):
    """tf.data.Dataset of (float32 images [B, S, S, 3], int32 labels [B]) from TF-slim TFRecords, through
    `registry.data.classification` with this network's transforms (see there for the splits and padding)."""
    _check_hparams(hparams)
    return classification.input_fn(mode, hparams, data_path, input_context, train_image, eval_image)
