"""Users' image files as an image viewer shows them.

TensorFlow decodes JPEG, PNG, GIF and BMP and ignores EXIF orientation: phones store photos with
rotated pixels and an Orientation tag, which TensorFlow alone would decode lying on their side or
upside down. Pillow applies the tag (`ImageOps.exif_transpose`) and also reads TIFF and WebP, so
every place that reads a user's image file (`zoo-run predict`, `zoo-run data build`) passes its bytes
through `for_tensorflow` first. Graphs that decode bytes themselves (the exported SavedModel's
`serving_default`) cannot: their callers send upright pixels (see docs/deploy.md).
"""
import io
import os

# TensorFlow's decoders (tf.io.decode_image)
TF_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
# Pillow reads these too (converted losslessly to PNG for TensorFlow)
PILLOW_FORMATS = ("TIFF", "WEBP")
EXIF_ORIENTATION = 0x0112
_ORIENTED_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP")   # formats that carry EXIF


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


def sniff_file(path, length=16):
    """image_format() of the file at `path` (None when unreadable or not an image)."""
    try:
        with open(path, "rb") as f:
            return image_format(f.read(length))
    except OSError:
        return None


def exif_orientation(data):
    """The EXIF Orientation (1..8; 1 = stored upright) of encoded image bytes; 1 when there is none."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as image:
            value = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 -- an unreadable header is the decoders' to report
        return 1
    return value if 1 <= value <= 8 else 1


def for_tensorflow(data):
    """(bytes, what was done) so that TensorFlow's decoders see the image a viewer shows.

    JPEG/PNG/GIF/BMP stored upright come back unchanged, with None. An image with an EXIF orientation other
    than 1 is turned upright, and a TIFF or WebP decoded, by Pillow; both come back as lossless RGB PNG
    bytes, with 'exif-orientation-N' or 'tiff' / 'webp'. Raises ValueError for a format neither
    TensorFlow nor Pillow reads here (HEIC, AVIF) and for a TIFF/WebP that does not decode."""
    kind = image_format(data)
    if kind in ("HEIC", "AVIF"):
        raise ValueError("%s image: neither TensorFlow nor Pillow decodes it here; convert it to JPEG or PNG"
                         % kind)
    orientation = exif_orientation(data) if kind in _ORIENTED_FORMATS else 1
    if kind not in PILLOW_FORMATS and orientation == 1:
        return data, None
    from PIL import Image, ImageOps
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            out = io.BytesIO()
            image.save(out, "PNG", compress_level=1)
    except Exception as err:  # noqa: BLE001 -- Pillow raises many types for a broken file
        raise ValueError("%s image could not be decoded (%s)" % (kind or "the", err))
    return out.getvalue(), ("exif-orientation-%d" % orientation if orientation != 1 else kind.lower())


def extension(path):
    """The lower-case extension of `path` ('.jpg'), or '(none)'."""
    return os.path.splitext(path)[1].lower() or "(none)"
