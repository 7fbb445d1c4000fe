"""Finds networks published in the `modelzoo.models` entry-point group, through stevedore.

Listing names reads entry-point metadata only (no plugin is imported). Loading a plugin
imports just that one; a plugin that fails to import or breaks the contract is reported
as broken, with its error, and never stops the others from working. A name published with
two different targets (e.g. by two distributions) is broken too: neither is picked silently.
"""
import collections
import difflib

from stevedore import named

from registry import spec
from registry.errors import ZooError

Plugin = collections.namedtuple("Plugin", "name target obj error")
Plugin.__doc__ = "One registered network: `obj` when it loaded and complies, else `error` says why not."
Plugin.broken = property(lambda self: self.error is not None)


class UnknownModelError(ZooError, LookupError):
    pass


class BrokenPluginError(ZooError):
    pass


def _manager(names, on_failure=None):
    return named.NamedExtensionManager(
        spec.ENTRY_POINT_GROUP, names=names, name_order=True, on_load_failure_callback=on_failure)


def _target(entry_point):
    return entry_point.value if hasattr(entry_point, "value") else str(entry_point)


def _entry_points():
    """{name: [entry point, ...]}: the distinct targets published under each name (several = a clash)."""
    published = {}
    for entry_point in _manager([]).list_entry_points():
        targets = published.setdefault(entry_point.name, [])
        if all(_target(other) != _target(entry_point) for other in targets):
            targets.append(entry_point)
    return published


def model_names():
    """Sorted names of every registered network, without importing any of them."""
    return sorted(_entry_points())


def load_plugin(name):
    """Loads one network by name; never raises for a broken plugin (see `Plugin.error`)."""
    entry_points = _entry_points()
    if name not in entry_points:
        raise UnknownModelError(unknown_name_message(name, sorted(entry_points)))
    if len(entry_points[name]) > 1:   # two distributions publish the name: neither is picked silently
        targets = sorted(_target(ep) for ep in entry_points[name])
        return Plugin(name, " and ".join(targets), None,
                      "%d entry points publish this name; uninstall (or rename) all but one" % len(targets))
    failures = []
    manager = _manager([name], on_failure=lambda _manager, _ep, err: failures.append(err))
    target = _target(entry_points[name][0])
    if failures or name not in manager.names():
        err = failures[0] if failures else "could not be loaded"
        return Plugin(name, target, None, "import failed: %s: %s" % (type(err).__name__, err))
    obj = manager[name].plugin
    problems = spec.contract_problems(obj)
    if problems:
        return Plugin(name, target, None, "breaks the contract: " + "; ".join(problems))
    return Plugin(name, target, obj, None)


def load_all():
    """Every registered network, broken ones included, sorted by name."""
    return [load_plugin(name) for name in model_names()]


def get_model(name):
    """The plugin object of a working network, or a clear error (unknown name, broken plugin)."""
    plugin = load_plugin(name)
    if plugin.broken:
        raise BrokenPluginError("model %r (%s) is broken: %s" % (name, plugin.target, plugin.error))
    return plugin.obj


def unknown_name_message(name, known):
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    message = "unknown model %r." % name
    if close:
        message += " Did you mean: %s?" % ", ".join(close)
    if known:
        message += " Registered models: %s." % ", ".join(known)
    else:
        message += (" No model is registered in the %r entry-point group; install a plugin "
                    "(e.g. `pip install .` in this repository)." % spec.ENTRY_POINT_GROUP)
    return message
