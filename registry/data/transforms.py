"""Generic image ops for classifier input pipelines (TF 1.15 graph mode).

Images are decoded as 3-channel uint8; resizes use TF2 semantics (bilinear, half-pixel
centres, no antialiasing) and return float32 in the 0..255 scale; `normalize` maps them to
(x / 255 - mean) / std.

JPEG decoding: `dct_method` is TensorFlow's `decode_jpeg` choice. "" (TensorFlow's default, libjpeg's fast integer
DCT) or "INTEGER_ACCURATE" (libjpeg's accurate integer DCT, what Pillow decodes with: the same pixels as Pillow,
while the fast one is ~1.0 on average and up to 8 apart on 0..255). `DCT_METHODS` lists them.

Randomness: each random op takes `seed=None` (stateful TF ops, fast, not reproducible under a
parallel map) or `seed=` an int64 [2] tensor (stateless ops: the same seed gives the same crop
and flip whatever thread runs it, which is what makes a seeded pipeline reproducible).
"""
import math

import tensorflow as tf

from registry.hparam_ranges import DCT_METHODS   # INTEGER_FAST: TensorFlow's default ("")

# How an aspect-preserving resize rounds the long side and a centre crop its offsets:
#   "tf": long side round-half-to-even of long * (size / short) in float32, offsets rounded down;
#   "megvii": long side int(size / short * long + 0.5) in float64 (Megvii's OpencvResize), offsets
#   int(round((side - crop) / 2)) with Python's round-half-to-even (torchvision's CenterCrop).
CROP_CONVENTIONS = ("tf", "megvii")


def _dct(dct_method):
    """TensorFlow's `dct_method` argument for one of DCT_METHODS (None: the default)."""
    if dct_method in (None, "", "INTEGER_FAST"):
        return ""
    if dct_method != "INTEGER_ACCURATE":
        raise ValueError("dct_method is %r; use one of %s" % (dct_method, ", ".join(DCT_METHODS)))
    return dct_method


def fold_seed(seed, salt):
    """A different stateless seed derived from `seed` for another random op of the same element."""
    if seed is None:
        return None
    seed = tf.cast(seed, tf.int64)
    return tf.stack([seed[0] * 6364136223846793005 + salt * 1442695040888963407 + 1, seed[1]])


def image_shape(image_buffer):
    """[height, width, channels] int32 of an encoded image, reading only the header for JPEG."""
    return tf.cond(tf.image.is_jpeg(image_buffer),
                   lambda: tf.image.extract_jpeg_shape(image_buffer),
                   lambda: tf.shape(decode_image(image_buffer)))


def decode_image(image_buffer, dct_method=None):
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 [height, width, 3] (grayscale is expanded to RGB; a GIF's first
    frame); a JPEG with `dct_method` (see the module's docstring). Anything else fails at run time with 'Unknown
    image file format. One of JPEG, PNG, GIF, BMP required'.

    Built from the per-format decoders, which TensorFlow 1.15 and 2.x both have (TF 2.x's single DecodeImage
    op, what tf.io.decode_image builds there, does not exist in 1.15: a serving graph exported on lane tf2 with
    it would not load on lane tf1 nor in ATC)."""
    magic = tf.strings.substr(image_buffer, 0, 4)

    def bmp():
        check = tf.debugging.Assert(tf.equal(tf.strings.substr(image_buffer, 0, 2), b"BM"),
                                    ["Unknown image file format. One of JPEG, PNG, GIF, BMP required"])
        with tf.control_dependencies([check]):
            return tf.io.decode_bmp(image_buffer, channels=3)

    def gif_or_bmp():
        return tf.cond(tf.equal(tf.strings.substr(image_buffer, 0, 3), b"GIF"),
                       lambda: tf.io.decode_gif(image_buffer)[0], bmp)

    def png_gif_or_bmp():
        return tf.cond(tf.equal(magic, b"\x89PNG"), lambda: tf.io.decode_png(image_buffer, channels=3), gif_or_bmp)

    image = tf.cond(tf.image.is_jpeg(image_buffer),
                    lambda: tf.io.decode_jpeg(image_buffer, channels=3, dct_method=_dct(dct_method)), png_gif_or_bmp)
    image.set_shape([None, None, 3])
    return image


def encoded_image_size(image_buffer):
    """int64 [height, width] of encoded JPEG/PNG/GIF/BMP bytes from their header, without decoding them ([0, 0] for
    other bytes: decoding them fails). For a GIF, the logical screen's size."""
    padded = tf.strings.join([image_buffer, b"\0" * 32])      # every header field below is then present

    def field(offset, length, big_endian):
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, length), tf.uint8), tf.int64)
        weights = [256 ** (length - 1 - i if big_endian else i) for i in range(length)]
        return tf.reduce_sum(raw * tf.constant(weights, tf.int64))

    def bmp_side(offset):                              # int32, little-endian; a negative height is top-down
        value = field(offset, 4, False)
        return tf.abs(tf.compat.v2.where(value >= 2 ** 31, value - 2 ** 32, value))

    magic = tf.strings.substr(padded, 0, 4)
    zero = tf.constant([0, 0], tf.int64)
    return tf.case([
        (tf.image.is_jpeg(image_buffer), lambda: tf.cast(tf.image.extract_jpeg_shape(image_buffer)[:2], tf.int64)),
        (tf.equal(magic, b"\x89PNG"), lambda: tf.stack([field(20, 4, True), field(16, 4, True)])),
        (tf.equal(tf.strings.substr(padded, 0, 3), b"GIF"), lambda: tf.stack([field(8, 2, False), field(6, 2, False)])),
        (tf.equal(tf.strings.substr(padded, 0, 2), b"BM"), lambda: tf.stack([bmp_side(22), bmp_side(18)])),
    ], default=lambda: zero, exclusive=False)


