"""Run records in the model dir (JSON, written atomically or appended as JSON lines). Evaluations:
every result in `eval_history.jsonl`, the latest in
`eval_results.json` (keys top1, top5, loss, num_images, global_step; fractions, not percents)."""
import json
import os

EVAL_RESULTS = "eval_results.json"
EVAL_HISTORY = "eval_history.jsonl"
HPARAMS_FILE = "hparams.json"
RUN_SUMMARY = "run_summary.json"
TRAIN_LOG = "train_log.jsonl"   # one record per progress report (registry.engine.hooks)


def write_json(model_dir, name, obj):
    """Writes atomically: a reader never sees half a file."""
    path = os.path.join(model_dir, name)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def write_eval_result(model_dir, record, history=True):
    write_json(model_dir, EVAL_RESULTS, record)
    if history:
        append_jsonl(model_dir, EVAL_HISTORY, record)


def read_json(model_dir, name):
    path = os.path.join(model_dir, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def append_jsonl(model_dir, name, record):
    with open(os.path.join(model_dir, name), "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(model_dir, name):
    """The records of a JSON-lines file in the model dir ([] when there is none)."""
    path = os.path.join(model_dir, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_train_log(model_dir, since=None):
    """The train log's records ({step, epoch, loss, lr, ..., time}), those written at or after `since` (a time)."""
    return [r for r in read_jsonl(model_dir, TRAIN_LOG) if since is None or r["time"] >= since]


def recorded_epoch(model_dir, step):
    """The epoch of global step `step` as the training run recorded it (its train log pairs steps with
    epochs), so that a later command's overrides (batch size, number of images) cannot change it; None
    when the model dir has no train log."""
    records = [r for r in read_train_log(model_dir) if r["step"] > 0]
    if not records:
        return None
    earlier = [r for r in records if r["step"] <= step]
    record = earlier[-1] if earlier else records[0]
    return step * record["epoch"] / record["step"]


def read_eval_history(model_dir):
    return read_jsonl(model_dir, EVAL_HISTORY)


def write_hparams(model_dir, hparams):
    write_json(model_dir, HPARAMS_FILE, hparams)
