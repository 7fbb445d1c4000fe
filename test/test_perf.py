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
