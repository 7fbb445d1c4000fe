"""`zoo-run export --format onnx|all` and `zoo-run perf --runtime onnxruntime|tf`, on a model dir made by
`zoo-run import-weights` from the committed tiny reference checkpoint: the ONNX model has a dynamic batch,
named input and outputs and the stated opset; through onnxruntime it gives the PyTorch reference's logits at
batch 1 and batch N; the export validates itself; perf reports timm's benchmark keys and batch-1 latency; and
without the optional packages both commands say which extra to install."""
import collections
import contextlib
import io
import json
import re
import sys

import numpy as np
import onnx
import onnxruntime
import pytest

from deploy_helpers import (TINY, TINY_NAME, TOLERANCE, ZIP_FILE, import_tiny, reference_inputs, reference_logits,
                            use_tiny_model, zoo_run)
from registry.deploy import export as export_mod, onnx_export
from registry.errors import ZooError

BATCH = 3     # the frozen graph's fixed batch: the committed inputs
OPSET = onnx_export.OPSET


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model dir imported from the zip file, export dir of `zoo-run export --format all`, its printed output)."""
    root = tmp_path_factory.mktemp("onnx")
    model_dir, output = root / "imported", root / "export"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_tiny_model(monkeypatch)
        import_tiny(monkeypatch, model_dir, ZIP_FILE)
        with contextlib.redirect_stdout(printed):
            assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", output, "--format", "all",
                           "--batch_size", BATCH) == 0
    return model_dir, output, printed.getvalue()


@pytest.fixture(scope="module")
def ort_session(exported):
    return onnxruntime.InferenceSession(str(exported[1] / onnx_export.ONNX_FILE), providers=["CPUExecutionProvider"])


def test_format_all_writes_the_three_artifacts_and_states_the_opset(exported):
    _, output, printed = exported
    assert (output / "saved_model" / "saved_model.pb").exists() and (output / "frozen_graph.pb").exists()
    info = json.load(open(str(output / onnx_export.ONNX_INFO)))
    assert info["opset"] == OPSET and info["path"] == str(output / "model.onnx")
    assert info["input"] == {"name": "input", "dtype": "float32", "format": "NHWC", "shape": ["N", 64, 64, 3]}
    assert set(info["outputs"]) == {"logits", "probabilities"}
    assert set(info["packages"]) == {"onnx", "tf2onnx", "onnxruntime"}
    assert (info["hparams"]["input_channel_order"], info["built_with"]) == ("bgr", {"grouped_conv_impl": "native"})
    # the export validated itself on real images at batch 1 and N, and says so
    differences = info["validation"]["max_abs_logit_difference"]
    assert set(differences) == {"batch_1", "batch_%d" % onnx_export.VALIDATION_IMAGES}
    assert max(differences.values()) <= info["validation"]["tolerance"] == onnx_export.tolerance(
        info["validation"]["max_abs_logit"])
    assert "opset %d" % OPSET in printed and "validated: onnxruntime" in printed
    assert "at batch 1" in printed and "at batch %d" % onnx_export.VALIDATION_IMAGES in printed
    assert "atc --model=%s --framework=5" % (output / "model.onnx") in printed
    assert "--framework=3" in printed
    # the TensorFlow export's info is its own file, with the same model dir hparams
    tf_info = json.load(open(str(output / export_mod.EXPORT_INFO)))
    assert tf_info["hparams"] == info["hparams"] and tf_info["built_with"] == {"grouped_conv_impl": "block_diagonal"}


def test_onnx_graph_has_a_dynamic_batch_named_io_and_no_layout_or_batch_norm_overhead(exported):
    model = onnx.load(str(exported[1] / onnx_export.ONNX_FILE))
    onnx.checker.check_model(model)
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [("", OPSET)]
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [64, 64, 3]
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops                   # folded into the convolutions
    groups = sorted({a.i for n in model.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"})
    assert TINY["groups"] in groups                          # grouped 1x1 convolutions as native grouped Convs
    convs = ops.count("Conv")
    assert convs == 1 + 16 * 3                               # first conv + 3 per unit: nothing split per group
    _check_lean_graph(model, input_transposes=1)             # NHWC input -> NCHW, once


def _attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_lean_graph(model, input_transposes):
    """No Pad and no Slice: the zero paddings are in the convolutions' and pools' pads, and each of the 16 channel
    shuffles is one Reshape-Transpose-Reshape in NCHW; the only other Transposes are the input's."""
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["Pad"] == ops["Slice"] == ops["Gather"] == 0 and ops["Concat"] == 3   # 3 stride-2 units' concats
    shuffles = [n for n in model.graph.node if n.op_type == "Transpose" and _attributes(n)["perm"] == [0, 2, 1, 3, 4]]
    assert len(shuffles) == 16 and ops["Transpose"] == 16 + input_transposes and ops["Reshape"] == 2 * 16
    pools = {n.op_type: _attributes(n) for n in model.graph.node if n.op_type in ("MaxPool", "AveragePool")}
    assert pools["MaxPool"]["pads"] == [1, 1, 1, 1]           # after the stem's ReLU: zeros are as good as -inf
    assert pools["AveragePool"]["pads"] == [1, 1, 1, 1] and pools["AveragePool"]["count_include_pad"] == 1
    strided = [_attributes(n) for n in model.graph.node if n.op_type == "Conv" and _attributes(n)["strides"] == [2, 2]]
    assert len(strided) == 4 and all(a["pads"] == [1, 1, 1, 1] for a in strided)   # stem + 3 depthwise


