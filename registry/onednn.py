"""TensorFlow's oneDNN CPU kernels: the decision zoo-run makes before TensorFlow is imported (no TensorFlow here).

TensorFlow 2.x reads `TF_ENABLE_ONEDNN_OPTS` once, when it is imported: "1" turns its oneDNN (MKL-DNN) CPU
kernels on, "0" off, and unset leaves them on only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX
(`tensorflow/core/util/util.cc`, IsMKLEnabled). Most AVX2-only x86 CPUs (AMD EPYC before Zen 4, older Xeons)
therefore run the slower Eigen kernels by default, and those have no CPU gradient of a grouped convolution.
Measured on a 2-core AMD EPYC Zen 3 (AVX2, no VNNI), TF 2.15.1, ShuffleNetV1 g3, batch 32, two alternating
rounds of `zoo-run perf --synthetic`: train 27.9 / 25.9 images/sec with "0" (the default there) against
42.8 / 36.8 with "1"; inference 110 / 95 against 167 / 180 (issue 20).

So `zoo-run` sets `TF_ENABLE_ONEDNN_OPTS=1` before TensorFlow is imported unless the variable is already set
(the user's value is kept, "0" included), on lanes whose TensorFlow reads it (2.x; TensorFlow 1.15.0 does
not: its stock build has no oneDNN kernels, intel-tensorflow 1.15 always uses them). It marks what it set in
`SET_BY_ZOO_RUN`, so that child processes (the `--workers` launcher) report the same origin.
`registry.tf_compat.cpu_kernels()` reports the state really in force, after the import.
"""
import os
import sys

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
SET_BY_ZOO_RUN = "ZOO_RUN_SET_TF_ENABLE_ONEDNN_OPTS"   # "1" when zoo-run set VARIABLE (inherited by children)
WHY = ("TensorFlow 2.x turns them on by itself only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX; "
       "they trained ~1.5x and inferred ~1.7x faster on an AVX2 AMD EPYC")


def tensorflow_reads_variable():
    """Whether the installed TensorFlow reads TF_ENABLE_ONEDNN_OPTS (2.x), found without importing it."""
    try:
        from importlib import metadata   # Python >= 3.8: lane tf2 (setup.py)
    except ImportError:
        return False                      # Python 3.7: lane tf1, TensorFlow 1.15
    for distribution in ("tensorflow", "tensorflow-cpu", "intel-tensorflow"):
        try:
            return int(metadata.version(distribution).split(".")[0]) >= 2
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return False


def turn_on(environ=None):
    """Sets TF_ENABLE_ONEDNN_OPTS=1 in `environ` (default os.environ) when it is unset or empty, TensorFlow is
    not imported yet and reads the variable; returns True when it set it."""
    environ = os.environ if environ is None else environ
    if environ.get(VARIABLE, "") != "" or "tensorflow" in sys.modules or not tensorflow_reads_variable():
        return False
    environ[VARIABLE] = "1"
    environ[SET_BY_ZOO_RUN] = "1"
    return True


def origin(environ=None):
    """Who set TF_ENABLE_ONEDNN_OPTS: "zoo-run", "environment" (the user), or None (unset)."""
    environ = os.environ if environ is None else environ
    if environ.get(VARIABLE, "") == "":
        return None
    return "zoo-run" if environ.get(SET_BY_ZOO_RUN) == "1" and environ[VARIABLE] == "1" else "environment"
