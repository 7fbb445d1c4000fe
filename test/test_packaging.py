"""What the distribution promises about its lanes: the Pythons it installs on, and the TensorFlow APIs its code
may use on every lane (no tf.estimator, gone since 2.16; no tf.compat.v1.layers or Keras layers, which Keras 3
breaks in v1 graphs)."""
import ast
import glob
import os
import re
import subprocess

import pytest

from conftest import REPO

SOURCES = ["registry", "modelzoo_shufflenet", "examples/resnet50/modelzoo_resnet", "bench", "scripts"]
FORBIDDEN = re.compile(r"\btf\.estimator\b|\btensorflow_estimator\b|\bv1\.layers\b|\btf1\.layers\b|\bkeras\b")


def _code_lines(path):
    """(number, line) of a Python file's code, docstrings and comments left out."""
    text = open(path).read()
    text = re.sub(r'"""(?:.|\n)*?"""', lambda m: "\n" * m.group(0).count("\n"), text)
    for number, line in enumerate(text.split("\n"), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield number, code


def test_no_module_uses_tf_estimator_or_layers():
    offending = []
    files = [f for source in SOURCES for f in glob.glob(os.path.join(REPO, source, "**", "*.py"), recursive=True)]
    assert len(files) > 40
    for path in files:
        offending += ["%s:%d: %s" % (os.path.relpath(path, REPO), n, line.strip())
                      for n, line in _code_lines(path) if FORBIDDEN.search(line)]
    assert not offending, "\n".join(offending)


PACKAGES = {"registry": "registry", "modelzoo_shufflenet": "modelzoo_shufflenet",
            "modelzoo_resnet": "examples/resnet50/modelzoo_resnet"}


def _project_modules():
    """{dotted module name: path} of the registry and the two plugins."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True):
            parts = [package] + os.path.relpath(path, os.path.join(REPO, folder))[:-3].split(os.sep)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path, name, modules):
    """The project modules that module `name` imports anywhere in its file, function-level imports included."""
    found = set()
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            candidates = [base + "." + alias.name for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:   # `from a import b`: module a.b when it is one, else a
            if candidate in modules:
                found.add(candidate)
                break
    found.discard(name)
    return found


def test_no_import_circles_and_the_registry_imports_no_plugin():
    """DEVELOPERS.md: no import circles, counting imports inside functions; the registry never imports a plugin."""
    modules = _project_modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    assert len(graph) > 60 and "registry.deploy.export" in graph["registry.engine.perf"]
    plugin_imports = ["%s -> %s" % (m, d) for m, deps in graph.items() if m.startswith("registry")
                      for d in deps if not d.startswith("registry")]
    assert not plugin_imports
    circles = []
    for start in graph:   # a path from a module's import back to itself
        stack, seen = [(d, [start, d]) for d in graph[start]], set()
        while stack:
            node, path = stack.pop()
            if node == start:
                circles.append(" -> ".join(path))
                break
            if node not in seen:
                seen.add(node)
                stack += [(d, path + [d]) for d in graph[node]]
    assert not circles, "\n".join(circles)


def _pythons(*minors):
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    return [p for minor in minors for p in sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor,
                                                                         "bin", "python3.%d" % minor)))[:1]]


@pytest.mark.parametrize("python", _pythons(8, 9, 14) or [pytest.param(None, marks=pytest.mark.skip(
    reason="no Python 3.8, 3.9 or 3.14 under pyenv here"))])
def test_setup_refuses_other_pythons_naming_the_supported_ones(python):
    out = subprocess.run([python, "setup.py", "--name"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=120)
    assert out.returncode != 0
    assert "runs on Python 3.7 (lane tf1: tensorflow==1.15.0) or 3.10-3.13 (lane tf2: tensorflow==2.21.0)" \
        in out.stdout, out.stdout
