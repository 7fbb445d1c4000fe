"""Train and evaluate any registered network: the commands' checks, records and summaries around the
training loop (registry.engine.trainer) and the evaluator (registry.engine.evaluation).

Resume is automatic (the model dir's latest checkpoint wins, and the run says so); the
learning rate is a function of the global step, so a resumed run continues the same curve, also with another
global batch (registry.engine.segments). Faults end a run with one clear message and nothing lost: a signal
(registry.engine.interrupts) stops at a checkpoint; a full or read-only disk (registry.engine.storage) keeps the
previous checkpoint; records a killed process left half-written are repaired or rebuilt at the next start.
"""
import contextlib
import functools
import os
import re
import shutil
import statistics
import sys
import time

import tensorflow as tf

from registry import paths, tf_compat
from registry.data import builder, check, tfrecord
from registry.engine import checkpoints, devices, distribute, evaluation, events, graph, interrupts, model_dir_lock
from registry.engine import npu, pinned, progress, recalibration, rendezvous
from registry.engine import results, schedule, segments, storage, trainer
from registry.engine import warm_start as ws
from registry.engine.checkpoints import checkpoint_step
from registry.errors import DataError, ZooError

tf1 = tf.compat.v1


class TrainingDivergedError(ZooError):
    pass


LOCATE_SECONDS = 60.0   # how long a data error may search for the record it comes from
CLOSE_SECONDS = 15.0    # how long a stopped worker may take to close its session after the stop's checkpoint
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
        last = checkpoints.latest(model_dir, repair=False)
        if graph.NAN_LOSS_MESSAGE in str(err):
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


def _misfit_message(checkpoint, misfits, model_dir):
    return ("the checkpoint %s does not fit the model being trained (%s). A model dir resumes only the run that "
            "made it (same network, num_classes and precision mode). Train into a new --model_dir, with "
            "--warm_start_from %s to start from its weights." % (checkpoint, ws.misfit_summary(misfits), model_dir))


def stream_hparams(hparams, start_step):
    """`hparams` for the train input of a run starting at `start_step`. A seeded pipeline restarts with
    each process (on resume); a seed of its own per start step keeps it reproducible without replaying
    step 0's images and crops."""
    seed = hparams.get("seed", -1)
    if seed is None or seed < 0 or not start_step:
        return hparams
    return dict(hparams, seed=(seed * 1000003 + start_step) % 2 ** 31)


def evaluate(model, hparams, data_path, model_dir, checkpoint=None, evaluator=None, log=print, history=True,
             settings=None, replicas=None, records_dir=None, recorded_checkpoint=None):
    """Top-1, top-5 and loss over the whole eval split; written to the model dir's eval records and TensorBoard
    events (`<model_dir>/eval`), or to `records_dir`'s. `evaluator`: a training run's own (evaluation.Evaluator),
    else one is built. `recorded_checkpoint`: the name the record gives `checkpoint` (of which it is a copy).

    The checkpoint's epoch is the one its training recorded (`segments.epoch_of`); without a record it is
    computed from `hparams` and `replicas` (default: the device settings' rank size)."""
    replicas = replicas or (settings.rank_size if settings else 1)
    own = evaluator is None
    # a training run's own evaluator evaluates the checkpoint it just wrote; any other reader holds the one it
    # chose readable (a training run beside it may delete it) and checks it first
    held = pinned.Pinned(checkpoint or model_dir, log, "Evaluating") if own else None
    try:
        if own:
            ws.check_fits(model, hparams, held.path, "evaluated", held.original)
        with data_errors(data_path, "validation", hparams):
            evaluator = evaluator or evaluation.Evaluator(model, hparams, data_path,
                                                          npu.eval_session_config(settings, model_dir))
            metrics = evaluator(held.path if held else checkpoint)
    finally:
        if own and evaluator is not None:
            evaluator.close()
        if held is not None:
            held.close()
    checkpoint = held.original if held else checkpoint
    step = metrics["global_step"]
    epoch = segments.epoch_of(model_dir, step)
    if epoch is None:
        epoch = schedule.Plan(hparams, replicas).epoch(step)
    record = {"global_step": step, "epoch": round(epoch, 4), "top1": metrics["top1"], "top5": metrics["top5"],
              "loss": metrics["loss"], "num_images": metrics["num_images"],
              "checkpoint": recorded_checkpoint or checkpoint,
              "eval_images_per_sec": metrics["num_images"] / max(metrics["seconds"], 1e-9), "time": time.time()}
    train_log = results.read_train_log(model_dir)
    if train_log and "images_per_sec" in train_log[-1]:
        record["train_images_per_sec"] = train_log[-1]["images_per_sec"]
    results.write_eval_result(records_dir or model_dir, record, history=history)
    events.writer(os.path.join(records_dir or model_dir, events.EVAL_DIR)).scalars(step, {
        "top1": record["top1"], "top5": record["top5"], "loss": record["loss"],
        "images_per_sec": record["eval_images_per_sec"]})
    log("eval  step %d (epoch %.2f): top-1 %.4f  top-5 %.4f  loss %.4f  over %d images  (%.0f img/s)"
        % (step, record["epoch"], record["top1"], record["top5"], record["loss"], record["num_images"],
           record["eval_images_per_sec"]))
    return record


