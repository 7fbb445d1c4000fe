"""What the cross-lane tests share: the other TensorFlow lane's venv, a skip when it is not installed, and which
directions a suite runs.

Each lane's suite runs both directions (made on tf1 and read on tf2, and the reverse). CI runs both suites, which
would test every direction twice; there `.ci/run` sets ZOO_TEST_CROSS_LANE=from-this-lane and each suite runs
only the direction that starts on its own lane, so that each direction runs once per CI run."""
import os

import pytest

from registry import tf_compat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIS_LANE = tf_compat.LANE
OTHER_LANE = "tf2" if THIS_LANE == "tf1" else "tf1"
VARIABLE = "ZOO_TEST_CROSS_LANE"


def venv_bin(lane, program):
    return os.path.join(REPO, ".venv", lane, "bin", program)


needs_other_lane = pytest.mark.skipif(
    not os.path.exists(venv_bin(OTHER_LANE, "python")),
    reason="lane %s's venv is not here (%s; `make install STACK=%s` makes it)"
           % (OTHER_LANE, venv_bin(OTHER_LANE, "python"), OTHER_LANE))


def run_direction(starts_on):
    """Skips a direction that starts on lane `starts_on` when the other lane's suite runs it (see above)."""
    mode = os.environ.get(VARIABLE, "")
    if mode not in ("", "from-this-lane"):
        raise ValueError("%s=%r: leave it unset (both directions) or set it to from-this-lane" % (VARIABLE, mode))
    if mode and starts_on != THIS_LANE:
        pytest.skip("%s=%s: lane %s's suite runs the direction that starts on lane %s"
                    % (VARIABLE, mode, starts_on, starts_on))
