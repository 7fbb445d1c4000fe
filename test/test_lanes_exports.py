"""Issue 19, item 5: exports cross the TensorFlow lanes. What `zoo-run export --format all` writes on either lane
(SavedModel with serving_default and predict_images, frozen graph, model.onnx) loads and serves on the other
lane's TensorFlow 1.15 / 2.21 and onnxruntime with the outputs it gives where it was made, and the export says
which TensorFlow reads it. Needs both lanes' venvs (.venv/tf1 and .venv/tf2, as `make install STACK=...` makes
them); each lane's suite runs both directions (CI: each direction once, test/cross_lane.py)."""
import json
import os
import subprocess

import numpy as np
import pytest

from deploy_helpers import reference_logits
from cross_lane import REPO, needs_other_lane, run_direction, venv_bin

HELPER = os.path.join(REPO, "test", "lane_exports.py")
PYTHON = {lane: venv_bin(lane, "python") for lane in ("tf1", "tf2")}
pytestmark = needs_other_lane


def _helper(lane, *args):
    out = subprocess.run([PYTHON[lane], HELPER] + [str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=900)
    assert out.returncode == 0, "lane %s: %s\n%s" % (lane, " ".join(map(str, args)), out.stdout[-4000:])
    return out.stdout


@pytest.mark.parametrize("maker", ["tf1", "tf2"])
def test_every_export_of_one_lane_serves_on_the_other_with_equal_outputs(tmp_path, maker):
    run_direction(maker)
    reader = "tf2" if maker == "tf1" else "tf1"
    printed = _helper(maker, "make", tmp_path)
    export = tmp_path / "export"
    for lane in (maker, reader):
        _helper(lane, "serve", export, tmp_path / ("%s.npz" % lane))
    made, served = (np.load(str(tmp_path / ("%s.npz" % lane))) for lane in (maker, reader))
    assert str(made["tensorflow"])[0] == maker[2] and str(served["tensorflow"])[0] == reader[2]
    keys = [k for k in made.files if k != "tensorflow" and not k.startswith("tf2_load/")]
    assert len(keys) == 10 and set(keys) <= set(served.files)
    for key in keys:
        if made[key].dtype.kind == "f":
            assert np.abs(served[key] - made[key]).max() <= 1e-4, key
        else:
            assert (served[key] == made[key]).all(), key
    # and they are the network's outputs: the PyTorch reference's logits on the reference inputs
    for key in ("predict_images/logits", "frozen_graph/logits", "onnx/logits"):
        assert np.abs(served[key] - reference_logits()).max() <= 1e-4, key
    assert (served["serving_default/classes"] == served["serving_default/probabilities"].argmax(1)).all()
    assert served["serving_default/probabilities"].shape == (3, 10)
    tf2 = served if reader == "tf2" else made                        # TF 2's tf.saved_model.load too
    assert np.abs(tf2["tf2_load/serving_default/probabilities"] - made["serving_default/probabilities"]).max() <= 1e-5

    # the export says which TensorFlow reads each artifact, and prints atc for the frozen graph TF 1.15 reads
    info = json.load(open(str(export / "export_info.json")))
    assert info["saved_model"]["readable_by"] == info["frozen_graph"]["readable_by"] == "TensorFlow 1.15 and later"
    assert "saved_model  (signatures: serving_default, predict_images; readable by TensorFlow 1.15 and later)" \
        in printed.replace("SavedModel   %s/" % export, "saved_model  ")
    assert "Ascend: atc --model=%s --framework=3" % (export / "frozen_graph.pb") in printed
