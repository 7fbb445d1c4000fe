"""What native libraries write straight to the process's stderr (file descriptor 2), filtered.

TensorFlow's bundled C/C++ libraries write some messages with `fprintf(stderr, ...)` or through a logger that
ignores `TF_CPP_MIN_LOG_LEVEL`: Abseil's log before it is initialised (registry.tf_import), libjpeg's warnings
while an image is decoded ("Improper call to JPEG library in state 201", "Premature end of JPEG file"). Python's
own redirection of `sys.stderr` cannot reach them; `filtered` swaps the file descriptor itself for the block.
"""
import contextlib
import os
import sys
import tempfile


def _drop_all(line):
    return False


@contextlib.contextmanager
def filtered(keep=_drop_all):
    """Captures file descriptor 2 while the block runs, then writes back, in order, the lines for which
    `keep(line)` is true (default: none). Everything the block writes to stderr meanwhile is captured, Python's
    `sys.stderr` included, so keep blocks short and single-threaded: a decode, an import."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True) if keep(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
