"""The ModelZoo scripts: flags, closing lines and ${CaseName}.log, on the bundled data (CPU here)."""
import os
import subprocess

import pytest

from registry.data.demo import demo_data_path

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
CASE_KEYS = ["Network", "RankSize", "BatchSize", "DeviceType", "CaseName", "ActualFPS", "TrainingTime",
             "ActualLoss", "E2ETrainingTime", "TrainAccuracy"]


def _run(script, tmp_path, zoo_run, *args):
    env = dict(os.environ, ZOO_RUN=zoo_run, MODELZOO_OUTPUT_ROOT=str(tmp_path), ASCEND_DEVICE_ID="3")
    return subprocess.run(["bash", os.path.join(TEST_DIR, script)] + list(args), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


def _case_log(path):
    with open(path) as f:
        return [tuple(part.strip() for part in line.split("=", 1)) for line in f]


@pytest.mark.parametrize("script,kind", [("train_performance_1p.sh", "perf"), ("train_full_1p.sh", "acc")])
def test_script_prints_modelzoo_lines_and_case_log(tmp_path, zoo_run, script, kind):
    out = _run(script, tmp_path, zoo_run, "--data_path=%s" % demo_data_path(), "--preset=demo", "--steps=4",
               "--batch_size=16")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    fps = float(next(l for l in lines if l.startswith("Final Performance images/sec : ")).rsplit(":", 1)[1])
    accuracy = next(l for l in lines if l.startswith("Final Train Accuracy : ")).rsplit(":", 1)[1].strip()
    e2e = int(next(l for l in lines if l.startswith("E2E Training Duration sec : ")).rsplit(":", 1)[1])
    assert fps > 0 and e2e > 0
    case_name = "shufflenetv1_g3_bs16_1p_%s" % kind
    case = _case_log(str(tmp_path / "3" / (case_name + ".log")))
    assert [k for k, _ in case] == CASE_KEYS
    values = dict(case)
    assert values["Network"] == "shufflenetv1_g3" and values["CaseName"] == case_name
    assert (values["RankSize"], values["BatchSize"]) == ("1", "16")
    assert float(values["ActualFPS"]) == pytest.approx(fps, abs=0.01)
    assert float(values["TrainingTime"]) == pytest.approx(16 * 1000.0 / fps, rel=0.01)
    assert float(values["ActualLoss"]) > 0 and values["E2ETrainingTime"] == str(e2e)
    if kind == "perf":
        assert accuracy == values["TrainAccuracy"] == "None"  # no evaluation in a performance run
    else:
        assert 0.0 <= float(accuracy) <= 1.0 and values["TrainAccuracy"] == accuracy
    assert os.path.exists(str(tmp_path / "3" / "train_3.log"))
    with open(str(tmp_path / "3" / ("train_%s_loss.txt" % case_name))) as f:    # this run's losses, one a line
        assert float(f.read().split()[-1]) == pytest.approx(float(values["ActualLoss"]), abs=1e-4)
    if kind == "perf":   # a performance rerun starts afresh instead of resuming the finished one
        again = _run(script, tmp_path, zoo_run, "--data_path=%s" % demo_data_path(), "--preset=demo", "--steps=4",
                     "--batch_size=16")
        assert again.returncode == 0 and "Final Performance images/sec : None" not in again.stdout, again.stdout


def test_case_log_counts_devices_and_the_per_device_batch(tmp_path):
    from registry import modelzoo_report
    from registry.engine import results
    results.write_json(str(tmp_path), results.RUN_SUMMARY, {
        "device": "npu", "rank_size": 8, "replicas": 8, "batch_size": 32, "global_batch": 256,
        "images_per_sec": 2560.0, "step_time_ms": 100.0, "final_loss": 2.5, "eval_top1": 0.5})
    lines, case = modelzoo_report.build("shufflenetv1_g3", str(tmp_path), "acc", 60)
    case = dict(case)
    assert (case["RankSize"], case["BatchSize"], case["CaseName"]) == (8, 32, "shufflenetv1_g3_bs32_8p_acc")
    assert (case["DeviceType"], case["ActualFPS"], case["TrainAccuracy"]) == ("Ascend910", "2560.00", "0.5000")


def test_scripts_require_data_path_and_reject_unknown_flags(tmp_path, zoo_run):
    out = _run("train_full_1p.sh", tmp_path, zoo_run)
    assert out.returncode == 1 and "--data_path=DIR is required" in out.stderr
    out = _run("train_performance_1p.sh", tmp_path, zoo_run, "--data_path=%s" % tmp_path, "--fast")
    assert out.returncode == 1 and "unknown argument '--fast'" in out.stderr
    out = _run("train_full_8p.sh", tmp_path, zoo_run, "-h")
    assert out.returncode == 0 and "--precision_mode=MODE" in out.stdout and "--over_dump" in out.stdout
