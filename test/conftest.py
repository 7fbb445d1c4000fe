import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # as zoo-run sets it

import pytest  # noqa: E402

from registry import tf_import  # noqa: E402

tf_import.import_tensorflow()   # without TF 2.21's start-up notes, as zoo-run imports it

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.tf1_only`: the Ascend NPU path, which exists only on lane tf1 (npu_bridge is the TF 1.15
    adapter); on lane tf2 such tests are reported as skipped with the reason."""
    from registry import tf_compat
    if tf_compat.LANE == "tf1":
        return
    skip = pytest.mark.skip(reason="lane tf1 only: %s" % tf_compat.npu_lane_error("the NPU path"))
    for item in items:
        if "tf1_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def zoo_run():
    """Path of the installed `zoo-run` console script (the real entry point users run)."""
    return os.path.join(BIN, "zoo-run")
