"""Foreign (PyTorch) weights -> a model dir that `zoo-run eval/predict/export` and
`train --warm_start_from` use as if the zoo had trained it.

The registry reads the file (`torch_checkpoint`, no torch, no code run); the plugin maps names and
layouts through its optional `convert_state_dict(state_dict, hparams)` (see `registry.spec`); the
result is checked against the variables of the network as actually built, then written as
`MODEL_DIR/model.ckpt-0` with `hparams.json` (the defaults plus the weights' own convention: number
of classes, input channel order and normalisation, eval resize), `labels.txt` for ImageNet's 1000
classes, and `import_report.json` (source file, its SHA-256, format, counts).
"""
import collections
import hashlib
import json
import os
import zipfile

from registry import hparams as hp
from registry.deploy import labels as labels_mod
from registry.deploy import torch_checkpoint
from registry.engine import results
from registry.errors import ZooError

IMPORT_REPORT = "import_report.json"
CHECKPOINT_PREFIX = "model.ckpt"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(model, source, hparams=None, key=None, log=None):
    """(variables {TF name: array}, effective hparams, state_dict, the converter's hparam overrides) of
    `source` for `model`; `key` names the checkpoint entry holding the weights (default: found, see
    torch_checkpoint.find_weights)."""
    converter = getattr(model, "convert_state_dict", None)
    if not callable(converter):
        raise ZooError("%r cannot import foreign weights: its plugin publishes no convert_state_dict" % (model,))
    state, where = torch_checkpoint.load_weights(source, key)
    if log:
        log("Weights of %s: %d tensors at %s" % (source, len(state), where))
    hparams = dict(hparams or model.default_hparams())
    try:
        variables, overrides = converter(state, hparams)
    except ZooError as err:
        raise ZooError("cannot import %s: %s" % (source, err))
    hparams = hp.apply_overrides(hparams, overrides, "the imported weights' convention")
    return variables, hparams, state, overrides


def check_against_graph(model, variables, hparams, source):
    """Every variable of the built network is provided with its shape, and nothing else."""
    from registry.engine.warm_start import model_variable_shapes
    shapes = model_variable_shapes(model, hparams)
    for name in sorted(shapes):
        if name not in variables:
            raise ZooError("cannot import %s: the converted weights lack variable %s %s of the built network"
                           % (source, name, shapes[name]))
        if list(variables[name].shape) != list(shapes[name]):
            raise ZooError("cannot import %s: variable %s is %s after conversion, the built network has %s"
                           % (source, name, list(variables[name].shape), shapes[name]))
    extra = sorted(set(variables) - set(shapes))
    if extra:
        raise ZooError("cannot import %s: the converted weights have %s, which the built network lacks"
                       % (source, extra[0]))


def write_checkpoint(model, variables, hparams, model_dir):
    """Builds the network, loads `variables` into it and saves MODEL_DIR/model.ckpt-0 (with global_step 0)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    size = hparams["image_size"]
    with tf.Graph().as_default():
        model.build_model(tf1.placeholder(tf.float32, [1, size, size, 3]), False, hparams)
        tf1.train.get_or_create_global_step()
        graph_vars = {v.op.name: v for v in tf1.global_variables()}
        with tf1.Session() as sess:
            # one run: every variable's initializer fed its value (a run per variable costs ~0.1 s each)
            sess.run([v.initializer for v in graph_vars.values()],
                     {graph_vars[name].initializer.inputs[1]: value for name, value in variables.items()})
            saver = tf1.train.Saver(sharded=False)
            return saver.save(sess, os.path.join(model_dir, CHECKPOINT_PREFIX), global_step=0,
                              write_meta_graph=False)


def import_weights(model, source, model_dir, hparams=None, log=print, key=None):
    """Imports `source` into the new model dir `model_dir`; returns the import report (a dict). `key`: the
    checkpoint entry holding the weights (default: found where common tools put them)."""
    import tensorflow as tf
    if os.path.isdir(model_dir) and tf.compat.v1.train.latest_checkpoint(model_dir):
        raise ZooError("model dir %s already has a checkpoint; import into a new --model_dir" % model_dir)
    variables, hparams, state, overrides = convert(model, source, hparams, key, log)
    check_against_graph(model, variables, hparams, source)
    os.makedirs(model_dir, exist_ok=True)
    checkpoint = write_checkpoint(model, variables, hparams, model_dir)
    results.write_hparams(model_dir, hparams)
    label_file = None
    if hparams.get("num_classes") == labels_mod.IMAGENET_NUM_CLASSES:
        label_file = labels_mod.write_imagenet_labels(model_dir, hparams.get("label_offset", 1))
    ignored = len(state) - len(variables)
    report = collections.OrderedDict([
        ("source", os.path.abspath(source)),
        ("sha256", _sha256(source)),
        ("format", "zip" if zipfile.is_zipfile(source) else "legacy"),
        ("tensors_in_file", len(state)),
        ("variables_written", len(variables)),
        ("parameters", int(sum(v.size for v in variables.values()))),
        ("tensors_not_needed", ignored),
        ("checkpoint", checkpoint),
        ("num_classes", hparams["num_classes"]),
        # what the plugin's converter declared of the weights' input, and the size they are evaluated at
        ("input_convention", {k: hparams[k] for k in list(overrides) + ["image_size"]
                              if k != "num_classes" and k in hparams}),
        ("labels", label_file),
    ])
    with open(os.path.join(model_dir, IMPORT_REPORT), "w") as f:
        json.dump(report, f, indent=2)
    log("Imported %s (%s format, %d tensors) into %s: %d variables, %d parameters, %d classes"
        % (source, report["format"], len(state), checkpoint, len(variables), report["parameters"],
           hparams["num_classes"]))
    if ignored:
        log("  %d tensor(s) of the file not needed (e.g. training counters)" % ignored)
    log("  input convention recorded in %s: %s" % (
        os.path.join(model_dir, results.HPARAMS_FILE),
        ", ".join("%s=%s" % kv for kv in report["input_convention"].items())))
    return report

