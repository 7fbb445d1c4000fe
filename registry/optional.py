"""Optional packages (the `onnx` and `openvino` extras): import them, or say which are missing and which extra of
this repository brings them. The one place that words that error."""
import importlib

from registry.errors import ZooError


def require(purpose, packages, extra, what=None):
    """Imports `packages` (names) -> {name: module}. Raises ZooError when any is missing, naming `purpose` (e.g.
    "--format onnx"), each missing package with its import error, and `extra`, the extra that installs them, as
    `(name, what it brings)`. `what`: how the message calls the packages (default: "the optional package X")."""
    modules, missing = {}, []
    for name in packages:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as err:
            missing.append((name, err))
    if not missing:
        return modules
    install = "`pip install .[%s]` in this repository (%s)" % extra
    if what is None and len(packages) == 1:
        raise ZooError("%s needs the optional package %s, which is missing (%s). Install it with %s"
                       % (purpose, packages[0], missing[0][1], install))
    raise ZooError("%s needs %s, and %s missing: %s. Install them with %s"
                   % (purpose, what or "optional packages", "this one is" if len(missing) == 1 else "these are",
                      "; ".join("%s (%s)" % pair for pair in missing), install))
