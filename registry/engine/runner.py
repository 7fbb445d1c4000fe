"""Train and evaluate any registered network with tf.estimator.

Resume is automatic (the model dir's latest checkpoint wins, and the run says so); the
learning rate is a function of the global step, so a resumed run continues the same curve.
"""
import contextlib
import os
import re
import shutil
import statistics
import time

import tensorflow as tf

from registry import tf_compat
from registry.data import builder, check, tfrecord
from registry.engine import devices, distribute, hooks, results, schedule, warm_start as ws
from registry.engine.background_eval import BackgroundEvaluator, checkpoint_step
from registry.engine.model_fn import build_model_fn
from registry.errors import DataError, ZooError

tf1 = tf.compat.v1
ModeKeys = tf.estimator.ModeKeys


class TrainingDivergedError(ZooError):
    pass


LOCATE_SECONDS = 60.0   # how long a data error may search for the record it comes from
_IMAGE_ERROR = re.compile(r"JPEG|PNG|GIF|BMP|[Dd]ecode|image file format")


def _label_range(hparams):
    if hparams and "num_classes" in hparams:
        offset = int(hparams.get("label_offset", 0))
        return offset, offset + int(hparams["num_classes"]) - 1
    return None


@contextlib.contextmanager
def data_errors(data_path=None, split="train", hparams=None):
    """Turns the input pipeline's run-time failures (bad label, empty or undecodable image, corrupt file) into
    DataErrors that name the shard and the record (searched for in `data_path`'s `split` files, which
    TensorFlow's error does not name), without TensorFlow's graph internals."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        message = tf_compat.op_error_line(err)
        hint = "`zoo-run data check %s` lists every bad record in one pass" % (data_path or "DATA")
        if "assertion failed:" in message and "Fix:" in message:
            text = re.sub(r"\s*\]\s*\[?\s*|\s*\[", " ", message.split("assertion failed:", 1)[1]).strip()
            where = check.find_bad_record(data_path, split, _label_range(hparams), "labels" if "label" in
                                          text.split(":")[0] else "records", LOCATE_SECONDS)
            raise DataError(text + (" It is %s." % where if where else "") + " " + hint + ".")
        if isinstance(err, tf.errors.DataLossError) or _IMAGE_ERROR.search(message):
            where = check.find_bad_record(data_path, split, _label_range(hparams), "records", LOCATE_SECONDS)
            raise DataError(
                "%s. Fix: rebuild the TFRecords from the images with `zoo-run data build`, which checks every image "
                "and skips broken ones (or remove that record); %s." % (
                    "bad data: " + where if where else "an image or record in the data could not be read (%s); "
                    "the search for it found no bad record within %.0f s" % (message, LOCATE_SECONDS), hint))
        raise


@contextlib.contextmanager
def training_errors(model_dir, data_path=None, hparams=None):
    """data_errors() of the train split, plus clear errors for a NaN loss and for a model dir whose checkpoint
    does not fit the graph being trained (another network, num_classes or precision mode)."""
    try:
        with data_errors(data_path, "train", hparams):
            yield
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as err:
        last = tf1.train.latest_checkpoint(model_dir)
        if hooks.NAN_LOSS_MESSAGE in str(err):
            raise TrainingDivergedError(
                "the loss became NaN or Inf; the step was not applied. The last good checkpoint is %s. "
                "Lower the learning rate (e.g. --set learning_rate=...) and rerun the same command to resume."
                % (last or "none (no checkpoint was written yet)"))
        if "Restoring from checkpoint failed" in str(err):
            detail = re.search(r"Key \S+ not found in checkpoint|lhs shape= \[[^\]]*\] rhs shape= \[[^\]]*\]",
                               str(err))
            raise ZooError(_misfit_message(last, [detail.group(0) if detail else type(err).__name__], model_dir))
        raise


def _check_resume(model, hparams, checkpoint, model_dir):
    misfits = ws.checkpoint_misfits(model, hparams, checkpoint)
    if misfits:
        raise ZooError(_misfit_message(checkpoint, misfits, model_dir))


def _summary_of(misfits):
    return "; ".join(misfits[:3]) + ("; ... %d more" % (len(misfits) - 3) if len(misfits) > 3 else "")


def _misfit_message(checkpoint, misfits, model_dir):
    return ("the checkpoint %s does not fit the model being trained (%s). A model dir resumes only the run that "
            "made it (same network, num_classes and precision mode). Train into a new --model_dir, with "
            "--warm_start_from %s to start from its weights." % (checkpoint, _summary_of(misfits), model_dir))


def stream_hparams(hparams, start_step):
    """`hparams` for the train input of a segment starting at `start_step`. A seeded pipeline restarts
    with each estimator.train call (after every evaluation, and on resume); a seed of its own per
    start step keeps it reproducible without replaying step 0's images and crops."""
    seed = hparams.get("seed", -1)
    if seed is None or seed < 0 or not start_step:
        return hparams
    return dict(hparams, seed=(seed * 1000003 + start_step) % 2 ** 31)