def _check_hparams_change(model_dir, hparams, log, settings=None):
    """Notes the hparams, and the --precision_mode (from run_summary.json), that differ from the previous run's."""
    saved = results.read_json_or_none(model_dir, results.HPARAMS_FILE, log)
    if saved and saved != hparams:
        changed = sorted(k for k in set(saved) | set(hparams) if saved.get(k) != hparams.get(k))
        log("note: hparams differ from this model dir's previous run: %s"
            % ", ".join("%s %r -> %r" % (k, saved.get(k), hparams.get(k)) for k in changed))
    summary = results.read_json_or_none(model_dir, results.RUN_SUMMARY, _silent) if settings else None
    if summary and "precision_mode" in summary and summary["precision_mode"] != settings.precision_mode:
        log("note: --precision_mode differs from this model dir's previous run: %s -> %s (the compute precision "
            "follows the new mode; a checkpoint without the loss scale a mode needs does not fit it, and the resume "
            "check names it)"
            % (summary["precision_mode"] or "float32 (the default)", settings.precision_mode or
               "float32 (the default)"))


def _eval_interval(plan, eval_every_epochs, last_step, settings):
    every = max(1, int(round(eval_every_epochs * plan.steps_per_epoch))) if eval_every_epochs else last_step
    return devices.align_steps(settings, every)


def _eval_steps(plan, start_step, eval_every_epochs, last_step, settings):
    """The global steps after `start_step` to evaluate at: every `eval_every_epochs` epochs, and `last_step`. They
    are counted from the step where a run of this global batch would have started (`plan.offset`), so that after a
    resume with another global batch they stay on the epoch boundaries (registry.engine.segments)."""
    every = _eval_interval(plan, eval_every_epochs, last_step, settings)
    origin = int(round(plan.offset))
    targets = list(range(origin + every, last_step, every)) + [last_step]
    return [t for t in targets if t > start_step]


