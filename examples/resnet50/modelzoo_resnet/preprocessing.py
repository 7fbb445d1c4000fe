"""ResNet-50's train and eval image transforms, in the manner of TensorFlow's official ResNet models,
built from `registry.data.transforms`; the input_fn is `registry.data.classification`'s.

Train: Inception-style distorted crop (area in `crop_area_range`, aspect 3/4..4/3) decoded with the
fused decode-and-crop op, random horizontal flip (`random_flip`), bilinear resize to image_size.
Eval: aspect-preserving resize of the shorter side to image_size / eval_crop_fraction (256 for 224),
then the centred image_size crop.
Both subtract the ImageNet channel means in the 0..255 scale (no division by a standard deviation),
RGB order: the official models' input convention.
"""
from registry.data import classification, transforms
from registry.errors import DataError

CHANNEL_MEANS = (123.68, 116.78, 103.94)   # ImageNet RGB means, 0..255


def _subtract_means(image):
    return transforms.normalize(image, CHANNEL_MEANS, (1.0, 1.0, 1.0), max_value=1.0)


def _size(hparams):
    size = int(hparams["image_size"])
    if size < 1:
        raise DataError("image_size must be >= 1, got %r" % hparams["image_size"])
    return size


def train_image(image_buffer, hparams, bbox=None, seed=None):
    """Encoded image -> float32 [S, S, 3], mean-subtracted; `seed` None or a stateless int64 [2] seed."""
    size = _size(hparams)
    low, high = (float(a) for a in hparams["crop_area_range"])
    if not 0.0 < low <= high <= 1.0:
        raise DataError("crop_area_range must be [low, high] with 0 < low <= high <= 1, got %r; "
                        "ImageNet uses [0.08, 1.0]" % (hparams["crop_area_range"],))
    image = transforms.decode_and_random_crop(image_buffer, bbox, area_range=(low, high),
                                              seed=transforms.fold_seed(seed, 1))
    if hparams["random_flip"]:
        image = transforms.random_flip_left_right(image, seed=transforms.fold_seed(seed, 2))
    image = _subtract_means(transforms.resize(image, size, size))
    image.set_shape([size, size, 3])
    return image


def eval_image(image_buffer, hparams):
    """Encoded image -> float32 [S, S, 3]: shorter side to S / eval_crop_fraction, centre crop S, means off."""
    size = _size(hparams)
    image = transforms.decode_image(image_buffer)
    image = transforms.resize_short_side_and_central_crop(
        image, transforms.eval_resize_size(size, float(hparams["eval_crop_fraction"])), size, size)
    image = _subtract_means(image)
    image.set_shape([size, size, 3])
    return image


def input_fn(mode, hparams, data_path, input_context=None):
    """tf.data.Dataset of (float32 images [B, S, S, 3], int32 labels [B]) from TF-slim TFRecords."""
    return classification.input_fn(mode, hparams, data_path, input_context, train_image, eval_image)
