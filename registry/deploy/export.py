"""A trained model dir -> a SavedModel for serving, a frozen inference graph for Ascend ATC, and ONNX.

format "tf" (the default):
OUTPUT/saved_model/            SavedModel (tag `serve`) with two signatures:
    serving_default   image_bytes: string [N] (encoded JPEG/PNG)     -> classes int32 [N], probabilities [N, K]
    predict_images    images: float32 [N, S, S, 3] preprocessed     -> logits, probabilities [N, K], classes [N]
OUTPUT/frozen_graph.pb         GraphDef, variables folded into constants, fixed input shape:
    input: `input` float32 [batch, S, S, 3] (NHWC, preprocessed) -> `logits`, `probabilities`, `classes`
OUTPUT/export_info.json        node names, shapes, the checkpoint, the model dir's hparams (input convention) and
                               `built_with`: the hparams the export changed for TensorFlow
format "onnx" (registry.deploy.onnx_export):
OUTPUT/model.onnx, OUTPUT/onnx_info.json
format "openvino" (registry.deploy.openvino_export):
OUTPUT/openvino/model.xml, model.bin, OUTPUT/openvino_info.json
both:
OUTPUT/class_names.txt         one class name per line, line i = class index i (when the model has names)

The plugin's optional `preprocess_image(image_bytes, hparams)` (its eval transform) is what
`serving_default` runs on each image; `predict_images`, the frozen graph and the ONNX model expect its
output. The graphs are built with the plugin's optional `export_hparams(hparams, target)` (ShuffleNet:
block-diagonal grouped convolutions for TensorFlow, which run on any device; native grouped ones for ONNX).
`serving_default` decodes the bytes in the graph, where EXIF orientation and colour profiles cannot be
applied: callers send upright sRGB images (e.g. `PIL.ImageOps.exif_transpose` and `ImageCms` before
encoding), as `zoo-run predict` does. It refuses, from the header and before decoding, an image of more
pixels than the export's `max_pixels` (the same limit as `zoo-run predict`'s, `--max_image_pixels`).
"""
import collections
import json
import os
import shutil

from registry import paths, spec
from registry.data import images as images_mod
from registry.deploy import graph_compat, onnx_export, openvino_export
from registry.deploy import labels as labels_mod
from registry.deploy.inference_graph import (INPUT_NODE, OUTPUT_NODES, changed_hparams, export_hparams,
                                             frozen_graph_def, heads, restore)
from registry.errors import ZooError

SAVED_MODEL_DIR = "saved_model"
FROZEN_GRAPH = "frozen_graph.pb"
EXPORT_INFO = "export_info.json"
CLASS_NAMES = "class_names.txt"
SERVING_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "predict_images"
FORMATS = ("tf", "onnx", "openvino")   # tf: SavedModel + frozen graph