def test_nchw_export_has_no_layout_transpose_and_gives_the_reference_logits(exported, monkeypatch, tmp_path):
    model_dir = exported[0]
    use_tiny_model(monkeypatch)
    output = tmp_path / "nchw"
    assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", output, "--format", "onnx",
                   "--onnx_layout", "nchw") == 0
    info = json.load(open(str(output / onnx_export.ONNX_INFO)))
    assert info["input"] == {"name": "input", "dtype": "float32", "format": "NCHW", "shape": ["N", 3, 64, 64]}
    model = onnx.load(str(output / onnx_export.ONNX_FILE))
    _check_lean_graph(model, input_transposes=0)
    sess = onnxruntime.InferenceSession(str(output / onnx_export.ONNX_FILE), providers=["CPUExecutionProvider"])
    images = reference_inputs().transpose(0, 3, 1, 2).copy()
    for batch in (1, BATCH):
        logits = sess.run(["logits"], {"input": images[:batch]})[0]
        assert np.abs(logits - reference_logits()[:batch]).max() <= TOLERANCE


def test_onnxruntime_gives_the_reference_logits_at_batch_1_and_n(exported, ort_session):
    images = reference_inputs()
    assert len(images) == BATCH
    for batch in (1, BATCH):
        logits, probabilities = ort_session.run(["logits", "probabilities"], {"input": images[:batch]})
        diff = np.abs(logits - reference_logits()[:batch]).max()
        print("ONNX (onnxruntime %s) vs the PyTorch reference at batch %d: max abs logit difference %.2e"
              % (onnxruntime.__version__, batch, diff))
        assert logits.shape == (batch, TINY["num_classes"]) and diff <= TOLERANCE
        assert np.allclose(probabilities.sum(1), 1.0, atol=1e-5)


def test_the_validation_refuses_logits_that_differ(exported, ort_session):
    images = reference_inputs()
    expected = reference_logits().copy()
    differences, limit = onnx_export.validate(ort_session, images, expected)
    assert max(differences.values()) <= limit == TOLERANCE            # logits below 10: the absolute 1e-4
    assert onnx_export.tolerance(expected * 100) == pytest.approx(1e-5 * 100 * np.abs(expected).max())
    expected[-1, 0] += 0.01
    with pytest.raises(ZooError, match=r"differ from the checkpoint.s by 0\.0\d+ \(batch 1: .*, batch 3: 0\.0\d+\)"
                                      r".*model.onnx was not written"):
        onnx_export.validate(ort_session, images, expected)


def test_export_refuses_to_overwrite_the_onnx_model(exported, monkeypatch, capsys):
    model_dir, output, _ = exported
    use_tiny_model(monkeypatch)
    assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", output, "--format", "onnx") == 2
    assert "model.onnx already exists: choose another --output or pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("hidden", ["tf2onnx", "onnxruntime"])
def test_without_the_onnx_packages_export_and_perf_name_the_extra(exported, hidden, monkeypatch, capsys, tmp_path):
    model_dir, output, _ = exported
    use_tiny_model(monkeypatch)
    monkeypatch.setitem(sys.modules, hidden, None)   # import fails as if not installed
    assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", tmp_path / "out", "--format", "onnx") == 2
    err = capsys.readouterr().err
    assert "--format onnx needs the optional ONNX packages" in err and hidden in err and "pip install .[onnx]" in err
    assert not (tmp_path / "out").exists()          # nothing written
    # timing an exported model needs onnxruntime; fresh weights need the converter too
    source = ["--export_dir", output] if hidden == "onnxruntime" else ["--set", "image_size=64"]
    assert zoo_run("perf", TINY_NAME, "--runtime", "onnxruntime", "--mode", "infer", *source) == 2
    err = capsys.readouterr().err
    assert "--runtime onnxruntime needs the optional ONNX packages" in err and hidden in err
    assert "pip install .[onnx]" in err


