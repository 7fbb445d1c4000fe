"""The `input_fn` of an image classifier on TF-slim TFRecords, given the plugin's two image transforms.

Everything between the files and the batches is the same for every classifier and lives here:
the split's shards (`train-*-of-*` for TRAIN, `validation-*-of-*` otherwise), record parsing with
the label check, the sharded, shuffled, seeded `registry.data.pipeline`, and the padded eval pass.
A plugin brings only what makes its input its own:

    train_image(image_buffer, hparams, bbox, seed) -> float32 [S, S, 3]   random crop, flip, ...
    eval_image(image_buffer, hparams)              -> float32 [S, S, 3]   deterministic

(`image_buffer`: a scalar string tensor of encoded image bytes; `bbox`: the record's boxes,
float32 [1, N, 4]; `seed`: None or an int64 [2] stateless seed, see `registry.data.transforms`.)

Hparams read here (the engine's conventional keys): batch_size (per worker), num_classes,
label_offset (TF-slim ImageNet: 1), shuffle_buffer, seed (-1: unseeded), data_threads.
"""
from registry.data import pipeline, tfrecord
from registry.errors import DataError


def make_preprocess(is_training, hparams, train_image, eval_image):
    """preprocess(serialized_record, seed) -> (image, int32 label) for `registry.data.pipeline`."""
    num_classes = int(hparams["num_classes"])
    if num_classes < 1:
        raise DataError("num_classes must be >= 1, got %r" % hparams["num_classes"])
    label_offset = int(hparams["label_offset"])

    def preprocess(record, seed):
        parsed = tfrecord.parse_record(record, label_offset, num_classes, with_bbox=is_training)
        if is_training:
            image = train_image(parsed["image"], hparams, parsed["bbox"], seed)
        else:
            image = eval_image(parsed["image"], hparams)
        return image, parsed["label"]

    return preprocess


def input_fn(mode, hparams, data_path, input_context, train_image, eval_image):
    """tf.data.Dataset of (float32 images [B, S, S, 3], int32 labels [B]) from TF-slim TFRecords.

    TRAIN reads `train-*-of-*` and repeats forever; EVAL / PREDICT read `validation-*-of-*` once,
    the last batch padded with label -1 entries. B is hparams['batch_size'] per worker.
    Raises DataError for a missing or empty data path and for bad hparams.
    """
    is_training = str(mode).lower() == "train"
    files = tfrecord.list_split_files(data_path, tfrecord.mode_to_split(mode))
    seed = int(hparams.get("seed", -1))
    return pipeline.build_dataset(
        files, is_training, make_preprocess(is_training, hparams, train_image, eval_image),
        int(hparams["batch_size"]), shuffle_buffer=int(hparams["shuffle_buffer"]),
        seed=seed if seed >= 0 else None, input_context=input_context,
        num_parallel_calls=pipeline.map_parallelism(hparams.get("data_threads", 0)))