def write_saved_model(model, hparams, checkpoint, path, max_pixels=images_mod.DEFAULT_MAX_IMAGE_PIXELS):
    """Writes the SavedModel of the module doc to `path`; `serving_default` refuses images of more than
    `max_pixels` pixels (width x height, read from the header before decoding). Returns `path`."""
    import tensorflow as tf
    from registry.data import transforms
    tf1 = tf.compat.v1
    preprocess = getattr(model, "preprocess_image", None)
    if not callable(preprocess):
        raise ZooError("%r publishes no preprocess_image(image_bytes, hparams): the serving signature "
                       "cannot decode images" % (model,))
    size = int(hparams["image_size"])
    with tf.Graph().as_default():
        image_bytes = tf1.placeholder(tf.string, [None], name="image_bytes")
        images = tf1.placeholder(tf.float32, [None, size, size, 3], name="images")
        decoded = tf.map_fn(lambda b: preprocess(transforms.within_pixel_limit(b, max_pixels), hparams), image_bytes,
                            dtype=tf.float32, back_prop=False)
        decoded.set_shape([None, size, size, 3])
        with tf1.variable_scope(tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE):
            with tf1.name_scope("images"):
                logits, probabilities, classes = heads(spec.build_logits(model, images, False, hparams))
            with tf1.name_scope("serving"):
                _, serving_probabilities, serving_classes = heads(spec.build_logits(model, decoded, False, hparams))
        info = tf1.saved_model.utils.build_tensor_info
        signatures = {
            SERVING_SIGNATURE: tf1.saved_model.signature_def_utils.build_signature_def(
                inputs={"image_bytes": info(image_bytes)},
                outputs={"classes": info(serving_classes), "probabilities": info(serving_probabilities)},
                method_name=tf1.saved_model.signature_constants.PREDICT_METHOD_NAME),
            IMAGES_SIGNATURE: tf1.saved_model.signature_def_utils.build_signature_def(
                inputs={"images": info(images)},
                outputs={"logits": info(logits), "probabilities": info(probabilities), "classes": info(classes)},
                method_name=tf1.saved_model.signature_constants.PREDICT_METHOD_NAME),
        }
        with tf1.Session() as sess:
            restore(sess, checkpoint)
            builder = tf1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(sess, [tf1.saved_model.tag_constants.SERVING],
                                                 signature_def_map=signatures, strip_default_attrs=True)
            builder.save()
    graph_compat.make_saved_model_portable(path)
    return path


def write_frozen_graph(model, hparams, checkpoint, path, batch_size):
    """Writes `frozen_graph_def` (attrs TensorFlow 1.15 cannot read removed when they carry nothing, see
    graph_compat) to `path`; returns (path, number of nodes, the GraphDef)."""
    frozen = frozen_graph_def(model, hparams, checkpoint, batch_size)
    graph_compat.make_portable(frozen)
    with open(path, "wb") as f:
        f.write(frozen.SerializeToString())
    return path, len(frozen.node), frozen


def export(model, hparams, model_dir, output, batch_size=1, checkpoint=None, name=None, overwrite=False,
           formats=("tf",), opset=None, log=print, max_pixels=images_mod.DEFAULT_MAX_IMAGE_PIXELS,
           onnx_layout="NHWC", precision=None, calibration_data=None,
           max_accuracy_drop=openvino_export.DEFAULT_MAX_ACCURACY_DROP, calibration_images=None):
    """Writes the `formats` into OUTPUT: "tf" the SavedModel, frozen_graph.pb and export_info.json, "onnx"
    model.onnx and onnx_info.json (see registry.deploy.onnx_export; `opset` None: its default; `onnx_layout`: the
    graph input's, NHWC or NCHW), "openvino" the same conversion as OpenVINO IR (registry.deploy.openvino_export);
    and class_names.txt. `max_pixels`: the largest image (width x height) serving_default decodes. `precision`
    (OpenVINO: f32, bf16 or int8; default int8 with `calibration_data`, else f32), `calibration_data`,
    `max_accuracy_drop`, `calibration_images`: see registry.deploy.openvino_export. Returns
    {format: info dict}. Raises a ZooError, before writing anything, for an unknown format, a missing optional
    package or an existing output (unless `overwrite`)."""
    from registry.engine.warm_start import check_fits
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ZooError("unknown export format %s: choose from %s" % (", ".join(map(repr, unknown)) or "(none)",
                                                                     ", ".join(FORMATS)))
    if batch_size < 1:
        raise ZooError("--batch_size must be >= 1, got %d" % batch_size)
    try:
        max_pixels = images_mod.check_max_pixels(max_pixels)
    except ValueError as err:
        raise ZooError(str(err))
    if "onnx" in formats or "openvino" in formats:
        onnx_export.check_layout(onnx_layout)
        onnx_export.require("--format onnx" if "onnx" in formats else "--format openvino (through ONNX)",
                            onnx_export.PACKAGES if "onnx" in formats else ("onnx", "tf2onnx"))
    precision = precision or ("int8" if calibration_data else "f32")
    if (precision != "f32" or calibration_data) and "openvino" not in formats:
        raise ZooError("--precision and --calibration_data are OpenVINO's (--format openvino or all): the %s export "
                       "is float32" % "/".join(formats))
    if "openvino" in formats:
        openvino_export.require("--format openvino")