def _perf(tmp_path, *argv):
    path = tmp_path / "perf.json"
    assert zoo_run("perf", TINY_NAME, "--steps", 10, "--warmup", 1, "--json", path, *argv) == 0
    return json.load(open(str(path)))


def _check_timm_keys(report, mode, batch, size=64):
    assert report["%s_samples_per_sec" % mode] == round(report["%s_images_per_sec" % mode], 2) > 0
    assert report["%s_step_time" % mode] == round(report["%s_step_time_ms" % mode], 3)
    assert (report["%s_batch_size" % mode], report["%s_img_size" % mode]) == (batch, size)
    assert report["param_count"] == round(report["params"] / 1e6, 2)


def test_perf_times_the_exported_onnx_model_with_timm_keys(exported, monkeypatch, tmp_path, capsys):
    _, output, _ = exported
    use_tiny_model(monkeypatch)
    report = _perf(tmp_path, "--export_dir", output, "--runtime", "onnxruntime", "--batch_size", 4)
    assert report["infer_runtime"] == "onnxruntime %s" % onnxruntime.__version__
    assert report["infer_model"] == str(output / "model.onnx")
    assert "train_images_per_sec" not in report          # an export dir is timed for inference only
    _check_timm_keys(report, "infer", 4)
    assert report["infer_gmacs"] == round(report["macs"] / 1e9, 2)
    assert report["infer_step_time_ms"] == pytest.approx(4000.0 / report["infer_images_per_sec"])
    assert len(report["infer_windows_ms"]) == 5 and report["image_size"] == 64
    assert "Final Performance images/sec : %.2f" % report["infer_images_per_sec"] in capsys.readouterr().out


def test_perf_latency_at_batch_1_reports_p50_and_p90(exported, monkeypatch, tmp_path, capsys):
    _, output, _ = exported
    use_tiny_model(monkeypatch)
    report = _perf(tmp_path, "--export_dir", output, "--runtime", "onnxruntime", "--latency", "--steps", 50)
    assert report["infer_batch_size"] == report["batch_size"] == 1 and report["infer_latency_runs"] == 50
    assert 0 < report["infer_latency_ms_p50"] <= report["infer_latency_ms_p90"]
    out = capsys.readouterr().out
    assert "latency p50 %.2f ms  p90 %.2f ms" % (report["infer_latency_ms_p50"], report["infer_latency_ms_p90"]) in out
    assert zoo_run("perf", TINY_NAME, "--export_dir", output, "--latency", "--batch_size", 8) == 2
    assert "--latency measures batch 1" in capsys.readouterr().err


def test_perf_runtime_tf_times_the_frozen_graph_of_an_export_dir(exported, monkeypatch, tmp_path, capsys):
    _, output, _ = exported
    use_tiny_model(monkeypatch)
    report = _perf(tmp_path, "--export_dir", output, "--runtime", "tf")
    assert report["infer_model"] == str(output / "frozen_graph.pb") and report["infer_runtime"].startswith("tensorflow")
    _check_timm_keys(report, "infer", BATCH)          # the frozen graph's fixed batch
    assert zoo_run("perf", TINY_NAME, "--export_dir", output, "--runtime", "tf", "--batch_size", 8) == 2
    assert "has the fixed batch 3" in capsys.readouterr().err


def test_perf_onnxruntime_on_fresh_weights(monkeypatch, tmp_path):
    use_tiny_model(monkeypatch)
    report = _perf(tmp_path, "--runtime", "onnxruntime", "--mode", "infer", "--batch_size", 2,
                   "--set", "image_size=64")
    assert report["infer_runtime"].startswith("onnxruntime") and report["infer_model"] == "fresh weights"
    _check_timm_keys(report, "infer", 2)


def test_a_zero_pad_is_folded_into_a_max_pool_only_after_a_relu():
    """On inputs with negative values: Pad -> MaxPool keeps its Pad (zeros would win over negatives where MaxPool's
    own padding is -inf), Relu -> Pad -> MaxPool is folded; both give onnxruntime's outputs of the unrewritten
    graph."""
    from onnx import TensorProto, helper, numpy_helper
    from registry.deploy import onnx_graph

    def graph(with_relu):
        nodes = [helper.make_node("Relu", ["x"], ["r"])] if with_relu else []
        nodes += [helper.make_node("Pad", ["r" if with_relu else "x", "pads"], ["p"], mode="constant"),
                  helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2])]
        return helper.make_model(helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
            [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]),
            opset_imports=[helper.make_opsetid("", OPSET)], ir_version=7)   # IR 7: opset 13's, read by every pinned ORT

    x = -1.0 - np.random.RandomState(0).rand(1, 2, 8, 8).astype(np.float32)   # all negative
    for with_relu, folded in ((False, 0), (True, 1)):
        model = graph(with_relu)
        expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        assert onnx_graph.optimize(model)["pads_folded"] == folded
        assert [n.op_type for n in model.graph.node].count("Pad") == 1 - folded
        got = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        assert np.array_equal(got, expected)
        if not with_relu:   # the Pad's zeros win the border windows: MaxPool's own padding would not give them
            assert (expected[..., 0, :] == 0).all() and (expected[..., 1:, 1:] < 0).all()