def _input_fn(model, mode, hparams, data_path, synthetic, settings=None):
    """The Estimator's input_fn. Training on NPU ranks (settings.rank_size > 1) reads this rank's shard: an
    input context from the device settings (the launch environment), as tf.distribute gives its workers."""
    if synthetic:
        from registry.data.synthetic import synthetic_dataset
        return lambda input_context=None: synthetic_dataset(mode, hparams)
    shard = None
    if settings is not None and settings.rank_size > 1 and mode == ModeKeys.TRAIN:
        shard = tf.distribute.InputContext(settings.rank_size, settings.rank_id, settings.rank_size)
    return lambda input_context=None: model.input_fn(mode, hparams, data_path, input_context or shard)


def make_estimator(model, hparams, model_dir, plan=None, warm_start=None, settings=None, train_distribute=None,
                   session_config=None):
    settings = settings or devices.resolve("cpu")
    plan = plan or schedule.Plan(hparams, settings.rank_size)
    seed = hparams.get("seed", -1)
    return devices.make_estimator(
        settings, build_model_fn(model, hparams, plan, warm_start, settings), model_dir,
        seed=seed if seed is not None and seed >= 0 else None,
        save_checkpoints_steps=devices.align_steps(settings, hparams.get("save_checkpoints_steps", 5000)),
        keep_checkpoint_max=hparams.get("keep_checkpoint_max", 5), train_distribute=train_distribute,
        session_config=session_config)


def evaluate(model, hparams, data_path, model_dir, checkpoint=None, estimator=None, log=print, history=True,
             settings=None, replicas=None):
    """Top-1, top-5 and loss over the whole eval split; written to the model dir's eval records.

    The checkpoint's epoch is the one its training recorded (`results.recorded_epoch`); without a train
    log it is computed from `hparams` and `replicas` (default: the device settings' rank size)."""
    replicas = replicas or (settings.rank_size if settings else 1)
    checkpoint = checkpoint or tf1.train.latest_checkpoint(model_dir)
    if not checkpoint:
        raise ZooError("no checkpoint to evaluate in %s: train first, or pass --checkpoint" % model_dir)
    # A training run's own estimator evaluates its own checkpoints; anything else is checked first.
    misfits = [] if estimator else ws.checkpoint_misfits(model, hparams, checkpoint)
    estimator = estimator or make_estimator(model, hparams, model_dir, settings=settings)
    if misfits:
        raise ZooError("the checkpoint %s does not fit the model being evaluated (%s). Evaluate it with the hparams "
                       "it was trained with (its model dir's hparams.json; no --set of num_classes or the network)."
                       % (checkpoint, _summary_of(misfits)))
    start = time.time()
    with data_errors(data_path, "validation", hparams):
        metrics = estimator.evaluate(_input_fn(model, ModeKeys.EVAL, hparams, data_path, False),
                                     checkpoint_path=checkpoint)
    seconds = time.time() - start
    step = int(metrics["global_step"])
    epoch = results.recorded_epoch(model_dir, step)
    if epoch is None:
        epoch = schedule.Plan(hparams, replicas).epoch(step)
    record = {"global_step": step, "epoch": round(epoch, 4), "top1": float(metrics["top1"]),
              "top5": float(metrics["top5"]), "loss": float(metrics["cross_entropy"]),
              "num_images": int(round(metrics["num_images"])), "checkpoint": checkpoint,
              "eval_images_per_sec": metrics["num_images"] / seconds, "time": time.time()}
    train_log = results.read_train_log(model_dir)
    if train_log and "images_per_sec" in train_log[-1]:
        record["train_images_per_sec"] = train_log[-1]["images_per_sec"]
    results.write_eval_result(model_dir, record, history=history)
    log("eval  step %d (epoch %.2f): top-1 %.4f  top-5 %.4f  loss %.4f  over %d images  (%.0f img/s)"
        % (step, record["epoch"], record["top1"], record["top5"], record["loss"], record["num_images"],
           record["eval_images_per_sec"]))
    return record


