"""Transfer learning: which checkpoint variables load into a model, and which must be skipped."""
import collections
import os
import re

import tensorflow as tf

from registry.errors import ZooError

tf1 = tf.compat.v1

WarmStart = collections.namedtuple("WarmStart", "checkpoint assignment skipped")
WarmStart.__doc__ = """`assignment` maps checkpoint names to model variable names (same name and shape);
`skipped` lists (model variable, reason) for everything else, e.g. a classifier of another size."""


def resolve_checkpoint(path):
    """A checkpoint prefix from a checkpoint prefix, one of its files (`.index`, `.data-*`) or a model dir. Raises a
    ZooError when there is none, or when the path is a file that is not a TensorFlow checkpoint."""
    if os.path.isdir(path):
        latest = tf1.train.latest_checkpoint(path)
        if not latest:
            raise ZooError("no checkpoint in directory %s (expected a 'checkpoint' file and model.ckpt-* files)"
                           % path)
        return latest
    prefix = re.sub(r"\.(index|data-\d+-of-\d+|meta)$", "", path)
    if prefix != path and tf1.train.checkpoint_exists(prefix):
        return prefix
    if not tf1.train.checkpoint_exists(path):
        raise ZooError("checkpoint %s not found: pass a model dir or a prefix such as model_dir/model.ckpt-1000"
                       % path)
    try:
        tf1.train.list_variables(path)
    except (tf.errors.OpError, ValueError) as err:
        raise ZooError("%s is not a TensorFlow checkpoint (%s): pass a model dir or a checkpoint prefix such as "
                       "model_dir/model.ckpt-1000" % (path, str(err).strip().splitlines()[0][:200]))
    return path


def model_variable_shapes(model, hparams):
    """{variable name: shape} of the network's variables (model only: no optimizer slots, no step)."""
    size = hparams["image_size"]
    with tf.Graph().as_default():
        model.build_model(tf1.placeholder(tf.float32, [1, size, size, 3]), True, hparams)
        return {v.op.name: v.shape.as_list() for v in tf1.global_variables()}


def checkpoint_misfits(model, hparams, checkpoint):
    """What keeps `checkpoint` from restoring the network's variables, as 'name: reason' strings (empty when
    it fits). Checked before a resume or an evaluation: TF 2.15's resource variables restore a tensor of
    another shape without a word (TF 1.15 fails with 'lhs shape= ... rhs shape='), so neither lane relies on it."""
    saved = {name: list(shape) for name, shape in tf1.train.list_variables(checkpoint)}
    misfits = []
    for name, shape in sorted(model_variable_shapes(model, hparams).items()):
        if name not in saved:
            misfits.append("%s: not in checkpoint" % name)
        elif saved[name] != shape:
            misfits.append("%s: shape %s in checkpoint, %s in model" % (name, saved[name], shape))
    return misfits


def misfit_summary(misfits):
    """The first three of checkpoint_misfits' strings, and how many more, for an error message."""
    return "; ".join(misfits[:3]) + ("; ... %d more" % (len(misfits) - 3) if len(misfits) > 3 else "")


def check_fits(model, hparams, checkpoint, use, name=None):
    """Raises a ZooError when `checkpoint` does not fit the network built with `hparams` (checkpoint_misfits):
    another network's or another num_classes' checkpoint would otherwise restore without a word on TF 2.x and give
    meaningless outputs. `use`: what the checkpoint was to be used for, e.g. "exported"; `name`: the checkpoint's
    name in messages (default `checkpoint`; a reader's pinned copy names the original)."""
    misfits = checkpoint_misfits(model, hparams, checkpoint)
    if misfits:
        raise ZooError("the checkpoint %s does not fit the network being %s (%s). Use the network name that trained "
                       "it, with its model dir's hparams.json (no --set of num_classes or the network)."
                       % (name or checkpoint, use, misfit_summary(misfits)))


def plan_warm_start(model, hparams, checkpoint_path):
    checkpoint = resolve_checkpoint(checkpoint_path)
    saved = {name: list(shape) for name, shape in tf1.train.list_variables(checkpoint)}
    assignment, skipped = {}, []
    for name, shape in sorted(model_variable_shapes(model, hparams).items()):
        if name not in saved:
            skipped.append((name, "not in checkpoint"))
        elif saved[name] != shape:
            skipped.append((name, "shape %s in checkpoint, %s in model" % (saved[name], shape)))
        else:
            assignment[name] = name
    if not assignment:
        raise ZooError("checkpoint %s has none of this model's variables: is it another network?" % checkpoint)
    return WarmStart(checkpoint, assignment, skipped)
