"""Users' image files as an image viewer shows them, within a pixel limit.

TensorFlow decodes JPEG, PNG, GIF and BMP as stored: it ignores EXIF orientation (phones store photos with
rotated pixels and an Orientation tag) and ICC colour profiles (an Adobe RGB or Display P3 photo's numbers
mean other colours than the same numbers in sRGB, which is what models are trained on and what a viewer
without colour management assumes). `prepare` reads the file's header with Pillow and, when either applies,
decodes the image with Pillow, turns it upright (`ImageOps.exif_transpose`), converts its colours to sRGB
(`ImageCms`, LittleCMS) and hands TensorFlow lossless PNG bytes; TIFF and WebP, which TensorFlow does not
read, go the same way. Every place that reads a user's image file (`zoo-run predict`, `zoo-run data build`)
goes through `prepare`; graphs that decode bytes themselves (the exported SavedModel's `serving_default`)
cannot, and their callers send upright sRGB images (see docs/deploy.md).

The pixel limit is the one decision about image size: an image with more than `max_pixels` (width x height,
`DEFAULT_MAX_IMAGE_PIXELS` unless the user sets `--max_image_pixels`) is refused before anything decodes it,
whatever its file size (a 0.4 MB PNG can decode to 20000x20000 = 1.2 GB of pixels). Pillow's own
decompression-bomb check (a warning above 89 M pixels, an error above 179 M) is replaced by this one, so
that a photo of a 200 MP phone camera is neither read without its orientation nor met with a raw warning.
"""
import collections
import contextlib
import hashlib
import io
import os
import threading

# TensorFlow's decoders (tf.io.decode_image)
TF_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
# Pillow reads these too (converted losslessly to PNG for TensorFlow)
PILLOW_FORMATS = ("TIFF", "WEBP")
EXIF_ORIENTATION = 0x0112
_ORIENTED_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP")   # formats that carry EXIF
# Above today's largest phone cameras (200 MP, 16320x12240), below a 20000x20000 bomb; ~750 MB as RGB
DEFAULT_MAX_IMAGE_PIXELS = 250000000

Prepared = collections.namedtuple("Prepared", "data format width height orientation profile")
Prepared.__doc__ = """An image ready for TensorFlow's decoders. data: bytes (the file's own, or lossless RGB PNG when
Pillow changed or decoded it); format: 'JPEG', 'PNG', ... of the file; width, height: pixels as stored (None when
Pillow cannot read the header: TensorFlow's decoder then reports the file); orientation: the EXIF Orientation
applied (1..8; 1: stored upright); profile: the description of the ICC colour profile converted to sRGB, or None
(no profile, or one that is sRGB already)."""


class ImageRefused(ValueError):
    """The image is not read: too many pixels, a format nothing here decodes, or a file Pillow cannot decode."""


