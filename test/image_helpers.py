"""Image files and records made for the tests: JPEGs as phones store them (EXIF orientation), a handwritten digit
of the bundled demo data, records written as another tool writes them. Nothing here imports the engine."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from registry.data import demo, tfrecord

tf1 = tf.compat.v1
# EXIF orientation -> the Pillow transpose that makes stored pixels from upright ones (the inverse of what a
# viewer applies: exif_transpose rotates 6 by 270 degrees, so the stored pixels are the upright ones rotated by 90)
STORED_FROM_UPRIGHT = {1: None, 2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
                       5: Image.TRANSPOSE, 6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}


def jpeg(image, orientation=None, quality=95):
    """JPEG bytes of a PIL image (no chroma subsampling), tagged with an EXIF `orientation` when one is given."""
    buffer = io.BytesIO()
    exif = None
    if orientation:
        tags = Image.Exif()
        tags[0x0112] = orientation                   # EXIF Orientation
        exif = tags.tobytes()
    image.save(buffer, "JPEG", quality=quality, subsampling=0, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def oriented(upright, orientation):
    """JPEG bytes of `upright` as a phone stores it: pixels transposed, tagged with `orientation`."""
    transpose = STORED_FROM_UPRIGHT[orientation]
    stored = upright.transpose(transpose) if transpose is not None else upright
    return jpeg(stored, orientation, quality=100)


def decoded(data):
    """float32 [h, w, 3] pixels of encoded image bytes as TensorFlow decodes them (as stored)."""
    with tf.Graph().as_default(), tf1.Session() as sess:
        return sess.run(tf.io.decode_image(data, channels=3, expand_animations=False)).astype(np.float32)


def digit_six():
    """A handwritten 6 of the bundled demo data (class id 7 in its labels.txt), upscaled to 64x48."""
    path = tfrecord.list_split_files(demo.demo_data_path(), "validation")[0]
    for raw in tf1.io.tf_record_iterator(path):
        feature = tf.train.Example.FromString(raw).features.feature
        if feature["image/class/label"].int64_list.value[0] == 7:
            image = Image.open(io.BytesIO(feature["image/encoded"].bytes_list.value[0])).convert("RGB")
            return image.resize((64, 48), Image.BICUBIC)
    raise AssertionError("no 6 in the demo data")


def write_records(path, records):
    """Writes TF-slim records as another tool would: (encoded bytes, label, filename) tuples."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for encoded, label, filename in records:
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename.encode()])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
