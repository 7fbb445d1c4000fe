"""Effective hyperparameters: defaults <- preset <- YAML file <- `--set key=value`.

A model dir's saved hparams.json (eval, export) or the input convention of a warm-start source
sits between the defaults and the preset.

Every override is typed from the default's type; unknown keys and values of the wrong
type are errors that name the valid keys, so a typo never trains the wrong recipe.
"""
import difflib
import json
import os

import yaml

from registry.errors import ZooError


class HParamsError(ZooError, ValueError):
    pass


def _key_error(key, defaults, source):
    close = difflib.get_close_matches(key, list(defaults), n=3, cutoff=0.6)
    hint = " Did you mean %s?" % " or ".join(close) if close else ""
    return HParamsError("unknown hparam %r (from %s).%s Valid keys: %s"
                        % (key, source, hint, ", ".join(sorted(defaults))))


def _bool(text):
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean: %r" % text)


def coerce(key, value, default, source):
    """`value` converted to the type of `default`; strings (from --set) are parsed."""
    kind = type(default)
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else _bool(value)
        if isinstance(value, str) and kind is float:
            value = float(value)  # YAML 1.1 would read "1e-4" as a string
        elif isinstance(value, str) and kind is not str:
            value = yaml.safe_load(value)
        if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(default, int) and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
            if default and len(value) != len(default):
                raise ValueError("expected %d values" % len(default))
            return [coerce(key, v, default[0], source) for v in value] if default else list(value)
        if isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
            return value
    except ValueError as err:
        raise HParamsError("hparam %r (from %s): %s" % (key, source, err))
    raise HParamsError("hparam %r (from %s) must be a %s like %r, got %r"
                       % (key, source, kind.__name__, default, value))


def apply_overrides(hparams, overrides, source):
    """A new dict: `hparams` with `overrides` (a mapping) applied, every key checked and typed."""
    result = dict(hparams)
    for key, value in overrides.items():
        if key not in hparams:
            raise _key_error(key, hparams, source)
        result[key] = coerce(key, value, hparams[key], source)
    return result


def parse_set_args(pairs):
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'} (typed later against the defaults). Also takes the CLI's
    list of lists (`--set a=1 b=2 --set c=3` -> [['a=1', 'b=2'], ['c=3']]); a later pair wins."""
    overrides = {}
    for item in pairs or ():
        for pair in [item] if isinstance(item, str) else item:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise HParamsError("--set expects key=value pairs, got %r. Everything after --set up to the next "
                                   "option is read as a pair: put other arguments (e.g. image files) before "
                                   "--set, or end the pairs with --" % pair)
            overrides[key.strip()] = value.strip()
    return overrides


def load_yaml(path):
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as err:
        raise HParamsError("cannot read hparams file %s: %s" % (path, err.strerror))
    except yaml.YAMLError as err:
        raise HParamsError("hparams file %s is not valid YAML: %s" % (path, err))
    if not isinstance(data, dict):
        raise HParamsError("hparams file %s must hold a mapping of key: value, got %s"
                           % (path, type(data).__name__))
    return data


def warm_start_hparams(model, source):
    """What a warm start from `source` (a model dir, or a checkpoint prefix inside one) carries over:
    the plugin's `input_convention_hparams` as the dir's hparams.json records them, so weights keep
    the input they were trained on (e.g. imported BGR 0..255 weights). {} when there is no file."""
    keys = getattr(model, "input_convention_hparams", ())
    directory = source if os.path.isdir(source) else os.path.dirname(source)
    path = os.path.join(directory, "hparams.json")
    if not keys or not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as err:
        raise HParamsError("cannot read the warm-start source's %s: %s. Fix the file, or delete it to warm "
                           "start without its input convention" % (path, err))
    return {key: saved[key] for key in keys if key in saved}


def resolve(model, preset=None, config_file=None, set_args=None, saved=None,
            saved_source="the model dir's hparams.json"):
    """The effective hparams of `model`: its defaults, then `saved` (a model dir's hparams.json, or
    what a warm start inherits; `saved_source` names it in errors), preset, YAML file and --set pairs."""
    hparams = model.default_hparams()
    if saved:
        hparams = apply_overrides(hparams, saved, saved_source)
    if preset:
        presets = getattr(model, "presets", {})
        if preset not in presets:
            raise HParamsError("unknown preset %r; this model has: %s"
                               % (preset, ", ".join(sorted(presets)) or "none"))
        hparams = apply_overrides(hparams, presets[preset], "preset %r" % preset)
    if config_file:
        hparams = apply_overrides(hparams, load_yaml(config_file), config_file)
    return apply_overrides(hparams, parse_set_args(set_args), "--set")


def add_set_argument(parser, help_text):
    """`--set KEY=VALUE [KEY=VALUE ...]` on an argparse parser, repeatable (a list of lists; parse_set_args
    flattens it)."""
    parser.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE", default=[], help=help_text)