def image_format(data):
    """'JPEG', 'PNG', 'GIF', 'BMP', 'TIFF', 'WEBP', 'HEIC' or 'AVIF' from the file's first bytes; None for
    anything else (the content decides, not the file name: a .jfif or .jpe file is a JPEG)."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    return None


def digest(data):
    """The hex digest that names an image by its encoded bytes (as a record stores them): 16 hex digits of their
    SHA-1 (64 bits: ImageNet's 1.3 M images collide by chance with a probability below 1e-7). `data build`
    and `data check` compare them to find identical images under two classes."""
    return hashlib.sha1(data).hexdigest()[:16]


def sniff_file(path, length=16):
    """image_format() of the file at `path` (None when unreadable or not an image)."""
    try:
        with open(path, "rb") as f:
            return image_format(f.read(length))
    except OSError:
        return None


def check_max_pixels(value, option="--max_image_pixels"):
    """`value` as an int >= 1; a ValueError naming `option` otherwise."""
    if int(value) < 1:
        raise ValueError("%s must be >= 1 (pixels, width x height), got %r; the default is %d"
                         % (option, value, DEFAULT_MAX_IMAGE_PIXELS))
    return int(value)


def too_many_pixels(width, height, max_pixels):
    """The refusal text for a width x height image above `max_pixels`, or None when it is within the limit."""
    if width * height <= max_pixels:
        return None
    return ("%dx%d = %s pixels, above the limit of %s (a decompression bomb, or a genuine image that large: "
            "then raise the limit with --max_image_pixels %d)" % (
                width, height, "{:,}".format(width * height), "{:,}".format(max_pixels), width * height))


_pillow_limit_lock = threading.Lock()


@contextlib.contextmanager
def _without_pillow_bomb_check():
    """Pillow's own size check (Image.MAX_IMAGE_PIXELS) off while the caller opens a file: `too_many_pixels`
    decides instead, with the user's limit."""
    from PIL import Image
    with _pillow_limit_lock:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _orientation(image):
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 -- a broken EXIF block: the image is shown as stored, as viewers do
        return 1
    return value if 1 <= value <= 8 else 1


_WIDE_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L")   # 16-bit gray PNGs; Pillow's convert() would clip at 255
_srgb = None
_profiles = {}   # ICC bytes -> (description, Pillow mode of its colour space, transform to sRGB or None)
_PROFILE_MODES = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}


def _profile(icc):
    """(description, the Pillow mode its colour space takes, ImageCms transform from it to sRGB RGB) of an ICC
    profile; the transform is None when the profile is sRGB (it maps a strip of colours onto themselves within
    1/255, whatever its name: 'sRGB IEC61966-2.1', 'sRGB built-in', 'c2', ...). Raises ImageRefused for a
    profile LittleCMS cannot read or use."""
    global _srgb
    from PIL import Image, ImageCms
    if icc not in _profiles:
        if _srgb is None:
            _srgb = ImageCms.createProfile("sRGB")
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            description = (ImageCms.getProfileDescription(profile) or "").strip() or "unnamed"
            space = profile.profile.xcolor_space.strip()
            if space not in _PROFILE_MODES:
                raise ValueError("colour space %s" % space)
            mode = _PROFILE_MODES[space]
            transform = ImageCms.buildTransform(profile, _srgb, mode, "RGB")
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as err:
            raise ImageRefused("its ICC colour profile cannot be used (%s); re-save the image in sRGB or without "
                               "the profile" % (str(err).strip() or type(err).__name__))
        if mode != "CMYK":
            levels = list(range(0, 256, 15))
            strip = Image.new("RGB", (len(levels) ** 2, len(levels)))
            strip.putdata([(r, g, b) for b in levels for r in levels for g in levels])
            strip = strip.convert(mode)
            converted, plain = ImageCms.applyTransform(strip, transform), strip.convert("RGB")
            if max(abs(a - b) for p, q in zip(converted.getdata(), plain.getdata()) for a, b in zip(p, q)) <= 1:
                transform = None
        _profiles[icc] = (description, mode, transform)
    return _profiles[icc]


Header = collections.namedtuple("Header", "format width height orientation profile refusal")
Header.__doc__ = """What a file's header says. format: image_format(); width, height: pixels as stored (None when
Pillow cannot read the header); orientation: EXIF Orientation 1..8; profile: the description of an ICC profile
that is not sRGB (its colours need converting), or None; refusal: why the image is not read (too many pixels),
or None. Orientation and profile are read only when refusal is None."""


def _open(data):
    """A lazily loaded PIL image of `data`, or None when Pillow cannot read its header."""
    from PIL import Image
    try:
        with _without_pillow_bomb_check():
            return Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 -- the decoders name the problem
        return None


def _header(image, kind, max_pixels):
    """Header of an opened image; a profile that cannot be used is described as such (prepare refuses it)."""
    width, height = image.size
    refusal = too_many_pixels(width, height, max_pixels)
    if refusal:
        return Header(kind, width, height, 1, None, refusal)
    icc, profile = image.info.get("icc_profile"), None
    if icc:
        try:
            description, _, transform = _profile(icc)
            profile = description if transform is not None else None
        except ImageRefused as err:
            profile = "unusable: %s" % err
    return Header(kind, width, height, _orientation(image) if kind in _ORIENTED_FORMATS else 1, profile, None)


