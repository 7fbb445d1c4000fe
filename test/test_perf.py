"""`zoo-run perf`: the report's fields and values (figures are printed, never asserted against time)."""
import json
import subprocess

import pytest


def test_perf_json_report(tmp_path, zoo_run):
    path = str(tmp_path / "perf.json")
    out = subprocess.run([zoo_run, "perf", "shufflenetv1_g3", "--synthetic", "--batch_size", "4", "--steps", "5",
                          "--warmup", "1", "--set", "image_size=64", "--json", path],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    with open(path) as f:
        report = json.load(f)
    assert report["train_images_per_sec"] > 0 and report["infer_images_per_sec"] > 0
    assert report["train_step_time_ms"] == pytest.approx(4000.0 / report["train_images_per_sec"])
    assert len(report["train_windows_ms"]) == len(report["infer_windows_ms"]) == 5
    assert (report["batch_size"], report["image_size"], report["data"]) == (4, 64, "synthetic")
    assert report["device"] == "cpu"   # this machine has no GPU (the report says gpu when TF sees one)
    assert report["params"] == 1864728
    # Every conv output shrinks by (64 / 224)^2; the classifier's 960 x 1000 MACs do not.
    assert report["macs"] == (137460672 - 960000) * 4 // 49 + 960000
    assert report["peak_memory_mb"] > 100
    assert "Final Performance images/sec : %.2f" % report["train_images_per_sec"] in out.stdout
    # inference timed on the frozen graph of fresh weights; timm's benchmark.py keys and units beside ours
    assert report["infer_runtime"].startswith("tensorflow ") and report["infer_model"] == "fresh weights"
    for mode in ("train", "infer"):
        assert report["%s_samples_per_sec" % mode] == round(report["%s_images_per_sec" % mode], 2)
        assert report["%s_step_time" % mode] == round(report["%s_step_time_ms" % mode], 3)
        assert (report["%s_batch_size" % mode], report["%s_img_size" % mode]) == (4, 64)
    assert (report["param_count"], report["infer_gmacs"]) == (1.86, 0.01)
    assert "infer_latency_ms_p50" not in report          # only with --latency