def train(model, hparams, data_path, model_dir, warm_start_from=None, synthetic=False, eval_every_epochs=None,
          max_steps=None, skip_eval=False, settings=None, replicas=1,
          startup_timeout=distribute.DEFAULT_STARTUP_TIMEOUT, log=print, resume_command=None):
    """Trains to `epochs` (or stops at `max_steps`), evaluating every `eval_every_epochs` and at the end.

    `replicas` > 1 trains with a MirroredStrategy over that many local devices. With a multi-worker
    TF_CONFIG in the environment, this process is one worker of a MultiWorkerMirroredStrategy run
    (see `registry.engine.distribute`); worker 0, the chief, evaluates and keeps the records.

    Writes `run_summary.json` (this run's throughput, loss, accuracy, duration) and returns the
    last eval record (None with synthetic data, `skip_eval`, or on a worker that is not the chief).

    SIGINT or SIGTERM stops the run at the next step with a checkpoint and raises interrupts.Interrupted, whose
    message says where it stopped and `resume_command` (the command line that resumes the run).
    """
    settings = devices.for_images(settings or devices.resolve("cpu"), hparams["image_size"])
    for note in settings.launch.notes if settings.launch else ():
        log(note)
    if eval_every_epochs is None:   # 0 (or the hparam at 0) evaluates at the end only
        eval_every_epochs = hparams.get("eval_every_epochs")
    cluster = settings.launch.cluster if settings.launch else None
    if cluster and replicas > 1:
        raise ZooError(distribute.replicas_with_workers_message(replicas, len(cluster.workers)))
    resume_command = resume_command or "the same command" + (" on every worker" if cluster else "")
    chief = cluster is None or cluster.index == 0   # the chief alone writes the model dir: it holds its lock
    lock = model_dir_lock.ModelDirLock(model_dir, resume_command, log) if chief else contextlib.nullcontext()
    with interrupts.StopRequests() as requests, _closing_events(), lock:
        run = functools.partial(_train, model, hparams, data_path, model_dir, settings, warm_start_from, synthetic,
                                eval_every_epochs, max_steps, skip_eval or synthetic, log, requests, resume_command)
        try:
            if cluster:   # the workers agree on their resume step before TensorFlow starts (registry.engine.rendezvous)
                started = time.time()
                if chief:
                    distribute.check_own_port(cluster)
                checkpoint, source = resume_point(model_dir, cluster)
                rendezvous.agree(cluster, model_dir, checkpoint_step(checkpoint), source, startup_timeout, log)
                # every peer answered the rendezvous: TensorFlow's start-up gets the whole budget again
                return distribute.run_worker(cluster, model_dir, startup_timeout,
                                             functools.partial(run, cluster=cluster), resume_command)
            strategy, session_config = (distribute.mirrored_strategy(settings.device, replicas) if replicas > 1
                                        else (None, None))
            return run(strategy, session_config)
        except interrupts.Interrupted as err:
            if err.described:
                raise
            raise _interrupted(err.signum, model_dir, resume_command, None)


@contextlib.contextmanager
def _closing_events():
    try:
        yield
    finally:
        events.close_all()


def _interrupted(signum, model_dir, resume_command, plan, final_step=None, chief=True, by_peer=False):
    """The Interrupted of a run stopped by signal `signum`: one line with where it stopped and how to resume.
    `final_step`: the step of the checkpoint written at the stop (this worker's own, when not the `chief`);
    `by_peer`: the signal came to another process of the job."""
    last = checkpoints.latest(model_dir, repair=False)
    if final_step is not None and (final_step == checkpoint_step(last) or not chief):
        where = "at step %d/%d (epoch %.2f); %s %s" % (final_step, plan.total_steps, plan.epoch(final_step),
                                                        "wrote checkpoint" if chief else "the run's last checkpoint is",
                                                        last)
    else:
        where = "before the next checkpoint; the last checkpoint is %s" % (last or "none (the rerun starts at step 0)")
    return interrupts.Interrupted(signum, "stopped by %s%s %s. Resume with: %s"
                                  % (interrupts.signal_name(signum), " to another process of the job" if by_peer
                                     else "", where, resume_command))


def resume_point(model_dir, cluster=None, log=None, repair=False):
    """(the newest intact checkpoint this process resumes or None, the directory it is in). A worker that is not the
    chief resumes the model dir's checkpoint when it sees one (shared storage), else its own copy
    (distribute.scratch_dir: a model dir per host)."""
    latest = checkpoints.latest(model_dir, log=log, repair=repair, verify=True)
    if latest or not cluster or cluster.index == 0:
        return latest, model_dir
    own = distribute.scratch_dir(model_dir, cluster.index)
    mine = checkpoints.latest(own, repair=False, verify=True)
    return (mine, own) if mine else (None, model_dir)


