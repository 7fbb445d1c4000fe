"""Throughput and latency of any registered network: training steps, and inference of deployed graphs.

Training runs the engine's own graph (registry.engine.trainer.build, as `zoo-run train` builds it) in a plain
session loop, so the figures are the network's and the input pipeline's, not the hooks' bookkeeping.
Inference runs what `zoo-run export` ships, in one of RUNTIMES:
- "tf": the frozen graph (variables made constants, so Grappler folds batch norm and the grouped kernels
  once, not every step), read from an export dir (its fixed batch) or frozen from fresh weights; its
  input is the in-graph pipeline's batch;
- "onnxruntime": the ONNX model of an export dir, or the same tf2onnx conversion of fresh weights; its
  input is batches held in memory (synthetic: one; real data: the first few, cycled), in the model's input layout
  (NHWC, or NCHW for `onnx_layout="NCHW"` or an export made so), transposed before timing;
- "openvino": the same in OpenVINO (registry.deploy.openvino_export), of an export dir's IR (or its
  model.onnx), or of the ONNX conversion of fresh weights; at `precision` f32, bf16 (OpenVINO falls back to float32
  on CPUs without bfloat16 hardware: the report names the precision that ran) or int8 (an export's model_int8.xml,
  or fresh weights quantized with NNCF on `calibration_data`'s records). An export dir's default is the
  `default_precision` its info file records (the fastest its accuracy check showed).
Training runs in `precision_mode` as `zoo-run train` does (devices.training_precision); the report names the
precision that ran.
Every step is timed; after warm-up the steps fall into windows and the median window is reported, with
the p50/p90 of single steps (per-image latency at batch 1). The report adds the keys of timm's
benchmark.py: {infer,train}_samples_per_sec, _step_time (ms), _batch_size, _img_size, param_count
(millions) and infer_gmacs (multiply-adds per image / 1e9), rounded as timm rounds them.
"""
import collections
import itertools
import json
import os
import resource
import statistics
import time

import numpy as np
import tensorflow as tf

from registry import graph_stats, spec, tf_compat
from registry.deploy import export as export_mod, inference_graph, onnx_export, openvino_export
from registry.engine import devices, schedule, trainer
from registry.errors import ZooError

tf1 = tf.compat.v1
RUNTIMES = ("tf", "onnxruntime", "openvino")
NUMPY_BATCHES = 4   # real-data batches held in memory for onnxruntime
FRESH = "fresh weights"

Artifact = collections.namedtuple("Artifact", "path hparams fixed_batch layout precision")


def _dataset(model, hparams, data_path, synthetic):
    """Inference input: synthetic batches, or the eval split repeated."""
    if synthetic:
        from registry.data.synthetic import synthetic_dataset
        return synthetic_dataset(spec.TRAIN, hparams)  # repeats forever
    return model.input_fn(spec.EVAL, hparams, data_path).repeat()