def _check_hparams_change(model_dir, hparams, log):
    saved = results.read_json(model_dir, results.HPARAMS_FILE)
    if saved and saved != hparams:
        changed = sorted(k for k in set(saved) | set(hparams) if saved.get(k) != hparams.get(k))
        log("note: hparams differ from this model dir's previous run: %s"
            % ", ".join("%s %r -> %r" % (k, saved.get(k), hparams.get(k)) for k in changed))


def _eval_interval(plan, eval_every_epochs, last_step, settings):
    every = max(1, int(round(eval_every_epochs * plan.steps_per_epoch))) if eval_every_epochs else last_step
    return devices.align_steps(settings, every)


def _eval_steps(plan, start_step, eval_every_epochs, last_step, settings):
    every = _eval_interval(plan, eval_every_epochs, last_step, settings)
    targets = list(range(every, last_step, every)) + [last_step]
    return [t for t in targets if t > start_step]


def train(model, hparams, data_path, model_dir, warm_start_from=None, synthetic=False, eval_every_epochs=None,
          max_steps=None, skip_eval=False, settings=None, replicas=1,
          startup_timeout=distribute.DEFAULT_STARTUP_TIMEOUT, log=print):
    """Trains to `epochs` (or stops at `max_steps`), evaluating every `eval_every_epochs` and at the end.

    `replicas` > 1 trains with a MirroredStrategy over that many local devices. With a multi-worker
    TF_CONFIG in the environment, this process is one worker of a MultiWorkerMirroredStrategy run
    (see `registry.engine.distribute`).

    Writes `run_summary.json` (this run's throughput, loss, accuracy, duration) and returns the
    last eval record (None with synthetic data or `skip_eval`).
    """
    skip_eval = skip_eval or synthetic
    settings = settings or devices.resolve("cpu")
    for note in settings.launch.notes if settings.launch else ():
        log(note)
    if eval_every_epochs is None:   # 0 (or the hparam at 0) evaluates at the end only
        eval_every_epochs = hparams.get("eval_every_epochs")
    cluster = settings.launch.cluster if settings.launch else None
    if cluster:
        return _train_multi_worker(model, hparams, data_path, model_dir, cluster, synthetic, max_steps, skip_eval,
                                   eval_every_epochs, warm_start_from, settings, startup_timeout, log)
    strategy, session_config = distribute.mirrored_strategy(settings.device, replicas) if replicas > 1 else (None, None)
    plan = schedule.Plan(hparams, settings.rank_size * replicas)
    last_step = devices.align_steps(settings, min(plan.total_steps, max_steps or plan.total_steps))
    _prepare_model_dir(model_dir, hparams, data_path, log)

    latest = tf1.train.latest_checkpoint(model_dir)
    start_step = checkpoint_step(latest)
    if latest:
        _check_resume(model, hparams, latest, model_dir)
        epoch = results.recorded_epoch(model_dir, start_step)
        log("Resuming from %s: step %d of %d (epoch %.2f)" % (latest, start_step, plan.total_steps,
                                                             plan.epoch(start_step) if epoch is None else epoch))
    else:
        log("Training from scratch on lane %s: %d steps (%g epochs of %d steps, global batch %d, peak lr %g, %s schedule)"
            % (tf_compat.describe(), plan.total_steps, hparams["epochs"], plan.steps_per_epoch, plan.global_batch, plan.peak_lr,
               plan.schedule))

    warm = _plan_warm_start(model, hparams, warm_start_from, bool(latest), log)
    estimator = make_estimator(model, hparams, model_dir, plan, warm, settings, strategy, session_config)
    started, record, segment_start = time.time(), None, start_step
    targets = _eval_steps(plan, start_step, None if skip_eval else eval_every_epochs, last_step, settings)
    for target in targets:
        with training_errors(model_dir, None if synthetic else data_path, hparams):
            estimator.train(_input_fn(model, ModeKeys.TRAIN, stream_hparams(hparams, segment_start), data_path,
                                      synthetic, settings), max_steps=target)
        segment_start = target
        if not skip_eval:
            record = evaluate(model, hparams, data_path, model_dir, estimator=estimator, log=log,
                              replicas=plan.num_replicas)
    final_step = checkpoint_step(tf1.train.latest_checkpoint(model_dir))
    if record is None and not skip_eval:  # already trained to the end: the final checkpoint's result
        record = results.read_json(model_dir, results.EVAL_RESULTS)
        if not record or record.get("global_step") != final_step:   # e.g. `zoo-run eval --checkpoint` since
            record = evaluate(model, hparams, data_path, model_dir, estimator=estimator, log=log,
                              replicas=plan.num_replicas)
    elapsed = time.time() - started
    summary = "Done: step %d/%d (epoch %.2f) on %s in %s" % (
        final_step, plan.total_steps, plan.epoch(final_step), settings.device, hooks.format_duration(elapsed))
    if record:
        summary += "; held-out top-1 %.4f, top-5 %.4f, loss %.4f over %d images" % (
            record["top1"], record["top5"], record["loss"], record["num_images"])
    log(summary + "; model dir %s" % model_dir)
    results.write_json(model_dir, results.RUN_SUMMARY, _run_summary(
        model_dir, plan, settings, start_step, final_step, started, elapsed, record))
    return record


