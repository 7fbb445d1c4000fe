"""Top-k classes of image files with a trained model dir (its latest checkpoint and hparams.json).

Each file is checked to be an image within the pixel limit before anything runs and read as a viewer
shows it (`registry.data.images`: EXIF orientation applied, colour profile converted to sRGB; TIFF and WebP
read by Pillow); it is decoded and transformed by the plugin's `preprocess_image` (its eval transform, with
the model dir's input convention), then classified.
"""
import collections

from registry import paths, spec
from registry.data import images as images_mod
from registry.deploy import labels as labels_mod
from registry.errors import ZooError

ACCEPTED = "JPEG, PNG, GIF, BMP, TIFF, WebP"


def read_image(path, max_pixels=images_mod.DEFAULT_MAX_IMAGE_PIXELS):
    """(bytes TensorFlow decodes as the image a viewer shows, what it is as shown to the user: e.g. "JPEG, EXIF
    orientation 6 applied, colour profile 'Adobe RGB (1998)' converted to sRGB") of an image file; a ZooError
    that names the file and says why for anything else (not an image, more than `max_pixels` pixels, ...)."""
    path = paths.require_file(path, "image", "; pass image files (%s)" % ACCEPTED)
    with open(path, "rb") as f:
        data = f.read()
    kind = images_mod.image_format(data)
    if kind is None:
        raise ZooError("%s is not an image: %s expected (it starts with %r)" % (path, ACCEPTED, data[:8]))
    try:
        prepared = images_mod.prepare(data, max_pixels)
    except ValueError as err:
        raise ZooError("%s: %s" % (path, err))
    return prepared.data, ", ".join([kind] + images_mod.changes(prepared))


class Predictor(object):
    """A graph holding the model restored from `checkpoint`; `__call__(image bytes)` -> (probabilities, logits)."""

    def __init__(self, model, hparams, checkpoint):
        import tensorflow as tf
        tf1 = tf.compat.v1
        preprocess = getattr(model, "preprocess_image", None)
        if not callable(preprocess):
            raise ZooError("%r publishes no preprocess_image(image_bytes, hparams): cannot predict on image files"
                           % (model,))
        self._tf = tf
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.image_bytes = tf1.placeholder(tf.string, [], name="image_bytes")
            image = preprocess(self.image_bytes, hparams)
            logits = tf.cast(spec.build_logits(model, tf.expand_dims(image, 0), False, hparams), tf.float32)
            self.logits = logits[0]
            self.probabilities = tf.nn.softmax(logits)[0]
            self.session = tf1.Session(graph=self.graph)
            tf1.train.Saver(var_list=tf1.global_variables()).restore(self.session, checkpoint)

    def __call__(self, data, source="image"):
        try:
            return self.session.run([self.probabilities, self.logits], {self.image_bytes: data})
        except self._tf.errors.InvalidArgumentError as err:
            from registry import tf_compat
            raise ZooError("%s could not be decoded as an image (%s)" % (source, tf_compat.op_error_line(err)))

    def close(self):
        self.session.close()


def check_decodable(images):
    """Decodes every (path, bytes, format) once with TensorFlow's decoders (registry.data.check.Decoder, as the
    input pipeline decodes): a corrupt file is named before the model is built. Raises a ZooError."""
    from registry.data.check import Decoder
    decoder = Decoder()
    try:
        for path, content, _ in images:
            problem = decoder.problem(content)
            if problem:
                raise ZooError("%s could not be decoded as an image: %s" % (path, problem))
    finally:
        decoder.close()


def predict(model, hparams, model_dir, paths, top_k=5, labels=None, checkpoint=None,
            max_pixels=images_mod.DEFAULT_MAX_IMAGE_PIXELS):
    """([{'image', 'format', 'predictions': [{'rank', 'class', 'label', 'name', 'probability'}]}] for each path, the
    checkpoint, the class names' source). 'class' is the network's output index (0..num_classes-1), 'label' the
    data set's id of that class (class + label_offset: the id in its labels.txt and records). 'format' says what
    reading the file as a viewer shows it took (see read_image). Raises a ZooError naming the file for one that is
    not read, before the model is built, and for a checkpoint of another network (warm_start.check_fits)."""
    from registry.engine.pinned import Pinned
    from registry.engine.warm_start import check_fits
    images = [(path,) + read_image(path, max_pixels) for path in paths]  # every file checked before the model
    check_decodable(images)
    with Pinned(checkpoint or model_dir) as held:   # a training run beside it may delete the checkpoint chosen
        check_fits(model, hparams, held.path, "used for prediction", held.original)
        num_classes, label_offset = int(hparams["num_classes"]), int(hparams.get("label_offset", 1))
        names, source = labels_mod.class_names(num_classes, label_offset, labels, model_dir)
        predictor = Predictor(model, hparams, held.path)
    checkpoint = held.original
    results = []
    try:
        for path, data, kind in images:
            probabilities, _ = predictor(data, path)
            order = probabilities.argsort()[::-1][:min(top_k, num_classes)]
            results.append(collections.OrderedDict([
                ("image", path), ("format", kind),
                ("predictions", [collections.OrderedDict([
                    ("rank", rank + 1), ("class", int(c)), ("label", int(c) + label_offset), ("name", names[c]),
                    ("probability", float(probabilities[c]))]) for rank, c in enumerate(order)]),
            ]))
    finally:
        predictor.close()
    return results, checkpoint, source


def colour_converted(results):
    """How many of `results` had their colour profile converted to sRGB."""
    return sum("converted to sRGB" in result["format"] for result in results)


def format_table(results):
    """The printed form of predict()'s results: per image its line, then rank, probability, class (output index),
    label (the data set's id) and name."""
    lines = []
    for result in results:
        lines.append("%s (%s)" % (result["image"], result["format"]))
        lines.append("  %-4s %-11s %-6s %-6s %s" % ("rank", "probability", "class", "label", "name"))
        for p in result["predictions"]:
            lines.append("  %-4d %-11.4f %-6d %-6d %s" % (p["rank"], p["probability"], p["class"], p["label"],
                                                         p["name"]))
    converted = colour_converted(results)
    if converted:
        lines.append("colour profiles converted to sRGB: %d of %d image(s)" % (converted, len(results)))
    return "\n".join(lines)
