"""Synthetic data for performance runs: one batch of random images and labels, made once on the
device's host memory and served again and again (no file reading, no decoding)."""
import tensorflow as tf

from registry.data.pipeline import num_batches


def synthetic_dataset(mode, hparams, batch_size=None):
    """(images float32 [batch, S, S, 3], labels int32 [batch] in [0, num_classes)) batches.

    TRAIN repeats forever; EVAL / PREDICT yield ceil(num_eval_images / batch_size) batches.
    Values: images ~ N(0, 1) (like normalised pixels), labels uniform; seeded by hparams['seed']
    when it is >= 0.
    """
    batch_size = int(batch_size or hparams["batch_size"])
    size = int(hparams["image_size"])
    num_classes = int(hparams["num_classes"])
    seed = hparams.get("seed", -1)
    seed = None if seed is None or seed < 0 else int(seed)

    def make(_):
        images = tf.random.normal([batch_size, size, size, 3], dtype=tf.float32, seed=seed)
        labels = tf.random.uniform([batch_size], 0, num_classes, dtype=tf.int32,
                                   seed=None if seed is None else seed + 1)
        return images, labels

    dataset = tf.data.Dataset.range(1).map(make).cache()
    if str(mode).lower() == "train":
        dataset = dataset.repeat()
    else:
        dataset = dataset.repeat(num_batches(int(hparams.get("num_eval_images", batch_size)), batch_size, False))
    return dataset.prefetch(1)