def check_data(hparams, data_path, log, epoch_size=True):
    """Start-of-run checks of the data in `data_path` against `hparams`: notes on file names read by TF-slim's
    converter patterns, on num_classes / num_train_images that differ from what the data lists, and a
    DataError when the data's labels are 0-based but label_offset is not 0."""
    if not data_path:
        return
    if epoch_size:
        check_epoch_size(hparams, data_path, log)
    for split in tfrecord.SPLITS:
        try:
            note = tfrecord.find_split_files(data_path, split)[1]
        except DataError:
            continue
        if note:
            log("note: " + note)
    offset, why = tfrecord.implied_label_offset(data_path)
    if offset == 0 and "label_offset" in hparams and hparams["label_offset"] != 0:
        raise DataError("%s, so the records' labels are 0-based: label_offset=0; this run has label_offset=%d. Pass "
                        "--set label_offset=0" % (why, hparams["label_offset"]))
    known = tfrecord.read_labels_file(data_path)
    if known and "num_classes" in hparams and len(known) != hparams["num_classes"]:
        log("note: %s lists %d classes; num_classes is %d (--set num_classes=%d gives the model the data's classes)"
            % (os.path.join(data_path, tfrecord.LABELS_FILENAME), len(known), hparams["num_classes"], len(known)))


def check_epoch_size(hparams, data_path, log):
    """Notes a num_train_images that differs from what `zoo-run data build` wrote: epochs, the learning
    rate schedule and the ETA all count in num_train_images."""
    written = builder.images_written(data_path, "train") if data_path else None
    if written is not None and written != hparams["num_train_images"]:
        log("note: num_train_images is %d, but %s counts %d training images, so an epoch here is %d images. "
            "For this data pass --set num_train_images=%d." % (
                hparams["num_train_images"], builder.report_path(data_path, "train"), written,
                hparams["num_train_images"], written))


def _prepare_model_dir(model_dir, hparams, data_path, log):
    check_data(hparams, data_path, log)
    if not tf1.gfile.IsDirectory(model_dir):
        tf1.gfile.MakeDirs(model_dir)
    _check_hparams_change(model_dir, hparams, log)
    results.write_hparams(model_dir, hparams)
    labels = os.path.join(data_path or "", tfrecord.LABELS_FILENAME)
    if data_path and os.path.exists(labels):  # the data set's class names, for `zoo-run predict`
        shutil.copyfile(labels, os.path.join(model_dir, tfrecord.LABELS_FILENAME))


def _silent(*args):
    pass


def _plan_warm_start(model, hparams, warm_start_from, resuming, log):
    """(checkpoint, assignment) for make_estimator, or None: resuming a checkpoint wins over a warm start."""
    if not warm_start_from:
        return None
    if resuming:
        log("note: --warm_start_from %s is ignored: the model dir already has a checkpoint and resume wins. "
            "Use a new --model_dir to warm start." % warm_start_from)
        return None
    warm = ws.plan_warm_start(model, hparams, warm_start_from)
    log("Warm start from %s: loading %d variables, skipping %d%s" % (
        warm.checkpoint, len(warm.assignment), len(warm.skipped),
        "".join("\n  skipped %s: %s" % item for item in warm.skipped)))
    return warm.checkpoint, warm.assignment


