"""Precision (issue 25): OpenVINO bf16/INT8 exports with their accuracy shown (lane tf2), `zoo-run eval` of an
export, and the training precision allow_mix_precision picks from the CPU (registry.cpu_features), with both
branches forced through ZOO_RUN_CPU_BF16."""
import importlib.util
import json
import os
import subprocess

import numpy as np
import pytest

from deploy_helpers import TINY_NAME, ZIP_FILE, import_tiny, use_tiny_model, zoo_run
from registry import cpu_features, tf_compat
from registry.data.demo import demo_data_path
from registry.deploy import openvino_export, records_eval

needs_int8 = pytest.mark.skipif(
    tf_compat.LANE != "tf2" or importlib.util.find_spec("nncf") is None or importlib.util.find_spec("openvino") is None,
    reason="bf16/INT8 inference is lane tf2's, with the openvino extra (openvino + nncf)")


# --- the CPU decision ---------------------------------------------------------------------------------------------

def test_cpu_features_read_the_flags_and_the_override(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_features.bf16({}, str(cpuinfo)) == (False, "this CPU has no AVX512_BF16 or AMX_BF16 (%s)" % cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    has, reason = cpu_features.bf16({}, str(cpuinfo))
    assert has and "AVX512_BF16 and AMX_BF16" in reason
    assert cpu_features.bf16({"ZOO_RUN_CPU_BF16": "0"}, str(cpuinfo))[0] is False
    assert cpu_features.bf16({"ZOO_RUN_CPU_BF16": "1"}, str(tmp_path / "missing")) == (
        True, "ZOO_RUN_CPU_BF16=1 set in the environment")
    with pytest.raises(ValueError, match="ZOO_RUN_CPU_BF16='yes': set it to 1"):
        cpu_features.bf16({"ZOO_RUN_CPU_BF16": "yes"})


def test_training_precision_follows_the_device_the_mode_and_the_cpu():
    import tensorflow as tf
    from registry.engine import devices
    assert devices.training_precision("cpu", None).name == "float32"
    assert devices.training_precision("cpu", "force_fp16").dtype == tf.float16
    assert devices.training_precision("gpu", "allow_mix_precision").name == "mixed_float16"
    without = devices.training_precision("cpu", "allow_mix_precision", {"ZOO_RUN_CPU_BF16": "0"})
    assert (without.name, without.dtype) == ("float32", tf.float32)
    assert "trains in float32 here: ZOO_RUN_CPU_BF16=0" in without.note
    forced = devices.training_precision("cpu", "allow_mix_precision", {"ZOO_RUN_CPU_BF16": "1"})
    if tf_compat.LANE == "tf2":
        assert (forced.name, forced.dtype, forced.convolution_dtype) == ("mixed_bfloat16", tf.float32, tf.bfloat16)
        assert "convolutions in bfloat16" in forced.note
    else:
        assert forced.name == "float32" and "lane tf2 has them" in forced.note


def _train_graph(precision_mode, environ):
    import tensorflow as tf
    from modelzoo_shufflenet import models
    from registry.engine import devices, graph, schedule
    model = models.SHUFFLENETV1_G3
    hparams = dict(model.default_hparams(), **model.presets["demo"])
    hparams.update(image_size=32, batch_size=4)
    rng = np.random.RandomState(0)
    images = tf.constant(rng.rand(4, 32, 32, 3).astype(np.float32))
    labels = tf.constant(np.arange(4, dtype=np.int32))
    tf.compat.v1.train.get_or_create_global_step()
    settings = devices.resolve("cpu", precision_mode, environ=environ)
    settings = settings._replace(precision=devices.training_precision("cpu", precision_mode, environ))
    return graph.train_step(model, hparams, schedule.Plan(hparams), settings, images, labels)


def _kinds(g):
    import tensorflow as tf
    types = ("Conv2D", "DepthwiseConv2dNative", "FusedBatchNormV3", "FusedBatchNormGradV3", "MatMul")
    return {(op.type, tf.as_dtype(op.get_attr("T")).name) for op in g.get_operations() if op.type in types}


@pytest.mark.skipif(tf_compat.LANE != "tf2", reason="bfloat16 CPU training is lane tf2's (TF 1.15 has no kernels)")
def test_bf16_cpu_branch_runs_the_convolutions_in_bfloat16_and_the_rest_in_float32():
    """ZOO_RUN_CPU_BF16=1 (the branch a CPU with AVX512_BF16/AMX-BF16 takes): the dense and grouped 1x1 convolutions
    compute in bfloat16 (grouped ones split: oneDNN has no bfloat16 grouped gradient); the depthwise convolutions,
    batch norm and classifier stay float32, and so do all variables."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    with tf.Graph().as_default() as g:
        step = _train_graph("allow_mix_precision", {"ZOO_RUN_CPU_BF16": "1"})
        assert _kinds(g) == {("Conv2D", "bfloat16"), ("DepthwiseConv2dNative", "float32"),
                             ("FusedBatchNormV3", "float32"), ("FusedBatchNormGradV3", "float32"),
                             ("MatMul", "float32")}
        # split: the first conv, the first unit's dense 1x1, and one Conv2D per group (3) for the 31 grouped 1x1s
        assert len([op for op in g.get_operations() if op.type == "Conv2D"]) == 1 + 1 + 31 * 3
        assert all(v.dtype.base_dtype == tf.float32 for v in tf1.global_variables() if v.dtype.is_floating)
        assert not [v for v in tf1.global_variables() if "loss_scale" in v.name]   # bfloat16 needs no scaling
        assert step.reported["loss"].dtype == tf.float32   # it trains: test_train_and_perf_name_the_precision_that_ran


def test_cpu_without_bf16_branch_is_the_float32_graph():
    """ZOO_RUN_CPU_BF16=0 (an AVX2-only CPU): allow_mix_precision builds exactly force_fp32's ops and dtypes."""
    import tensorflow as tf
    with tf.Graph().as_default() as g:
        _train_graph("allow_mix_precision", {"ZOO_RUN_CPU_BF16": "0"})
        mixed = _kinds(g), sorted(op.type for op in g.get_operations())
    with tf.Graph().as_default() as g:
        _train_graph("force_fp32", {})
        plain = _kinds(g), sorted(op.type for op in g.get_operations())
    assert mixed == plain and ("Conv2D", "float32") in mixed[0] and "bfloat16" not in str(mixed[0])


@pytest.mark.skipif(tf_compat.LANE != "tf2", reason="bfloat16 CPU training is lane tf2's (TF 1.15 has no kernels)")
def test_force_bf16_computes_the_whole_network_in_bfloat16_on_any_cpu():
    import tensorflow as tf
    tf1 = tf.compat.v1
    for has in ("0", "1"):
        with tf.Graph().as_default() as g:
            _train_graph("force_bf16", {"ZOO_RUN_CPU_BF16": has})
            assert _kinds(g) == {("Conv2D", "bfloat16"), ("DepthwiseConv2dNative", "bfloat16"),
                                 ("FusedBatchNormV3", "bfloat16"), ("FusedBatchNormGradV3", "bfloat16"),
                                 ("MatMul", "bfloat16")}
            assert all(v.dtype.base_dtype == tf.float32 for v in tf1.global_variables() if v.dtype.is_floating)
            assert not [v for v in tf1.global_variables() if "loss_scale" in v.name]


def test_force_bf16_is_lane_tf2_and_cpu_only():
    from registry.engine import devices
    from registry.errors import ZooError
    if tf_compat.LANE == "tf2":
        precision = devices.training_precision("cpu", "force_bf16", {"ZOO_RUN_CPU_BF16": "0"})
        assert precision.name == "bfloat16" and "emulates bfloat16" in precision.note
    else:
        with pytest.raises(ZooError, match="force_bf16 needs lane tf2"):
            devices.training_precision("cpu", "force_bf16", {})
    with pytest.raises(ZooError, match="force_bf16 is a CPU setting"):
        devices.training_precision("npu", "force_bf16")


def test_bf16_cpu_branch_takes_float32_below_the_measured_image_size():
    """Both sides of the image-size rule, on a CPU forced to have bfloat16 hardware, and `for_images` applying it to
    a run's settings (never to another device or mode)."""
    from registry.engine import devices
    forced = {"ZOO_RUN_CPU_BF16": "1"}
    small = devices.training_precision("cpu", "allow_mix_precision", forced,
                                       image_size=devices.BF16_MIN_IMAGE_SIZE - 32)
    assert small.name == "float32" and small.convolution_dtype is None
    assert ("at image_size 128 bfloat16 convolutions were measured no faster than float32" if tf_compat.LANE == "tf2"
            else "lane tf2 has them") in small.note
    large = devices.training_precision("cpu", "allow_mix_precision", forced,
                                       image_size=devices.BF16_MIN_IMAGE_SIZE)
    assert large.name == ("mixed_bfloat16" if tf_compat.LANE == "tf2" else "float32")
    settings = devices.resolve("cpu", "allow_mix_precision", environ=forced)
    assert devices.for_images(settings, 32).precision.name == "float32"
    plain = devices.resolve("cpu", "force_fp32")
    assert devices.for_images(plain, 32) is plain


def test_convolve_computes_in_the_block_s_dtype_and_returns_the_network_s():
    """registry.nn.convolve: outside a convolutions_in block the plain op; inside a bfloat16 block the op runs on
    bfloat16 operands and the result comes back float32, within bfloat16's rounding of the float32 product."""
    import tensorflow as tf
    from registry import nn
    rng = np.random.RandomState(1)
    x, k = rng.randn(2, 4, 4, 8).astype(np.float32), rng.randn(1, 1, 8, 6).astype(np.float32)
    conv = lambda a, b: tf.nn.conv2d(a, b, [1, 1, 1, 1], "VALID")   # noqa: E731
    with tf.Graph().as_default():
        plain = nn.convolve(conv, tf.constant(x), tf.constant(k))
        with nn.convolutions_in(None):
            same = nn.convolve(conv, tf.constant(x), tf.constant(k))
        assert plain.op.type == same.op.type == "Conv2D" and plain.dtype == tf.float32
        if tf_compat.LANE != "tf2":
            return   # TF 1.15 has no bfloat16 CPU convolution to run
        with nn.convolutions_in(tf.bfloat16):
            assert nn.convolution_dtype(tf.float32) == tf.bfloat16
            mixed = nn.convolve(conv, tf.constant(x), tf.constant(k))
        assert nn.convolution_dtype(tf.float32) == tf.float32
        assert mixed.dtype == tf.float32 and mixed.op.type == "Cast"
        assert mixed.op.inputs[0].op.type == "Conv2D" and mixed.op.inputs[0].dtype == tf.bfloat16
        with tf.compat.v1.Session() as sess:
            want, got = sess.run([plain, mixed])
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05)
    assert np.abs(got - want).max() > 0   # it really rounded through bfloat16


def test_train_and_perf_name_the_precision_that_ran(tmp_path, zoo_run):
    """The forced bf16 branch through `zoo-run train` (lane line, run_summary.json), and the other branch through
    `zoo-run perf --precision_mode` (perf JSON)."""
    from registry.engine import devices
    model_dir, path = str(tmp_path / "run"), str(tmp_path / "perf.json")
    forced = dict(os.environ, ZOO_RUN_CPU_BF16="1")
    out = subprocess.run([zoo_run, "train", "shufflenetv1_g3", "--device", "cpu", "--precision_mode",
                          "allow_mix_precision", "--model_dir", model_dir, "--max_steps", "2", "--skip_eval", "--set",
                          "batch_size=4", "image_size=%d" % devices.BF16_MIN_IMAGE_SIZE], env=forced,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    ran = "mixed_bfloat16" if tf_compat.LANE == "tf2" else "float32"
    assert "Training from scratch on lane %s" % tf_compat.LANE in out.stdout and ", %s: 2" % ran not in out.stdout
    lane_line = [line for line in out.stdout.splitlines() if line.startswith("Training from scratch")][0]
    assert ("), %s: " % ran) in lane_line, lane_line
    summary = json.load(open(os.path.join(model_dir, "run_summary.json")))
    assert (summary["precision"], summary["precision_mode"]) == (ran, "allow_mix_precision")
    assert "ZOO_RUN_CPU_BF16=1" in summary["precision_note"]
    out = subprocess.run([zoo_run, "perf", "shufflenetv1_g3", "--synthetic", "--mode", "train", "--precision_mode",
                          "allow_mix_precision", "--batch_size", "2", "--steps", "2", "--warmup", "1", "--set",
                          "image_size=32", "--json", path], env=dict(os.environ, ZOO_RUN_CPU_BF16="0"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    report = json.load(open(path))
    assert (report["train_precision"], report["train_precision_mode"]) == ("float32", "allow_mix_precision")
    assert "train precision: allow_mix_precision trains in float32 here: ZOO_RUN_CPU_BF16=0" in out.stdout


# --- OpenVINO bf16 / INT8 ---------------------------------------------------------------------------------------

SMALL_SPLIT = 24   # records of each split of the small data dir (CI time)


def small_data(path):
    """A data dir of the first SMALL_SPLIT records of the demo data's train and validation splits (real JPEGs),
    with its labels.txt."""
    import shutil
    import tensorflow as tf
    from registry.data import tfrecord
    os.makedirs(str(path))
    shutil.copy(os.path.join(demo_data_path(), "labels.txt"), str(path))
    for split in ("train", "validation"):
        source = tfrecord.list_split_files(demo_data_path(), split)[0]
        with tf.io.TFRecordWriter(str(path / ("%s-00000-of-00001" % split))) as writer:
            for i, record in enumerate(tf.compat.v1.io.tf_record_iterator(source)):
                if i == SMALL_SPLIT:
                    break
                writer.write(record)
    return path


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    """(model dir of the tiny reference weights, export dir of `zoo-run export --format openvino --calibration_data
    DATA` with 16 calibration images, data dir; the bound is wide: the tiny weights are not trained on the digits)."""
    root = tmp_path_factory.mktemp("int8")
    model_dir, output, data = root / "imported", root / "export", small_data(root / "data")
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_tiny_model(monkeypatch)
        import_tiny(monkeypatch, model_dir, ZIP_FILE)
        assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", output, "--format", "openvino",
                       "--calibration_data", data, "--calibration_images", 16, "--max_accuracy_drop", 100) == 0
    return model_dir, output, data


@needs_int8
def test_int8_export_records_its_top1_against_f32_and_the_fastest_checked_is_the_default(int8_export, monkeypatch, tmp_path):
    model_dir, output, data = int8_export
    info = json.load(open(str(output / openvino_export.INFO)))
    assert (output / "openvino" / "model_int8.xml").exists()
    int8, f32 = info["precisions"]["int8"], info["precisions"]["f32"]
    # the default: the fastest of the checked precisions as the export timed them (bf16 checked where it runs)
    timed = {name: record["speed"]["images_per_sec"] for name, record in info["precisions"].items()}
    assert set(timed) == {"f32", "int8"} | ({"bf16"} if "bf16" in info["precisions"] else set())
    assert info["default_precision"] == max(timed, key=lambda name: (timed[name], name == "f32"))
    assert all(info["precisions"][name]["speed"]["batch"] == 32 for name in timed)
    assert openvino_export._fastest({"int8": 300.0, "f32": 300.0, "bf16": 299.9}) == "f32"   # a tie: exact parity
    assert int8["ran"] == "int8" and "16 images of %s's train split" % data in int8["quantization"]["calibration"]
    # NNCF's CPU default: every depthwise / grouped convolution's weights per channel; the first conv stays float
    assert int8["quantization"]["weights"]["GroupConvolution"] == {"per_channel": 16 + 31}
    assert int8["quantization"]["weights"]["Convolution"]["float"] == 1
    check = int8["check"]
    assert check["top1_f32"] == f32["accuracy"]["top1"] and check["top1_int8"] == int8["accuracy"]["top1"]
    assert check["top1_drop_points"] == round(100 * (check["top1_f32"] - check["top1_int8"]), 4)
    assert f32["accuracy"]["num_images"] == int8["accuracy"]["num_images"] == SMALL_SPLIT
    # zoo-run eval of the export (default precision: int8) and of its f32 IR give the recorded figures; the f32
    # IR's equal the model dir's own evaluation (the same report)
    use_tiny_model(monkeypatch)
    default = info["precisions"][info["default_precision"]]["accuracy"]
    for extra, expected in (([], default), (["--precision", "f32"], f32["accuracy"])):
        path = tmp_path / "eval.json"
        assert zoo_run("eval", TINY_NAME, "--export_dir", output, "--runtime", "openvino", "--data_path", data,
                       "--json", path, *extra) == 0
        record = json.load(open(str(path)))
        assert {k: record[k] for k in ("top1", "top5", "num_images")} == {k: expected[k] for k in
                                                                         ("top1", "top5", "num_images")}
        assert record["loss"] == pytest.approx(expected["loss"], rel=1e-9)
    assert record["precision"] == "f32" and record["model"].endswith("model.xml")
    assert zoo_run("eval", TINY_NAME, "--model_dir", model_dir, "--data_path", data, "--json",
                   tmp_path / "dir.json") == 0
    own = json.load(open(str(tmp_path / "dir.json")))
    assert own["top1"] == f32["accuracy"]["top1"] and own["num_images"] == SMALL_SPLIT
    assert own["loss"] == pytest.approx(f32["accuracy"]["loss"], rel=1e-5)


@needs_int8
def test_perf_times_the_export_s_default_and_names_the_bf16_fallback(int8_export, monkeypatch, tmp_path):
    output = int8_export[1]
    use_tiny_model(monkeypatch)
    path = tmp_path / "perf.json"
    assert zoo_run("perf", TINY_NAME, "--export_dir", output, "--runtime", "openvino", "--batch_size", 2,
                   "--steps", 5, "--warmup", 1, "--json", path) == 0
    report = json.load(open(str(path)))
    default = json.load(open(str(output / openvino_export.INFO)))["default_precision"]
    assert report["infer_precision"] == default and report["infer_model"].endswith(openvino_export.model_file(default))
    assert zoo_run("perf", TINY_NAME, "--export_dir", output, "--runtime", "openvino", "--precision", "bf16",
                   "--batch_size", 2, "--steps", 5, "--warmup", 1, "--json", path) == 0
    report = json.load(open(str(path)))
    has_bf16 = cpu_features.bf16()[0]
    assert report["infer_precision"] == ("bf16" if has_bf16 else "f32, bf16 asked: OpenVINO fell back to float32 "
                                                                 "on this CPU, which has no bfloat16 hardware")


@needs_int8
def test_an_int8_export_losing_more_than_the_bound_is_refused_with_its_figures(int8_export, monkeypatch, tmp_path,
                                                                               capsys):
    """The decision, with the figures the check measured replaced (quantization itself: the fixture's export)."""
    from registry.deploy import quantize
    use_tiny_model(monkeypatch)
    model_dir, _, data = int8_export
    figures = iter([0.9, 0.8])   # f32, then int8
    monkeypatch.setattr(quantize, "quantize", lambda ov_model, images, batch_size=1: ov_model)

    def evaluate(run_logits, model, hparams, data_path, log=print, what=""):
        return {"top1": next(figures), "top5": 1.0, "loss": 0.5, "num_images": 360, "seconds": 1.0}
    monkeypatch.setattr(records_eval, "evaluate", evaluate)
    assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", tmp_path / "out", "--format",
                   "openvino", "--precision", "int8", "--calibration_data", data, "--calibration_images", 4) == 2
    err = capsys.readouterr().err
    assert "the int8 export is refused: int8 top-1 0.8000 vs f32 0.9000" in err and "-10.00 points" in err
    assert "more than --max_accuracy_drop 1" in err
    assert not (tmp_path / "out" / "openvino").exists() and not (tmp_path / "out" / "openvino.tmp").exists()


def test_int8_and_bf16_name_lane_tf2_on_lane_tf1_and_int8_needs_records(monkeypatch, tmp_path, capsys):
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("the openvino package is not installed")
    model = use_tiny_model(monkeypatch)
    model_dir = tmp_path / "run"   # the refusals come before any checkpoint is read: its hparams.json suffices
    model_dir.mkdir()
    (model_dir / "hparams.json").write_text(json.dumps(dict(model.default_hparams(), image_size=64)))
    if tf_compat.LANE == "tf2":
        assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", tmp_path / "out", "--format",
                       "openvino", "--precision", "int8") == 2
        assert "--precision int8 needs --calibration_data DIR" in capsys.readouterr().err
        monkeypatch.setattr(tf_compat, "LANE", "tf1")   # the message lane tf1 gives
    for precision in ("int8", "bf16"):
        assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", tmp_path / "out", "--format",
                       "openvino", "--precision", precision, "--calibration_data", demo_data_path()) == 2
        err = capsys.readouterr().err
        assert "zoo-run export --format openvino --precision %s needs lane tf2" % precision in err
        assert tf_compat.LANES["tf2"] in err
    assert not (tmp_path / "out").exists()
    assert zoo_run("perf", TINY_NAME, "--runtime", "openvino", "--mode", "infer", "--precision", "int8",
                   "--set", "image_size=64") == 2
    assert "zoo-run perf --runtime openvino --precision int8 needs lane tf2" in capsys.readouterr().err
