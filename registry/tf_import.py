"""Importing TensorFlow without the C++ log lines that `TF_CPP_MIN_LOG_LEVEL` asks to hide (no TensorFlow here).

From TensorFlow 2.20 on, the lines some libraries write while `import tensorflow` loads them go through Abseil's
logging before it is initialised, and Abseil then writes every line to stderr whatever `TF_CPP_MIN_LOG_LEVEL` says
(seen on 2.21.0, twice per import, on a CPU-only machine):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796407349.371193    6257 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1796407349.371697    6257 cudart_stub.cc:31] Could not find cuda drivers on your machine, ...

`import_tensorflow()` captures file descriptor 2 while TensorFlow is imported (registry.native_stderr), then writes
back every line but the log records below the level asked for (I = 0, W = 1, E = 2, F = 3, as
`TF_CPP_MIN_LOG_LEVEL` counts), Abseil's header and, unless `--device gpu` was asked for, the "failed call to
cuInit" record of a machine with CUDA libraries and no GPU. Everything else written meanwhile (Python warnings,
tracebacks, higher-severity records) is kept, in order. `TF_CPP_MIN_LOG_LEVEL=0` (or unset) shows everything.
"""
import importlib
import os
import re
import sys

from registry import native_stderr

ABSL_HEADER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# An Abseil / TensorFlow C++ log record: severity letter, MMDD, time, thread id, file:line]
RECORD = re.compile(r"^([IWEF])\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")
SEVERITIES = "IWEF"
# TF 2.21 on a machine with CUDA libraries but no GPU (or no driver) writes, at severity E:
#   E0000 00:00:1796407349.402000    6257 cuda_executor.cc:1228] failed call to cuInit: INTERNAL: CUDA error: ...
# On a run that asked for no GPU this is a start-up note like the others; where --device gpu was asked for it is the
# reason no GPU is used, and is kept.
CPU_ONLY_NOTE = re.compile(r"failed call to cuInit")


def min_log_level(environ=os.environ):
    """TF_CPP_MIN_LOG_LEVEL as an int 0..3 (unset or not a number: 0, everything shown)."""
    try:
        return max(0, min(3, int(environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))))
    except ValueError:
        return 0


def gpu_asked(argv=None):
    """Whether the command line (default: this process's) asks for `--device gpu`."""
    argv = sys.argv[1:] if argv is None else argv
    return "--device=gpu" in argv or any(a == "--device" and b == "gpu" for a, b in zip(argv, argv[1:]))


def filter_startup_log(text, level, gpu=False):
    """`text` (what stderr received) without Abseil's header and the log records of a severity below `level`; unless
    `gpu` (a GPU was asked for), also without the CPU_ONLY_NOTE record."""
    if level <= 0:
        return text
    kept = []
    for line in text.splitlines(True):
        record = RECORD.match(line)
        if line.rstrip("\n") == ABSL_HEADER or (record and SEVERITIES.index(record.group(1)) < level) or (
                record and not gpu and CPU_ONLY_NOTE.search(line)):
            continue
        kept.append(line)
    return "".join(kept)


def import_tensorflow():
    """Imports and returns the `tensorflow` module, filtering its start-up log on stderr (module doc)."""
    level = min_log_level()
    if level == 0 or "tensorflow" in sys.modules:
        return importlib.import_module("tensorflow")
    gpu = gpu_asked()
    with native_stderr.filtered(lambda line: bool(filter_startup_log(line, level, gpu))):
        return importlib.import_module("tensorflow")
