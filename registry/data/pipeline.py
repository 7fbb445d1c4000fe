"""A generic tf.data pipeline over TFRecord files, built the way the fastest TF1 pipelines are.

TRAIN: files sharded per worker, shuffled and repeated -> parallel interleave of TFRecordDataset
-> shuffle buffer -> parallel map of the caller's `preprocess(record, seed)` -> batch with
drop_remainder (static shapes) -> prefetch. Infinite.

EVAL: files sharded per worker, in order -> parallel interleave (deterministic) -> parallel map
-> padded to a whole number of batches with entries labelled -1 -> batch -> prefetch. One pass;
every record of the worker's shard appears exactly once; the -1 entries are ignored by the
engine's metrics.

Seeding: with `seed` (an int >= 0) the whole stream is reproducible: file and record shuffles are
seeded, ordering is deterministic, and each record's `preprocess` receives its own stateless seed
(an int64 [2] tensor: [seed, position in the stream]). Unseeded (`seed=None`), `preprocess` gets
`None` and may use stateful random ops, and ordering is relaxed for speed.
"""
import os

import tensorflow as tf

from registry import tf_compat

from registry.errors import DataError

AUTOTUNE = tf.data.experimental.AUTOTUNE
PAD_LABEL = -1
READ_BUFFER_BYTES = 8 * 1024 * 1024


def worker_shard(input_context=None):
    """(number of input pipelines, this one's index) from `input_context` (tf.distribute.InputContext),
    else (1, 0). The pipeline reads no environment variable: tf.distribute gives its workers a context,
    and the runner gives one to the Ascend launcher's ranks (registry.engine.environment)."""
    if input_context is None:
        return 1, 0
    return int(input_context.num_input_pipelines), int(input_context.input_pipeline_id)


def num_batches(num_examples, batch_size, is_training):
    """Batches per pass over `num_examples`: floor for TRAIN (drop_remainder), ceil for EVAL (padded)."""
    if is_training:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def _plain(fn):
    """Graph functions are traced as written (no AutoGraph rewrite of Python control flow)."""
    return tf.autograph.experimental.do_not_convert(fn)


def _static_shape(dataset):
    shapes = tf.compat.v1.data.get_output_shapes(dataset)
    types = tf.compat.v1.data.get_output_types(dataset)
    if not isinstance(shapes, tuple) or len(shapes) != 2:
        raise DataError("preprocess must return (image, label); it returned %r" % (shapes,))
    if not shapes[0].is_fully_defined():
        raise DataError("preprocess returned images of shape %s; EVAL batches need a static shape "
                        "(resize / crop to a fixed size)" % shapes[0])
    return shapes, types


def usable_cores():
    """The CPU cores this process may run on (its affinity mask: taskset / cgroup cpusets count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not Linux
        return os.cpu_count() or 1


def map_parallelism(threads=0):
    """Parallel preprocess calls for `threads`: 0 -> one per usable core, -1 -> tf.data AUTOTUNE, N -> N.

    One per core is the default because on a few cores TF 1.15's AUTOTUNE settles on a worse
    value: the bench/input_pipeline.py train pipeline on 2 cores ran ~9% faster with 2 calls
    (975 vs 895 images/sec, mean of 4 alternating rounds)."""
    threads = int(threads)
    if threads < -1:
        raise DataError("data_threads must be 0 (one per usable core), -1 (tf.data AUTOTUNE) or a "
                        "positive number of parallel preprocessing calls; got %d" % threads)
    if threads == 0:
        return usable_cores()
    return AUTOTUNE if threads == -1 else threads


def build_dataset(files, is_training, preprocess, batch_size, shuffle_buffer=10000, seed=None,
                  input_context=None, num_parallel_calls=None, cycle_length=8,
                  private_threadpool_size=None, prefetch_batches=AUTOTUNE):
    """A tf.data.Dataset of (images [batch, ...], labels [batch]) batches from TFRecord `files`.

    preprocess(serialized_record, seed) -> (image, int32 label); `seed` is None (unseeded) or an
    int64 [2] tensor unique to the record's position in the stream (see the module doc).
    `batch_size` is per worker. `num_parallel_calls` None runs one preprocess call per usable core.
    Returns an infinite dataset for training, one padded pass for eval.
    """
    if num_parallel_calls is None:
        num_parallel_calls = usable_cores()
    files = list(files)
    if not files:
        raise DataError("no input files given to the pipeline; list them with "
                        "registry.data.tfrecord.list_split_files(data_path, split)")
    if batch_size < 1:
        raise DataError("batch_size must be >= 1, got %d" % batch_size)
    seeded = seed is not None and seed >= 0
    seed = int(seed) if seeded else None
    num_workers, worker = worker_shard(input_context)

    # Shard by file when every worker gets at least one file, else by record (in a fixed order).
    shard_records = num_workers > 1 and len(files) < num_workers
    if num_workers > 1 and not shard_records:
        files = files[worker::num_workers]

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(files, dtype=tf.string))
    if is_training and not shard_records:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    # The legacy parallel_interleave: TF 1.15's Dataset.interleave(num_parallel_calls=...) can crash
    # (SIGSEGV in the autotuning model's RemoveNode) when a session closes an unfinished iterator.
    deterministic = seeded or not is_training or shard_records
    dataset = dataset.apply(tf.data.experimental.parallel_interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES),
        cycle_length=max(1, min(cycle_length, len(files))), block_length=1, sloppy=not deterministic))
    if shard_records:
        # Every worker reads the files in the same order and keeps its share of each pass: the
        # repeat comes after the shard, or an odd record count would rotate the shares.
        dataset = dataset.shard(num_workers, worker)
        if is_training:
            dataset = dataset.repeat()
    if is_training and shuffle_buffer > 1:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)

    if is_training and seeded:
        positions = tf.data.experimental.Counter(dtype=tf.int64)
        dataset = tf.data.Dataset.zip((dataset, positions))
        dataset = dataset.map(
            _plain(lambda record, position: preprocess(record, tf.stack([tf.constant(seed, tf.int64), position]))),
            num_parallel_calls=num_parallel_calls)
    else:
        dataset = dataset.map(_plain(lambda record: preprocess(record, None)), num_parallel_calls=num_parallel_calls)

    if not is_training:
        shapes, types = _static_shape(dataset)
        if batch_size > 1:
            pad = (tf.zeros(shapes[0], types[0]), tf.constant(PAD_LABEL, types[1]))
            dataset = dataset.concatenate(tf.data.Dataset.from_tensors(pad).repeat(batch_size - 1))
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.prefetch(prefetch_batches)

    # One image per thread: the map already runs images in parallel, and splitting each small op
    # over the intra-op pool as well only adds synchronisation (TF official models do the same).
    return dataset.with_options(tf_compat.data_options(deterministic, max_intra_op_parallelism=1,
                                                       private_threadpool_size=private_threadpool_size))
