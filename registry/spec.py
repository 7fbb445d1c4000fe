"""The plugin contract, and the check that says exactly how an object breaks it.

An entry point in the `modelzoo.models` group resolves to an object exposing:

    build_model(images, is_training, hparams) -> logits     builds the network in the current graph
    input_fn(mode, hparams, data_path, input_context=None)  -> tf.data.Dataset of (images, labels),
                                                             labels 0-based int32
    default_hparams() -> dict                                the network's reference recipe; it holds at
                                                             least REQUIRED_HPARAMS (the engine reads them)
    level      mapping of modelzoo_level.txt statuses (FuncStatus, PerfStatus, PrecisionStatus, ...)
    metadata   mapping of descriptive facts; `description` is required, `paper`, `params`, `macs`,
               `reference_top1`, ... are shown when present
    presets    (optional) mapping: preset name -> hparam overrides
    preprocess_image(image_bytes, hparams) -> float32 [S, S, 3]
               (optional) the eval transform of one encoded image; `zoo-run predict` and the
               serving signature of `zoo-run export` need it
    input_convention_hparams
               (optional) names of the hparams that describe what trained weights expect of
               their input (channel order, normalisation); `--warm_start_from` a model dir carries
               them over from its hparams.json (a preset, --config or --set still overrides them)
    export_hparams(hparams, target) -> hparams
               (optional) the hparams to build an exported inference graph with, for target
               "tensorflow" (SavedModel, frozen graph) or "onnx": implementation choices that suit
               that runtime (the computation must not change). Without it, exports use `hparams`
    hparam_ranges() -> {key: registry.hparam_ranges.Range or OneOf}
               (optional) the valid values of the plugin's own hparams (the engine's keys have theirs in
               registry.hparam_ranges.ENGINE_RANGES); every command checks the effective hparams against
               both before anything runs
    convert_state_dict(state_dict, hparams) -> (variables, hparam_overrides)
               (optional) foreign weights ({name: numpy array}, e.g. a PyTorch state_dict read by
               registry.deploy.torch_checkpoint) -> {TF variable name: array} and the hparams that
               go with them (number of classes, input convention); raises a ZooError naming the
               first tensor that does not fit. `zoo-run import-weights` needs it

`hparams` is a plain mapping: `default_hparams()` after the user's overrides. `mode` is one of TRAIN,
EVAL, PREDICT below ('train', 'eval', 'infer': the strings tf.estimator.ModeKeys used, so plugins written
for it keep working). The engine also reads these keys when present (defaults in brackets):
base_batch_size [batch_size], lr_schedule [cosine], warmup_epochs [0], momentum [0.9], nesterov
[False], weight_decay [0], weight_decay_on_bn [False], label_smoothing [0], eval_every_epochs [at the
end only], save_checkpoints_steps [5000], keep_checkpoint_max [5], seed [-1: unseeded], bn_recalibration_epochs
[0: none, registry.engine.recalibration],
num_eval_images (synthetic eval), label_offset [1] (class names); `registry.data.classification`
reads label_offset, shuffle_buffer, data_threads and seed. Each of these keys has a range
(registry.hparam_ranges), checked when the hparams are resolved.
"""
import inspect

from registry.errors import ZooError

ENTRY_POINT_GROUP = "modelzoo.models"
TRAIN, EVAL, PREDICT = "train", "eval", "infer"   # the `mode` of input_fn

REQUIRED_CALLABLES = {
    "build_model": ("images", "is_training", "hparams"),
    "input_fn": ("mode", "hparams", "data_path", "input_context"),
    "default_hparams": (),
}
LEVEL_KEYS = ("FuncStatus", "PerfStatus", "PrecisionStatus")
LEVEL_VALUES = {
    "FuncStatus": ("OK", "NOK"),
    "PerfStatus": ("PERFECT", "OK", "POK", "NOK"),
    "PrecisionStatus": ("OK", "POK", "NOK"),
}
REQUIRED_METADATA = ("description",)
# hparams every run needs: the batch per device, the schedule's length and peak, the data's size and shape
REQUIRED_HPARAMS = ("batch_size", "learning_rate", "epochs", "num_classes", "image_size", "num_train_images")


class ContractError(ZooError):
    """A plugin object does not satisfy the contract; `problems` lists every breach."""

    def __init__(self, name, problems):
        self.name = name
        self.problems = list(problems)
        super().__init__("model %r breaks the plugin contract:\n  - %s" % (name, "\n  - ".join(self.problems)))


def _parameter_problems(name, func, expected):
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []  # builtins without a signature: cannot check, trust them
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < len(expected):
        return ["%s must accept (%s); it accepts (%s)" % (name, ", ".join(expected), ", ".join(positional))]
    return []


