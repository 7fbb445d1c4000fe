"""`zoo-run predict`, `zoo-run export`, `zoo-run import-weights`."""
import argparse
import json

from registry import discovery, hparams as hp, paths
from registry.deploy.onnx_export import OPSET as ONNX_OPSET
from registry.errors import ZooError


def _quiet_tensorflow():
    from registry import tf_compat
    return tf_compat.quiet()


def model_dir_hparams(model, model_dir, set_args=()):
    """The model dir's effective hparams (hparams.json over the defaults), then --set overrides."""
    from registry.engine import results
    paths.require_dir(model_dir, "model dir")
    saved = results.read_json(model_dir, results.HPARAMS_FILE)
    if saved is None:
        raise ZooError("model dir %s has no %s: is it a zoo-run training or import-weights run?"
                       % (model_dir, results.HPARAMS_FILE))
    return hp.resolve(model, set_args=set_args, saved=saved)


def cmd_import_weights(args):
    model = discovery.get_model(args.name)
    params = hp.resolve(model, None, None, args.set)
    _quiet_tensorflow()
    from registry.deploy.import_weights import import_weights
    import_weights(model, args.source, args.model_dir, params, key=args.key)
    print("next: zoo-run eval %s --model_dir %s --data_path DATA   |   zoo-run predict %s --model_dir %s IMAGE"
          % (args.name, args.model_dir, args.name, args.model_dir))
    return 0


def cmd_export(args):
    model = discovery.get_model(args.name)
    params = model_dir_hparams(model, args.model_dir, args.set)
    _quiet_tensorflow()
    from registry.deploy.export import FORMATS, export
    export(model, params, args.model_dir, args.output, batch_size=args.batch_size, checkpoint=args.checkpoint,
           name=args.name, overwrite=args.overwrite, formats=FORMATS if args.format == "all" else (args.format,),
            opset=args.opset, max_pixels=args.max_image_pixels, onnx_layout=args.onnx_layout,
           precision=args.precision, calibration_data=args.calibration_data, max_accuracy_drop=args.max_accuracy_drop,
           calibration_images=args.calibration_images)
    return 0


def cmd_predict(args):
    hp.flag_at_least(args.top_k, 1, "--top_k")
    model = discovery.get_model(args.name)
    params = model_dir_hparams(model, args.model_dir, args.set)
    _quiet_tensorflow()
    from registry.deploy import predict
    results, checkpoint, source = predict.predict(model, params, args.model_dir, args.images, top_k=args.top_k,
                                                  labels=args.labels, checkpoint=args.checkpoint,
                                                  max_pixels=args.max_image_pixels)
    if args.json:
        print(json.dumps({"checkpoint": checkpoint, "labels": source, "results": results,
                          "colour_profiles_converted": predict.colour_converted(results)}, indent=2))
    else:
        print("%s, %s" % (checkpoint, "class names from %s" % source if source else
                          "no class names (pass --labels DATA_DIR/labels.txt)"))
        print(predict.format_table(results))
    return 0


def precision_arguments(parser, export=False):
    """--precision and --calibration_data (export, perf, eval); export adds --max_accuracy_drop and
    --calibration_images."""
    from registry.deploy.openvino_export import DEFAULT_MAX_ACCURACY_DROP, PRECISIONS
    from registry.deploy.quantize import DEFAULT_IMAGES
    group = parser.add_argument_group("OpenVINO precision (lane tf2)")
    group.add_argument("--precision", choices=PRECISIONS,
                       help="f32: float32, TensorFlow's numerics; bf16: compiled in bfloat16 (float32 on CPUs without "
                            "bfloat16 hardware: OpenVINO falls back, and says so); int8: NNCF post-training "
                            "quantization calibrated on --calibration_data. Default: %s" % (
                                "int8 with --calibration_data, else f32" if export else
                                "an export dir's default_precision (the fastest its accuracy check showed), else f32"))
    group.add_argument("--calibration_data", type=paths.expand, metavar="DIR",
                       help="TFRecords whose train split (else validation split) calibrates INT8" + (
                           " and whose validation split checks the bf16/int8 model's top-1 against f32" if export
                           else ""))
    if export:
        group.add_argument("--max_accuracy_drop", type=float, default=DEFAULT_MAX_ACCURACY_DROP, metavar="POINTS",
                           help="refuse a bf16/int8 export whose top-1 is more than POINTS below f32's on the "
                                "check split (default %g)" % DEFAULT_MAX_ACCURACY_DROP)
        group.add_argument("--calibration_images", type=int, default=DEFAULT_IMAGES,
                           help="images calibrating INT8 (default %d, NNCF's)" % DEFAULT_IMAGES)


