"""`zoo-run predict` and `zoo-run export` on a model dir made by `zoo-run import-weights` from the
committed tiny reference checkpoint: the SavedModel's two signatures and the frozen graph give the
checkpoint's logits (and so the PyTorch reference's), predict ranks and names classes, and the
imported input convention (BGR, 0..255) is what every path applies."""
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from deploy_helpers import (TINY, TINY_NAME, TOLERANCE, ZIP_FILE, engine_logits, reference_inputs,
                            reference_logits, tiny_model, use_tiny_model, zoo_run)
from registry.data.demo import demo_data_path
from registry.deploy import export as export_mod, labels, predict
from registry.deploy.import_weights import import_weights

tf1 = tf.compat.v1
BATCH = 3  # the frozen graph's fixed batch: the committed inputs


def _image_bytes(array, fmt):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """(model dir imported from the zip file, export dir written by `zoo-run export`, image files)."""
    root = tmp_path_factory.mktemp("deploy")
    model_dir, output = root / "imported", root / "export"
    model = tiny_model()
    import_weights(model, ZIP_FILE, str(model_dir), dict(model.default_hparams(), image_size=TINY["image_size"]),
                   log=lambda *a: None)
    rng = np.random.RandomState(0)
    images = {}
    for name, fmt, shape in (("photo.png", "PNG", (80, 100, 3)), ("photo.jpg", "JPEG", (120, 90, 3))):
        images[name] = root / name
        images[name].write_bytes(_image_bytes(rng.randint(0, 256, shape).astype(np.uint8), fmt))
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_tiny_model(monkeypatch)
        assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", output,
                       "--batch_size", BATCH) == 0
    return model_dir, output, images


@pytest.fixture(scope="module")
def checkpoint_logits(deployed):
    """The imported checkpoint's logits on the committed inputs, through the engine's inference graph."""
    model_dir = deployed[0]
    return engine_logits(tiny_model(), _params(model_dir), model_dir, reference_inputs())


def _params(model_dir):
    return json.load(open(str(model_dir / "hparams.json")))


def _saved_model_run(output, calls):
    """{signature: outputs} of one loaded SavedModel, for `calls` {signature: feeds}; and its signatures."""
    with tf.Graph().as_default(), tf1.Session() as sess:
        meta = tf1.saved_model.loader.load(sess, ["serve"], str(output / export_mod.SAVED_MODEL_DIR))
        outputs = {}
        for signature, feeds in calls.items():
            sig = meta.signature_def[signature]
            fetches = {k: v.name for k, v in sig.outputs.items()}
            outputs[signature] = sess.run(fetches, {sig.inputs[k].name: v for k, v in feeds.items()})
        return outputs, set(meta.signature_def)


def _preprocessed(model, params, data):
    with tf.Graph().as_default(), tf1.Session() as sess:
        return sess.run(model.preprocess_image(tf.constant(data), params))


def test_saved_model_signatures_give_the_checkpoint_logits_and_decode_images_like_predict(
        deployed, checkpoint_logits):
    model_dir, output, images = deployed
    model, params = tiny_model(), _params(model_dir)
    data = [images[name].read_bytes() for name in ("photo.png", "photo.jpg")]
    preprocessed = np.stack([_preprocessed(model, params, d) for d in data])
    outputs, signatures = _saved_model_run(output, {
        "predict_images": {"images": np.concatenate([reference_inputs(), preprocessed])},
        "serving_default": {"image_bytes": np.array(data, dtype=object)}})
    assert signatures == {"serving_default", "predict_images"}
    checkpoint = checkpoint_logits
    out = {k: v[:len(checkpoint)] for k, v in outputs["predict_images"].items()}
    diff = np.abs(out["logits"] - checkpoint).max()
    print("SavedModel predict_images vs checkpoint: max abs logit difference %.2e; vs PyTorch reference %.2e"
          % (diff, np.abs(out["logits"] - reference_logits()).max()))
    assert diff <= TOLERANCE
    assert np.abs(out["logits"] - reference_logits()).max() <= TOLERANCE
    assert np.allclose(out["probabilities"].sum(1), 1.0, atol=1e-5)
    assert (out["classes"] == checkpoint.argmax(1)).all()

    # serving_default (encoded bytes) == predict_images on the plugin's preprocessing of the same bytes
    served, direct = outputs["serving_default"], outputs["predict_images"]
    assert np.abs(served["probabilities"] - direct["probabilities"][len(checkpoint):]).max() <= 1e-5
    assert (served["classes"] == direct["classes"][len(checkpoint):]).all()
    # ... and == `zoo-run predict`
    results, _, _ = predict.predict(model, params, str(model_dir), [str(images["photo.png"]), str(images["photo.jpg"])])
    for result, probabilities in zip(results, served["probabilities"]):
        top = result["predictions"][0]
        assert top["class"] == probabilities.argmax()
        assert abs(top["probability"] - probabilities.max()) <= 1e-5
    assert "rank" in predict.format_table(results) and str(images["photo.jpg"]) in predict.format_table(results)


