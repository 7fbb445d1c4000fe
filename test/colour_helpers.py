"""Colour-managed test images made here: an ICC v2 profile for Adobe RGB (1998) written from the colour space's
published definition, and the sRGB values a colour-managed viewer shows for Adobe RGB pixels, computed with
numpy from the same definition (independent of LittleCMS, which the product uses)."""
import struct

import numpy as np

ADOBE_GAMMA = 563.0 / 256          # 2.19921875, the exact value the specification gives
# Adobe RGB (1998) primaries in XYZ under D65 (the specification's matrix), and XYZ (D65) -> linear sRGB
ADOBE_TO_XYZ = np.array([[0.5767309, 0.1855540, 0.1881852],
                         [0.2973769, 0.6273491, 0.0752741],
                         [0.0270343, 0.0706872, 0.9911085]])
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
D65 = np.array([0.95047, 1.0, 1.08883])
D50 = np.array([0.9642, 1.0, 0.8249])
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def _s15f16(value):
    return struct.pack(">i", int(round(value * 65536)))


def _xyz_tag(xyz):
    return b"XYZ " + b"\0" * 4 + b"".join(_s15f16(v) for v in xyz)


def _desc_tag(text):
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8   # no Unicode text
            + b"\0" * 3 + b"\0" * 67)                                                       # no ScriptCode text


def adobe_rgb_icc():
    """Bytes of an ICC v2 display profile of Adobe RGB (1998): matrix/TRC, colorants adapted to the PCS's D50 with
    the Bradford transform, gamma 563/256 curves."""
    adapt = np.linalg.inv(BRADFORD) @ np.diag((BRADFORD @ D50) / (BRADFORD @ D65)) @ BRADFORD
    colorants = adapt @ ADOBE_TO_XYZ                    # columns: red, green, blue under D50
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(round(ADOBE_GAMMA * 256))) + b"\0\0"
    tags = [(b"desc", _desc_tag("Adobe RGB (1998)")), (b"cprt", b"text" + b"\0" * 4 + b"made by the tests\0"),
            (b"wtpt", _xyz_tag(D50)), (b"rXYZ", _xyz_tag(colorants[:, 0])), (b"gXYZ", _xyz_tag(colorants[:, 1])),
            (b"bXYZ", _xyz_tag(colorants[:, 2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = [], b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table.append(signature + struct.pack(">II", offset + len(data), len(body)))
        data += body
    size = offset + len(data)
    head = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
            + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
            + b"".join(_s15f16(v) for v in D50) + b"\0" * 48)
    assert len(head) == 128
    return head + struct.pack(">I", len(tags)) + b"".join(table) + data


def adobe_to_srgb(pixels):
    """uint8 [..., 3] Adobe RGB (1998) pixels -> float [..., 3] sRGB 0..255 (out-of-gamut values clipped)."""
    linear = (np.asarray(pixels, np.float64) / 255.0) ** ADOBE_GAMMA
    srgb = np.clip(linear @ (XYZ_TO_SRGB @ ADOBE_TO_XYZ).T, 0.0, 1.0)
    encoded = np.where(srgb <= 0.0031308, 12.92 * srgb, 1.055 * srgb ** (1 / 2.4) - 0.055)
    return encoded * 255.0