def _train(model, hparams, data_path, model_dir, settings, warm_start_from, synthetic, eval_every_epochs, max_steps,
           skip_eval, log, requests, resume_command, strategy, session_config, hooks=(), cluster=None,
           collectives_done=None):
    chief = cluster is None or cluster.index == 0
    say = log if chief else _silent
    if chief:
        _prepare_model_dir(model_dir, hparams, data_path, log, settings)
    latest, restore_dir = resume_point(model_dir, cluster, say, chief)
    start_step = checkpoint_step(latest)
    replicas = settings.rank_size * (strategy.num_replicas_in_sync if strategy else 1)
    plan, schedule_segments = segments.resume(model_dir, hparams, replicas, start_step, say)
    last_step = devices.align_steps(settings, min(plan.total_steps, max_steps or plan.total_steps))
    if latest:
        _check_resume(model, hparams, latest, model_dir)
        say("Resuming from %s: step %d of %d (epoch %.2f)" % (latest, start_step, plan.total_steps,
                                                             plan.epoch(start_step)))
    else:
        say("Training from %s on lane %s, %s: %d steps (%g epochs of %d steps, global batch %d, peak lr %g, %s "
            "schedule)" % ("a warm start" if warm_start_from else "scratch", tf_compat.describe(),
                           devices.precision(settings).name, plan.total_steps, hparams["epochs"], plan.steps_per_epoch,
                           plan.global_batch, plan.peak_lr, plan.schedule))
    if devices.precision(settings).note:
        say("precision: %s" % devices.precision(settings).note)
    warm = _plan_warm_start(model, hparams, warm_start_from, bool(latest), say)
    if cluster:
        log("worker %d of %d (%s): steps %d -> %d, %d replicas, global batch %d, peak lr %g"
            % (cluster.index, len(cluster.workers), "chief" if chief else "not chief", start_step, last_step,
               plan.num_replicas, plan.global_batch, plan.peak_lr))
    to_train = start_step < last_step
    if not to_train:   # as Estimator did: a finished run is not trained a step further
        say("Nothing to train: the model dir is at step %d and this run ends at step %d (%s)"
            % (start_step, last_step, "--max_steps %d" % max_steps if last_step < plan.total_steps
               else "the end of the schedule"))
    if chief and to_train:
        checkpoints.apply_retention(model_dir, hparams.get("keep_checkpoint_max", 5), log)
    targets = [] if skip_eval or not to_train else _eval_steps(plan, start_step, eval_every_epochs, last_step,
                                                               settings)
    evaluator, records = None, []

    def make_evaluator():   # on a cluster, of this worker's share of the eval split
        share = tf.distribute.InputContext(len(cluster.workers), cluster.index, 1) if cluster else None
        with data_errors(data_path, "validation", hparams):
            return evaluation.Evaluator(model, hparams, data_path, npu.eval_session_config(settings, model_dir),
                                        input_context=share)

    def evaluate_checkpoint(step, checkpoint, all_reduce=None):
        # On a cluster every worker evaluates its share of the eval split with its own copy of the weights, and the
        # sums are all-reduced (evaluation.SharedEvaluation); the chief writes the record.
        nonlocal evaluator
        if evaluator is None:   # a worker's: made once training runs (TF 2.x: a session made before a non-chief
            evaluator = make_evaluator()   # worker's first step stalled the collective start-up)
        shared = evaluation.SharedEvaluation(evaluator, all_reduce) if all_reduce else evaluator
        if chief:
            records.append(evaluate(model, hparams, data_path, model_dir, checkpoint=checkpoint, evaluator=shared,
                                    log=log, replicas=plan.num_replicas))
        else:
            with data_errors(data_path, "validation", hparams):
                shared(checkpoint)

    input_context = None   # NPU ranks: this rank's shard of the files, as tf.distribute gives its workers
    if settings.rank_size > 1:
        input_context = tf.distribute.InputContext(settings.rank_size, settings.rank_id, settings.rank_size)
    seed = hparams.get("seed", -1)

    def write_records():   # once training has started: a run that fails to start leaves the model dir as it was
        _write_run_records(model_dir, hparams, data_path, schedule_segments)

    if cluster:   # every process of the job stops after the same step, whichever got the signal
        requests.reinstall()
        stop_hook = requests.agreed_hook(strategy)
    else:
        stop_hook = requests.hook()

    def describe_stop(signum, by_peer):   # once the stop's checkpoint is written
        own_dir = model_dir if chief else distribute.scratch_dir(model_dir, cluster.index)
        stopped_at = checkpoint_step(checkpoints.latest(own_dir, repair=False))
        return str(_interrupted(signum, model_dir, resume_command, plan, stopped_at, chief, by_peer))

    announce = requests.announce_hook(describe_stop, say_stopped, close_seconds=CLOSE_SECONDS if cluster else None,
                                      end_process=distribute.exit_worker)
    started = time.time()
    try:
        if chief and targets:
            evaluator = make_evaluator()
        with training_errors(model_dir, None if synthetic else data_path, hparams):
            if to_train:
                trainer.train(model, stream_hparams(hparams, start_step), data_path, model_dir, plan, settings,
                              last_step, chief=chief, strategy=strategy, warm_start=warm, synthetic=synthetic,
                              input_context=input_context, eval_steps=targets, after_eval_save=evaluate_checkpoint,
                              checkpoint_dir=None if chief else distribute.scratch_dir(model_dir, cluster.index),
                              hooks=[stop_hook], last_hooks=list(hooks) + [announce],
                              session_config=session_config, seed=seed,
                              on_start=write_records if chief else None, every_worker_evaluates=bool(cluster),
                              restore_dir=restore_dir)
    except BaseException:
        if evaluator is not None:
            evaluator.close()
        raise
    finally:
        requests.session_closed()
    if collectives_done:   # a cluster worker: what follows (records, the chief's evaluation or BN pass) is its own
        collectives_done()
    recalibrate = (chief and not synthetic and hparams.get("bn_recalibration_epochs", 0) > 0
                   and last_step == plan.total_steps)
    if evaluator is not None and (not recalibrate or cluster):   # a cluster worker's evaluates its share only
        evaluator.close()
        evaluator = None
    elapsed = time.time() - started
    if requests.signum is not None:
        raise interrupts.Interrupted(requests.signum, requests.announced or describe_stop(requests.signum,
                                                                                          requests.by_peer),
                                     announced=requests.announced is not None)
    if not chief:
        log("worker %d done in %s" % (cluster.index, progress.format_duration(elapsed)))
        return None
    recalibrated = None
    if recalibrate:
        try:
            recalibrated = _recalibration_phase(model, hparams, data_path, model_dir, plan, records, skip_eval, log,
                                               requests, evaluator)
        finally:
            if evaluator is not None:
                evaluator.close()
        elapsed = time.time() - started
    final_step = checkpoint_step(checkpoints.latest(model_dir))
    record = records[-1] if records else None
    if recalibrated:
        record = recalibrated.get("after") or record
    if record is None and not skip_eval:  # already trained to the end: the final checkpoint's result
        record = results.read_json_or_none(model_dir, results.EVAL_RESULTS, log)
        if not record or record.get("global_step") != final_step:   # e.g. `zoo-run eval --checkpoint` since
            record = evaluate(model, hparams, data_path, model_dir, log=log, settings=settings,
                              replicas=plan.num_replicas)
    summary = "Done: step %d/%d (epoch %.2f) on %s%s in %s" % (
        final_step, plan.total_steps, plan.epoch(final_step), settings.device,
        " x %d workers" % len(cluster.workers) if cluster else "", progress.format_duration(elapsed))
    if record:
        summary += "; held-out top-1 %.4f, top-5 %.4f, loss %.4f over %d images" % (
            record["top1"], record["top5"], record["loss"], record["num_images"])
    log(summary + "; model dir %s" % model_dir)
    if not to_train and results.read_json_or_none(model_dir, results.RUN_SUMMARY, log):
        return record   # run_summary.json keeps the figures of the run that trained
    run_summary = _run_summary(model_dir, plan, settings, start_step, final_step, started, elapsed, record)
    if cluster:
        run_summary["workers"] = len(cluster.workers)
    if recalibrated:
        run_summary["bn_recalibration"] = recalibrated
    results.write_json(model_dir, results.RUN_SUMMARY, run_summary)
    return record


