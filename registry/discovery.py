"""Finds networks published in the `modelzoo.models` entry-point group, through stevedore.

Listing names reads entry-point metadata only (no plugin is imported). Loading a plugin
imports just that one; a plugin that fails to import or breaks the contract is reported
as broken, with its error, and never stops the others from working.

A name published by two distributions is a clash: stevedore would load both and the later one on
sys.path would silently win, so such a name is listed as a clash and every lookup of it is refused,
naming both distributions. The publishers come from the same installed metadata stevedore reads
(importlib metadata), which keeps the distribution of each entry point.
"""
import collections
import difflib
import re

from stevedore import named

from registry import spec
from registry.errors import ZooError

try:
    import importlib_metadata as metadata   # the backport stevedore uses on Python 3.7
except ImportError:                          # Python 3.8+
    from importlib import metadata

Plugin = collections.namedtuple("Plugin", "name target obj error clash")
Plugin.__new__.__defaults__ = (False,)
Plugin.__doc__ = ("One registered network: `obj` when it loaded and complies, else `error` says why not "
                  "(`clash`: two distributions publish the name).")
Plugin.broken = property(lambda self: self.error is not None)
Publisher = collections.namedtuple("Publisher", "distribution version target")


class UnknownModelError(ZooError, LookupError):
    pass


class BrokenPluginError(ZooError):
    pass


class NameClashError(BrokenPluginError):
    pass


def _normalized(distribution):
    return re.sub(r"[-_.]+", "-", distribution).lower()


def publishers():
    """{model name: [Publisher]} for every name in the group, from the installed distributions' metadata.
    A distribution found twice on sys.path counts once (the first, as imports resolve it)."""
    seen, found = set(), collections.defaultdict(list)
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or "?"
        if _normalized(name) in seen:
            continue
        seen.add(_normalized(name))
        for ep in dist.entry_points:
            if ep.group == spec.ENTRY_POINT_GROUP:
                found[ep.name].append(Publisher(name, dist.version, ep.value))
    return found


def clash_message(name, publishers_of_name):
    """The error for a name published by several distributions, or None when one publishes it."""
    if len(publishers_of_name) < 2:
        return None
    return ("model name %r is published by %d distributions: %s. Refusing to pick one (the later on sys.path "
            "would win silently). Keep one (%s), or have the others rename their entry point." % (
                name, len(publishers_of_name), " and ".join("%s %s (%s)" % p for p in publishers_of_name),
                " or ".join("`pip uninstall %s`" % p.distribution for p in publishers_of_name)))


def _manager(names, on_failure=None):
    return named.NamedExtensionManager(
        spec.ENTRY_POINT_GROUP, names=names, name_order=True, on_load_failure_callback=on_failure)


def _entry_points():
    return {ep.name: ep for ep in _manager([]).list_entry_points()}


def model_names():
    """Sorted names of every registered network, without importing any of them."""
    return sorted(_entry_points())


def _target(entry_point):
    return entry_point.value if hasattr(entry_point, "value") else str(entry_point)


def load_plugin(name, published=None):
    """Loads one network by name; never raises for a broken or clashing plugin (see `Plugin.error`).
    `published`: `publishers()`, when the caller already has it."""
    entry_points = _entry_points()
    if name not in entry_points:
        raise UnknownModelError(unknown_name_message(name, sorted(entry_points)))
    published = publishers() if published is None else published
    clash = clash_message(name, published.get(name, []))
    if clash:
        return Plugin(name, " | ".join(p.target for p in published[name]), None, clash, True)
    failures = []
    target = _target(entry_points[name])
    try:
        manager = _manager([name], on_failure=lambda _manager, _ep, err: failures.append(err))
    except SystemExit as err:   # stevedore catches Exception only; a plugin's sys.exit must not end `zoo-run`
        return Plugin(name, target, None, "import failed: it called sys.exit(%r) while being imported" % (err.code,))
    if failures or name not in manager.names():
        err = failures[0] if failures else "could not be loaded"
        return Plugin(name, target, None, "import failed: %s: %s" % (type(err).__name__, err))
    obj = manager[name].plugin
    problems = spec.contract_problems(obj)
    if problems:
        return Plugin(name, target, None, "breaks the contract: " + "; ".join(problems))
    return Plugin(name, target, obj, None)


def load_all():
    """Every registered network, broken and clashing ones included, sorted by name."""
    published = publishers()
    return [load_plugin(name, published) for name in model_names()]


def get_model(name):
    """The plugin object of a working network, or a clear error (unknown name, name clash, broken plugin)."""
    plugin = load_plugin(name)
    if plugin.clash:
        raise NameClashError(plugin.error)
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
