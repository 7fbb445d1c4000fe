"""Dev-time generator of registry/deploy/tf1_15_ops.json: every op TensorFlow 1.15.0 registers, with the names
of its attrs. `zoo-run export` on a newer TensorFlow checks its graphs against it to say whether TensorFlow 1.15
(lane tf1, and Ascend's ATC, which parses TF 1.15 graphs) can read them (registry/deploy/graph_compat.py).

    .venv/tf1/bin/python scripts/make_tf115_op_list.py
"""
import json
import os

import tensorflow as tf
from tensorflow.python.framework import op_def_registry

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "registry", "deploy",
                   "tf1_15_ops.json")


def main():
    if tf.__version__ != "1.15.0":
        raise SystemExit("run this with lane tf1's Python (tensorflow==1.15.0); this is TensorFlow %s" % tf.__version__)
    ops = {name: sorted(attr.name for attr in op.attr) for name, op in op_def_registry.get_registered_ops().items()}
    with open(OUT, "w") as f:
        f.write("{\"tensorflow\": \"1.15.0\", \"ops\": {\n")
        f.write(",\n".join("%s: %s" % (json.dumps(name), json.dumps(ops[name])) for name in sorted(ops)))
        f.write("\n}}\n")
    print("wrote %s: %d ops" % (OUT, len(ops)))


if __name__ == "__main__":
    main()