def within_pixel_limit(image_buffer, max_pixels):
    """`image_buffer` (encoded bytes), after a check of its header that fails the run with 'the image is 20000x20000
    = 400000000 pixels, above the limit of 250000000 ...' when width x height exceeds `max_pixels`: a decoder then
    never allocates a decompression bomb's pixels (registry.data.images holds the same limit for files)."""
    size = encoded_image_size(image_buffer)
    pixels = size[0] * size[1]
    message = tf.strings.format("the image is {}x{} = {} pixels, above the limit of %d (set by zoo-run export "
                                "--max_image_pixels)" % max_pixels, [size[1], size[0], pixels])
    check = tf.debugging.Assert(pixels <= max_pixels, [message])
    with tf.control_dependencies([check]):
        return tf.identity(image_buffer)


def _stateless_crop_window(shape, area_range, aspect_ratio_range, max_attempts, seed):
    """The Inception crop distribution drawn with stateless ops: area fraction uniform in
    `area_range`, aspect ratio (w/h) log-uniform in `aspect_ratio_range`, first of `max_attempts`
    draws that fits; the whole image when none fits (as sample_distorted_bounding_box does)."""
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    u = tf.random.stateless_uniform([max_attempts, 4], seed=seed)
    area = (area_range[0] + (area_range[1] - area_range[0]) * u[:, 0]) * height * width
    log_lo, log_hi = math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1])
    ratio = tf.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    crop_w = tf.round(tf.sqrt(area * ratio))
    crop_h = tf.round(tf.sqrt(area / ratio))
    fits = (crop_w >= 1) & (crop_h >= 1) & (crop_w <= width) & (crop_h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32))             # 0 when nothing fits, then guarded below
    any_fit = tf.reduce_any(fits)
    crop_h = tf.compat.v2.where(any_fit, crop_h[first], height)
    crop_w = tf.compat.v2.where(any_fit, crop_w[first], width)
    offset_y = tf.floor(u[first, 2] * (height - crop_h + 1))
    offset_x = tf.floor(u[first, 3] * (width - crop_w + 1))
    offset_y = tf.minimum(offset_y, height - crop_h)
    offset_x = tf.minimum(offset_x, width - crop_w)
    return tf.cast(tf.stack([offset_y, offset_x, crop_h, crop_w]), tf.int32)


