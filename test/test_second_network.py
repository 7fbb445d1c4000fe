"""A second network from its own distribution: examples/resnet50 (`modelzoo-resnet`, installed into the
venv by `make test` with pip, as a user would) run through the same `zoo-run` commands as ShuffleNet.

ResNet-50 is heavy for 2 CPU cores: every run here is at 32x32 (the demo digits' stored size), a
batch of 8 and a few steps; `describe` at 224 builds a graph only. One training run (through the
ModelZoo script) makes the model dir the module shares. The last test uninstalls the distribution
and installs it again.
"""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from registry import discovery, spec
from registry.data.demo import demo_data_path
from registry.errors import DataError

NAME = "resnet50_v1_5"
DISTRIBUTION = "modelzoo-resnet"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "resnet50")
TEST_DIR = os.path.join(REPO, "test")
ZOO_RUN = os.path.join(os.path.dirname(sys.executable), "zoo-run")


def run(*args, **kwargs):
    return subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          **kwargs)


def zoo_run(*args):
    out = run(ZOO_RUN, *args)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module", autouse=True)
def installed():
    if NAME not in discovery.model_names():
        pytest.fail("%s is not registered: install the example distribution into this venv "
                    "(`make test` does; or `pip install ./examples/resnet50`)" % NAME)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model dir, the ModelZoo script's case log): `train_full_1p.sh --network=resnet50_v1_5` on the demo
    data with the demo preset (32x32), batch 8, 3 steps, evaluated at the end."""
    root = tmp_path_factory.mktemp("resnet")
    env = dict(os.environ, ZOO_RUN=ZOO_RUN, MODELZOO_OUTPUT_ROOT=str(root), ASCEND_DEVICE_ID="5")
    out = run("bash", os.path.join(TEST_DIR, "train_full_1p.sh"), "--network=%s" % NAME,
              "--data_path=%s" % demo_data_path(), "--preset=demo", "--steps=3", "--batch_size=8", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    with open(str(root / "5" / ("%s_bs8_1p_acc.log" % NAME))) as f:
        case = dict(line.strip().split(" = ", 1) for line in f)
    return str(root / "5" / "ckpt_acc"), case


def _json(model_dir, name):
    with open(os.path.join(model_dir, name)) as f:
        return json.load(f)


def test_the_plugin_keeps_the_contract_and_owes_nothing_to_shufflenet():
    code = ("import json, sys; import modelzoo_resnet.models, modelzoo_resnet.network, modelzoo_resnet.preprocessing; "
            "print(json.dumps(sorted(k for k in sys.modules if k.startswith('modelzoo_'))))")
    out = run(sys.executable, "-c", code, cwd=TEST_DIR)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [
        "modelzoo_resnet", "modelzoo_resnet.models", "modelzoo_resnet.network", "modelzoo_resnet.preprocessing"]
    for root, _, files in os.walk(os.path.join(EXAMPLE, "modelzoo_resnet")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name)) as f:
                    assert "shufflenet" not in f.read().lower(), name
    model = discovery.get_model(NAME)
    assert spec.contract_problems(model) == []
    assert dict(model.level) == {"FuncStatus": "OK", "PerfStatus": "NOK", "PrecisionStatus": "POK"}


def test_its_own_transforms_subtract_the_channel_means():
    import tensorflow as tf
    from PIL import Image
    from modelzoo_resnet import preprocessing
    png = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 100, 50)).save(png, "PNG")
    hparams = dict(discovery.get_model(NAME).default_hparams(), image_size=16)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        image = sess.run(preprocessing.eval_image(tf.constant(png.getvalue()), hparams))
        with pytest.raises(DataError, match=r"crop_area_range must be \[low, high\]"):
            preprocessing.train_image(tf.constant(png.getvalue()), dict(hparams, crop_area_range=[0.5, 0.2]))
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(image[8, 8], [200 - 123.68, 100 - 116.78, 50 - 103.94], atol=1e-3)


def test_list_shows_both_networks_and_describe_measures_resnet50_exactly():
    listing = {line.split()[0]: line for line in zoo_run("list").splitlines() if line.strip()}
    assert "ResNet-50 v1.5" in listing[NAME] and "Func:OK" in listing[NAME]
    assert "ShuffleNetV1" in listing["shufflenetv1_g3"] and "BROKEN" not in "".join(listing.values())
    out = zoo_run("describe", NAME)
    assert "(1000 classes, 224x224 input)" in out
    assert "trainable parameters  25,557,032\n" in out
    assert "multiply-adds         4,089,184,256 (4089.2 M)" in out
    model = discovery.get_model(NAME)
    assert (model.metadata["params"], model.metadata["macs"]) == (25557032, 4089184256)


def test_the_modelzoo_script_trains_the_network_it_is_given_then_eval(trained):
    model_dir, case = trained
    hparams = _json(model_dir, "hparams.json")
    assert (hparams["image_size"], hparams["batch_size"], hparams["num_classes"]) == (32, 8, 10)
    assert hparams["crop_area_range"] == [0.8, 1.0] and hparams["nesterov"] is True
    log = [json.loads(line) for line in open(os.path.join(model_dir, "train_log.jsonl"))]
    assert log[-1]["step"] == 3 and all(np.isfinite(r["loss"]) for r in log)
    trained_eval = _json(model_dir, "eval_results.json")
    assert (trained_eval["global_step"], trained_eval["num_images"]) == (3, 360)
    assert (case["Network"], case["CaseName"]) == (NAME, "%s_bs8_1p_acc" % NAME)
    assert float(case["TrainAccuracy"]) == pytest.approx(trained_eval["top1"], abs=1e-4)

    zoo_run("eval", NAME, "--model_dir", model_dir, "--data_path", demo_data_path())
    again = _json(model_dir, "eval_results.json")
    assert (again["global_step"], again["num_images"]) == (3, 360)
    assert again["top1"] == pytest.approx(trained_eval["top1"]) and again["loss"] == pytest.approx(trained_eval["loss"])


def test_the_scripts_default_and_unknown_networks(tmp_path):
    env = dict(os.environ, ZOO_RUN=ZOO_RUN, MODELZOO_OUTPUT_ROOT=str(tmp_path))
    script = os.path.join(TEST_DIR, "train_performance_1p.sh")
    assert "--network=NAME           a network registered with zoo-run (default: shufflenetv1_g3" in run(
        "bash", script, "-h").stdout
    out = run("bash", script, "--network=no_such_net", "--data_path=%s" % demo_data_path(), env=env)
    assert out.returncode == 2 and "unknown model 'no_such_net'" in out.stderr


def test_export_serves_the_checkpoint(trained, tmp_path):
    import tensorflow as tf
    tf1 = tf.compat.v1
    model_dir, _ = trained
    output = str(tmp_path / "export")
    zoo_run("export", NAME, "--model_dir", model_dir, "--output", output)
    info = _json(output, "export_info.json")
    assert info["hparams"] == _json(model_dir, "hparams.json")   # no other network's settings slipped in
    assert info["frozen_graph"]["input"]["shape"] == [1, 32, 32, 3]
    images = np.random.RandomState(0).normal(0, 50, [1, 32, 32, 3]).astype(np.float32)
    with tf.Graph().as_default(), tf1.Session() as sess:
        graph_def = tf1.GraphDef()
        with open(info["frozen_graph"]["path"], "rb") as f:
            graph_def.ParseFromString(f.read())
        frozen = sess.run(tf1.import_graph_def(graph_def, return_elements=["logits:0"], name="")[0],
                          {"input:0": images})
    with tf.Graph().as_default(), tf1.Session() as sess:
        meta = tf1.saved_model.loader.load(sess, ["serve"], info["saved_model"]["path"])
        signature = meta.signature_def["predict_images"]
        served = sess.run(signature.outputs["logits"].name, {signature.inputs["images"].name: images})
    assert frozen.shape == (1, 10) and np.allclose(frozen, served, atol=1e-4)


def test_perf_on_synthetic_data(tmp_path):
    report_path = str(tmp_path / "perf.json")
    zoo_run("perf", NAME, "--synthetic", "--set", "image_size=32", "--set", "num_classes=10", "--batch_size", "4",
            "--steps", "5", "--warmup", "1", "--json", report_path)
    report = _json(str(tmp_path), "perf.json")
    # 25,557,032 - 2048 * 990 classifier weights - 990 biases
    assert (report["params"], report["macs"], report["image_size"]) == (23528522, 83431424, 32)
    assert report["train_images_per_sec"] > 0 and report["infer_images_per_sec"] > 0


def test_uninstalling_the_example_leaves_zoo_run_and_shufflenet_working():
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    out = run(*pip, "uninstall", "-y", DISTRIBUTION)
    assert out.returncode == 0 and "Successfully uninstalled %s" % DISTRIBUTION in out.stdout, out.stderr
    try:
        listing = zoo_run("list")
        assert NAME not in listing and "shufflenetv1_g3" in listing and "BROKEN" not in listing
        assert "11 network(s) registered." in listing
        missing = run(ZOO_RUN, "describe", NAME)
        assert missing.returncode == 2 and "unknown model %r" % NAME in missing.stderr
        assert run(sys.executable, "-c", "import modelzoo_resnet", cwd=TEST_DIR).returncode == 1
        out = zoo_run("describe", "shufflenetv1_g3", "--set", "num_classes=10", "--image_size", "64")
        assert "trainable parameters  914,328" in out   # its graph builds, as before
    finally:
        out = run(*pip, "install", "-q", EXAMPLE)
    assert out.returncode == 0, out.stderr
    assert NAME in zoo_run("list")