def register(subparsers):
    """Adds predict, export and import-weights to zoo-run's subcommands."""
    from registry.data.cli import max_pixels_argument
    p = subparsers.add_parser(
        "predict", help="top-5 classes of image files with a trained model",
        description="Classifies image files (JPEG, PNG, GIF, BMP, TIFF, WebP; as a viewer shows them: EXIF "
                    "orientation applied, colour profiles converted to sRGB) with the model dir's latest checkpoint, "
                    "applying the model dir's "
                    "input convention (hparams.json). Class names come from --labels, else the model dir's "
                    "labels.txt, else ImageNet's list when the model has 1000 classes.")
    p.add_argument("name", help="registered model name, e.g. shufflenetv1_g3")
    p.add_argument("images", nargs="+", type=paths.expand, metavar="IMAGE", help="image files")
    p.add_argument("--model_dir", required=True, type=paths.expand, help="a training or import-weights run's directory")
    p.add_argument("--checkpoint", type=paths.expand, help="a checkpoint prefix (default: the model dir's latest)")
    p.add_argument("--labels", type=paths.expand, metavar="FILE_OR_DATA_DIR",
                   help="the data set's labels.txt ('id:name' lines), or the TFRecord dir holding it")
    p.add_argument("--top_k", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    max_pixels_argument(p, "images with more pixels are refused before anything is decoded")
    hp.add_set_argument(p, "override one of the model dir's hparams (repeatable)")
    p.set_defaults(func=cmd_predict)

    p = subparsers.add_parser(
        "export", help="SavedModel (serving), frozen graph (Ascend ATC) and ONNX of a trained model",
        description="--format tf (the default) writes OUTPUT/saved_model (signatures serving_default: encoded image "
                    "bytes -> classes, probabilities; predict_images: preprocessed float32 [N,H,W,3] -> logits, "
                    "probabilities, classes), OUTPUT/frozen_graph.pb (fixed input 'input' [batch,H,W,3], outputs "
                    "'logits', 'probabilities', 'classes') and OUTPUT/export_info.json. --format onnx writes "
                    "OUTPUT/model.onnx (input 'input' float32 [N,H,W,3] with N dynamic, outputs 'logits', "
                    "'probabilities'; needs `pip install .[onnx]`) and OUTPUT/onnx_info.json, after checking "
                    "onnxruntime's logits against the checkpoint's on real images at batch 1 and N. --format openvino "
                    "writes OUTPUT/openvino/model.xml (+ .bin), the same model as OpenVINO IR, and "
                    "OUTPUT/openvino_info.json, after the same check in OpenVINO. --format all: the three.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Ascend (the export prints these for its own files; the first only when TensorFlow 1.15 reads its "
               "frozen graph, as ATC parses TF 1.15 graphs):\n  atc --model=OUTPUT/frozen_graph.pb --framework=3 --input_shape=\"input:1,224,224,3\" "
               "--out_nodes=\"logits:0;probabilities:0\" --output=OUTPUT/model --soc_version=Ascend310\n"
               "  atc --model=OUTPUT/model.onnx --framework=5 --input_shape=\"input:1,224,224,3\" "
               "--output=OUTPUT/model_onnx --soc_version=Ascend310")
    p.add_argument("name", help="registered model name")
    p.add_argument("--model_dir", required=True, type=paths.expand, help="a training or import-weights run's directory")
    p.add_argument("--output", required=True, type=paths.expand, help="directory to write the exports into")
    p.add_argument("--format", choices=["tf", "onnx", "openvino", "all"], default="tf",
                   help="tf: SavedModel + frozen graph (default); onnx: ONNX model; openvino: OpenVINO IR of the ONNX "
                        "model (needs `pip install .[openvino]`, which brings the ONNX packages too); all: the three")
    p.add_argument("--opset", type=int, help="ONNX opset (default %d)" % ONNX_OPSET)
    p.add_argument("--onnx_layout", type=str.upper, choices=["NHWC", "NCHW"], default="NHWC",
                   help="layout of the ONNX and OpenVINO models' input: NHWC (default, as the frozen graph's) or NCHW "
                        "([N, 3, H, W], as PyTorch's exports)")
    precision_arguments(p, export=True)
    p.add_argument("--batch_size", type=int, default=1, help="fixed batch of the frozen graph (default 1)")
    p.add_argument("--checkpoint", type=paths.expand, help="a checkpoint prefix (default: the model dir's latest)")
    p.add_argument("--overwrite", action="store_true", help="replace existing exports of the chosen formats")
    max_pixels_argument(p, "the SavedModel's serving_default refuses larger images, from their header, before "
                           "decoding them")
    hp.add_set_argument(p, "override one of the model dir's hparams (repeatable), e.g. grouped_conv_impl=native")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "import-weights", help="official PyTorch weights -> a model dir (eval, predict, export, warm start)",
        description="Reads a torch.save checkpoint (a state dict, bare or under 'state_dict', 'model', "
                    "'model_state_dict', 'ema', ...; DataParallel 'module.' keys; zip or legacy format) without "
                    "torch and without running any code in it, maps every tensor by name and shape, and writes "
                    "MODEL_DIR/model.ckpt-0 with hparams.json recording the weights' input convention.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  zoo-run import-weights shufflenetv1_g3 --from ShuffleNetV1-1.0x-g3.pth.tar "
               "--model_dir runs/g3-megvii")
    p.add_argument("name", help="registered model name of the checkpoint's variant, e.g. shufflenetv1_g3")
    p.add_argument("--from", dest="source", required=True, type=paths.expand, metavar="FILE",
                   help="the PyTorch checkpoint")
    p.add_argument("--model_dir", required=True, type=paths.expand, help="a new directory for the TF checkpoint")
    p.add_argument("--key", help="the checkpoint entry holding the weights, e.g. model_ema (default: the first of "
                                 "state_dict, model, model_state, model_state_dict, ... that holds tensors)")
    hp.add_set_argument(p, "override a default hparam recorded with the weights (repeatable)")
    p.set_defaults(func=cmd_import_weights)
