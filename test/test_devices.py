"""Device selection and the Ascend NPU wiring, checked against a test double of npu_bridge's API."""
import json
import os
import subprocess

import pytest

from registry import tf_compat
from registry.engine import devices
from registry.errors import ZooError

DOUBLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "npu_double")


def test_cpu_settings_and_npu_only_flags_are_rejected_elsewhere():
    settings = devices.resolve("cpu")
    assert (settings.device, settings.precision_mode, settings.rank_size) == ("cpu", None, 1)
    with pytest.raises(ZooError, match="--precision_mode allow_fp32_to_fp16 is an Ascend NPU setting; on cpu use"):
        devices.resolve("cpu", precision_mode="allow_fp32_to_fp16")
    assert devices.resolve("cpu", precision_mode="force_fp16").precision_mode == "force_fp16"
    with pytest.raises(ZooError, match="--precision_mode must be one of allow_mix_precision, allow_fp32_to_fp16"):
        devices.resolve("cpu", precision_mode="fp8")
    with pytest.raises(ZooError, match="Ascend NPU settings"):
        devices.resolve("cpu", iterations_per_loop=10)


def test_npu_without_npu_bridge_is_a_clear_error():
    assert not devices.npu_available()
    expected = "--device npu needs Huawei's npu_bridge" if tf_compat.LANE == "tf1" else \
        r"--device npu needs lane tf1: .* this process runs TensorFlow 2\.21.* Use Python 3\.7 \+ tensorflow==1\.15\.0"
    with pytest.raises(ZooError, match=expected):
        devices.resolve("npu")


@pytest.mark.skipif(tf_compat.LANE == "tf1", reason="lane tf1 runs the NPU path (the wiring tests below)")
def test_npu_on_lane_tf2_names_the_lane_even_with_an_npu_bridge_on_the_path(tmp_path, zoo_run):
    """The double makes npu_bridge importable; on tf2 the CLI still refuses --device npu, naming lane tf1."""
    out, calls = _run_npu(tmp_path, zoo_run, "--max_steps", "1")
    assert out.returncode == 2, out.stdout
    assert "--device npu needs lane tf1" in out.stdout and "Python 3.7 + tensorflow==1.15.0" in out.stdout
    assert not calls


def test_gpu_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(devices, "gpu_available", lambda: False)
    with pytest.raises(ZooError, match="--device gpu: TensorFlow sees no GPU here"):
        devices.resolve("gpu")
    assert devices.resolve("auto").device == "cpu"


def test_steps_align_to_iterations_per_loop():
    settings = devices.DeviceSettings("npu", "allow_mix_precision", 100, 1, 0, None, False, None)
    assert [devices.align_steps(settings, s) for s in (1, 100, 101, 5000)] == [100, 100, 200, 5000]