def distorted_crop_window(shape, bbox=None, area_range=(0.08, 1.0), aspect_ratio_range=(3. / 4, 4. / 3),
                          max_attempts=10, min_object_covered=0.1, seed=None):
    """Inception-style random crop: int32 [offset_y, offset_x, height, width] inside `shape`.

    Unseeded: `tf.image.sample_distorted_bounding_box`, honouring the record's boxes `bbox`
    ([1, N, 4], N may be 0: the whole image is then the box). Seeded (an int64 [2] tensor): the
    same area / aspect distribution from stateless ops over the whole image (boxes are ignored).
    """
    if seed is not None:
        return _stateless_crop_window(shape, area_range, aspect_ratio_range, max_attempts, seed)
    if bbox is None:
        bbox = tf.constant([0.0, 0.0, 1.0, 1.0], dtype=tf.float32, shape=[1, 1, 4])
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=bbox, min_object_covered=min_object_covered,
        aspect_ratio_range=aspect_ratio_range, area_range=area_range,
        max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
    offset_y, offset_x, _ = tf.unstack(begin)
    target_h, target_w, _ = tf.unstack(size)
    return tf.stack([offset_y, offset_x, target_h, target_w])


def decode_and_crop(image_buffer, window, dct_method=None):
    """Decodes only the crop `window` ([y, x, h, w]) of a JPEG (fused op, with `dct_method`); other formats are
    decoded whole then cropped. -> uint8 [h, w, 3]."""
    def generic():
        image = decode_image(image_buffer)
        return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])

    image = tf.cond(tf.image.is_jpeg(image_buffer),
                    lambda: tf.image.decode_and_crop_jpeg(image_buffer, window, channels=3,
                                                          dct_method=_dct(dct_method)), generic)
    image.set_shape([None, None, 3])
    return image


def decode_and_random_crop(image_buffer, bbox=None, area_range=(0.08, 1.0),
                           aspect_ratio_range=(3. / 4, 4. / 3), max_attempts=10, seed=None, dct_method=None):
    """Random Inception crop decoded with the fused decode-and-crop op; uint8 [h, w, 3]."""
    window = distorted_crop_window(image_shape(image_buffer), bbox, area_range, aspect_ratio_range,
                                   max_attempts, seed=seed)
    return decode_and_crop(image_buffer, window, dct_method)


def random_flip_left_right(image, seed=None):
    """Mirrors `image` ([h, w, c]) with probability 1/2."""
    if seed is None:
        return tf.image.random_flip_left_right(image)
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


# ITU-R 601-2 luma, as Pillow's convert("L") weighs R, G, B (torchvision's PIL path uses it)
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
JITTER_OPS = ("brightness", "contrast", "saturation")   # the order of the factors color_jitter_params returns


def color_jitter_params(strength, seed=None):
    """(factors float32 [3], order int32 [3]) of one image's colour jitter: the brightness, contrast and
    saturation factors, each uniform in [max(0, 1 - strength), 1 + strength], and a random permutation of
    0, 1, 2 (indices into JITTER_OPS) that says in which order they apply (torchvision's ColorJitter)."""
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    if seed is None:
        factors = tf.random.uniform([3], low, high)
        order = tf.argsort(tf.random.uniform([3]))
    else:
        factors = tf.random.stateless_uniform([3], seed=seed, minval=low, maxval=high)
        order = tf.argsort(tf.random.stateless_uniform([3], seed=fold_seed(seed, 1)))
    return factors, tf.cast(order, tf.int32)


def grayscale(image):
    """float32 [h, w, 1]: the luma of an RGB image [h, w, 3] (GRAY_WEIGHTS), unrounded."""
    r, g, b = tf.unstack(tf.cast(image, tf.float32), axis=-1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b)[..., None]


def adjust_color(image, op, factor, max_value=255.0):
    """One of JITTER_OPS (int32 `op`, a tensor) by `factor` on an RGB float image, clipped to 0..max_value:
    brightness scales the pixels; contrast blends them with the mean of the grayscale image; saturation blends
    them with the grayscale image (out = factor * image + (1 - factor) * reference)."""
    def blend(reference):
        return factor * image + (1.0 - factor) * reference

    def brightness():
        return image * factor

    def contrast():
        return blend(tf.reduce_mean(grayscale(image)))

    def saturation():
        return blend(grayscale(image))

    out = tf.cond(tf.equal(op, 0), brightness, lambda: tf.cond(tf.equal(op, 1), contrast, saturation))
    return tf.clip_by_value(out, 0.0, max_value)


