"""Shared by the test_deploy* files: the tiny reference variant of test/data and its import."""
import json
import os

import numpy as np

from modelzoo_shufflenet import models
from registry import cli, discovery

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
TINY_NAME = "shufflenetv1_tiny_g3"
TINY = json.load(open(os.path.join(DATA, "shufflenetv1_tiny_g3.json")))
ZIP_FILE = os.path.join(DATA, "shufflenetv1_tiny_g3_zip.pth.tar")
LEGACY_FILE = os.path.join(DATA, "shufflenetv1_tiny_g3_legacy.pth.tar")
FULL_SIZE_SHAPES = os.path.join(DATA, "shufflenetv1_g3_1.0x_state_dict_shapes.json")
TOLERANCE = 1e-4  # max abs logit difference allowed (float32)


def tiny_model():
    """The tiny-width g3 variant the reference files were made with (not a registered network)."""
    return models.ShuffleNetV1Model(TINY["groups"], "1.0x", channels=tuple(TINY["channels"]))


def reference_inputs():
    return np.load(os.path.join(DATA, "shufflenetv1_tiny_g3_inputs.npy"))


def reference_logits():
    return np.load(os.path.join(DATA, "shufflenetv1_tiny_g3_logits.npy"))


def use_tiny_model(monkeypatch):
    """`zoo-run ... shufflenetv1_tiny_g3` resolves to the tiny variant (others as usual)."""
    real = discovery.get_model
    model = tiny_model()
    monkeypatch.setattr(discovery, "get_model", lambda name: model if name == TINY_NAME else real(name))
    return model


def zoo_run(*argv):
    """`zoo-run ARGV` in this process; returns its exit code."""
    return cli.main([str(a) for a in argv])


def import_tiny(monkeypatch, model_dir, source=ZIP_FILE):
    assert zoo_run("import-weights", TINY_NAME, "--from", source, "--model_dir", model_dir,
                   "--set", "image_size=%d" % TINY["image_size"]) == 0
    return json.load(open(os.path.join(str(model_dir), "hparams.json")))


def estimator_logits(model, hparams, model_dir, images):
    """Logits of the model dir's checkpoint through the engine's estimator (PREDICT mode)."""
    import tensorflow as tf
    from registry.engine import runner
    estimator = runner.make_estimator(model, hparams, str(model_dir))
    outputs = estimator.predict(lambda: tf.data.Dataset.from_tensor_slices(images).batch(len(images)),
                                yield_single_examples=False)
    return next(iter(outputs))["logits"]
