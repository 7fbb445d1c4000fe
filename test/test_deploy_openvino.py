"""OpenVINO as a runtime (the `openvino` extra, which `.[test]` installs on both lanes): `zoo-run export --format
openvino` writes IR whose logits equal TensorFlow's and the PyTorch reference's on the committed tiny reference
checkpoint at batch 1 and N; `zoo-run perf --runtime openvino` times it and fresh weights; without the package both
commands name the extra."""
import importlib.util
import json
import sys

import numpy as np
import pytest

from deploy_helpers import (TINY, TINY_NAME, TOLERANCE, ZIP_FILE, import_tiny, reference_inputs, reference_logits,
                            tiny_model, use_tiny_model, zoo_run)
from registry.deploy import inference_graph, openvino_export

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="the openvino package is not installed: pip install .[openvino] "
                                           "(.[test] installs it where a release exists for this Python)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model dir imported from the zip file, export dir of `zoo-run export --format openvino --onnx_layout NCHW`)."""
    root = tmp_path_factory.mktemp("openvino")
    model_dir, output = root / "imported", root / "export"
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_tiny_model(monkeypatch)
        import_tiny(monkeypatch, model_dir, ZIP_FILE)
        assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", output, "--format", "openvino",
                       "--onnx_layout", "NCHW") == 0
    return model_dir, output


@needs_openvino
def test_openvino_ir_gives_tensorflow_s_and_the_reference_logits_at_batch_1_and_n(exported):
    model_dir, output = exported
    info = json.load(open(str(output / openvino_export.INFO)))
    assert info["path"] == str(output / "openvino" / "model.xml") and (output / "openvino" / "model.bin").exists()
    assert info["input"] == {"name": "input", "dtype": "float32", "format": "NCHW", "shape": ["N", 3, 64, 64]}
    assert info["packages"]["openvino"] == openvino_export.version() and "f32" in info["precision"]
    assert max(info["validation"]["max_abs_logit_difference"].values()) <= info["validation"]["tolerance"]
    hparams = json.load(open(str(model_dir / "hparams.json")))
    images = reference_inputs()
    checkpoint = str(model_dir / "model.ckpt-0")
    tensorflow = inference_graph.checkpoint_logits(tiny_model(), inference_graph.export_hparams(tiny_model(), hparams,
                                                                                      "tensorflow"), checkpoint, images)
    request = openvino_export.session(info["path"])
    for batch in (1, len(images)):
        outputs = openvino_export.run(request, images[:batch].transpose(0, 3, 1, 2))
        assert outputs["logits"].shape == (batch, TINY["num_classes"])
        assert np.abs(outputs["logits"] - tensorflow[:batch]).max() <= TOLERANCE
        assert np.abs(outputs["logits"] - reference_logits()[:batch]).max() <= TOLERANCE
        assert np.allclose(outputs["probabilities"].sum(1), 1.0, atol=1e-5)


@needs_openvino
def test_perf_runtime_openvino_times_the_export_and_fresh_weights(exported, monkeypatch, tmp_path, capsys):
    _, output = exported
    use_tiny_model(monkeypatch)
    path = tmp_path / "perf.json"
    assert zoo_run("perf", TINY_NAME, "--export_dir", output, "--runtime", "openvino", "--batch_size", 2,
                   "--steps", 10, "--warmup", 1, "--json", path) == 0
    report = json.load(open(str(path)))
    assert report["infer_runtime"] == "openvino %s (f32)" % openvino_export.version()   # the precision that ran
    assert report["infer_model"] == str(output / "openvino" / "model.xml") and report["infer_input_layout"] == "NCHW"
    assert report["infer_images_per_sec"] > 0 and "train_images_per_sec" not in report
    assert zoo_run("perf", TINY_NAME, "--runtime", "openvino", "--mode", "infer", "--batch_size", 2, "--steps", 10,
                   "--warmup", 1, "--set", "image_size=64", "--onnx_layout", "NCHW", "--json", path) == 0
    report = json.load(open(str(path)))
    assert (report["infer_model"], report["infer_input_layout"]) == ("fresh weights", "NCHW")
    assert zoo_run("perf", TINY_NAME, "--export_dir", output, "--runtime", "openvino", "--onnx_layout", "NHWC") == 2
    assert "an export's layout is the one it was exported with" in capsys.readouterr().err


def test_without_openvino_export_and_perf_name_the_extra(monkeypatch, tmp_path, capsys):
    use_tiny_model(monkeypatch)
    monkeypatch.setitem(sys.modules, "openvino", None)   # import fails as if not installed
    model_dir = tmp_path / "imported"
    import_tiny(monkeypatch, model_dir, ZIP_FILE)
    assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", tmp_path / "out", "--format",
                   "openvino") == 2
    err = capsys.readouterr().err
    assert "--format openvino needs the optional package openvino" in err and "pip install .[openvino]" in err
    assert not (tmp_path / "out").exists()
    assert zoo_run("perf", TINY_NAME, "--runtime", "openvino", "--mode", "infer", "--set", "image_size=64") == 2
    assert "--runtime openvino needs the optional package openvino" in capsys.readouterr().err