def color_jitter(image, strength, seed=None, max_value=255.0):
    """torchvision's ColorJitter(brightness=s, contrast=s, saturation=s) on an RGB image [h, w, 3] (0..max_value)
    -> float32, same shape: the three adjustments of `adjust_color` with factors and order from
    `color_jitter_params` (a new draw per image), each clipped to 0..max_value. `strength` 0: the image as is.

    Unlike torchvision on PIL images, nothing is rounded to uint8 between the adjustments (at most 0.5 of 255
    apart per adjustment)."""
    image = tf.cast(image, tf.float32)
    if not strength:
        return image
    factors, order = color_jitter_params(strength, seed)
    shape = image.shape
    for position in range(3):
        op = order[position]
        image = adjust_color(image, op, tf.gather(factors, op), max_value)
    image.set_shape(shape)
    return image


def resize(image, height, width):
    """Bilinear resize (TF2 semantics: half-pixel centres, no antialias) -> float32.

    The ResizeBilinear kernel called directly: what tf.image.resize(v2, 'bilinear') runs, without
    its wrapper ops (measured ~5% faster per image)."""
    resized = tf.compat.v1.image.resize_bilinear(tf.expand_dims(image, 0), tf.stack([height, width]),
                                                 align_corners=False, half_pixel_centers=True)
    return tf.cast(resized[0], tf.float32)


def _check_convention(convention):
    if convention not in CROP_CONVENTIONS:
        raise ValueError("convention is %r; use one of %s" % (convention, ", ".join(CROP_CONVENTIONS)))


def short_side_size(shape, size, convention="tf"):
    """int64 [new_height, new_width] that make the shorter side of an image of `shape` [h, w, ...] `size`
    (the longer side scaled alike and rounded as `convention` says, see CROP_CONVENTIONS; neither below
    `size`)."""
    _check_convention(convention)
    if convention == "megvii":   # int(size / short * long + 0.5), in float64 as Python computes it
        height = tf.cast(shape[0], tf.float64)
        width = tf.cast(shape[1], tf.float64)
        scale = tf.cast(size, tf.float64) / tf.minimum(height, width)
        new_h = tf.cast(tf.floor(scale * height + 0.5), tf.int64)
        new_w = tf.cast(tf.floor(scale * width + 0.5), tf.int64)
    else:
        height = tf.cast(shape[0], tf.float32)
        width = tf.cast(shape[1], tf.float32)
        scale = tf.cast(size, tf.float32) / tf.minimum(height, width)
        new_h = tf.cast(tf.round(height * scale), tf.int64)
        new_w = tf.cast(tf.round(width * scale), tf.int64)
    return tf.stack([tf.maximum(new_h, size), tf.maximum(new_w, size)])


def crop_offset(side, crop, convention="tf"):
    """int64 offset of a centred `crop` in `side` (int tensors): (side - crop) // 2 ("tf"), or
    int(round((side - crop) / 2)) with round-half-to-even ("megvii": torchvision's CenterCrop): for
    side - crop = 75 the offsets are 37 and 38."""
    _check_convention(convention)
    margin = tf.cast(side, tf.int64) - tf.cast(crop, tf.int64)
    if convention == "tf":
        return margin // 2
    return tf.cast(tf.round(tf.cast(margin, tf.float64) / 2.0), tf.int64)   # tf.round: half to even


def resize_short_side(image, size):
    """Aspect-preserving resize: the shorter side becomes `size` (the longer side is rounded).

    The whole resized image is made: for a 1x4000 strip and size 256 that is 256 x 1,024,000 pixels (3 GB
    of float32). Eval transforms that crop the centre afterwards use `resize_short_side_and_central_crop`,
    whose memory does not depend on the image's shape."""
    new_size = tf.cast(short_side_size(tf.shape(image), size), tf.int32)
    return resize(image, new_size[0], new_size[1])