def _another_checkpoint(model_dir, target):
    """A copy of `model_dir` whose latest checkpoint, model.ckpt-7, holds other weights (each float scaled by 1.01)."""
    import shutil
    import tensorflow as tf
    tf1 = tf.compat.v1
    shutil.copytree(str(model_dir), str(target))
    reader = tf1.train.load_checkpoint(tf1.train.latest_checkpoint(str(model_dir)))
    with tf.Graph().as_default():
        variables = {}
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            variables[name] = tf1.Variable(value * 1.01 if value.dtype.kind == "f" else value, name=name)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return tf1.train.Saver(variables).save(sess, str(target / "model.ckpt"), global_step=7)


def test_an_export_folder_holds_one_checkpoints_artifacts_and_readers_check_it(exported, monkeypatch, tmp_path,
                                                                               capsys):
    """Issue 24: re-exporting --format tf --overwrite over an export of another checkpoint removes its ONNX and
    OpenVINO files (named); without --overwrite it is refused; perf on a folder that mixes two checkpoints (as an
    older version left it) refuses it, naming both."""
    import shutil
    from registry.engine import perf
    model_dir, output, _ = exported
    newer = _another_checkpoint(model_dir, tmp_path / "newer")
    use_tiny_model(monkeypatch)
    onnx_only = tmp_path / "onnx_only"
    shutil.copytree(str(output), str(onnx_only))
    for name in ("saved_model", "frozen_graph.pb", "export_info.json"):        # the TensorFlow export's files
        path = onnx_only / name
        shutil.rmtree(str(path)) if path.is_dir() else path.unlink()
    assert zoo_run("export", TINY_NAME, "--model_dir", tmp_path / "newer", "--output", onnx_only) == 2
    err = capsys.readouterr().err
    assert ("%s holds the export of another checkpoint: model.onnx, onnx_info.json (onnx) is of %s/model.ckpt-0 "
            "(digest " % (onnx_only, model_dir)) in err and "; this export is of %s. An export folder holds one " \
        "checkpoint's artifacts: pass --overwrite to replace them (the onnx and openvino files are removed; export " \
        "them again with --format tf,onnx,openvino), or choose another --output" % newer in err, err
    assert not (onnx_only / export_mod.EXPORT_INFO).exists()

    mixed = tmp_path / "mixed"
    shutil.copytree(str(output), str(mixed))
    assert zoo_run("export", TINY_NAME, "--model_dir", tmp_path / "newer", "--output", mixed, "--format", "tf",
                   "--overwrite") == 0
    out = capsys.readouterr().out
    assert ("note: removed model.onnx, onnx_info.json from %s: they were of %s/model.ckpt-0, not of %s (an export "
            "folder holds one checkpoint's artifacts; export them again with --format onnx)" % (mixed, model_dir, newer)
            ) in out
    assert not (mixed / onnx_export.ONNX_FILE).exists() and not (mixed / "openvino").exists()
    info = json.load(open(str(mixed / export_mod.EXPORT_INFO)))
    assert (info["checkpoint"], info["checkpoint_step"]) == (newer, 7) and len(info["checkpoint_digest"]) == 16

    shutil.copy(str(output / onnx_export.ONNX_FILE), str(mixed))        # as an older version left a folder
    shutil.copy(str(output / onnx_export.ONNX_INFO), str(mixed))
    with pytest.raises(ZooError, match=r"%s mixes the artifacts of two checkpoints: saved_model, frozen_graph\.pb, "
                                       r"export_info\.json \(tf\) is of %s \(digest [0-9a-f]{16}\); model\.onnx, "
                                       r"onnx_info\.json \(onnx\) is of %s/model\.ckpt-0 \(digest [0-9a-f]{16}\)\. An "
                                       r"export folder holds one checkpoint's artifacts" % (
                                           re.escape(str(mixed)), re.escape(newer), re.escape(str(model_dir)))):
        perf.artifact(str(mixed), "onnxruntime")
