"""Where a run is on its schedule across resumes with another global batch: `schedule.json` in the model dir.

A run's steps have the size of its global batch (batch_size x replicas x workers). When a run is resumed with
another one (another batch_size, or more or fewer devices), a step is no longer the same amount of training, so
the global step alone cannot say how far the run is. This module records the run as segments, each where a
global batch started:

    {"segments": [{"step": 0, "epoch": 0.0, "global_batch": 64, "steps_per_epoch": 22},
                  {"step": 22, "epoch": 1.0, "global_batch": 32, "steps_per_epoch": 44}]}

and the resumed run continues from the epoch its checkpoint reached (schedule.Plan's `origin`): the learning rate
is the schedule's value at that epoch (the warm-up is not started again), the logged epoch keeps counting up from
it, and the run stops when `epochs` epochs of images have been trained, which is the total it reports.

Why continue rather than refuse: the schedule is defined in epochs (warm-up epochs, decay to `epochs`), so the
position of a run on it is the images it has seen, whatever the batch; this is what frameworks that allow it do
(Megatron-LM keeps the consumed samples in its checkpoints and schedules by them; schedules by epoch, as timm's,
continue by epoch). Refusing would make anyone who moves a run to fewer or more devices start it again. The
learning rate's size follows the new global batch by the linear scaling rule (`base_batch_size`), as it does at
the start of any run; the run says so when it resumes.
"""
import os

from registry.engine import results, schedule

SCHEDULE_FILE = "schedule.json"


def _segment(step, epoch, plan):
    return {"step": int(step), "epoch": float(epoch), "global_batch": plan.global_batch,
            "steps_per_epoch": plan.steps_per_epoch}


def epoch_at(segments, step):
    """The epoch reached at global step `step` of a run made of `segments`."""
    earlier = [s for s in segments if s["step"] <= step] or segments[:1]
    segment = earlier[-1]
    return segment["epoch"] + (step - segment["step"]) / float(segment["steps_per_epoch"])


def _from_train_log(model_dir):
    """One segment from the train log of a model dir written before schedule.json existed (one global batch), or
    None without a train log."""
    records = [r for r in results.read_train_log(model_dir) if r.get("step", 0) > 0 and r.get("epoch")]
    if not records:
        return None
    return [{"step": 0, "epoch": 0.0, "global_batch": None,
             "steps_per_epoch": records[-1]["step"] / float(records[-1]["epoch"])}]


def read(model_dir, log=None):
    """The model dir's segments: from schedule.json, else from its train log (older model dirs; an unreadable
    schedule.json is noted through `log` and rebuilt so), else None."""
    try:
        recorded = results.read_json(model_dir, SCHEDULE_FILE)
        if recorded is not None:
            return recorded["segments"]
    except (results.UnreadableRecordError, KeyError, TypeError) as err:
        if log:
            log("note: %s cannot be used (%s); the run's epochs are taken from its train log"
                % (os.path.join(model_dir, SCHEDULE_FILE), str(err).split(": a process")[0]))
    return _from_train_log(model_dir)


def epoch_of(model_dir, step):
    """The epoch of global step `step` as the model dir's run trained it; None when the model dir has no record."""
    recorded = read(model_dir)
    return epoch_at(recorded, step) if recorded else None


def _same_batch(segment, plan):
    if segment.get("global_batch") is None:   # from an older train log: steps per epoch to two decimals
        return abs(segment["steps_per_epoch"] - plan.steps_per_epoch) < 0.05 * plan.steps_per_epoch
    return segment["global_batch"] == plan.global_batch and segment["steps_per_epoch"] == plan.steps_per_epoch


def resume(model_dir, hparams, num_replicas, start_step, log):
    """(the schedule.Plan of a run starting at global step `start_step`, continuing the model dir's segments; the
    segments to record once the run has started, see `write`). Notes a change of global batch or of steps per epoch
    through `log`."""
    plan = schedule.Plan(hparams, num_replicas)
    recorded = read(model_dir, log) if start_step else None
    recorded = [s for s in recorded or () if s["step"] <= start_step]   # later ones belonged to lost checkpoints
    if not recorded:
        recorded = [_segment(0, 0.0, plan)]
    current = recorded[-1]
    if not _same_batch(current, plan):
        epoch = epoch_at(recorded, start_step)
        if current.get("global_batch") in (None, plan.global_batch):   # num_train_images changed
            change = "the steps per epoch changed (%.4g -> %d at global batch %d)" % (
                current["steps_per_epoch"], plan.steps_per_epoch, plan.global_batch)
        else:
            change = "the global batch changed (%d -> %d, %d steps an epoch)" % (
                current["global_batch"], plan.global_batch, plan.steps_per_epoch)
        log("note: %s: the run continues at epoch %.2f, where step %d left it, with the schedule's learning rate for "
            "that epoch at the global batch %d (linear scaling, base_batch_size %s), and ends after %g epochs"
            % (change, epoch, start_step, plan.global_batch, hparams.get("base_batch_size", hparams["batch_size"]),
               hparams["epochs"]))
        current = _segment(start_step, epoch, plan)
        recorded.append(current)
    elif current.get("global_batch") is None:   # an older model dir: record its segment as this run's
        recorded[-1] = current = _segment(current["step"], current["epoch"], plan)
    if current["step"] == 0:
        return plan, recorded
    return schedule.Plan(hparams, num_replicas, origin=(current["step"], current["epoch"])), recorded


def write(model_dir, recorded):
    """Writes the model dir's schedule.json: `recorded`, the segments `resume` returned."""
    results.write_json(model_dir, SCHEDULE_FILE, {"segments": recorded})