def central_crop_of_resize(image, new_height, new_width, height, width, convention="tf"):
    """float32 [height, width, c]: the centred [height, width] window of `resize(image, new_height, new_width)`
    (offsets rounded as `convention` says, see `crop_offset`), computed from the pixels that window reads only.

    The same numbers as resizing then cropping (TensorFlow's bilinear kernel with half-pixel centres: source
    coordinate (i + 0.5) * in / out - 0.5 in float32, neighbours clamped to the image, the x weight applied
    before the y weight), but memory and time grow with height x width, not with the resized image: a 1x4000
    strip resized to 256 x 1,024,000 would take 3 GB. `new_height` >= `height` and `new_width` >= `width`."""
    shape = tf.shape(image, out_type=tf.int64)

    def axis(in_size, out_size, crop):
        out_size = tf.cast(out_size, tf.int64)
        # in / out as the kernel divides; not `/`, which Grappler turns into a multiplication by the reciprocal
        # when `out_size` is a constant (a different float32 scale: samples up to 0.002 of 255 off)
        scale = tf.math.divide_no_nan(tf.cast(in_size, tf.float32), tf.cast(out_size, tf.float32))
        start = crop_offset(out_size, crop, convention)
        source = (tf.cast(tf.range(start, start + crop), tf.float32) + 0.5) * scale - 0.5
        floor = tf.floor(source)
        lower = tf.maximum(tf.cast(floor, tf.int64), 0)
        upper = tf.minimum(tf.cast(tf.math.ceil(source), tf.int64), in_size - 1)
        return lower, upper, source - floor

    y_lower, y_upper, y_lerp = axis(shape[0], new_height, height)
    x_lower, x_upper, x_lerp = axis(shape[1], new_width, width)

    def corner(rows, columns):
        grid = tf.stack([tf.tile(rows[:, None], [1, width]), tf.tile(columns[None, :], [height, 1])], axis=-1)
        return tf.cast(tf.gather_nd(image, grid), tf.float32)

    x_lerp = x_lerp[None, :, None]
    top_left, top_right = corner(y_lower, x_lower), corner(y_lower, x_upper)
    bottom_left, bottom_right = corner(y_upper, x_lower), corner(y_upper, x_upper)
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    cropped = top + (bottom - top) * y_lerp[:, None, None]
    cropped.set_shape([height, width, image.shape[-1]])
    return cropped


def resize_short_side_and_central_crop(image, size, height, width, convention="tf"):
    """float32 [height, width, c]: `central_crop(resize_short_side(image, size), height, width)` in memory that does
    not depend on the image's width-to-height ratio (see `central_crop_of_resize`). `convention` "megvii": the
    long side and the offsets rounded as Megvii's OpencvResize(256) + torchvision's CenterCrop(224) round them
    (see CROP_CONVENTIONS)."""
    new_size = short_side_size(tf.shape(image), size, convention)
    return central_crop_of_resize(image, new_size[0], new_size[1], height, width, convention)


def central_crop(image, height, width):
    """The centred [height, width] window of `image` (offsets rounded down)."""
    shape = tf.shape(image)
    offset_y = (shape[0] - height) // 2
    offset_x = (shape[1] - width) // 2
    image = tf.slice(image, tf.stack([offset_y, offset_x, 0]), tf.stack([height, width, -1]))
    image.set_shape([height, width, None])
    return image


def normalize(image, mean, std, max_value=255.0):
    """(image / max_value - mean) / std per channel, float32, for one [h, w, c] image.

    The per-channel constants are tiled to the image's shape first: TF 1.15's broadcast of a [c]
    vector over [h, w, c] takes a slow generic path (measured ~3x the cost of same-shape ops).
    """
    image = tf.cast(image, tf.float32)
    channels = len(mean)
    scale = tf.constant([1.0 / (max_value * s) for s in std], dtype=tf.float32, shape=[1, 1, channels])
    offset = tf.constant([m / s for m, s in zip(mean, std)], dtype=tf.float32, shape=[1, 1, channels])
    shape = tf.shape(image)
    multiples = tf.stack([shape[0], shape[1], 1])
    return image * tf.tile(scale, multiples) - tf.tile(offset, multiples)


def eval_resize_size(image_size, crop_fraction):
    """The resize target before the centre crop: 224 / 0.875 -> 256."""
    if not 0.0 < crop_fraction <= 1.0:
        from registry.errors import DataError
        raise DataError("eval_crop_fraction must be in (0, 1], got %r; use e.g. 0.875 (224 of 256)"
                        % (crop_fraction,))
    return int(round(image_size / crop_fraction))