def _time_steps(step, warmup_steps, steps, windows):
    """Seconds of each of windows * max(1, steps // windows) calls of `step`, after `warmup_steps` untimed."""
    for _ in range(warmup_steps):
        step()
    times = []
    for _ in range(windows * max(1, steps // windows)):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _summary(times, windows, batch):
    per_window = len(times) // windows
    means = [statistics.mean(times[i * per_window:(i + 1) * per_window]) for i in range(windows)]
    median = statistics.median(means)
    return {"images_per_sec": batch / median, "step_time_ms": median * 1000.0,
            "windows_ms": [round(m * 1000.0, 2) for m in means], "runs": len(times),
            "latency_ms_p50": float(np.percentile(times, 50)) * 1000.0,
            "latency_ms_p90": float(np.percentile(times, 90)) * 1000.0}


def artifact(export_dir, runtime, precision=None):
    """The model `zoo-run export` wrote into `export_dir` for `runtime`: Artifact(path, the model dir's hparams
    from the export's info file, fixed batch or None, input layout, precision: OpenVINO's `precision`, by default
    the export's default_precision; f32 elsewhere). Raises a ZooError naming what is missing."""
    if runtime != "openvino" and precision not in (None, "f32"):
        raise ZooError("--precision %s is OpenVINO's: use --runtime openvino (%s runs float32)" % (precision, runtime))
    if runtime == "tf":
        path, info_file, fmt = export_mod.FROZEN_GRAPH, export_mod.EXPORT_INFO, "tf"
    elif runtime == "openvino" and os.path.exists(os.path.join(export_dir, openvino_export.MODEL_DIR)):
        info_path = os.path.join(export_dir, openvino_export.INFO)
        if precision is None and os.path.exists(info_path):
            with open(info_path) as f:
                precision = json.load(f).get("default_precision")
        precision = precision or "f32"
        path, info_file, fmt = os.path.join(openvino_export.MODEL_DIR, openvino_export.model_file(precision)), \
            openvino_export.INFO, "openvino"
        if precision == "int8" and not os.path.exists(os.path.join(export_dir, path)):
            raise ZooError("%s has no INT8 model (%s): export it with `zoo-run export NAME --model_dir MODEL_DIR "
                           "--output %s --format openvino --precision int8 --calibration_data DATA_DIR`"
                           % (export_dir, path, export_dir))
    else:   # onnxruntime, or OpenVINO reading model.onnx
        if precision == "int8":
            raise ZooError("%s has no OpenVINO export, so no INT8 model: export it with `zoo-run export NAME "
                           "--model_dir MODEL_DIR --output %s --format openvino --precision int8 --calibration_data "
                           "DATA_DIR`" % (export_dir, export_dir))
        path, info_file, fmt = onnx_export.ONNX_FILE, onnx_export.ONNX_INFO, "onnx"
    path, info_file = os.path.join(export_dir, path), os.path.join(export_dir, info_file)
    if not (os.path.exists(path) and os.path.exists(info_file)):
        raise ZooError("%s has no %s with its %s: write them with `zoo-run export NAME --model_dir MODEL_DIR "
                       "--output %s --format %s`" % (export_dir, os.path.basename(path), os.path.basename(info_file),
                                                     export_dir, fmt))
    export_mod.check_one_checkpoint(export_dir)
    with open(info_file) as f:
        info = json.load(f)
    fixed = info["frozen_graph"]["input"]["shape"][0] if runtime == "tf" else None
    layout = "NHWC" if runtime == "tf" else info["input"]["format"]
    return Artifact(path, info["hparams"], fixed, layout, precision or "f32")


def _tf_inference(model, hparams, images, export_dir):
    """(fetches, source) of the frozen graph run on the `images` tensor."""
    if export_dir:
        source = artifact(export_dir, "tf").path
        graph_def = tf1.GraphDef()
        with open(source, "rb") as f:
            graph_def.ParseFromString(f.read())
    else:
        source = FRESH
        graph_def = inference_graph.frozen_graph_def(model, hparams, None, int(images.shape[0]))
    fetches = tf1.import_graph_def(graph_def, input_map={inference_graph.INPUT_NODE + ":0": images},
                                   return_elements=[n + ":0" for n in onnx_export.OUTPUT_NAMES], name="deployed")
    return fetches, source


def frozen_graph_runner(path, fixed_batch):
    """float32 NHWC images [N, S, S, 3] -> [N, K] logits of the frozen graph at `path` (input fixed at
    `fixed_batch`): fed in chunks of that batch, the last one padded and the padding dropped."""
    graph = tf.Graph()
    graph_def = tf1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    with graph.as_default():
        tf1.import_graph_def(graph_def, name="")
    session = tf1.Session(graph=graph)
    inputs, logits = inference_graph.INPUT_NODE + ":0", onnx_export.OUTPUT_NAMES[0] + ":0"

    def run(images):
        out = []
        for start in range(0, len(images), fixed_batch):
            chunk = images[start:start + fixed_batch]
            padded = np.concatenate([chunk, np.zeros((fixed_batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            out.append(session.run(logits, {inputs: padded})[:len(chunk)])
        return np.concatenate(out)
    return run


def exported_runner(model, hparams, runtime, export_dir=None, layout="NHWC", precision=None, calibration_data=None,
                    log=print):
    """(run: images in the model's layout -> {'logits', 'probabilities'}, source, input layout, runtime version and
    the precision that ran) of `runtime` ("onnxruntime" or "openvino") on the export dir's model, or on fresh weights
    converted as the export converts them, with the input in `layout`. OpenVINO `precision`: see the module doc
    (fresh weights at int8 are quantized on `calibration_data`)."""
    if export_dir:
        found = artifact(export_dir, runtime, precision)
        source, layout, model_bytes, precision = found.path, found.layout, None, found.precision
    else:
        source = FRESH
        model_bytes = onnx_export.convert_checkpoint(model, hparams, None, input_layout=layout)[0].SerializeToString()
    precision = precision or "f32"
    if runtime == "openvino":
        if precision == "int8" and not export_dir:
            from registry.deploy import quantize
            if not calibration_data:
                raise ZooError("--precision int8 on fresh weights needs --calibration_data DIR (TFRecords to "
                               "calibrate the quantization on), or --export_dir of an INT8 export")
            images = quantize.calibration_images(model, hparams, calibration_data, log=log)[0]
            model_bytes = quantize.quantize(openvino_export.require("OpenVINO").Core().read_model(model_bytes, b""),
                                            onnx_export.to_layout(images, layout))
            log("  quantized fresh weights (accuracy not checked: fresh weights are untrained)")
        request = openvino_export.session(model_bytes or source, precision=precision)
        return (lambda images: openvino_export.run(request, images)), source, layout, "openvino %s (%s)" % (
            openvino_export.version(), openvino_export.ran_precision(request, precision))
    sess = onnx_export.session(model_bytes or source)
    return (lambda images: onnx_export.run(sess, images)), source, layout, "onnxruntime %s" % onnx_export.versions(
        ("onnxruntime",))["onnxruntime"]


def _numpy_batches(model, hparams, data_path, synthetic):
    with tf.Graph().as_default():
        images, _ = tf1.data.make_one_shot_iterator(
            _dataset(model, hparams, data_path, synthetic)).get_next()
        with tf1.Session() as session:
            return [session.run(images) for _ in range(1 if synthetic else NUMPY_BATCHES)]


def measure_mode(model, hparams, mode, data_path=None, synthetic=True, steps=30, warmup_steps=5, windows=5,
                 runtime="tf", export_dir=None, onnx_layout="NHWC", precision=None, calibration_data=None,
                 settings=None, log=print):
    """{images_per_sec, step_time_ms, windows_ms, runs, latency_ms_p50, latency_ms_p90, runtime, model,
    input_layout} of TRAIN (in `settings`, default float32 on the cpu) or PREDICT (inference, in `runtime` at
    `precision`, of `export_dir`'s model or fresh weights) steps."""
    batch = hparams["batch_size"]
    if mode != spec.TRAIN and runtime != "tf":
        run_batch, source, layout, version = exported_runner(model, hparams, runtime, export_dir, onnx_layout,
                                                             precision, calibration_data, log)
        batches = itertools.cycle([onnx_export.to_layout(images, layout)
                                   for images in _numpy_batches(model, hparams, data_path, synthetic)])
        times = _time_steps(lambda: run_batch(next(batches)), warmup_steps, steps, windows)
        ran = version.split("(", 1)[1].rstrip(")") if runtime == "openvino" else "f32"
        return dict(_summary(times, windows, batch), runtime=version, model=source, input_layout=layout, precision=ran)
    with tf.Graph().as_default():
        initializers = []
        if mode == spec.TRAIN:
            built = trainer.build(model, hparams, data_path, schedule.Plan(hparams), settings or devices.resolve("cpu"),
                                  synthetic=synthetic)
            fetch, source, initializers = built.train_op, FRESH, built.initializers
        else:
            images, _ = tf1.data.make_one_shot_iterator(_dataset(model, hparams, data_path, synthetic)).get_next()
            fetch, source = _tf_inference(model, hparams, images, export_dir)
        with tf1.Session() as session:
            session.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()] + initializers)
            times = _time_steps(lambda: session.run(fetch), warmup_steps, steps, windows)
    return dict(_summary(times, windows, batch), runtime="tensorflow %s" % tf.__version__, model=source,
                input_layout="NHWC")


def timm_keys(report, modes):
    """The names and units of timm's benchmark.py for the figures of `report`."""
    keys = collections.OrderedDict()
    for name in modes:
        keys["%s_samples_per_sec" % name] = round(report["%s_images_per_sec" % name], 2)
        keys["%s_step_time" % name] = round(report["%s_step_time_ms" % name], 3)
        keys["%s_batch_size" % name] = report["batch_size"]
        keys["%s_img_size" % name] = report["image_size"]
    keys["param_count"] = round(report["params"] / 1e6, 2)
    if "infer" in modes:
        keys["infer_gmacs"] = round(report["macs"] / 1e9, 2)
    return keys


def run(model, hparams, modes, data_path=None, synthetic=True, steps=30, warmup_steps=5, windows=5,
        device=None, runtime="tf", export_dir=None, latency=False, log=print, onnx_layout=None, precision=None,
        calibration_data=None, precision_mode=None):
    """Measures each of `modes` ('train', 'infer'; inference in `runtime`, of `export_dir`'s model when given);
    returns the JSON-ready report. `latency` adds the p50/p90 of single inference steps. `device` (reported
    only: a plain session places ops itself) defaults to gpu when TensorFlow sees one, else cpu. `onnx_layout`:
    the input layout of the ONNX/OpenVINO model converted from fresh weights (default NHWC; an export's is its own).
    `precision`, `calibration_data`: OpenVINO's (module doc); `precision_mode`: training's, as `zoo-run train`'s."""
    if runtime not in RUNTIMES:
        raise ZooError("unknown runtime %r: choose from %s" % (runtime, ", ".join(RUNTIMES)))
    if onnx_layout and (runtime == "tf" or export_dir):
        raise ZooError("--onnx_layout sets the input of the ONNX model converted from fresh weights for --runtime "
                       "onnxruntime or openvino; %s: drop it" % (
                           "an export's layout is the one it was exported with" if export_dir else "--runtime tf "
                           "runs the frozen graph (NHWC)"))
    if runtime != "tf" and "infer" in modes:   # fresh weights need the converter too
        onnx_export.require("--runtime %s" % runtime, () if export_dir else ("onnx", "tf2onnx"))
        if runtime == "onnxruntime":
            onnx_export.require("--runtime onnxruntime", ("onnxruntime",))
        else:
            openvino_export.require("--runtime openvino")
    if precision not in (None, "f32") and (runtime != "openvino" or "infer" not in modes):
        raise ZooError("--precision %s sets OpenVINO's inference: use --runtime openvino with --mode infer (training "
                       "precision is --precision_mode)" % precision)
    if precision:
        openvino_export.check_precision(precision, "zoo-run perf --runtime openvino")
    if calibration_data and (precision != "int8" or export_dir):
        raise ZooError("--calibration_data calibrates INT8 of fresh weights (--precision int8 without --export_dir); "
                       "drop it")
    device = device or ("gpu" if devices.gpu_available() else "cpu")
    settings = devices.for_images(devices.resolve(device, precision_mode, command="perf"), hparams["image_size"])
    params, macs = graph_stats.measure(model, hparams)
    report = {"batch_size": hparams["batch_size"], "image_size": hparams["image_size"], "device": device,
              "lane": tf_compat.LANE, "tensorflow": tf.__version__, "lane_description": tf_compat.describe(),
              "cpu_kernels": tf_compat.cpu_kernels(),
              "data": "synthetic" if synthetic else data_path, "params": params, "macs": macs,
              "steps": steps, "warmup_steps": warmup_steps, "windows": windows}
    if "train" in modes:
        report.update(train_precision_mode=precision_mode, train_precision=settings.precision.name,
                      train_precision_note=settings.precision.note)
        if settings.precision.note:
            log("train precision: %s" % settings.precision.note)
    for name in modes:
        mode = spec.TRAIN if name == "train" else spec.PREDICT
        result = measure_mode(model, hparams, mode, data_path, synthetic, steps, warmup_steps, windows,
                              runtime, export_dir, onnx_layout or "NHWC", precision, calibration_data, settings, log)
        for key in ("images_per_sec", "step_time_ms", "windows_ms"):
            report["%s_%s" % (name, key)] = result[key]
        where = ""
        if name == "infer":
            report["infer_runtime"], report["infer_model"] = result["runtime"], result["model"]
            report["infer_input_layout"] = result["input_layout"]
            report["infer_precision"] = result.get("precision", "f32")
            where = ", %s, %s, %s input" % (result["runtime"], result["model"], result["input_layout"])
        log("%-5s  %8.1f images/sec  %8.1f ms/step  (median of %d windows of %d steps, batch %d%s)"
            % (name, result["images_per_sec"], result["step_time_ms"], windows, max(1, steps // windows),
               hparams["batch_size"], where))
        if latency and name == "infer":
            report.update(infer_latency_ms_p50=result["latency_ms_p50"], infer_latency_ms_p90=result["latency_ms_p90"],
                          infer_latency_runs=result["runs"])
            log("infer  latency p50 %.2f ms  p90 %.2f ms  (%d single-image runs)"
                % (result["latency_ms_p50"], result["latency_ms_p90"], result["runs"]))
    report.update(timm_keys(report, modes))
    report["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return report
