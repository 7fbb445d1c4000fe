"""Which TensorFlow versions read an exported graph, and the edits that let TensorFlow 1.15 read lane tf2's.

TensorFlow 1.15 (lane tf1, and Ascend's ATC, which parses TF 1.15 graphs) refuses a GraphDef that names an
op or an attr its own op registry lacks ("NodeDef mentions attr 'debug_name' not in Op<name=VarHandleOp...").
Lane tf2's TensorFlow writes such attrs for the same network; two kinds occur, and both are removed here:

- attrs added after 1.15 and written at their default value (FusedBatchNormV3's `exponential_avg_factor` 1.0,
  ...): dropping a default-valued attr does not change the op (what SavedModel's `strip_default_attrs` does
  for the same reason);
- `MEANINGLESS_ATTRS`: attrs that only label a node for debugging (VarHandleOp's `debug_name`, the variable's
  name again).

Then every node, in the graph and in its function library, is checked against TF 1.15.0's op registry
(`tf1_15_ops.json`, written by scripts/make_tf115_op_list.py): `readers()` says "TensorFlow 1.15 and later"
only when every op and attr is there, else names the first that is not and the exporting version.
"""
import collections
import json
import os

TF115_OPS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tf1_15_ops.json")
MEANINGLESS_ATTRS = {"VarHandleOp": ("debug_name",)}

Readers = collections.namedtuple("Readers", "tf115 text problems")
Readers.__doc__ = """tf115: whether TensorFlow 1.15 (and ATC) reads the graphs; text: e.g. 'TensorFlow 1.15 and later';
problems: what TensorFlow 1.15 lacks, as 'op DecodeImage (node serving/map/while/DecodeImage)' strings."""

_tf115_ops = None


def tf115_ops():
    """{op name: set of attr names} of TensorFlow 1.15.0's op registry."""
    global _tf115_ops
    if _tf115_ops is None:
        with open(TF115_OPS_FILE) as f:
            _tf115_ops = {name: set(attrs) for name, attrs in json.load(f)["ops"].items()}
    return _tf115_ops


def _nodes(graph_def):
    """(node, where) of every NodeDef of `graph_def`, its function library's included."""
    for node in graph_def.node:
        yield node, "node %s" % node.name
    for function in graph_def.library.function:
        for node in function.node_def:
            yield node, "node %s of function %s" % (node.name, function.signature.name)


def make_portable(graph_def):
    """Removes, in place, every attr of `graph_def` (a tf.compat.v1.GraphDef) at its op's default value and
    the MEANINGLESS_ATTRS; returns how many were removed. Ops are looked up in this process's registry;
    calls of the graph's own functions are left as they are."""
    from registry import tf_compat
    removed = 0
    for node, _ in _nodes(graph_def):
        for name in MEANINGLESS_ATTRS.get(node.op, ()):
            if name in node.attr:
                del node.attr[name]
                removed += 1
        op = tf_compat.op_def(node.op)
        for attr in op.attr if op is not None else ():
            if attr.HasField("default_value") and attr.name in node.attr and \
                    node.attr[attr.name] == attr.default_value:
                del node.attr[attr.name]
                removed += 1
    return removed


def _saved_model_file(path):
    return os.path.join(path, "saved_model.pb")


def saved_model_graph_defs(path):
    """The GraphDef of every meta graph of the SavedModel directory `path` (its binary saved_model.pb)."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    with open(_saved_model_file(path), "rb") as f:
        saved.ParseFromString(f.read())
    return [meta.graph_def for meta in saved.meta_graphs]


def make_saved_model_portable(path):
    """`make_portable` on every meta graph of the SavedModel directory `path`, rewriting its saved_model.pb
    (a v1 SavedModel: no fingerprint file to keep in step); returns how many attrs were removed."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    with open(_saved_model_file(path), "rb") as f:
        saved.ParseFromString(f.read())
    removed = sum(make_portable(meta.graph_def) for meta in saved.meta_graphs)
    if removed:
        with open(_saved_model_file(path) + ".tmp", "wb") as f:
            f.write(saved.SerializeToString())
        os.replace(_saved_model_file(path) + ".tmp", _saved_model_file(path))
    return removed


def tf115_problems(graph_defs):
    """What TensorFlow 1.15 lacks to read `graph_defs`: ['op DecodeImage (node x)', "attr 'y' of op Z (node w)"],
    each op or attr once, in graph order."""
    known = tf115_ops()
    problems, seen = [], set()
    for graph_def in graph_defs:
        functions = set(f.signature.name for f in graph_def.library.function)
        for node, where in _nodes(graph_def):
            if node.op in functions:
                continue
            if node.op not in known:
                key, text = node.op, "op %s (%s)" % (node.op, where)
            else:
                unknown = sorted(set(node.attr) - known[node.op] - set(a for a in node.attr if a.startswith("_")))
                if not unknown:
                    continue
                key, text = (node.op, unknown[0]), "attr '%s' of op %s (%s)" % (unknown[0], node.op, where)
            if key not in seen:
                seen.add(key)
                problems.append(text)
    return problems


def readers(graph_defs, exporter_version):
    """Readers of `graph_defs` written by TensorFlow `exporter_version` ('2.21' or '2.21.0')."""
    problems = tf115_problems(graph_defs)
    if not problems:
        return Readers(True, "TensorFlow 1.15 and later", [])
    major_minor = ".".join(exporter_version.split(".")[:2])
    return Readers(False, "TensorFlow %s (the exporter's); not TensorFlow 1.15, which lacks %s%s" % (
        major_minor, problems[0], " and %d more" % (len(problems) - 1) if len(problems) > 1 else ""), problems)
