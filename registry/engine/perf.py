"""Throughput of any registered network: training steps and inference, on real or synthetic data.

Training runs the engine's own graph (the same model_fn as `zoo-run train`) in a plain session
loop, so the figures are the network's and the input pipeline's, not the Estimator's bookkeeping.
Inference runs the graph `zoo-run export` ships: the eval-mode network frozen (variables made
constants, so Grappler folds batch norm and the grouped kernels once, not every step). After
warm-up, steps are timed in windows; the median window is reported.
"""
import resource
import statistics
import time

import tensorflow as tf

from registry import graph_stats, tf_compat
from registry.engine import devices, schedule
from registry.engine.model_fn import build_model_fn

tf1 = tf.compat.v1
ModeKeys = tf.estimator.ModeKeys


def _dataset(model, mode, hparams, data_path, synthetic):
    if synthetic:
        from registry.data.synthetic import synthetic_dataset
        return synthetic_dataset(ModeKeys.TRAIN, hparams)  # repeats forever, for either mode
    if mode == ModeKeys.TRAIN:
        return model.input_fn(ModeKeys.TRAIN, hparams, data_path)
    return model.input_fn(ModeKeys.EVAL, hparams, data_path).repeat()


def _time_windows(session, fetch, warmup_steps, steps, windows):
    for _ in range(warmup_steps):
        session.run(fetch)
    per_window = max(1, steps // windows)
    durations = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(per_window):
            session.run(fetch)
        durations.append((time.perf_counter() - start) / per_window)
    return statistics.median(durations), durations


def _frozen_inference(model, hparams, images):
    """Class ids of `images` from the eval-mode network frozen with fresh weights, as export freezes it."""
    with tf.Graph().as_default() as graph:
        inputs = tf1.placeholder(images.dtype, images.shape, name="images")
        tf.argmax(model.build_model(inputs, False, hparams), axis=1, name="classes")
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            frozen = tf1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["classes"])
    return tf1.import_graph_def(frozen, input_map={"images:0": images}, return_elements=["classes:0"],
                                name="frozen")[0]


def measure_mode(model, hparams, mode, data_path=None, synthetic=True, steps=30, warmup_steps=5, windows=5):
    """{images_per_sec, step_time_ms, windows_ms} of TRAIN or PREDICT (inference) steps."""
    batch = hparams["batch_size"]
    with tf.Graph().as_default():
        images, labels = tf1.data.make_one_shot_iterator(
            _dataset(model, mode, hparams, data_path, synthetic)).get_next()
        if mode == ModeKeys.TRAIN:
            spec = build_model_fn(model, hparams, schedule.Plan(hparams))(
                images, labels, ModeKeys.TRAIN, tf.estimator.RunConfig())
            fetch = spec.train_op
        else:
            fetch = _frozen_inference(model, hparams, images)
        with tf1.Session() as session:
            session.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            median, durations = _time_windows(session, fetch, warmup_steps, steps, windows)
    return {"images_per_sec": batch / median, "step_time_ms": median * 1000.0,
            "windows_ms": [round(d * 1000.0, 2) for d in durations]}


def run(model, hparams, modes, data_path=None, synthetic=True, steps=30, warmup_steps=5, windows=5,
        device=None, log=print):
    """Measures each of `modes` ('train', 'infer'); returns the JSON-ready report. `device` (reported
    only: a plain session places ops itself) defaults to gpu when TensorFlow sees one, else cpu."""
    device = device or ("gpu" if devices.gpu_available() else "cpu")
    params, macs = graph_stats.measure(model, hparams)
    report = {"batch_size": hparams["batch_size"], "image_size": hparams["image_size"], "device": device,
              "lane": tf_compat.LANE, "tensorflow": tf.__version__,
              "data": "synthetic" if synthetic else data_path, "params": params, "macs": macs,
              "steps": steps, "warmup_steps": warmup_steps, "windows": windows}
    for name in modes:
        mode = ModeKeys.TRAIN if name == "train" else ModeKeys.PREDICT
        result = measure_mode(model, hparams, mode, data_path, synthetic, steps, warmup_steps, windows)
        report["%s_images_per_sec" % name] = result["images_per_sec"]
        report["%s_step_time_ms" % name] = result["step_time_ms"]
        report["%s_windows_ms" % name] = result["windows_ms"]
        log("%-5s  %8.1f images/sec  %8.1f ms/step  (median of %d windows of %d steps, batch %d)"
            % (name, result["images_per_sec"], result["step_time_ms"], windows, max(1, steps // windows),
               hparams["batch_size"]))
    report["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return report
