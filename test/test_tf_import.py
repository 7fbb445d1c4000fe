"""zoo-run's stderr carries no TensorFlow start-up notes unless TF_CPP_MIN_LOG_LEVEL=0 asks for them (TF 2.21 writes
them past the variable, registry/tf_import.py), and keeps everything else written during the import."""
import os
import subprocess

from registry import tf_compat, tf_import

STARTUP = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796407349.371193    6257 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1796407349.371697    6257 cudart_stub.cc:31] Could not find cuda drivers on your machine.
W0000 00:00:1796407349.400000    6257 some_plugin.cc:12] a warning
/x/y.py:3: DeprecationWarning: a Python warning
E1204 18:05:00.123456    6257 loader.cc:99] an error
"""


def test_filter_drops_only_the_records_below_the_level_and_the_absl_header():
    lines = STARTUP.splitlines(True)
    assert tf_import.filter_startup_log(STARTUP, 0) == STARTUP
    assert tf_import.filter_startup_log(STARTUP, 1) == "".join(lines[3:])
    assert tf_import.filter_startup_log(STARTUP, 2) == "".join(lines[4:])
    assert tf_import.filter_startup_log(STARTUP, 3) == lines[4]
    assert [tf_import.min_log_level({"TF_CPP_MIN_LOG_LEVEL": v}) for v in ("", "x", "1", "3", "9", "-2")] == \
        [0, 0, 1, 3, 3, 0]


def test_the_cuinit_record_is_dropped_unless_a_gpu_was_asked_for():
    """TF 2.21 on a CPU machine with CUDA libraries installed (issue 24): the line is noise on a CPU-only run."""
    cuinit = ("E0000 00:00:1796407349.402000    6257 cuda_executor.cc:1228] failed call to cuInit: INTERNAL: CUDA "
              "error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
    other = "E0000 00:00:1796407349.402100    6257 loader.cc:99] an error\n"
    assert tf_import.filter_startup_log(cuinit + other, 2) == other
    assert tf_import.filter_startup_log(cuinit + other, 2, gpu=True) == cuinit + other
    assert tf_import.filter_startup_log(cuinit, 0) == cuinit          # TF_CPP_MIN_LOG_LEVEL=0: everything
    assert [tf_import.gpu_asked(argv) for argv in (["train", "x", "--device", "gpu"], ["train", "--device=gpu"],
                                                   ["train", "--device", "cpu"], ["train"])] == [True, True, False,
                                                                                                 False]


def _stderr_of_list(zoo_run, level):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=level)
    done = subprocess.run([zoo_run, "list"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)
    assert done.returncode == 0 and "shufflenetv1_g3 " in done.stdout, done.stderr
    return done.stderr


def test_zoo_run_stderr_has_no_startup_notes(zoo_run):
    stderr = _stderr_of_list(zoo_run, "3")
    assert tf_import.ABSL_HEADER not in stderr and not any(tf_import.RECORD.match(l) for l in stderr.splitlines())
    if tf_compat.VERSION >= (2, 20):   # the notes are there when asked for: the filter had something to remove
        shown = _stderr_of_list(zoo_run, "0")
        assert tf_import.ABSL_HEADER in shown and "oneDNN custom operations are on" in shown
