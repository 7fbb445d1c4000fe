"""Effective hyperparameters: defaults <- preset <- YAML file <- `--set key=value`.

A model dir's saved hparams.json (eval, export) or the input convention of a warm-start source
sits between the defaults and the preset.

Every override is typed from the default's type; unknown keys and values of the wrong
type are errors that name the valid keys, so a typo never trains the wrong recipe. The effective
set is then checked against each key's range (`registry.hparam_ranges`: the engine's keys and the
plugin's own), so a value that cannot be right (a negative learning rate, zero epochs) is refused
before anything runs. YAML files are read strictly: a key given twice, an integer YAML 1.1 reads
in another base (`010` is 8, `1:30` is 90, `0x20` is 32) and an empty file are errors.
"""
import difflib
import json
import os
import re

import yaml

from registry import hparam_ranges
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


_DECIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?$|^[-+]?\.[0-9_]+([eE][-+]?[0-9]+)?$")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _yaml_surprises(node, path):
    """HParamsError for what a YAML node tree holds that is not what it seems: a key given twice in a mapping
    (PyYAML keeps the last silently), and a number YAML 1.1 reads in another base than the decimal it looks
    like (a leading 0 is octal, `1:30` is base 60, `0x`/`0b` hex and binary)."""
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name in seen:
                raise HParamsError("hparams file %s sets %s twice (lines %d and %d); YAML would keep the last "
                                   "silently: remove one" % (path, name, seen[name], key.start_mark.line + 1))
            seen[name] = key.start_mark.line + 1
            _yaml_surprises(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _yaml_surprises(item, path)
    elif node.tag in _NUMBER_TAGS and not _DECIMAL.match(node.value) and \
            node.value.lower().lstrip("+-") not in (".inf", ".nan"):
        raise HParamsError("hparams file %s line %d: %s is not a plain decimal number, and YAML 1.1 reads it as %r "
                           "(%s); write the decimal value, or quote it if you mean text" % (
                               path, node.start_mark.line + 1, node.value, yaml.safe_load(node.value),
                               "base 60" if ":" in node.value else "hexadecimal" if "x" in node.value.lower()
                               else "binary" if "b" in node.value.lower() else "not decimal"))
    elif node.tag == "tag:yaml.org,2002:int" and re.match(r"^[-+]?0[0-9_]+$", node.value):
        raise HParamsError("hparams file %s line %d: %s has a leading zero, and YAML 1.1 reads it as the octal "
                           "number %d; write %s" % (path, node.start_mark.line + 1, node.value,
                                                    yaml.safe_load(node.value), node.value.lstrip("0") or "0"))


def load_yaml(path):
    """{key: value} of a YAML hparams file, read strictly (see the module doc); HParamsError naming the file and
    the fix for anything else."""
    try:
        with open(path) as f:
            loader = yaml.SafeLoader(f.read())
        try:
            node = loader.get_single_node()
            if node is not None:
                _yaml_surprises(node, path)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except OSError as err:
        raise HParamsError("cannot read hparams file %s: %s" % (path, err.strerror))
    except yaml.YAMLError as err:
        raise HParamsError("hparams file %s is not valid YAML: %s" % (path, err))
    if data is None:
        raise HParamsError("hparams file %s holds no settings (it is empty or all comments); write key: value "
                           "lines, or leave out --config" % path)
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


def check_ranges(model, hparams, origins=None):
    """Raises HParamsError listing every value of `hparams` outside its range (registry.hparam_ranges: the
    engine's keys, and the plugin's own from its optional `hparam_ranges()`); `origins`: {key: source}."""
    ranges = getattr(model, "hparam_ranges", None)
    found = hparam_ranges.problems(hparams, ranges() if callable(ranges) else None, origins)
    if found:
        raise HParamsError("\n  ".join(["hparam %s" % found[0]] if len(found) == 1 else
                                       ["%d hparams are out of range:" % len(found)] + found))


def resolve(model, preset=None, config_file=None, set_args=None, saved=None,
            saved_source="the model dir's hparams.json"):
    """The effective hparams of `model`: its defaults, then `saved` (a model dir's hparams.json, or
    what a warm start inherits; `saved_source` names it in errors), preset, YAML file and --set pairs.
    Raises HParamsError for an unknown key, a wrong type or a value out of its range."""
    hparams = model.default_hparams()
    layers = []
    if saved:
        foreign = sorted(set(saved) - set(hparams))
        if foreign:   # a whole other network's settings, not a typo
            raise HParamsError("%s has hparams this network does not have (%s): it was written for another "
                               "network. Use the network that trained it (`zoo-run list`; `zoo-run describe NAME` "
                               "shows a network's hparams), or another --model_dir."
                               % (saved_source, ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")))
        layers.append((saved, saved_source))
    if preset:
        presets = getattr(model, "presets", {})
        if preset not in presets:
            raise HParamsError("unknown preset %r; this model has: %s"
                               % (preset, ", ".join(sorted(presets)) or "none"))
        layers.append((presets[preset], "preset %r" % preset))
    if config_file:
        layers.append((load_yaml(config_file), config_file))
    layers.append((parse_set_args(set_args), "--set"))
    origins = dict.fromkeys(hparams, "the defaults")
    for overrides, source in layers:
        hparams = apply_overrides(hparams, overrides, source)
        origins.update(dict.fromkeys(overrides, source))
    check_ranges(model, hparams, origins)
    return hparams


def flag_at_least(value, low, flag):
    """Raises a ZooError for a command-line number below `low` (None: the flag was not given). Checked where 0 or a
    negative number would otherwise be read as "not given" or run something else than asked."""
    if value is not None and value < low:
        raise ZooError("%s must be >= %r, got %r" % (flag, low, value))


def add_set_argument(parser, help_text):
    """`--set KEY=VALUE [KEY=VALUE ...]` on an argparse parser, repeatable (a list of lists; parse_set_args
    flattens it)."""
    parser.add_argument("--set", action="append", nargs="+", metavar="KEY=VALUE", default=[], help=help_text)
