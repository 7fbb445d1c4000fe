"""TensorFlow's oneDNN CPU kernels (registry/onednn.py, tf_compat.cpu_kernels): zoo-run turns them on before
TensorFlow is imported unless TF_ENABLE_ONEDNN_OPTS is set, and says so in the lane line, the launch notes and the
perf JSON; `grouped_conv_impl=auto` follows the kernels really in force; a forced native grouped convolution that
cannot train here is a clear error naming the fix. Each case runs in a fresh process: TensorFlow reads the variable
once, at import."""
import json
import os
import platform
import subprocess
import sys

import pytest

from registry import onednn, tf_compat

X86 = platform.machine().lower() in ("x86_64", "amd64")


def _environment(value):
    env = {k: v for k, v in os.environ.items() if k not in (onednn.VARIABLE, onednn.SET_BY_ZOO_RUN)}
    if value is not None:
        env[onednn.VARIABLE] = value
    return env


def _perf(zoo_run, tmp_path, value):
    """(printed output, JSON report) of a small `zoo-run perf` inference run with TF_ENABLE_ONEDNN_OPTS=`value`
    (None: unset)."""
    path = tmp_path / "perf.json"
    done = subprocess.run([zoo_run, "perf", "shufflenetv1_g3", "--mode", "infer", "--set", "image_size=64",
                           "--batch_size", "2", "--steps", "2", "--warmup", "1", "--json", str(path)],
                          env=_environment(value), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600)
    assert done.returncode == 0, done.stdout
    return done.stdout, json.load(open(str(path)))


def test_zoo_run_turns_onednn_on_when_the_variable_is_unset(zoo_run, tmp_path):
    out, report = _perf(zoo_run, tmp_path, None)
    kernels = report["cpu_kernels"]
    if tf_compat.LANE == "tf1":   # TensorFlow 1.15 does not read the variable: zoo-run leaves it unset
        assert kernels == {"onednn": False, "TF_ENABLE_ONEDNN_OPTS": None, "set_by": None,
                           "description": "no oneDNN CPU kernels (stock build)"}
        assert "lane tf1 (TensorFlow 1.15.0, no oneDNN CPU kernels (stock build))" in out
        return
    assert (kernels["TF_ENABLE_ONEDNN_OPTS"], kernels["set_by"]) == ("1", "zoo-run")
    assert "environment: TF_ENABLE_ONEDNN_OPTS=1 (set by zoo-run): TensorFlow uses its oneDNN CPU kernels" in out
    if X86:
        assert kernels["onednn"] is True
        assert kernels["description"] == "oneDNN CPU kernels on: TF_ENABLE_ONEDNN_OPTS=1 set by zoo-run"
        assert "lane %s" % report["lane_description"] in out and report["lane_description"].endswith(
            "oneDNN CPU kernels on: TF_ENABLE_ONEDNN_OPTS=1 set by zoo-run)")


def test_the_user_s_value_is_kept_and_reported(zoo_run, tmp_path):
    out, report = _perf(zoo_run, tmp_path, "0" if tf_compat.LANE == "tf2" else "1")
    kernels = report["cpu_kernels"]
    if tf_compat.LANE == "tf1":
        assert kernels["set_by"] == "environment" and not kernels["onednn"]
        assert kernels["description"].endswith("; TF_ENABLE_ONEDNN_OPTS=1 is not read by TensorFlow 1.15")
        assert "environment: TF_ENABLE_ONEDNN_OPTS=1 ignored: TensorFlow 1.15 does not read it" in out
        return
    assert kernels["onednn"] is False and (kernels["TF_ENABLE_ONEDNN_OPTS"], kernels["set_by"]) == ("0", "environment")
    assert kernels["description"].startswith("oneDNN CPU kernels off: TF_ENABLE_ONEDNN_OPTS=0 set by the environment "
                                             "(unset it and zoo-run turns them on;")
    assert "environment: TF_ENABLE_ONEDNN_OPTS=0 (set by the environment): TensorFlow leaves its oneDNN CPU kernels " \
           "off" in out


def test_turn_on_keeps_a_set_value_and_marks_its_own():
    environ = {onednn.VARIABLE: "0"}
    assert onednn.turn_on(environ) is False and environ == {onednn.VARIABLE: "0"}
    assert onednn.origin(environ) == "environment" and onednn.origin({}) is None
    environ = {}
    assert onednn.turn_on(environ) is False          # TensorFlow is imported in this process: too late
    assert environ == {}


