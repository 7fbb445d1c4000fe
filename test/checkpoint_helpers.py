"""Checks on checkpoints shared by the warm-start tests."""
import tensorflow as tf


def assert_backbone_warm_started(source, target):
    """Every ShuffleNet backbone weight of `target`'s checkpoint equals `source`'s (the classifier, optimizer slots
    and moving batch-norm statistics excepted): what a warm start must leave after a step at a learning rate too
    small to change a float32 weight (1e-30)."""
    before, after = tf.train.load_checkpoint(str(source)), tf.train.load_checkpoint(str(target))
    loaded = [name for name, _ in tf.train.list_variables(str(source)) if name.startswith("shufflenet_v1/")
              and "Momentum" not in name and "classifier" not in name and "moving_" not in name]
    assert len(loaded) > 100
    for name in loaded:
        assert (before.get_tensor(name) == after.get_tensor(name)).all(), name