<<<<<<< HEAD
    from registry.engine.pinned import Pinned
    held = Pinned(checkpoint or model_dir, log=log)   # a training run beside it may delete the checkpoint chosen
    try:
        check_fits(model, hparams, held.path, "exported", held.original)
        return _write(model, hparams, model_dir, output, batch_size, held.original, held.path, name, overwrite,
                      formats, opset, log, max_pixels, onnx_layout)
    finally:
        held.close()


def _write(model, hparams, model_dir, output, batch_size, checkpoint, restore_from, name, overwrite, formats, opset,
           log, max_pixels, onnx_layout):
    """export()'s writing, from the checkpoint named `checkpoint`, restored from `restore_from` (its pinned copy)."""
    import tensorflow as tf
=======
        openvino_export.check_precision(precision, "zoo-run export --format openvino")
        if precision == "int8" and not calibration_data:
            raise ZooError("--precision int8 needs --calibration_data DIR: TFRecords (a few hundred images of a train "
                           "split, and a validation split to check the accuracy on) to calibrate the quantization")
        if calibration_data:
            paths.require_dir(calibration_data, "--calibration_data")
        if max_accuracy_drop < 0:
            raise ZooError("--max_accuracy_drop must be >= 0 (top-1 points), got %g" % max_accuracy_drop)
    checkpoint = resolve_checkpoint(checkpoint or model_dir)
    check_fits(model, hparams, checkpoint, "exported")
>>>>>>> i25-precision
    saved_model = os.path.join(output, SAVED_MODEL_DIR)
    targets = {"tf": [saved_model, os.path.join(output, FROZEN_GRAPH)],
               "onnx": [os.path.join(output, onnx_export.ONNX_FILE)],
               "openvino": [os.path.join(output, openvino_export.MODEL_DIR)]}
    existing = [path for f in formats for path in targets[f] if os.path.exists(path)]
    if existing and not overwrite:
        raise ZooError("%s already exists: choose another --output or pass --overwrite" % existing[0])
    if os.path.isdir(saved_model) and "tf" in formats:
        shutil.rmtree(saved_model)
    paths.make_dir(output, "--output")
    names, source = labels_mod.class_names(int(hparams["num_classes"]), int(hparams.get("label_offset", 1)),
                                           model_dir=model_dir)
    labels_path = None
    if source:
        labels_path = os.path.join(output, CLASS_NAMES)
        with open(labels_path, "w") as f:
            f.write("".join(n + "\n" for n in names))
    common = collections.OrderedDict([("model", name or repr(model)), ("checkpoint", checkpoint),
                                      ("tensorflow", tf.__version__), ("class_names", labels_path),
                                      ("labels_source", source), ("hparams", hparams)])
    log("Exported %s" % checkpoint)
    infos = collections.OrderedDict()
    if "tf" in formats:
        infos["tf"] = _export_tf(model, hparams, restore_from, output, batch_size, common, log, max_pixels)
    if "onnx" in formats:
        infos["onnx"] = onnx_export.write(model, hparams, restore_from, output, opset or onnx_export.OPSET, common, log,
                                          onnx_layout)
        log("  Ascend: atc --model=%s --framework=5 --input_shape=\"%s:%s\" --output=%s "
            "--soc_version=<your Ascend SoC, e.g. Ascend310>"
            % (infos["onnx"]["path"], onnx_export.INPUT_NAME, ",".join(str(d).replace("N", "1") for d in
                                                                       infos["onnx"]["input"]["shape"]),
               os.path.join(output, "model_onnx")))
    if "openvino" in formats:
<<<<<<< HEAD
        infos["openvino"] = openvino_export.write(model, hparams, restore_from, output, opset or onnx_export.OPSET,
                                                  common, log, onnx_layout)
=======
        infos["openvino"] = openvino_export.write(model, hparams, checkpoint, output, opset or onnx_export.OPSET,
                                                  common, log, onnx_layout, precision, calibration_data,
                                                  max_accuracy_drop, calibration_images)
>>>>>>> i25-precision
    return infos


def _export_tf(model, hparams, checkpoint, output, batch_size, common, log, max_pixels):
    from registry import tf_compat
    built = export_hparams(model, hparams, "tensorflow")
    saved_model = write_saved_model(model, built, checkpoint, os.path.join(output, SAVED_MODEL_DIR), max_pixels)
    frozen, nodes, frozen_def = write_frozen_graph(model, built, checkpoint, os.path.join(output, FROZEN_GRAPH),
                                                   batch_size)
    exporter = "%d.%d" % tf_compat.VERSION
    saved_readers = graph_compat.readers(graph_compat.saved_model_graph_defs(saved_model), exporter)
    frozen_readers = graph_compat.readers([frozen_def], exporter)
    size = int(hparams["image_size"])
    info = collections.OrderedDict(common)
    info.update([
        ("saved_model", collections.OrderedDict([
            ("path", saved_model), ("tags", ["serve"]), ("readable_by", saved_readers.text),
            ("signatures", {
                SERVING_SIGNATURE: {"inputs": {"image_bytes": "string [N] encoded JPEG/PNG/GIF/BMP, upright, sRGB"},
                                    "outputs": {"classes": "int32 [N]", "probabilities": "float32 [N, K]"},
                                    "max_image_pixels": max_pixels},
                IMAGES_SIGNATURE: {"inputs": {"images": "float32 [N, %d, %d, 3] preprocessed" % (size, size)},
                                   "outputs": {"logits": "float32 [N, K]", "probabilities": "float32 [N, K]",
                                               "classes": "int32 [N]"}}})])),
        ("frozen_graph", collections.OrderedDict([
            ("path", frozen), ("nodes", nodes), ("readable_by", frozen_readers.text),
            ("input", {"name": INPUT_NODE, "tensor": INPUT_NODE + ":0", "dtype": "float32", "format": "NHWC",
                       "shape": [batch_size, size, size, 3]}),
            ("outputs", {n: n + ":0" for n in OUTPUT_NODES}),
            ("atc_input_shape", "%s:%d,%d,%d,3" % (INPUT_NODE, batch_size, size, size) if frozen_readers.tf115
             else None)])),
        ("built_with", changed_hparams(hparams, built)),
    ])
    with open(os.path.join(output, EXPORT_INFO), "w") as f:
        json.dump(info, f, indent=2)
    log("  SavedModel   %s  (signatures: %s, %s; readable by %s)\n"
        "  frozen graph %s  (input %s float32 %s, outputs %s; readable by %s)"
        % (saved_model, SERVING_SIGNATURE, IMAGES_SIGNATURE, saved_readers.text, frozen, INPUT_NODE,
           info["frozen_graph"]["input"]["shape"], ", ".join(OUTPUT_NODES), frozen_readers.text))
    if frozen_readers.tf115:
        log("  Ascend: atc --model=%s --framework=3 --input_shape=\"%s\" --out_nodes=\"logits:0;probabilities:0\" "
            "--output=%s --soc_version=<your Ascend SoC, e.g. Ascend310>"
            % (frozen, info["frozen_graph"]["atc_input_shape"], os.path.join(output, "model")))
    else:
        log("  Ascend: no atc command for %s: ATC reads TensorFlow 1.15 graphs; export on lane tf1 (%s) for ATC"
            % (frozen, tf_compat.LANES["tf1"]))
    return info