# The script builds ShuffleNetV1 g3 (64x64, 10 classes) in a fresh process and prints what `auto` resolves to for
# training and inference, then builds a training step with the forced implementation and runs it once.
_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
from modelzoo_shufflenet import grouped_conv, models
from registry.hparams import HParamsError
tf1 = tf.compat.v1
print("auto", grouped_conv.resolve_impl("auto", True), grouped_conv.resolve_impl("auto", False))
hparams = dict(models.SHUFFLENETV1_G3.default_hparams(), num_classes=10, grouped_conv_impl=sys.argv[1])
with tf.Graph().as_default():
    images = tf.constant(np.random.RandomState(0).rand(2, 64, 64, 3).astype(np.float32))
    logits = models.SHUFFLENETV1_G3.build_model(images, True, hparams)
    try:
        train = tf1.train.MomentumOptimizer(0.01, 0.9).minimize(tf.reduce_mean(logits))
    except HParamsError as err:
        print("error", err)
        sys.exit(0)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        session.run(train)
        print("trained")
"""


def _script(value, impl):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, impl], env=_environment(value), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    assert done.returncode == 0, done.stdout
    return [line for line in done.stdout.splitlines() if line.startswith(("auto ", "error ", "trained"))]


def test_a_native_grouped_conv_that_cannot_train_here_is_a_clear_error_naming_the_fix():
    auto, error = _script("0", "native")
    if tf_compat.LANE == "tf1":
        assert auto == "auto split block_diagonal"
        assert error.startswith("error grouped_conv_impl=native cannot train here (the gradient of shufflenet_v1/")
        assert error.endswith("TensorFlow 1.15 has no grouped convolution on the CPU. Train on a GPU, use lane tf2 "
                              "(make STACK=tf2), or --set grouped_conv_impl=auto (or split, block_diagonal), which "
                              "train anywhere")
        return
    assert auto == "auto split split"                # oneDNN off: auto follows the real state
    assert "TensorFlow's oneDNN CPU kernels are off in this process (TF_ENABLE_ONEDNN_OPTS=0)" in error
    assert error.endswith("Unset TF_ENABLE_ONEDNN_OPTS (zoo-run then sets it to 1) or set it to 1, or --set "
                          "grouped_conv_impl=auto (or split, block_diagonal), which train anywhere")


@pytest.mark.skipif(tf_compat.LANE != "tf2" or not X86, reason="oneDNN's grouped convolution: lane tf2 on x86 only")
def test_with_onednn_on_auto_is_native_and_a_native_training_step_runs():
    assert _script("1", "native") == ["auto native native", "trained"]


def _train(zoo_run, model_dir, value, *settings):
    """(exit code, printed output, run_summary.json or None) of a 2-step synthetic `zoo-run train`."""
    done = subprocess.run([zoo_run, "train", "shufflenetv1_g3", "--synthetic", "--skip_eval", "--max_steps", "2",
                           "--model_dir", str(model_dir), "--set", "image_size=64", "batch_size=2"] + list(settings),
                          env=_environment(value), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=900)
    path = model_dir / "run_summary.json"
    return done.returncode, done.stdout, json.load(open(str(path))) if path.exists() else None


def test_train_records_the_decision_in_run_summary_and_the_lane_line(zoo_run, tmp_path):
    code, out, summary = _train(zoo_run, tmp_path / "unset", None)
    assert code == 0, out
    if tf_compat.LANE == "tf1":
        assert summary["environment"] == {"applied": {}, "ignored": {}}
        assert "Training from scratch on lane tf1 (TensorFlow 1.15.0, no oneDNN CPU kernels (stock build))" in out
        code, out, summary = _train(zoo_run, tmp_path / "set", "1")
        assert code == 0 and summary["environment"]["ignored"] == {"TF_ENABLE_ONEDNN_OPTS": "1"}
        return
    assert summary["environment"]["applied"] == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    if X86:
        assert "Training from scratch on lane tf2 (TensorFlow %s, oneDNN CPU kernels on: TF_ENABLE_ONEDNN_OPTS=1 " \
               "set by zoo-run)" % tf_compat.tf.__version__ in out
    code, out, summary = _train(zoo_run, tmp_path / "off", "0", "grouped_conv_impl=native")
    assert code == 2 and summary is None
    assert "oneDNN CPU kernels off: TF_ENABLE_ONEDNN_OPTS=0 set by the environment" in out
    assert "zoo-run train: error: grouped_conv_impl=native cannot train here" in out
