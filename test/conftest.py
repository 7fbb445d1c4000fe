import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


@pytest.fixture
def zoo_run():
    """Path of the installed `zoo-run` console script (the real entry point users run)."""
    return os.path.join(BIN, "zoo-run")