def _run_npu(tmp_path, zoo_run, *extra, **env):
    log = str(tmp_path / "npu_calls.jsonl")
    environ = dict(os.environ, PYTHONPATH=DOUBLE, NPU_DOUBLE_LOG=log, **env)
    out = subprocess.run([zoo_run, "train", "shufflenetv1_g3", "--device", "npu", "--model_dir",
                          str(tmp_path / "run"), "--set", "save_checkpoints_steps=3"] + list(extra),
                         env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    calls = {}
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                record = json.loads(line)
                calls.setdefault(record.pop("name"), []).append(record)
    return out, calls


@pytest.mark.tf1_only
def test_npu_data_parallel_mixed_precision_wiring(tmp_path, zoo_run):
    """sess.run mode as Ascend documents it: the NpuOptimizer session config, loop sinking, the distributed and
    loss-scaling optimizer wrappers, and rank 0's variables broadcast, checked through the npu_bridge double."""
    table = tmp_path / "rank_table.json"
    table.write_text("{}")
    out, calls = _run_npu(tmp_path, zoo_run, "--iterations_per_loop", "2", "--max_steps", "3",
                          RANK_SIZE="2", RANK_ID="1", RANK_TABLE_FILE=str(table))
    assert out.returncode == 0, out.stdout
    summary = json.load(open(str(tmp_path / "run" / "run_summary.json")))
    assert summary["npu_options"] == {"use_off_line": True, "precision_mode": "allow_mix_precision",
                                      "iterations_per_loop": 2, "enable_data_pre_proc": True, "hcom_parallel": True}
    assert calls["create_iteration_per_loop_var"] == [{"train_op": "NoOp"}]
    assert calls["load_iteration_per_loop_var"] == [{"iterations_per_loop": 2, "loaded": 1}]
    assert calls["NPUDistributedOptimizer"][0] == {"optimizer": "MomentumOptimizer"}
    assert calls["ExponentialUpdateLossScaleManager"][0] == {
        "init_loss_scale": 2 ** 32, "incr_every_n_steps": 1000, "decr_every_n_nan_or_inf": 2, "incr_ratio": 2,
        "decr_ratio": 0.5}
    assert calls["NPULossScaleOptimizer"][0] == {"optimizer": "NPUDistributedOptimizer",
                                                 "manager": "ExponentialUpdateLossScaleManager",
                                                 "is_distributed": True}
    # every global variable (batch-norm moving statistics and optimizer slots too) comes from rank 0
    from registry.engine.warm_start import model_variable_shapes
    from modelzoo_shufflenet import models
    assert calls["broadcast"][0]["root_rank"] == 0
    assert calls["broadcast"][0]["tensors"] > len(model_variable_shapes(models.SHUFFLENETV1_G3, dict(
        models.SHUFFLENETV1_G3.default_hparams(), **models.SHUFFLENETV1_G3.presets["demo"])))
    # Two cards: the global batch doubles, the learning rate scales with it, 3 steps become 4 (whole loops).
    assert "global batch 128, peak lr 0.04" in out.stdout
    assert "Done: step 4/" in out.stdout and "on npu" in out.stdout
    # the launch variables are shown at start, applied, and recorded with the run
    assert ("environment: RANK_SIZE=2, RANK_ID=1, RANK_TABLE_FILE=%s: NPU data parallel, rank 1 of 2 (this rank "
            "trains on its shard of the files)" % table) in out.stdout
    assert summary["rank_size"] == 2 and summary["environment"]["applied"] == {
        "RANK_SIZE": "2", "RANK_ID": "1", "RANK_TABLE_FILE": str(table)}


@pytest.mark.tf1_only
def test_npu_fp32_dump_and_profiling(tmp_path, zoo_run):
    out, calls = _run_npu(tmp_path, zoo_run, "--precision_mode", "force_fp32", "--max_steps", "1", "--over_dump",
                          "--dump_path", str(tmp_path / "dump"), "--profiling", str(tmp_path / "prof"))
    assert out.returncode == 0, out.stdout
    options = json.load(open(str(tmp_path / "run" / "run_summary.json")))["npu_options"]
    assert options["precision_mode"] == "force_fp32" and options["iterations_per_loop"] == 1
    assert "NPULossScaleOptimizer" not in calls and "NPUDistributedOptimizer" not in calls
    assert "create_iteration_per_loop_var" not in calls and "broadcast" not in calls   # one card, one step a run
    assert (options["enable_dump_debug"], options["dump_path"], options["dump_debug_mode"]) == (
        True, str(tmp_path / "dump"), "all")
    assert options["profiling_mode"] is True and str(tmp_path / "prof") in options["profiling_options"]


def test_npu_session_config_carries_the_npu_optimizer():
    """The ConfigProto the session is opened with: NpuOptimizer's parameter map, remapping and memory optimisation
    off (npu_bridge's requirement). Built without npu_bridge, so on every lane."""
    from tensorflow.core.protobuf.rewriter_config_pb2 import RewriterConfig
    from registry.engine import npu
    settings = devices.DeviceSettings("npu", "allow_fp32_to_fp16", 100, 1, 0, "/dumps", False, None)
    config = npu.session_config(settings, "/model_dir")
    rewrite = config.graph_options.rewrite_options
    assert [c.name for c in rewrite.custom_optimizers] == ["NpuOptimizer"]
    params = rewrite.custom_optimizers[0].parameter_map
    assert params["precision_mode"].s == b"allow_fp32_to_fp16" and params["iterations_per_loop"].i == 100
    assert params["use_off_line"].b and params["enable_data_pre_proc"].b and params["hcom_parallel"].b
    assert (params["enable_dump"].b, params["dump_path"].s, params["dump_mode"].s) == (True, b"/dumps", b"all")
    assert rewrite.remapping == RewriterConfig.OFF and rewrite.memory_optimization == RewriterConfig.OFF


@pytest.mark.tf1_only
def test_npu_ranks_need_a_rank_table(tmp_path, zoo_run):
    out, _ = _run_npu(tmp_path, zoo_run, "--max_steps", "1", RANK_SIZE="8")
    assert out.returncode == 2
    assert "RANK_SIZE=8 needs RANK_TABLE_FILE" in out.stdout