def _hparams_problems(default_hparams):
    try:
        hparams = default_hparams()
    except Exception as err:  # a plugin bug: reported, never raised
        return ["default_hparams() raised %s: %s" % (type(err).__name__, err)]
    if not hasattr(hparams, "keys"):
        return ["default_hparams() must return a dict, it returned a %s" % type(hparams).__name__]
    missing = [key for key in REQUIRED_HPARAMS if key not in hparams]
    if not missing:
        return []
    return ["default_hparams() lacks %s (every network needs %s)" % (", ".join(missing), ", ".join(REQUIRED_HPARAMS))]


def contract_problems(obj):
    """Every way `obj` breaks the contract, as readable sentences (empty when it complies)."""
    problems = []
    for attr, expected in REQUIRED_CALLABLES.items():
        func = getattr(obj, attr, None)
        if func is None:
            problems.append("missing %s(%s)" % (attr, ", ".join(expected)))
        elif not callable(func):
            problems.append("%s is not callable (it is a %s)" % (attr, type(func).__name__))
        else:
            problems.extend(_parameter_problems(attr, func, expected))
            if attr == "default_hparams":
                problems.extend(_hparams_problems(func))

    level = getattr(obj, "level", None)
    if not hasattr(level, "get"):
        problems.append("missing `level`: a mapping with %s" % ", ".join(LEVEL_KEYS))
    else:
        for key in LEVEL_KEYS:
            if key not in level:
                problems.append("level lacks %s (one of %s)" % (key, "|".join(LEVEL_VALUES[key])))
            elif level[key] not in LEVEL_VALUES[key]:
                problems.append("level %s is %r, expected one of %s" % (key, level[key], "|".join(LEVEL_VALUES[key])))

    metadata = getattr(obj, "metadata", None)
    if not hasattr(metadata, "get"):
        problems.append("missing `metadata`: a mapping with at least %s" % ", ".join(REQUIRED_METADATA))
    else:
        problems.extend("metadata lacks %r" % key for key in REQUIRED_METADATA if key not in metadata)

    presets = getattr(obj, "presets", {})
    if not hasattr(presets, "items"):
        problems.append("`presets` must be a mapping of name -> hparam overrides")
    ranges = getattr(obj, "hparam_ranges", None)
    if ranges is not None and not callable(ranges):
        problems.append("`hparam_ranges` must be a method returning {hparam: Range or OneOf}, got a %s"
                        % type(ranges).__name__)
    convention = getattr(obj, "input_convention_hparams", ())
    if not isinstance(convention, (tuple, list)) or not all(isinstance(k, str) for k in convention):
        problems.append("`input_convention_hparams` must be a tuple of hparam names, got %r" % (convention,))
    return problems


def _dims(tensor):
    """The static dims of a tensor as ints or None (TF 1.15's Dimension or TF 2's int), or None for unknown rank."""
    shape = getattr(tensor, "shape", None)
    if shape is None or getattr(shape, "ndims", 0) is None:
        return None
    return [getattr(d, "value", d) for d in shape]


def build_logits(model, images, is_training, hparams):
    """`model.build_model(images, is_training, hparams)`, checked against the contract: logits [N, num_classes]
    for images [N, S, S, 3]. Raises a ContractError naming the plugin and the shapes, before TensorFlow fails on
    them somewhere further on (a raw "Shapes (64, 11) and (64, 10)" in the loss). Shapes unknown when the graph
    is built are not checked."""
    logits = model.build_model(images, is_training, hparams)
    dims, batch = _dims(logits), _dims(images)
    batch = batch[0] if batch else None
    classes = int(hparams["num_classes"])
    if dims is None:
        return logits
    if len(dims) != 2 or dims[1] not in (None, classes) or (None not in (dims[0], batch) and dims[0] != batch):
        name = getattr(model, "name", None) or type(model).__name__
        raise ContractError(name, ["build_model returned logits of shape [%s] for %s images; the contract is "
                                   "[N, num_classes] = [%s, %d] (num_classes from the hparams). Fix the plugin's "
                                   "last layer to give num_classes outputs, or set num_classes to what it gives"
                                   % (", ".join("?" if d is None else str(d) for d in dims),
                                      "?" if batch is None else batch, "N" if batch is None else batch, classes)])
    return logits


def validate(name, obj):
    """Returns `obj` if it satisfies the contract, else raises ContractError listing every problem."""
    problems = contract_problems(obj)
    if problems:
        raise ContractError(name, problems)
    return obj


def parse_level_file(text):
    """Parses modelzoo_level.txt (`Key:Value` lines) into an ordered dict."""
    level = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            level[key.strip()] = value.strip()
    return level