def _recalibration_phase(model, hparams, data_path, model_dir, plan, records, skip_eval, log, requests,
                         evaluator=None):
    """The last phase of a run that reached the end of its schedule: `bn_recalibration_epochs` of BN recalibration
    (registry.engine.recalibration) from the checkpoint at the schedule's last step, resumed when a run stopped
    during it; `evaluator`: the run's own (evaluation.Evaluator), or None. Returns its record; raises Interrupted
    when a signal stops it."""
    with training_errors(model_dir, data_path, hparams):
        done = recalibration.recalibrate(
            model, stream_hparams(hparams, plan.total_steps), data_path, model_dir, plan.total_steps,
            hparams["bn_recalibration_epochs"], _evaluator_of(model, hparams, data_path, model_dir, log, plan,
                                                              skip_eval, evaluator),
            before=records[-1] if records and records[-1]["global_step"] == plan.total_steps else None,
            log=log, hooks=[requests.hook()], seed=hparams.get("seed", -1))
    _check_pass_ended(done, requests, model_dir)
    return done


def _check_pass_ended(record, requests, model_dir):
    """Raises Interrupted when a signal stopped the pass, a ZooError when it ended short of its last step."""
    latest = checkpoints.latest(model_dir, repair=False)
    if requests.signum is not None:
        raise interrupts.Interrupted(requests.signum, "stopped by %s during BN recalibration; the last checkpoint is "
                                     "%s. Resume with the same command" % (interrupts.signal_name(requests.signum),
                                                                          latest))
    if record is None:
        raise ZooError("BN recalibration ended before its last step; the model dir's latest checkpoint is %s" % latest)