def test_frozen_graph_has_fixed_named_nodes_and_the_checkpoint_logits(deployed, checkpoint_logits):
    model_dir, output, _ = deployed
    info = json.load(open(str(output / export_mod.EXPORT_INFO)))
    assert info["frozen_graph"]["input"]["shape"] == [BATCH, TINY["image_size"], TINY["image_size"], 3]
    assert info["frozen_graph"]["atc_input_shape"] == "input:3,64,64,3"
    graph_def = tf1.GraphDef()
    graph_def.ParseFromString((output / export_mod.FROZEN_GRAPH).read_bytes())
    nodes = {n.name: n for n in graph_def.node}
    assert {"input", "logits", "probabilities", "classes"} <= set(nodes)
    assert not [n.name for n in graph_def.node if n.op in ("VariableV2", "VarHandleOp", "Assign")]
    assert [d.size for d in nodes["input"].attr["shape"].shape.dim] == [BATCH, 64, 64, 3]
    with tf.Graph().as_default():
        tf.import_graph_def(graph_def, name="")
        with tf1.Session() as sess:
            logits = sess.run("logits:0", {"input:0": reference_inputs()})
    diff = np.abs(logits - checkpoint_logits).max()
    print("frozen graph vs checkpoint: max abs logit difference %.2e; vs PyTorch reference %.2e"
          % (diff, np.abs(logits - reference_logits()).max()))
    assert diff <= TOLERANCE and np.abs(logits - reference_logits()).max() <= TOLERANCE


def test_the_imported_input_convention_is_applied(deployed):
    """The reference's BGR 0..255 without mean/std, as recorded in the imported model dir."""
    model_dir, _, _ = deployed
    model, params = tiny_model(), _params(model_dir)
    solid = np.zeros((70, 90, 3), np.uint8) + np.array([10, 100, 200], np.uint8)  # RGB
    image = _preprocessed(model, params, _image_bytes(solid, "PNG"))
    assert image.shape == (64, 64, 3)
    assert np.allclose(image, [200, 100, 10], atol=1e-3)  # BGR, unnormalised
    default = _preprocessed(model, dict(params, input_channel_order="rgb", input_normalization="imagenet"),
                            _image_bytes(solid, "PNG"))
    assert np.allclose(default[0, 0], (np.array([10, 100, 200]) / 255.0 - [0.485, 0.456, 0.406])
                       / [0.229, 0.224, 0.225], atol=1e-4)


def test_predict_prints_top5_table_and_json_with_class_names(deployed, monkeypatch, capsys):
    model_dir, _, images = deployed
    use_tiny_model(monkeypatch)
    paths = [images["photo.png"], images["photo.jpg"]]
    assert zoo_run("predict", TINY_NAME, "--model_dir", model_dir, "--labels", demo_data_path(), "--json",
                   *paths) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == os.path.join(demo_data_path(), "labels.txt")
    assert [r["format"] for r in report["results"]] == ["PNG", "JPEG"]
    for result in report["results"]:
        predictions = result["predictions"]
        assert [p["rank"] for p in predictions] == [1, 2, 3, 4, 5]
        probabilities = [p["probability"] for p in predictions]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
        assert all(p["name"] == str(p["class"]) for p in predictions)  # the digits' labels.txt: 1:0 .. 10:9
        assert all(p["label"] == p["class"] + 1 for p in predictions)  # the id in labels.txt (label_offset 1)


def test_predict_refuses_files_that_are_not_images(deployed, monkeypatch, capsys, tmp_path):
    model_dir, _, images = deployed
    use_tiny_model(monkeypatch)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert zoo_run("predict", TINY_NAME, "--model_dir", model_dir, images["photo.png"], text) == 2
    assert "notes.txt is not an image: JPEG, PNG, GIF, BMP, TIFF, WebP expected" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    assert zoo_run("predict", TINY_NAME, "--model_dir", model_dir, broken) == 2
    assert "broken.jpg could not be decoded as an image" in capsys.readouterr().err


def test_imagenet_class_names_are_bundled(tmp_path):
    names, source = labels.class_names(1000)
    assert len(names) == 1000 and names[0] == "tench, Tinca tinca (n01440764)" and "bundled" in source
    assert names[999].endswith("(n15075141)")
    labels.write_imagenet_labels(str(tmp_path))  # what import-weights writes for 1000 classes: 1:n01440764 ...
    names, source = labels.class_names(1000, 1, model_dir=str(tmp_path))
    assert names[1] == "goldfish, Carassius auratus (n01443537)" and source.endswith("labels.txt")


def test_export_refuses_to_overwrite_and_eval_uses_the_imported_dir(deployed, monkeypatch, capsys):
    model_dir, output, _ = deployed
    use_tiny_model(monkeypatch)
    assert zoo_run("export", TINY_NAME, "--model_dir", model_dir, "--output", output) == 2
    assert "already exists" in capsys.readouterr().err
    from registry.engine import runner
    record = runner.evaluate(tiny_model(), _params(model_dir), demo_data_path(), str(model_dir),
                             log=lambda *a: None, history=False)
    assert record["num_images"] == 360 and record["global_step"] == 0
