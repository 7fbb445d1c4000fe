"""Ascend ModelZoo's closing lines and `${CaseName}.log`, made from a run's `run_summary.json`."""
import os
import platform

from registry import paths
from registry.engine import results
from registry.errors import ZooError


def case_name(network, batch_size, rank_size, kind):
    return "%s_bs%d_%dp_%s" % (network, batch_size, rank_size, kind)


def _fmt(value, digits=2):
    return "None" if value is None else "%.*f" % (digits, value)


def build(network, model_dir, kind, e2e_seconds):
    """(closing lines, {key: value} of the case log) for a finished run in `model_dir`."""
    summary = results.read_json(model_dir, results.RUN_SUMMARY)
    if summary is None:
        raise ZooError("%s has no %s: the training run did not finish" % (model_dir, results.RUN_SUMMARY))
    # ModelZoo's convention: BatchSize is per device, RankSize the number of devices (NPU ranks,
    # replicas or workers), and ActualFPS the whole run's images/sec.
    rank_size = summary.get("replicas") or summary["rank_size"]
    name = case_name(network, summary["batch_size"], rank_size, kind)
    accuracy = summary["eval_top1"]
    device = "Ascend910" if summary["device"] == "npu" else "%s_%s" % (summary["device"], platform.machine())
    lines = ["Final Performance images/sec : %s" % _fmt(summary["images_per_sec"]),
             "Final Train Accuracy : %s" % _fmt(accuracy, 4),
             "E2E Training Duration sec : %d" % round(e2e_seconds)]
    case = [("Network", network), ("RankSize", rank_size), ("BatchSize", summary["batch_size"]),
            ("DeviceType", device), ("CaseName", name), ("ActualFPS", _fmt(summary["images_per_sec"])),
            ("TrainingTime", _fmt(summary["step_time_ms"])), ("ActualLoss", _fmt(summary["final_loss"], 4)),
            ("E2ETrainingTime", round(e2e_seconds)), ("TrainAccuracy", _fmt(accuracy, 4))]
    return lines, case


def write(network, model_dir, kind, e2e_seconds, output_dir):
    """Writes OUTPUT_DIR/${CaseName}.log and OUTPUT_DIR/train_${CaseName}_loss.txt (this run's losses from
    the train log, one per line, one per progress report); returns (closing lines, case log path)."""
    lines, case = build(network, model_dir, kind, e2e_seconds)
    name = dict(case)["CaseName"]
    paths.make_dir(output_dir, "--output_dir")
    path = os.path.join(output_dir, "%s.log" % name)
    with open(path, "w") as f:
        f.writelines("%s = %s\n" % item for item in case)
    since = results.read_json(model_dir, results.RUN_SUMMARY).get("started")
    with open(os.path.join(output_dir, "train_%s_loss.txt" % name), "w") as f:
        f.writelines("%.6f\n" % r["loss"] for r in results.read_train_log(model_dir, since))
    return lines, path