def _evaluator_of(model, hparams, data_path, model_dir, log, plan=None, skip_eval=False, evaluator=None):
    """checkpoint -> its eval record (written to the model dir's records) with `evaluator` (None: one of its own),
    or None when `skip_eval`."""
    def evaluate_one(checkpoint):
        if skip_eval:
            return None
        return evaluate(model, hparams, data_path, model_dir, checkpoint=checkpoint, log=log, evaluator=evaluator,
                        replicas=plan.num_replicas if plan else None)
    return evaluate_one


def recalibrate_bn(model, hparams, data_path, model_dir, epochs, log=print):
    """`zoo-run recalibrate-bn`: BN recalibration of the model dir's latest checkpoint for `epochs` epochs (see
    registry.engine.recalibration), with the evaluation before and after; the model dir's run_summary.json gets the
    record under "bn_recalibration". A pass the model dir records as unfinished is resumed. Returns the record.
    It writes checkpoints: it holds the model dir's lock, as training does (registry.engine.model_dir_lock)."""
    with model_dir_lock.ModelDirLock(model_dir, log=log):
        return _recalibrate_bn(model, hparams, data_path, model_dir, epochs, log)


def _recalibrate_bn(model, hparams, data_path, model_dir, epochs, log):
    latest = checkpoints.latest(model_dir, log=log, repair=True)
    if not latest:
        raise ZooError("no checkpoint to recalibrate in %s: train first" % model_dir)
    ws.check_fits(model, hparams, latest, "recalibrated")
    step = checkpoint_step(latest)
    recorded = recalibration.read_record(model_dir)
    steps = recalibration.steps_for(hparams, epochs)
    start_step = step
    if recorded and not recorded.get("done") and recorded.get("steps") == steps and \
            recorded["start_step"] <= step < recorded["start_step"] + steps:
        start_step = recorded["start_step"]
    else:
        epoch = segments.epoch_of(model_dir, step)
        if epoch is not None and epoch < float(hparams["epochs"]) - 1e-6 and \
                not (recorded and recorded.get("done") and step == recorded["start_step"] + recorded["steps"]):
            log("note: the run in %s is at epoch %.2f of %g; training it further after this pass continues its "
                "schedule %d steps later" % (model_dir, epoch, hparams["epochs"], steps))
    evaluated = results.read_json_or_none(model_dir, results.EVAL_RESULTS, log)
    before = evaluated if evaluated and evaluated.get("global_step") == start_step else None
    with interrupts.StopRequests() as requests, _closing_events():
        with training_errors(model_dir, data_path, hparams):
            record = recalibration.recalibrate(model, hparams, data_path, model_dir, start_step, epochs,
                                               _evaluator_of(model, hparams, data_path, model_dir, log),
                                               before=before, log=log, hooks=[requests.hook()],
                                               seed=hparams.get("seed", -1))
        _check_pass_ended(record, requests, model_dir)
    summary = results.read_json_or_none(model_dir, results.RUN_SUMMARY, log)
    if summary is not None:
        summary["bn_recalibration"] = record
        results.write_json(model_dir, results.RUN_SUMMARY, summary)
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