def inspect(data, max_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """Header of encoded image bytes, from the header only (a PNG's EXIF may need Pillow to read the pixels,
    within the limit)."""
    kind = image_format(data)
    image = _open(data)
    if image is None:
        return Header(kind, None, None, 1, None, None)
    with image:
        return _header(image, kind, max_pixels)


def prepare(data, max_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """Prepared: encoded image bytes as TensorFlow's decoders must see them to give what a viewer shows.

    JPEG/PNG/GIF/BMP stored upright in sRGB (or without a profile) come back unchanged. An EXIF orientation
    other than 1 or an ICC profile other than sRGB (converted by LittleCMS, perceptual intent), any TIFF or
    WebP, and an animated GIF (its first frame) make Pillow decode the image; it comes back as lossless RGB
    PNG bytes. Raises ImageRefused for an image of more than `max_pixels` pixels (before anything is
    decoded), a format neither TensorFlow nor Pillow reads here (HEIC, AVIF), a TIFF/WebP or an oriented or
    profiled image Pillow cannot decode, and a profile LittleCMS cannot use."""
    from PIL import ImageCms, ImageOps
    kind = image_format(data)
    if kind in ("HEIC", "AVIF"):
        raise ImageRefused("%s image: neither TensorFlow nor Pillow decodes it here; convert it to JPEG or PNG"
                           % kind)
    image = _open(data)
    if image is None:
        if kind in PILLOW_FORMATS:
            raise ImageRefused("%s image could not be decoded (Pillow cannot read its header)" % kind)
        return Prepared(data, kind, None, None, 1, None)
    with image:
        head = _header(image, kind, max_pixels)
        if head.refusal:
            raise ImageRefused(head.refusal)
        icc = image.info.get("icc_profile")
        description, mode, transform = _profile(icc) if icc else (None, "RGB", None)
        # an animated GIF: its first frame, as TensorFlow 2's decode_image took it (TF's GIF decoder itself
        # decodes every frame: frames x width x height pixels)
        animated = kind == "GIF" and getattr(image, "is_animated", False)
        if kind not in PILLOW_FORMATS and head.orientation == 1 and transform is None and not animated:
            return Prepared(data, kind, head.width, head.height, 1, None)
        try:
            pixels = ImageOps.exif_transpose(image) if head.orientation != 1 else image
            if pixels.mode in _WIDE_GRAY_MODES:     # 16-bit gray: scaled to 8 bits, as TensorFlow's PNG decoder
                pixels = pixels.point(lambda value: value * (1.0 / 256)).convert("L")
            if transform is not None:
                pixels = ImageCms.applyTransform(pixels if pixels.mode == mode else pixels.convert(mode), transform)
            elif pixels.mode != "RGB":
                pixels = pixels.convert("RGB")
            out = io.BytesIO()
            pixels.save(out, "PNG", compress_level=1)
        except Exception as err:  # noqa: BLE001 -- Pillow raises many types for a broken file
            raise ImageRefused("%s image could not be decoded (%s)" % (kind or "the", err))
    return Prepared(out.getvalue(), kind, head.width, head.height, head.orientation,
                    description if transform is not None else None)


def changes(prepared):
    """What `prepare` did, for messages: e.g. ['EXIF orientation 6 applied', "colour profile 'Adobe RGB (1998)'
    converted to sRGB"] (decoding a TIFF or WebP is not listed: the format says it)."""
    done = []
    if prepared.orientation != 1:
        done.append("EXIF orientation %d applied" % prepared.orientation)
    if prepared.profile:
        done.append("colour profile '%s' converted to sRGB" % prepared.profile)
    return done


def extension(path):
    """The lower-case extension of `path` ('.jpg'), or '(none)'."""
    return os.path.splitext(path)[1].lower() or "(none)"