def _train_multi_worker(model, hparams, data_path, model_dir, cluster, synthetic, max_steps, skip_eval,
                        eval_every_epochs, warm_start_from, settings, startup_timeout, log):
    """One worker of a MultiWorkerMirroredStrategy run: trains to the last step in lockstep with its peers.
    The chief (worker 0) also evaluates every `eval_every_epochs` from a background thread, and the
    final checkpoint, then writes the run summary."""
    chief = cluster.index == 0
    distribute.check_own_port(cluster)
    # Started before the strategy: TF 2.15's coordination service already waits for every peer there.
    watchdog = distribute.StartupWatchdog(cluster, startup_timeout).start()
    strategy = distribute.make_strategy()
    plan = schedule.Plan(hparams, strategy.num_replicas_in_sync)
    last_step = min(plan.total_steps, max_steps or plan.total_steps)
    if chief:
        _prepare_model_dir(model_dir, hparams, data_path, log)
    latest = tf1.train.latest_checkpoint(model_dir)
    start_step = checkpoint_step(latest)
    if latest:
        _check_resume(model, hparams, latest, model_dir)
    warm = _plan_warm_start(model, hparams, warm_start_from, bool(latest), log if chief else _silent)
    log("worker %d of %d (%s): steps %d -> %d, %d replicas, global batch %d, peak lr %g"
        % (cluster.index, len(cluster.workers), "chief" if chief else "not chief", start_step, last_step,
           strategy.num_replicas_in_sync, plan.global_batch, plan.peak_lr))
    targets = [] if skip_eval else _eval_steps(plan, start_step, eval_every_epochs, last_step, settings)
    # A checkpoint at least every eval interval, so that each evaluation finds one at its boundary.
    every = _eval_interval(plan, eval_every_epochs, last_step, settings) if targets else last_step
    run_hparams = dict(hparams, save_checkpoints_steps=min(hparams.get("save_checkpoints_steps", 5000), every))
    estimator = make_estimator(model, run_hparams, model_dir, plan, warm, settings=settings, train_distribute=strategy)
    evaluator = None
    if chief and not skip_eval:
        with distribute.without_tf_config():   # a plain local Estimator for the evaluations
            eval_estimator = make_estimator(model, hparams, model_dir, settings=settings)

        def evaluate_checkpoint(checkpoint=None):
            return evaluate(model, hparams, data_path, model_dir, checkpoint=checkpoint, estimator=eval_estimator,
                            log=log, replicas=plan.num_replicas)

        evaluator = BackgroundEvaluator(model_dir, targets, evaluate_checkpoint)
        evaluator.start()
    train_spec = tf.estimator.TrainSpec(
        _input_fn(model, ModeKeys.TRAIN, stream_hparams(hparams, start_step), data_path, synthetic),
        max_steps=last_step,
        hooks=[distribute.FirstStepHook(watchdog.cancel), distribute.WeightsFingerprintHook(model_dir, cluster.index)])
    eval_spec = tf.estimator.EvalSpec(_input_fn(model, ModeKeys.EVAL, hparams, data_path, False), steps=None)
    started = time.time()
    try:
        with training_errors(model_dir, None if synthetic else data_path, hparams):
            tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
    finally:
        watchdog.cancel()
    elapsed = time.time() - started
    if not chief:
        log("worker %d done in %s" % (cluster.index, hooks.format_duration(elapsed)))
        return None
    final_step = checkpoint_step(tf1.train.latest_checkpoint(model_dir))
    record = None
    if evaluator is not None:
        with data_errors(data_path, "validation", hparams):
            records = evaluator.finish()
            record = records[-1] if records and records[-1]["global_step"] == final_step else \
                evaluate_checkpoint()   # e.g. a rerun of a finished run
    log("Done: step %d/%d on %d workers in %s%s; model dir %s" % (
        final_step, plan.total_steps, len(cluster.workers), hooks.format_duration(elapsed),
        "; held-out top-1 %.4f over %d images" % (record["top1"], record["num_images"]) if record else "", model_dir))
    summary = _run_summary(model_dir, plan, settings, start_step, final_step, started, elapsed, record)
    summary["workers"] = len(cluster.workers)
    results.write_json(model_dir, results.RUN_SUMMARY, summary)
    return record


def _run_summary(model_dir, plan, settings, start_step, final_step, started, elapsed, record):
    """This run's figures, from the structured train log (never from log text)."""
    this_run = results.read_train_log(model_dir, since=started)
    rates = [r["images_per_sec"] for r in this_run if "images_per_sec" in r]
    images_per_sec = statistics.median(rates) if rates else None
    return {
        "device": settings.device, "lane": tf_compat.LANE, "tensorflow": tf.__version__,
        "rank_size": settings.rank_size, "replicas": plan.num_replicas,
        "global_batch": plan.global_batch,
        "batch_size": plan.batch_size, "start_step": start_step, "final_step": final_step,
        "total_steps": plan.total_steps, "images_per_sec": images_per_sec,
        "step_time_ms": plan.global_batch * 1000.0 / images_per_sec if images_per_sec else None,
        "final_loss": this_run[-1]["loss"] if this_run else None,
        "train_accuracy": this_run[-1]["train_accuracy"] if this_run else None,
        "eval_top1": record["top1"] if record else None, "eval_top5": record["top5"] if record else None,
        "started": started, "seconds": elapsed,
        "environment": {"applied": dict(settings.launch.applied), "ignored": dict(settings.launch.ignored)}
        if settings.launch else None}