def _prepare_model_dir(model_dir, hparams, data_path, log, settings=None):
    """The chief's start: data checks, a writable model dir, and what a process that died there left: temporary
    files are removed, a train log or eval history cut off mid-record is repaired (each with a note). The run's
    records are written once it has started (_write_run_records)."""
    check_data(hparams, data_path, log)
    try:
        paths.make_dir(model_dir, "--model_dir")
    except OSError as err:
        if storage.error_number(err) is None:
            raise
        raise storage.storage_error(storage.error_number(err), os.path.dirname(os.path.abspath(model_dir)),
                                    "the model dir %s" % model_dir)
    storage.check_writable(model_dir, checkpoints.latest(model_dir, repair=False))
    removed = storage.remove_temporary_files(model_dir)
    if removed:
        log("note: removed the partial files a stopped run left in %s: %s" % (model_dir, ", ".join(removed)))
    for name in (results.TRAIN_LOG, results.EVAL_HISTORY):
        note = results.repair_jsonl(model_dir, name)
        if note:
            log(note)
    _check_hparams_change(model_dir, hparams, log, settings)


def _write_run_records(model_dir, hparams, data_path, schedule_segments):
    """The chief's records of a run that has started: hparams.json, schedule.json and the data set's labels.txt."""
    results.write_hparams(model_dir, hparams)
    segments.write(model_dir, schedule_segments)
    labels = os.path.join(data_path or "", tfrecord.LABELS_FILENAME)
    if data_path and os.path.exists(labels):  # the data set's class names, for `zoo-run predict`
        copy = os.path.join(model_dir, tfrecord.LABELS_FILENAME)
        shutil.copyfile(labels, copy + ".tmp")   # then renamed: never half a file, whatever instant the run dies
        os.replace(copy + ".tmp", copy)


def say_stopped(message):
    """Prints where a run stopped on a signal, as `zoo-run train` says it (stderr, at once)."""
    print("zoo-run train: %s" % message, file=sys.stderr)
    sys.stderr.flush()


def _silent(*args):
    pass


def _plan_warm_start(model, hparams, warm_start_from, resuming, log):
    """(checkpoint, assignment) for the train step, or None: resuming a checkpoint wins over a warm start."""
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


def _run_summary(model_dir, plan, settings, start_step, final_step, started, elapsed, record):
    """This run's figures, from the structured train log (never from log text)."""
    this_run = results.read_train_log(model_dir, since=started)
    rates = [r["images_per_sec"] for r in this_run if "images_per_sec" in r]
    images_per_sec = statistics.median(rates) if rates else None
    return {
        "start_epoch": round(plan.epoch(start_step), 4), "final_epoch": round(plan.epoch(final_step), 4),
        "device": settings.device, "lane": tf_compat.LANE, "tensorflow": tf.__version__,
        "precision_mode": settings.precision_mode, "precision": devices.precision(settings).name,
        "precision_note": devices.precision(settings).note,
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
        if settings.launch else None,
        "npu_options": npu.optimizer_options(settings, model_dir) if settings.device == "npu" else None}
