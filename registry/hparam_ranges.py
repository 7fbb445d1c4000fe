"""The values each hparam may take, checked before anything runs.

`ENGINE_RANGES` holds the keys the engine and `registry.data` read (registry/spec.py lists them); a plugin adds
its own keys through the optional `hparam_ranges()` of the contract. `hparams.resolve` checks the effective set
with `problems()`, so an out-of-range value from any source (defaults, a model dir's hparams.json, a preset, a
YAML file, `--set`) is refused naming the key, the value, the range and where the value came from.
"""
import math

LR_SCHEDULES = ("cosine", "linear", "constant")
DCT_METHODS = ("INTEGER_FAST", "INTEGER_ACCURATE")   # JPEG decoding (registry.data.transforms)


class Range(object):
    """Numbers between `low` and `high` (None: unbounded), each end included or not; floats must be finite."""

    def __init__(self, low=None, high=None, low_included=True, high_included=True, note=""):
        self.low, self.high = low, high
        self.low_included, self.high_included = low_included, high_included
        self.note = note

    def problem(self, value):
        """None when `value` is in the range, else the range as text ('must be > 0')."""
        if isinstance(value, (list, tuple)):
            bad = [v for v in value if self.problem(v)]
            return "must each be %s" % self.text()[len("must be "):] if bad else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None                      # types are hparams.coerce's to check
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number " + self.text()[len("must be "):]
        if self.low is not None and (value < self.low or (value == self.low and not self.low_included)):
            return self.text()
        if self.high is not None and (value > self.high or (value == self.high and not self.high_included)):
            return self.text()
        return None

    def text(self):
        if self.low is not None and self.high is not None:
            return "must be in %s%r, %r%s" % ("[" if self.low_included else "(", self.low, self.high,
                                              "]" if self.high_included else ")")
        if self.low is not None:
            return "must be %s %r" % (">=" if self.low_included else ">", self.low)
        return "must be %s %r" % ("<=" if self.high_included else "<", self.high)


class OneOf(object):
    """One of a fixed set of values."""

    def __init__(self, values, note=""):
        self.values, self.note = tuple(values), note

    def problem(self, value):
        return None if value in self.values else self.text()

    def text(self):
        return "must be one of %s" % ", ".join(map(str, self.values))


POSITIVE_INT = Range(1)
ENGINE_RANGES = {
    "batch_size": Range(1, note="images per device"),
    "base_batch_size": Range(1),
    "learning_rate": Range(0, low_included=False),
    "epochs": Range(0, low_included=False),
    "warmup_epochs": Range(0),
    "momentum": Range(0, 1, high_included=False),
    "weight_decay": Range(0),
    "label_smoothing": Range(0, 1, high_included=False),
    "lr_schedule": OneOf(LR_SCHEDULES),
    "eval_every_epochs": Range(0, note="0: at the end only"),
    "save_checkpoints_steps": Range(1),
    "keep_checkpoint_max": Range(0, note="0 keeps every checkpoint"),
    "seed": Range(-1, note="-1: unseeded"),
    "num_classes": Range(1),
    "image_size": Range(1),
    "num_train_images": Range(1),
    "num_eval_images": Range(1),
    "label_offset": Range(0),
    "shuffle_buffer": Range(0, note="0 or 1: no shuffling"),
    "data_threads": Range(-1, note="0: one per usable core, -1: tf.data AUTOTUNE"),
    "color_jitter": Range(0, 1, note="torchvision's ColorJitter strength (factors in [1-s, 1+s]); 0: off"),
    "train_dct_method": OneOf(DCT_METHODS, note="INTEGER_ACCURATE decodes JPEGs as Pillow does"),
    "bn_recalibration_epochs": Range(0, note="0: no BN recalibration pass after the schedule"),
}


def problems(hparams, plugin_ranges=None, origins=None):
    """Every out-of-range value of `hparams`, as 'learning_rate must be > 0, got -0.02 (from --set)' lines, in key
    order. `plugin_ranges`: the plugin's {key: Range or OneOf}; `origins`: {key: where its value came from}."""
    ranges = dict(ENGINE_RANGES, **(plugin_ranges or {}))
    found = [(key, ranges[key].problem(hparams[key]), ranges[key].note) for key in sorted(hparams) if key in ranges]
    found = [item for item in found if item[1]]
    origins = origins or {}
    return ["%s %s, got %r%s%s" % (key, text, hparams[key], " (from %s)" % origins[key] if key in origins else "",
                                   "; %s" % note if note else "") for key, text, note in found]
