"""Run records in the model dir. Evaluations: every result in `eval_history.jsonl`, the latest in
`eval_results.json` (keys top1, top5, loss, num_images, global_step; fractions, not percents).

Each survives a process that dies at any instant:
- JSON files are written to a temporary file, flushed to disk and renamed over the old one: a reader sees the
  old file or the new one, never half of one; a failed write removes its temporary file.
- JSON-lines files are appended one line per record. A process killed mid-append leaves an incomplete last
  line: `repair_jsonl` (at the start of a run) cuts it off, and readers skip any line that does not parse.
- A JSON file that still cannot be read (e.g. cut short by a crash of the machine on a file system without
  ordered writes) raises UnreadableRecordError, naming the file and how it is rebuilt.
"""
import json
import os

from registry.engine import storage
from registry.errors import ZooError

EVAL_RESULTS = "eval_results.json"
EVAL_HISTORY = "eval_history.jsonl"
HPARAMS_FILE = "hparams.json"
RUN_SUMMARY = "run_summary.json"
TRAIN_LOG = "train_log.jsonl"   # one record per progress report (registry.engine.progress)

REBUILT_BY = {
    HPARAMS_FILE: "the next `zoo-run train` into this model dir rewrites it with its settings (to evaluate now, "
                  "delete it and pass the run's settings with --set)",
    RUN_SUMMARY: "rerun the `zoo-run train` command of this model dir: it resumes, finds the run finished and "
                 "rewrites it",
    EVAL_RESULTS: "`zoo-run eval` of this model dir rewrites it",
}


class UnreadableRecordError(ZooError):
    """A record file of the model dir exists but does not parse."""


def write_json(model_dir, name, obj):
    """Writes atomically and durably: a reader never sees half a file, whatever instant the process dies at."""
    path = os.path.join(model_dir, name)
    temporary = path + ".tmp"
    try:
        with open(temporary, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as err:
        storage.remove(temporary)
        number = storage.error_number(err)
        if number is None:
            raise
        raise storage.storage_error(number, model_dir, name)


def write_eval_result(model_dir, record, history=True):
    write_json(model_dir, EVAL_RESULTS, record)
    if history:
        append_jsonl(model_dir, EVAL_HISTORY, record)


def read_json(model_dir, name):
    """The object in the model dir's JSON file `name`, None when there is none; UnreadableRecordError when it
    does not parse."""
    path = os.path.join(model_dir, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as err:
        raise UnreadableRecordError("%s cannot be read (%s): a process probably stopped while writing it. Fix: %s." % (
            path, "empty file" if not text.strip() else "invalid JSON: %s" % err,
            REBUILT_BY.get(name, "delete it and rerun the command that writes it")))


def read_json_or_none(model_dir, name, log):
    """read_json, but an unreadable file is logged as a note (it is rebuilt by the caller) and gives None."""
    try:
        return read_json(model_dir, name)
    except UnreadableRecordError as err:
        log("note: %s; it is rebuilt" % str(err).split(". Fix:", 1)[0])
        return None


def append_jsonl(model_dir, name, record):
    """Appends one record as one line (json has no newline inside a record)."""
    try:
        with open(os.path.join(model_dir, name), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as err:
        number = storage.error_number(err)
        if number is None:
            raise
        raise storage.storage_error(number, model_dir, name)


def repair_jsonl(model_dir, name):
    """Cuts an incomplete last line (a record whose writing was cut off) from the JSON-lines file `name`, so that
    the next record starts on a line of its own; returns a note saying so, or None when the file was complete."""
    path = os.path.join(model_dir, name)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    if not data or data.endswith(b"\n"):
        return None
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
    return ("note: %s ended in an incomplete record (%d bytes; a run stopped while writing it): removed"
            % (path, len(data) - keep))


def read_jsonl(model_dir, name):
    """The records of a JSON-lines file in the model dir ([] when there is none). Lines that do not parse (cut
    off by a process that died while writing them) are skipped."""
    path = os.path.join(model_dir, name)
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    return records


def read_train_log(model_dir, since=None):
    """The train log's records ({step, epoch, loss, lr, ..., time}), those written at or after `since` (a time)."""
    return [r for r in read_jsonl(model_dir, TRAIN_LOG) if since is None or r.get("time", 0) >= since]


def read_eval_history(model_dir):
    return read_jsonl(model_dir, EVAL_HISTORY)


def write_hparams(model_dir, hparams):
    write_json(model_dir, HPARAMS_FILE, hparams)
