"""Shared by the test_deploy* files: the tiny reference variant of test/data and its import."""
import io
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


def engine_logits(model, hparams, model_dir, images):
    """Logits of the model dir's latest checkpoint on `images`, through the engine's inference graph."""
    import tensorflow as tf
    from registry.engine import graph
    tf1 = tf.compat.v1
    with tf.Graph().as_default():
        logits = graph.logits(model, tf.constant(images), False, hparams)
        with tf1.Session() as session:
            tf1.train.Saver().restore(session, tf1.train.latest_checkpoint(str(model_dir)))
            return session.run(logits)


class Tensor(object):
    """A numpy array that `torch_save` writes as a torch tensor."""

    def __init__(self, array):
        self.array = np.require(array, requirements="C")


def torch_save(path, obj, extra_modules=()):
    """Writes `obj` as torch.save's zip layout does, without torch: numpy arrays and `Tensor`s become tensors
    (through stand-in `torch` modules that exist only while pickling). `extra_modules`: modules of classes
    in `obj` to register under their names while pickling (e.g. a fake model class)."""
    import collections
    import pickle
    import sys
    import types
    import zipfile
    from unittest import mock

    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {}
    for dtype, name in (("float32", "FloatStorage"), ("int64", "LongStorage")):
        storage_types[dtype] = type(name, (), {"__module__": "torch"})
        setattr(torch, name, storage_types[dtype])
    storages = []

    class Storage(object):
        def __init__(self, array):
            self.array, self.key = array, str(len(storages))
            storages.append(self)

    class PendingTensor(object):
        def __init__(self, array):
            self.array = array

        def __reduce__(self):
            stride = tuple(s // self.array.itemsize for s in self.array.strides)
            return _rebuild_tensor_v2, (Storage(self.array), 0, self.array.shape, stride, False,
                                        collections.OrderedDict())

    def convert(value):
        if isinstance(value, (np.ndarray, Tensor)):
            return PendingTensor(np.require(getattr(value, "array", value), requirements="C"))
        if isinstance(value, dict):
            return type(value)((k, convert(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        if hasattr(value, "__dict__") and not isinstance(value, type):
            value.__dict__.update({k: convert(v) for k, v in value.__dict__.items()})
        return value

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", storage_types[str(obj.array.dtype)], obj.key, "cpu", obj.array.size)
            return None

    buffer = io.BytesIO()
    modules = dict({"torch": torch, "torch._utils": utils}, **{m.__name__: m for m in extra_modules})
    with mock.patch.dict(sys.modules, modules):
        Pickler(buffer, protocol=2).dump(convert(obj))
    with zipfile.ZipFile(str(path), "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr("archive/data/%s" % storage.key, storage.array.tobytes())
    return path
